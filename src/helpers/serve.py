"""Running a model for serving: the same network under Keras, LiteRT or ONNX Runtime, called like a model.

``runner(model, runtime, threads)`` returns a callable ``x → probabilities`` for ``"keras"`` (a compiled
``tf.function``), ``"litert"`` (a float32 TFLite flatbuffer run by LiteRT, ``ai_edge_litert``; else the
deprecated ``tf.lite.Interpreter``) or ``"onnx"`` (Keras' own ONNX export run by ONNX Runtime). ``make
bench`` times the three side by side and chooses what the command line and the app serve
(:func:`serving_model`, :func:`bundle_runner`): the fastest runtime that agrees with Keras, with the
number of test-time-augmentation views that fits the latency budget.
"""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("keras", "litert", "onnx")
RUNTIME_FILES = {"litert": "model.tflite", "onnx": "model.onnx"}
"""The file a bundle keeps for each non-Keras runtime (converted once, by ``make bench``)."""


def to_tflite(model) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (no quantisation, so results should match)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def to_onnx(model) -> bytes:
    """Keras' own ONNX export (``model.export(..., format="onnx")``, through tf2onnx), as bytes."""
    model(np.zeros((1, *model.input_shape[1:]), "float32"), training=False)  # Keras exports called models only
    with tempfile.TemporaryDirectory(prefix="onnx-") as d:
        path = Path(d) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf2onnx's numpy FutureWarnings
            model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()


def convert(model, runtime: str) -> bytes:
    """The file content that ``runtime`` runs (``"litert"`` or ``"onnx"``)."""
    if runtime == "litert":
        return to_tflite(model)
    if runtime == "onnx":
        return to_onnx(model)
    raise ValueError(f"no file to convert for runtime {runtime!r} (one of {', '.join(RUNTIME_FILES)})")


def tflite_interpreter_class() -> tuple[Any, str]:
    """``(Interpreter class, description)``: LiteRT's (``ai_edge_litert``) when installed, else
    ``tf.lite.Interpreter`` (deprecated in favour of LiteRT, still shipped with TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter, "ai_edge_litert.interpreter.Interpreter"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__}, deprecated for LiteRT)"


@contextmanager
def _quiet_stderr():
    """Silence the C++ runtime's own stderr lines (LiteRT announces its XNNPACK delegate) while it starts."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLiteModel:
    """Call a TFLite flatbuffer like a model: ``probs = TFLiteModel(content, threads)(x)``; the input is
    resized (and the tensors re-allocated) only when the batch shape changes."""

    def __init__(self, content: bytes, threads: int = 1):
        cls, self.runtime = tflite_interpreter_class()
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")  # the deprecation notice of tf.lite.Interpreter
            self.interpreter = cls(model_content=content, num_threads=int(threads))
            self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="float32")
        first = self._shape is None
        if self._shape != x.shape:
            self.interpreter.resize_tensor_input(self._in, list(x.shape))
            self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self._in, x)
        if first:
            with _quiet_stderr():  # the delegate is applied at the first invoke
                self.interpreter.invoke()
        else:
            self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._out))


class OnnxModel:
    """Call an ONNX model like a model with ONNX Runtime's CPU provider: ``probs = OnnxModel(content, threads)(x)``."""

    def __init__(self, content: bytes, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        opts.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0].name
        self.runtime = f"ONNX Runtime {ort.__version__} (CPUExecutionProvider)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._in: np.ascontiguousarray(x, dtype="float32")})[0])


class KerasRunner:
    """The Keras model's forward pass compiled once (:func:`helpers.predictions.inference_fn`), called like a
    model; the runner keeps the model alive."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        from .predictions import inference_fn

        self.model, self._f = model, inference_fn(model)
        self.runtime = f"Keras {keras.__version__} on TensorFlow {tf.__version__} (tf.function)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return np.asarray(self._f(tf.constant(np.asarray(x, dtype="float32"))))


def runner(model, runtime: str = "keras", threads: int = 1, content: bytes | None = None) -> Callable:
    """A callable ``x → probabilities`` that runs ``model`` with ``runtime`` (``content``: an already
    converted file, else the model is converted here). It has a ``runtime`` attribute naming the engine."""
    if runtime == "keras":
        return KerasRunner(model)
    if runtime not in RUNTIME_FILES:
        raise ValueError(f"unknown runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
    content = content if content is not None else convert(model, runtime)
    return TFLiteModel(content, threads) if runtime == "litert" else OnnxModel(content, threads)


def serving_model(model, views: int):
    """The bundle's network averaged over ``views`` test-time-augmentation views (1: the single-view network)."""
    from .tta import tta_core, tta_model

    core = tta_core(model)
    return core if int(views) == 1 else tta_model(core, int(views), name=f"{core.name}_tta{int(views)}")


def bundle_runner(model, side: Mapping[str, Any], folder: str | Path, threads: int | None = None) -> Callable:
    """What serves a bundle: the runtime named in its sidecar's ``serving`` block (written by ``make
    bench``) with the converted file stored beside the model; plain Keras for a bundle without one."""
    serving = side.get("serving") or {}
    rt = {"tflite": "litert"}.get(serving.get("runtime", "keras"), serving.get("runtime", "keras"))
    if rt == "keras":
        return KerasRunner(model)
    if rt not in RUNTIME_FILES:
        raise ValueError(f"{Path(folder).name}: unknown serving runtime {rt!r} (one of {', '.join(RUNTIMES)})")
    path = Path(folder) / RUNTIME_FILES[rt]
    if not path.is_file():
        raise FileNotFoundError(f"{Path(folder).name}: serving names {rt} but {path.name} is missing")
    return runner(model, rt, int(threads or serving.get("threads", 1)), content=path.read_bytes())
