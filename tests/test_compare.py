"""The saved bundles: discovery, their predictions lined up item by item, latency, moved images."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CLASSES
from helpers.compare import find_bundles, latency
from helpers.export import BundleError, load_predictions, save_bundle
from helpers.predictions import Predictions, align

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


def _aligned(bundles, split):
    """What chapter 8 does with the bundles' saved predictions: line them up (a bundle without the split: left out)."""
    found = {}
    for b in bundles:
        try:
            found[b.name] = load_predictions(b, split)
        except BundleError:
            continue
    return align(found, split)


def test_find_and_align(models_dir):
    bundles = find_bundles(models_dir)
    assert [b.name for b in bundles] == ["a", "b"]
    al = _aligned(bundles, "test")
    assert len(al.paths) == 7 and set(al.probs) == {"a", "b"}
    assert np.array_equal(al.y_true, np.arange(1, 8))
    raw = np.load(models_dir / "b" / "predictions_test.npz")
    i = list(raw["paths"]).index("/elsewhere/eosinophil/EO_1.jpg")
    assert np.allclose(al.probs["b"][0], raw["probs"][i])
    pb = al.predictions("b")                      # one model's answers on the shared items, as one value
    assert isinstance(pb, Predictions) and pb.paths == tuple(al.paths.tolist())
    np.testing.assert_array_equal(pb.probs, al.probs["b"].astype("float32"))
    val = _aligned(bundles, "val")                # b has no val predictions: left out
    assert set(val.probs) == {"a"}


def test_disagreeing_labels(models_dir):
    p = np.load(models_dir / "b" / "predictions_test.npz")
    np.savez_compressed(models_dir / "b" / "predictions_test.npz", paths=p["paths"], y_true=(p["y_true"] + 1) % 8,
                        probs=p["probs"])
    with pytest.raises(ValueError, match="disagrees"):
        _aligned(find_bundles(models_dir), "test")


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


def test_old_record_names_map_to_the_current_ones():
    from helpers.compare import canonical_name

    assert canonical_name("seed004_cnn") == "devnithw_cnn"
    assert canonical_name("seed001_cnn") == "bloodcells_cnn"
    assert canonical_name("improved_cnn") == "improved_cnn"
