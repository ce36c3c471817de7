"""Grad-CAM: finds the feature map (also inside a nested backbone) and points at the object."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers.explain import find_feature_layer, grad_cam, overlay  # noqa: E402

SIZE = 40


def _discs(n, seed):
    """Pale noisy images with one disc at a random place; the class is the disc's colour (red/blue)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    x = np.full((n, SIZE, SIZE, 3), 225.0) + rng.normal(0, 8, (n, SIZE, SIZE, 3))
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        cx, cy = rng.integers(9, SIZE - 9, 2)
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < 7 ** 2
        x[i][m] = (200, 40, 40) if y[i] == 0 else (40, 40, 200)
        masks[i] = m
    return np.clip(x, 0, 255).astype("float32"), y, masks


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y, _ = _discs(256, 0)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.mark.slow  # trains
def test_gradcam_highlights_the_disc(trained):
    x, y, masks = _discs(16, 1)
    assert (np.asarray(trained(x)).argmax(1) == y).mean() >= 0.9, "the tiny model did not learn the discs"
    g = grad_cam(trained, x)
    assert g.heatmaps.shape == (16, SIZE, SIZE) and g.layer == "c2"
    assert 0.0 <= g.heatmaps.min() and g.heatmaps.max() <= 1.0
    assert all(h.std() > 0.01 for h in g.heatmaps), "a heat map is constant"
    inside = np.array([h[m].mean() for h, m in zip(g.heatmaps, masks)])
    outside = np.array([h[~m].mean() for h, m in zip(g.heatmaps, masks)])
    assert (inside > outside).mean() >= 0.9
    assert np.allclose(g.probs, np.asarray(trained(x)), atol=1e-5)


@pytest.mark.slow  # trains
def test_gradcam_explains_a_chosen_class(trained):
    x, _, _ = _discs(4, 2)
    g = grad_cam(trained, x, class_index=1)
    assert (g.class_index == 1).all()


def test_gradcam_nested_backbone():
    """A transfer-style model: preprocessing → nested base model → head; the map is found inside the base."""
    L = keras.layers
    b_in = keras.Input((32, 32, 3))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="base_conv")(b_in)
    b = L.Activation("relu", name="base_out")(b)
    base = keras.Model(b_in, b, name="base")
    inp = keras.Input((32, 32, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    out = L.Dense(8, activation="softmax")(x)
    model = keras.Model(inp, out)
    assert find_feature_layer(model).name == "base_out"
    assert find_feature_layer(model, "base_conv").name == "base_conv"
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    g = grad_cam(model, x)
    assert g.heatmaps.shape == (3, 32, 32) and g.layer == "base_out"
    assert np.allclose(g.probs, np.asarray(model(x, training=False)), atol=1e-5)


def test_errors_are_clear():
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Dense(8, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match="no convolutional layer"):
        find_feature_layer(model)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        find_feature_layer(model, "nope")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        grad_cam(model, np.zeros((2, 16, 16)))


def test_overlay():
    img = np.full((10, 10, 3), 128, "uint8")
    heat = np.zeros((10, 10))
    heat[5:, 5:] = 1.0
    out = overlay(img, heat, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    assert not np.array_equal(out[0, 0], out[9, 9])
    with pytest.raises(ValueError, match="same height"):
        overlay(img, heat[:5])


def test_nested_head_logits_and_gradcam():
    """The transfer chapters' layout: image → preprocess → base → head model ending in Dense(softmax)."""
    from helpers.explain import final_softmax, logits

    L = keras.layers
    b_in = keras.Input((16, 16, 3))
    base = keras.Model(b_in, L.Conv2D(4, 3, padding="same", activation="relu", name="bconv")(b_in), name="base")
    h_in = keras.Input((16, 16, 4))
    head = keras.Model(h_in, L.Dense(8, activation="softmax", name="probs")(L.GlobalAveragePooling2D()(h_in)),
                       name="head")
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, head(base(L.Rescaling(1 / 255)(inp), training=False)))
    assert final_softmax(model).name == "probs"
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    z = logits(model, x, batch_size=3).astype("float64")
    p = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(p / p.sum(1, keepdims=True), np.asarray(model(x)), atol=1e-5)
    g = grad_cam(model, x)
    assert g.layer == "bconv" and g.heatmaps.shape == (4, 16, 16)


def test_min_grid_picks_a_finer_map_inside_a_nested_backbone():
    L = keras.layers
    b_in = keras.Input((32, 32, 3))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="fine_conv")(b_in)
    b = L.Activation("relu", name="fine_out")(b)  # 32×32
    b = L.Conv2D(4, 3, strides=8, padding="same", activation="relu", name="coarse_conv")(b)  # 4×4
    base = keras.Model(b_in, b, name="base2")
    inp = keras.Input((32, 32, 3))
    x = base(L.Rescaling(1 / 255)(inp))
    out = L.Dense(8, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    assert find_feature_layer(model).name == "coarse_conv"
    assert find_feature_layer(model, min_grid=6).name == "fine_out"
    assert find_feature_layer(model, min_grid=64).name == "coarse_conv"  # none that fine: the default
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    g = grad_cam(model, x, min_grid=6)
    assert g.layer == "fine_out" and g.heatmaps.shape == (2, 32, 32)


def test_the_book_models_logits_are_their_dense_layers_output():
    """The book's models end in Dense(n) → Activation("softmax"): the traced logits are that layer's output."""
    from helpers.explain import final_softmax, logits
    from helpers.models import build_model

    model = build_model("improved_cnn", 32, widths=(8, 16), seed=3)
    assert type(final_softmax(model)).__name__ == "Activation"
    x = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    direct = keras.Model(model.input, model.get_layer("logits").output)(x, training=False)
    assert np.allclose(logits(model, x, batch_size=2), np.asarray(direct), atol=1e-5)
    g = grad_cam(model, x, min_grid=4)
    assert g.heatmaps.shape == (5, 32, 32) and np.allclose(g.probs, np.asarray(model(x, training=False)), atol=1e-5)
