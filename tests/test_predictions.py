"""helpers.predictions: the one value for a model's answers (shape checks, save/load) and predict_dataset."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CLASSES
from helpers.predictions import Predictions, predict_dataset


def _probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(len(CLASSES)), n)


def test_shapes_are_checked():
    p = Predictions(["a.jpg", "b.jpg"], [0, 3], _probs(2))
    assert len(p) == 2 and p.paths == ("a.jpg", "b.jpg")
    assert p.y_true.dtype == np.int32 and p.probs.dtype == np.float32
    assert p.y_pred.tolist() == p.probs.argmax(1).tolist()
    with pytest.raises(ValueError, match="one label and one probability row per image"):
        Predictions(["a.jpg", "b.jpg"], [0], _probs(2))            # a label missing
    with pytest.raises(ValueError, match="one label and one probability row per image"):
        Predictions(["a.jpg"], [0], _probs(2))                     # a probability row too many
    with pytest.raises(ValueError, match="one label and one probability row per image"):
        Predictions(["a.jpg"], [0], np.full(len(CLASSES), 0.125))  # not one row per image


def test_metrics_are_metrics_block():
    from helpers.evaluate import metrics_block

    y = np.arange(len(CLASSES))
    p = Predictions([f"{c}/x.jpg" for c in CLASSES], y, _probs(len(CLASSES), 1))
    assert p.metrics() == metrics_block(y, p.probs)


def test_save_load_round_trip(tmp_path):
    p = Predictions([f"/data/{c}/{i}.jpg" for i, c in enumerate(CLASSES)], np.arange(8)[::-1], _probs(8, 2))
    path = p.save(tmp_path / "sub" / "predictions_test.npz")
    assert path.is_file() and not list(path.parent.glob(".*"))  # written atomically: no temporary file left
    q = Predictions.load(path)
    assert q.paths == p.paths and isinstance(q.paths[0], str)
    np.testing.assert_array_equal(q.y_true, p.y_true)
    np.testing.assert_array_equal(q.probs, p.probs)


def test_predict_dataset_over_batches():
    batches = [(np.ones((2, 3)), np.array([0, 1])), (np.zeros((1, 3)), np.array([2]))]

    def model(x, training=False):
        assert training is False
        return np.tile(x.sum(axis=1, keepdims=True), (1, 8))

    y, p = predict_dataset(model, batches)
    assert y.tolist() == [0, 1, 2] and p.shape == (3, 8) and p[0, 0] == 3 and p[2, 0] == 0
    y1, p1 = predict_dataset(model, batches, max_batches=1)
    assert y1.tolist() == [0, 1] and p1.shape == (2, 8)
    with pytest.raises(ValueError, match="empty"):
        predict_dataset(model, [])


def test_a_keras_model_is_called_through_one_traced_function_that_does_not_keep_it_alive():
    import gc
    import weakref

    import keras

    from helpers.predictions import inference_fn

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.9)(inp)))
    x = np.random.default_rng(0).random((5, 4)).astype("float32")
    fn = inference_fn(model)
    assert inference_fn(model) is fn  # traced once, reused (e.g. after every epoch)
    np.testing.assert_allclose(np.asarray(fn(x)), np.asarray(model(x, training=False)), rtol=1e-6)  # dropout off
    np.testing.assert_allclose(np.asarray(fn(x[:2])), np.asarray(model(x[:2], training=False)), rtol=1e-6)
    model.layers[-1].kernel.assign(np.zeros((4, 3), "float32"))  # the trained weights are read, not a copy
    np.testing.assert_allclose(np.asarray(fn(x)), 1 / 3, rtol=1e-6)
    ref = weakref.ref(model)
    del model, fn
    gc.collect()
    assert ref() is None


def test_first_right_picks_the_first_correct_image_of_each_class():
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    p = Predictions(paths=["a", "b", "c", "d"], y_true=[0, 0, 1, 1], probs=probs, classes=("x", "y"))
    assert p.first_right() == ([1, 2], ["x (0.80)", "y (0.70)"])
    wrong = Predictions(paths=["a", "b"], y_true=[0, 1], probs=np.array([[0.2, 0.8], [0.4, 0.6]]),
                        classes=("x", "y"))
    assert wrong.first_right(["cat", "dog"]) == ([1], ["dog (0.60)"])  # no right image of class 0: left out
