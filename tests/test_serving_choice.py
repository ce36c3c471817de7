"""The serving choice of ``make bench`` (benchmarks/inference_bench.py): the published model with its own views,
on the fastest agreeing runtime."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from inference_bench import choose_serving  # noqa: E402

AGREE = {"n": 100, "n_disagree": 0, "max_abs_prob_diff": 1e-6}


def test_the_fastest_agreeing_runtime_serves_the_model_with_its_own_views():
    s = choose_serving({"keras": 30.0, "litert": 12.0, "onnx": 9.0}, {"keras": 8.0, "litert": 2.2, "onnx": 1.9},
                       {"litert": AGREE, "onnx": AGREE}, views=8)
    assert (s["runtime"], s["views"]) == ("onnx", 8)  # never fewer views than the published model has
    assert s["estimated_ms"] == pytest.approx(9.0) and s["fits"]
    assert s["agreeing"] == ["keras", "litert", "onnx"]
    untimed = choose_serving({}, {"keras": 8.0, "litert": 2.2}, {"litert": AGREE}, views=4)
    assert untimed["runtime"] == "litert" and untimed["estimated_ms"] == pytest.approx(8.8)


def test_a_runtime_that_disagrees_is_never_served():
    wrong = {**AGREE, "n_disagree": 1}
    loose = {**AGREE, "max_abs_prob_diff": 0.02}
    s = choose_serving({}, {"keras": 8.0, "litert": 2.2, "onnx": 1.0}, {"litert": loose, "onnx": wrong}, views=1)
    assert s["runtime"] == "keras" and s["views"] == 1 and s["agreeing"] == ["keras"]
    failed = choose_serving({}, {"keras": 8.0, "onnx": 1.0}, {"onnx": {"error": "conversion failed"}}, views=1)
    assert failed["runtime"] == "keras"


def test_a_slow_model_is_served_as_published_and_said_to_miss_the_target():
    slow = choose_serving({"keras": 40.0}, {}, {}, views=2)
    assert slow["views"] == 2 and not slow["fits"]
    with pytest.raises(ValueError, match="nothing to choose"):
        choose_serving({}, {}, {}, views=8)


@pytest.mark.slow  # trains a tiny CNN for one epoch and starts one benchmark worker
def test_the_served_configuration_is_built_scored_and_saved(tmp_path):
    """publish_served on a tiny bundle: the bundle ``served`` carries its runtime file and serving block, its
    record scores the configuration itself, and the command-line path serves it with that runtime."""
    import json

    import numpy as np
    from inference_bench import publish_served
    from tinybundle import tiny_bundle

    from helpers.data import load_split
    from helpers.export import load_bundle, load_predictions
    from helpers.serve import RUNTIME_FILES, bundle_runner

    src = tiny_bundle(load_split(None, max_per_class=4, seed=0, progress=False), tmp_path / "models")
    serving = {"runtime": "onnx", "views": 1, "target_ms": 10.0}
    out = publish_served({"bundle": str(src)}, serving, {"quick": True, "scratch": str(tmp_path), "repeats": 1})
    assert out["runtime"] == "onnx" and out["views"] == 1 and out["ms_per_image_1core"] > 0
    folder = tmp_path / "bench-served" / "models" / "served"
    assert (folder / RUNTIME_FILES["onnx"]).is_file()
    record = json.loads((tmp_path / "bench-served" / "results" / "served.json").read_text())
    assert record["serving"]["source_bundle"] == src.name and record["test"]["accuracy"] == out["test_accuracy"]
    model, side = load_bundle(folder)
    assert side["serving"]["runtime"] == "onnx" and side["tta"]["views"] == 1
    run = bundle_runner(model, side, folder)
    assert run.runtime.startswith("ONNX Runtime")
    saved = load_predictions(src, "test")  # the same network: the served answers equal the saved Keras ones
    served = load_predictions(folder, "test")
    np.testing.assert_allclose(served.probs, saved.probs[: len(served.probs)], atol=1e-4)
    # timed by the runtime comparison already: that measurement is the served latency, not a second one
    from helpers.bench import Measurement

    timed = Measurement("onnx, 1 core, batch 1", 10, [0.05, 0.04, 0.06])
    again = publish_served({"bundle": str(src)}, serving, {"quick": True, "scratch": str(tmp_path), "repeats": 1},
                           timed=timed)
    assert again["ms_per_image_1core"] == round(1000 / timed.median, 3) == 5.0
