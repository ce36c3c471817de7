"""Tests of helpers.serve: every serving runtime (Keras, LiteRT, ONNX Runtime) answers like the Keras model."""
from __future__ import annotations

import numpy as np
import pytest
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


def _x(n: int = 6, size: int = 16, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_onnx_export_runs_in_onnx_runtime_like_keras():
    model = tiny_model()
    x = _x()
    content = serve.to_onnx(model)
    onnx = serve.OnnxModel(content, threads=1)
    assert onnx.runtime.startswith("ONNX Runtime")
    np.testing.assert_allclose(onnx(x), np.asarray(model(x, training=False)), atol=1e-5)


@pytest.mark.parametrize("runtime", serve.RUNTIMES)
def test_every_runtime_answers_like_keras_on_a_tta_model(runtime):
    from helpers.tta import tta_model

    model = tta_model(tiny_model(), 4)
    x = _x(5)
    run = serve.runner(model, runtime, threads=1)
    assert run.runtime
    np.testing.assert_allclose(run(x), np.asarray(model(x, training=False)), atol=1e-5)


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="unknown runtime"):
        serve.runner(tiny_model(), "tensorrt")


def test_serving_model_rebuilds_the_views():
    from helpers.tta import tta_model, tta_views

    core = tiny_model()
    full = tta_model(core, 8)
    assert serve.serving_model(full, 1) is core
    four = serve.serving_model(full, 4)
    assert tta_views(four) == 4
    x = _x(3)
    np.testing.assert_allclose(np.asarray(four(x)), np.asarray(tta_model(core, 4)(x)), atol=1e-6)


def test_bundle_runner_follows_the_sidecar(tmp_path):
    model = tiny_model()
    x = _x(4)
    assert serve.bundle_runner(model, {}, tmp_path).runtime.startswith("Keras")
    side = {"serving": {"runtime": "onnx", "views": 1, "threads": 1}}
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        serve.bundle_runner(model, side, tmp_path)
    (tmp_path / serve.RUNTIME_FILES["onnx"]).write_bytes(serve.to_onnx(model))
    run = serve.bundle_runner(model, side, tmp_path)
    assert run.runtime.startswith("ONNX Runtime")
    np.testing.assert_allclose(run(x), np.asarray(model(x, training=False)), atol=1e-5)


def test_the_app_card_names_the_served_configuration(tmp_path):
    from helpers import CLASSES
    from helpers.app import model_card

    side = {"image_size": 96, "classes": list(CLASSES), "metrics": {"test": {"accuracy": 0.98, "n": 3000}},
            "serving": {"runtime": "onnx", "views": 4}, "tta": {"views": 4}, "source_bundle": "transfer_x_tta"}
    card = model_card(side, tmp_path / "served", "ONNX Runtime 1.32.0 (CPUExecutionProvider)")
    assert "`served` (`transfer_x_tta` configured for serving)" in card
    assert "98.00% test accuracy (n = 3000)" in card and "96 px, 4 views, ONNX Runtime" in card
    plain = model_card({k: v for k, v in side.items() if k not in ("serving", "tta")}, tmp_path / "best")
    assert "`transfer_x_tta`" in plain and "1 view;" in plain
