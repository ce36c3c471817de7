"""Running a model for serving: convert a Keras model to TensorFlow Lite and call the flatbuffer like a model.

The command line and the app serve with these; ``benchmarks/`` times them against Keras. LiteRT
(``ai_edge_litert``) is used when installed, else ``tf.lite.Interpreter``.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def to_tflite(model) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (no quantisation, so results should match)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tflite_interpreter_class() -> tuple[Any, str]:
    """``(Interpreter class, description)``: LiteRT's (``ai_edge_litert``) when installed, else
    ``tf.lite.Interpreter`` (deprecated in favour of LiteRT, still shipped with TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter, "ai_edge_litert.interpreter.Interpreter"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__}, deprecated for LiteRT)"


class TFLiteModel:
    """Call a TFLite flatbuffer like a model: ``probs = TFLiteModel(content, threads)(x)``; the input is
    resized (and the tensors re-allocated) only when the batch shape changes."""

    def __init__(self, content: bytes, threads: int = 1):
        import warnings

        cls, self.runtime = tflite_interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice of tf.lite.Interpreter
            self.interpreter = cls(model_content=content, num_threads=int(threads))
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="float32")
        if self._shape != x.shape:
            self.interpreter.resize_tensor_input(self._in, list(x.shape))
            self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._out))

