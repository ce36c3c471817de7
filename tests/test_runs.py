"""helpers.runs.save_run: the one writer of a trained model's record and bundle."""
from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import CLASSES  # noqa: E402
from helpers.export import load_bundle, load_predictions  # noqa: E402
from helpers.predictions import Predictions  # noqa: E402
from helpers.results import load_records, validate_record  # noqa: E402
from helpers.runs import FROM_SCRATCH, save_run  # noqa: E402

DATA = {"root_name": "pbc", "data_fingerprint": "d", "split_fingerprint": "s", "manifest": "m.csv",
        "max_per_class": None, "skipped_files": 0, "counts": {"train": 0, "val": 8, "test": 8}}


def _model():
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
    return keras.Model(inp, out, name="tiny")


def _preds(split: str, seed: int) -> Predictions:
    paths = [f"/data/{split}/{c}/{i}.jpg" for i, c in enumerate(CLASSES)]
    return Predictions(paths, np.arange(len(CLASSES)), np.random.default_rng(seed).dirichlet(np.ones(8), 8))


def _save(tmp_path, predictions, **kw):  # made-up image paths: no scores file (tests/test_scores.py)
    kw.setdefault("save_scores", False)
    return save_run(_model(), "tiny_run", DATA, predictions, image_size=8, epochs=2, train_seconds=3.14159,
                    weights_source=dict(FROM_SCRATCH), seed=7, mode="smoke", results_directory=tmp_path / "res",
                    models_directory=tmp_path / "models", **kw)


def test_record_and_bundle_written(tmp_path):
    preds = {"val": _preds("val", 0), "test": _preds("test", 1)}
    run = _save(tmp_path, preds, record={"architecture": "tiny"}, bundle={"family": "test"}, preprocessing="raw")
    saved = json.loads(run.record_path.read_text())
    validate_record(saved)
    assert run.record_path == tmp_path / "res" / "tiny_run.json" and saved["model"] == "tiny_run"
    assert saved["val"] == preds["val"].metrics() and saved["test"] == preds["test"].metrics()
    assert saved["epochs"] == 2 and saved["train_seconds"] == 3.14 and saved["seed"] == 7
    assert saved["mode"] == "smoke" and saved["architecture"] == "tiny" and saved["data"] == DATA
    assert run.bundle == tmp_path / "models" / "tiny_run"
    model, side = load_bundle(run.bundle)
    assert side["image_size"] == 8 and side["family"] == "test" and side["preprocessing"] == "raw"
    assert side["metrics"] == {"val": saved["val"], "test": saved["test"]} and side["data"] == DATA
    for split, p in preds.items():  # the predictions round-trip
        q = load_predictions(run.bundle, split)
        assert q.paths == p.paths
        np.testing.assert_array_equal(q.y_true, p.y_true)
        np.testing.assert_allclose(q.probs, p.probs, atol=1e-7)


def test_without_test_the_record_has_test_null(tmp_path):
    run = _save(tmp_path, {"val": _preds("val", 0)}, save_model=False)
    assert run.bundle is None and not (tmp_path / "models").exists()
    assert json.loads(run.record_path.read_text())["test"] is None
    with pytest.raises(ValueError, match="validation predictions"):
        _save(tmp_path, {"test": _preds("test", 1)})


def test_a_failing_bundle_leaves_no_half_bundle_and_no_record(tmp_path):
    preds = {"val": _preds("val", 0), "test": _preds("test", 1)}
    _save(tmp_path, preds)                          # a complete earlier run of the same name
    before = sorted(p.name for p in (tmp_path / "models" / "tiny_run").iterdir())
    before_rec = (tmp_path / "res" / "tiny_run.json").read_text()
    with pytest.raises(TypeError):                  # a sidecar field that JSON cannot hold
        _save(tmp_path, {"val": _preds("val", 2)}, bundle={"bad": object()})
    assert sorted(p.name for p in (tmp_path / "models" / "tiny_run").iterdir()) == before
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny_run"]  # no temporary folder left
    assert (tmp_path / "res" / "tiny_run.json").read_text() == before_rec
    assert [r["model"] for r in load_records(tmp_path / "res")] == ["tiny_run"]
