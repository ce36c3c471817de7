"""helpers.tta: the eight symmetries, exact invariance of the TTA model, choosing views, bundles, records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # trains a small model

keras = pytest.importorskip("keras")

from helpers.data import load_split  # noqa: E402
from helpers.explain import grad_cam, logits  # noqa: E402
from helpers.export import load_bundle, load_predictions, register_custom_layers, save_bundle  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.results import load_records, validate_record  # noqa: E402
from helpers.tta import (  # noqa: E402
    VIEW_COUNTS,
    VIEW_NAMES,
    DihedralViews,
    choose_views,
    dihedral,
    evaluate_tta,
    is_tta,
    save_tta,
    tta_core,
    tta_model,
    tta_views,
    view_probs,
    view_table,
)

SIZE = 24


def _numpy_view(x: np.ndarray, k: int) -> np.ndarray:
    """Reference implementation with NumPy: mirror left-right, then quarter turns anticlockwise."""
    turns = {0: 0, 1: 2, 2: 1, 3: 3}[k % 4]
    y = x[:, :, ::-1] if k >= 4 else x
    return np.rot90(y, turns, axes=(1, 2))


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def cnn():
    """A small, untrained CNN: not invariant to any symmetry, so only the wrapper can make it so."""
    keras.utils.set_random_seed(1)
    return build_model("devnithw_cnn", SIZE)


def test_views_match_numpy_and_are_all_different():
    x = _images(2)
    views = [np.asarray(dihedral(x, k)) for k in range(8)]
    for k, v in enumerate(views):
        np.testing.assert_array_equal(v, _numpy_view(x, k), err_msg=VIEW_NAMES[k])
    assert len({v.tobytes() for v in views}) == 8
    with pytest.raises(ValueError, match="0..7"):
        dihedral(x, 8)


@pytest.mark.parametrize("n", VIEW_COUNTS)
def test_first_n_views_form_a_group(n):
    """Applying any of the first n views to the set of the first n views gives the same set back."""
    x = _images(1)
    base = {np.asarray(dihedral(x, j)).tobytes() for j in range(n)}
    for k in range(n):
        moved = {np.asarray(dihedral(np.asarray(dihedral(x, j)), k)).tobytes() for j in range(n)}
        assert moved == base, f"views {VIEW_NAMES[:n]} are not closed under {VIEW_NAMES[k]}"


def test_tta_model_is_the_mean_of_the_views(cnn):
    x = _images(4)
    w = tta_model(cnn, 8)
    p = np.asarray(w(x))
    ref = np.mean([np.asarray(cnn(_numpy_view(x, k).copy())) for k in range(8)], axis=0)
    np.testing.assert_allclose(p, ref, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert is_tta(w) and not is_tta(cnn) and tta_core(w) is cnn and tta_core(cnn) is cnn
    assert tta_views(w) == 8 and tta_views(cnn) == 1


@pytest.mark.parametrize("n", [2, 4, 8])
def test_tta_model_is_exactly_invariant_within_its_group(cnn, n):
    x = _images(3, seed=n)
    w = tta_model(cnn, n)
    p = np.asarray(w(x))
    for k in range(n):
        np.testing.assert_allclose(np.asarray(w(_numpy_view(x, k).copy())), p, atol=1e-5)
    # a symmetry outside the group changes the answer of this (non-invariant) model
    outside = np.asarray(w(_numpy_view(x, n if n < 8 else 0).copy()))
    if n < 8:
        assert np.abs(outside - p).max() > 1e-4


def test_bad_arguments(cnn):
    with pytest.raises(ValueError, match="groups"):
        DihedralViews(3)
    rect = keras.Sequential([keras.Input((16, 24, 3)), keras.layers.Flatten(), keras.layers.Dense(8, "softmax")])
    with pytest.raises(ValueError, match="square"):
        tta_model(rect)


def test_view_probs_rejects_non_square_batches(cnn):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 24, 20, 3), "float32"), np.zeros(4, "int32"))).batch(2)
    with pytest.raises(ValueError, match="square"):
        view_probs(cnn, ds)


def test_bundle_round_trip_and_explanations(cnn, tmp_path):
    x = _images(2)
    w = tta_model(cnn, 4)
    folder = save_bundle(w, tmp_path / "b", image_size=SIZE, weights_source={"kind": "none"})
    register_custom_layers()
    w2, side = load_bundle(folder)
    assert is_tta(w2) and tta_views(w2) == 4 and side["image_size"] == SIZE
    np.testing.assert_allclose(np.asarray(w2(x)), np.asarray(w(x)), atol=1e-6)
    # Grad-CAM explains the single-view model inside; logits are the core's, averaged over the views
    g_w, g_core = grad_cam(w2, x), grad_cam(tta_core(w2), x)
    np.testing.assert_allclose(g_w.heatmaps, g_core.heatmaps, atol=1e-5)
    z = logits(w2, x)
    ref = np.mean([logits(tta_core(w2), _numpy_view(x, k).copy()) for k in range(4)], axis=0)
    np.testing.assert_allclose(z, ref, atol=1e-4)


def test_view_table_and_choice():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 10)
    onehot = np.eye(8)[y]
    probs = np.stack([0.55 * onehot + 0.45 * rng.dirichlet(np.ones(8), len(y)) for _ in range(8)])
    table = view_table(y, probs)
    assert list(table.query("kind == 'one view'").index) == list(VIEW_NAMES)
    assert list(table.query("kind == 'TTA'")["views"]) == [1, 2, 4, 8]
    np.testing.assert_allclose(table.loc["identity", "accuracy"], (probs[0].argmax(1) == y).mean())
    fake = pd.DataFrame({"kind": ["TTA"] * 4, "views": [1, 2, 4, 8], "macro_f1": [0.970, 0.9795, 0.980, 0.9805]})
    assert choose_views(fake, tolerance=0.001) == 2
    assert choose_views(fake, tolerance=0.0) == 8
    assert choose_views(fake, tolerance=0.02) == 1
    with pytest.raises(ValueError, match="no TTA rows"):
        choose_views(fake.assign(kind="one view"))


@pytest.fixture(scope="module")
def small_data():
    return load_split(max_per_class=4, progress=False)


def test_view_probs_agrees_with_the_wrapper(cnn, small_data):
    from helpers.pipeline import make_dataset
    from helpers.predictions import predict_dataset

    ds = make_dataset(small_data.paths("val"), small_data.labels("val"), SIZE, batch_size=8, cache=False)
    y, pv = view_probs(cnn, ds, 8)
    assert pv.shape == (8, len(y), 8)
    np.testing.assert_array_equal(y, small_data.labels("val"))
    for n in (2, 8):
        _, pw = predict_dataset(tta_model(cnn, n), ds)
        np.testing.assert_allclose(pv[:n].mean(axis=0), pw, atol=1e-5)


def test_evaluate_and_save_tta(cnn, small_data, tmp_path, monkeypatch):
    from helpers.predictions import Predictions
    from helpers.results import make_record

    monkeypatch.setenv("BLOODCELLS_RESULTS_DIR", str(tmp_path / "results"))
    res = evaluate_tta(cnn, small_data, SIZE, views=None)
    assert res["views"] in VIEW_COUNTS and tta_views(res["model"]) == res["views"]
    assert isinstance(res["val"], Predictions) and isinstance(res["test"], Predictions)
    assert len(res["test"].y_true) == len(small_data.labels("test"))
    assert res["val"].paths == tuple(map(str, small_data.paths("val")))
    base_like = tmp_path / "single"
    save_bundle(cnn, base_like, image_size=SIZE, weights_source={"kind": "none (trained from scratch)"},
                preprocessing="test contract", family="test-family")
    val, test = res["val"].metrics(), res["test"].metrics()
    base = make_record("tiny_cnn", image_size=SIZE, epochs=1, train_seconds=1.0,
                       weights_source={"kind": "none (trained from scratch)"}, data=small_data.provenance(), seed=0,
                       val=val, test=test)
    folder, rec = save_tta(res, "tiny_cnn_tta", base, small_data, like=base_like, models_directory=tmp_path / "tta")
    assert folder == tmp_path / "tta" / "tiny_cnn_tta"
    assert json.loads(Path(rec.pop("_path")).read_text())["model"] == "tiny_cnn_tta"
    validate_record(rec)
    assert rec["tta"]["of"] == "tiny_cnn" and rec["tta"]["views"] == res["views"]
    assert rec["train_seconds"] == base["train_seconds"] and rec["data"] == base["data"]
    assert [r["model"] for r in load_records()] == ["tiny_cnn_tta"]
    side = json.loads((folder / "bundle.json").read_text())
    assert side["preprocessing"] == "test contract" and side["family"] == "test-family"
    assert side["tta"]["views"] == res["views"]
    saved = load_predictions(folder, "test")
    np.testing.assert_allclose(saved.probs, res["test"].probs, atol=1e-6)
    assert [str(p) for p in saved.paths] == [str(p) for p in small_data.paths("test")]
