"""Tests of helpers.serve: a TFLite conversion answers like the Keras model."""
from __future__ import annotations

import numpy as np
from benchfakes import tiny_model

from helpers import serve


def test_tflite_conversion_matches_keras_top1():
    model = tiny_model()
    x = np.random.default_rng(1).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    content = serve.to_tflite(model)
    assert isinstance(content, bytes) and len(content) > 100
    lite = serve.TFLiteModel(content, threads=1)
    assert lite.runtime
    p_lite = np.concatenate([lite(x[:5]), lite(x[5:6]), lite(x[6:])])  # batch size changes re-allocate
    p_keras = np.asarray(model(x, training=False))
    assert p_lite.shape == p_keras.shape == (12, 8)
    np.testing.assert_array_equal(p_lite.argmax(1), p_keras.argmax(1))
    np.testing.assert_allclose(p_lite, p_keras, atol=1e-4)


def test_the_runtime_is_litert_when_it_is_installed():
    """tf.lite.Interpreter is deprecated; with ai-edge-litert installed (requirements.txt) serving uses LiteRT."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai-edge-litert is not installed: serving falls back to tf.lite.Interpreter")
    cls, name = serve.tflite_interpreter_class()
    assert name.startswith("ai_edge_litert") and cls.__module__.startswith("ai_edge_litert")
