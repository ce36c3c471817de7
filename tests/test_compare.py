"""Comparing saved bundles: discovery, alignment of predictions, latency, publishing the best."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import CLASSES
from helpers.compare import find_bundles, latency, load_aligned, publish_best, size_mb
from helpers.export import BundleError, save_bundle
from helpers.predictions import Predictions

keras = pytest.importorskip("keras")


def _model(name):
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
    return keras.Model(inp, out, name=name)


def _preds(paths, y, seed):
    p = np.random.default_rng(seed).dirichlet(np.ones(8), len(paths))
    return Predictions(paths, y, p)


@pytest.fixture()
def models_dir(tmp_path):
    d = tmp_path / "models"
    paths = [f"/data/a/{c}/{c[:2].upper()}_{i}.jpg" for i, c in enumerate(CLASSES)]
    y = np.arange(8)
    save_bundle(_model("a"), d / "a", image_size=8, weights_source="none",
                predictions={"val": _preds(paths, y, 0), "test": _preds(paths, y, 1)})
    # b: same images under another root, in another order, one item fewer
    other = [p.replace("/data/a/", "/elsewhere/") for p in paths][::-1][:-1]
    save_bundle(_model("b"), d / "b", image_size=8, weights_source="none",
                predictions={"test": _preds(other, y[::-1][:-1], 2)})
    (d / ".b.old").mkdir()
    (d / "junk").mkdir()
    return d


def test_find_and_align(models_dir):
    bundles = find_bundles(models_dir)
    assert [b.name for b in bundles] == ["a", "b"]
    al = load_aligned(bundles, "test")
    assert len(al.paths) == 7 and set(al.probs) == {"a", "b"}
    assert np.array_equal(al.y_true, np.arange(1, 8))
    raw = np.load(models_dir / "b" / "predictions_test.npz")
    i = list(raw["paths"]).index("/elsewhere/eosinophil/EO_1.jpg")
    assert np.allclose(al.probs["b"][0], raw["probs"][i])
    pb = al.predictions("b")                      # one model's answers on the shared items, as one value
    assert isinstance(pb, Predictions) and pb.paths == tuple(al.paths.tolist())
    np.testing.assert_array_equal(pb.probs, al.probs["b"].astype("float32"))
    val = load_aligned(bundles, "val")            # b has no val predictions: left out
    assert set(val.probs) == {"a"}
    assert size_mb(bundles[0]) > 0


def test_disagreeing_labels(models_dir):
    p = np.load(models_dir / "b" / "predictions_test.npz")
    np.savez_compressed(models_dir / "b" / "predictions_test.npz", paths=p["paths"], y_true=(p["y_true"] + 1) % 8,
                        probs=p["probs"])
    with pytest.raises(BundleError, match="disagrees"):
        load_aligned(find_bundles(models_dir), "test")


def test_publish_best(models_dir):
    best = publish_best(models_dir / "a", models_dir, {"by": "val macro_f1", "value": 0.5})
    side = json.loads((best / "bundle.json").read_text())
    assert side["selected"] == {"by": "val macro_f1", "value": 0.5, "source_bundle": "a"}
    assert [b.name for b in find_bundles(models_dir)] == ["a", "b"]      # best is not a competitor
    publish_best(models_dir / "b", models_dir, {"by": "x"})              # replaced atomically
    assert json.loads((best / "bundle.json").read_text())["selected"]["source_bundle"] == "b"


def test_latency_keys():
    lat = latency(_model("c"), np.zeros((2, 8, 8, 3)), batch_sizes=(1, 4), repeats=2)
    assert set(lat) == {1, 4} and all(v > 0 for v in lat.values())
    with pytest.raises(ValueError, match="images"):
        latency(_model("c"), np.zeros((8, 8, 3)))


def test_resolve_paths(tmp_path):
    from helpers.compare import resolve_paths

    (tmp_path / "new" / "ig").mkdir(parents=True)
    (tmp_path / "new" / "ig" / "MY_1.jpg").write_bytes(b"x")
    here = tmp_path / "new" / "ig" / "MY_1.jpg"
    assert resolve_paths([str(here)]) == [str(here)]
    assert resolve_paths(["/old/place/ig/MY_1.jpg"], tmp_path / "new") == [str(here)]
    with pytest.raises(FileNotFoundError, match="DATA_DIR"):
        resolve_paths(["/old/place/ig/MY_2.jpg"], tmp_path / "new")


def test_bundle_with_custom_layer_loads_after_registration(tmp_path):
    import subprocess
    import sys

    from helpers.models import improved_cnn_variant

    model = improved_cnn_variant(16, widths=(4,), convs_per_stage=1)
    save_bundle(model, tmp_path / "m", image_size=16, weights_source="none")
    code = ("from helpers.compare import register_custom_layers; register_custom_layers(); "
            f"from helpers.export import load_bundle; m, _ = load_bundle({str(tmp_path / 'm')!r}); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


@pytest.mark.slow  # trains
def test_smoke_bundle_saves_a_labelled_run(tmp_path):
    from helpers.compare import SMOKE_NOTE, smoke_bundle
    from helpers.data import load_split
    from helpers.export import load_predictions, read_sidecar
    from helpers.results import load_records

    data = load_split(max_per_class=2, progress=False)
    folder = smoke_bundle(data, tmp_path / "models", image_size=16, results_directory=tmp_path / "res")
    assert folder == tmp_path / "models" / "smoke_tiny_cnn" and find_bundles(tmp_path / "models") == [folder]
    side = read_sidecar(folder)
    assert side["note"] == SMOKE_NOTE and side["train_seconds"] > 0 and set(side["metrics"]) == {"val", "test"}
    (rec,) = load_records(tmp_path / "res")
    assert rec["model"] == "smoke_tiny_cnn" and rec["mode"] == "smoke" and rec["note"] == SMOKE_NOTE
    assert rec["test"] == side["metrics"]["test"] and rec["epochs"] == 1
    assert load_predictions(folder, "test").paths == tuple(map(str, data.paths("test")))


def test_missing_bundles_name_the_chapter_and_accept_old_names():
    from helpers.compare import canonical_name, missing_bundles

    assert canonical_name("seed004_cnn") == "devnithw_cnn"
    assert canonical_name("seed001_cnn") == "bloodcells_cnn"
    lines = missing_bundles(["improved_cnn", "improved_cnn_tta", "transfer_vgg19"])
    assert any("transfer_resnet50" in ln and "05_transfer_resnet50" in ln for ln in lines)
    assert not any("improved_cnn" in ln for ln in lines)
    assert missing_bundles([]) and all("\n" not in ln for ln in missing_bundles([]))
