"""helpers.ensemble: forward selection on validation only, and one saved Keras model that averages."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.ensemble import average, ensemble_model, greedy_select, predict


def _onehot(pred, n=8, p=0.9):
    out = np.full((len(pred), n), (1 - p) / (n - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def test_greedy_selection_picks_complementary_models_and_stops():
    y = np.arange(40) % 8

    def model(wrong):  # right and sure everywhere except on ``wrong``, where it is wrong and unsure
        pred = y.copy()
        pred[wrong] = (y[wrong] + 1) % 8
        p = _onehot(pred, p=0.9)
        p[wrong] = _onehot(pred[wrong], p=0.5)
        return p

    probs = {"a": model(slice(0, 10)), "b": model(slice(30, 40)), "bad": _onehot((y + 3) % 8)}
    sel = greedy_select(y, probs, metric="accuracy")
    assert set(sel["weights"]) == {"a", "b"}
    assert sel["val_score"] == pytest.approx(1.0)
    assert sum(sel["weights"].values()) == pytest.approx(1.0)
    assert [s["added"] for s in sel["steps"]] == ["a", "b"]


def test_max_members_is_respected():
    y = np.arange(16) % 8
    probs = {k: _onehot((y + (i % 2)) % 8) for i, k in enumerate("abcd")}
    assert len(greedy_select(y, probs, max_members=1)["weights"]) == 1


def test_saved_ensemble_reproduces_the_weighted_average(tmp_path):
    import keras

    keras.utils.set_random_seed(0)

    def tiny(size, name):
        inp = keras.Input((size, size, 3))
        h = keras.layers.Rescaling(1 / 255)(inp)
        h = keras.layers.Conv2D(4, 3, activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inp, keras.layers.Dense(8, activation="softmax")(h), name=name)

    m = {"small": tiny(16, "small"), "big": tiny(24, "big")}
    w = {"small": 0.25, "big": 0.75}
    ens = ensemble_model(m, {"small": 16, "big": 24}, w)
    assert ens.input_shape[1:] == (24, 24, 3)
    x = np.random.default_rng(0).uniform(0, 255, (5, 24, 24, 3)).astype("float32")
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(16, 16, antialias=True)(x))
    expected = average({"small": predict(m["small"], resized), "big": predict(m["big"], x)}, w)
    got = predict(ens, x)
    assert np.allclose(got, expected, atol=1e-5)
    ens.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras")
    assert np.allclose(predict(again, x), got, atol=1e-6)
