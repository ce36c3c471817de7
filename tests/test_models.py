"""Model builders: shapes, parameter counts, the registry's error, the augmentation layers they get from augment
(the quarter-turn layer itself is tested in test_layers.py)."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import CLASSES  # noqa: E402
from helpers.models import (  # noqa: E402
    MODELS,
    RECIPE,
    build_model,
    count_params,
    improved_cnn,
    improved_cnn_variant,
    layer_table,
)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [32, 48])
def test_output_is_a_probability_per_class(name, size):
    model = build_model(name, size)
    x = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype("float32")
    p = np.asarray(model(x, training=False))
    assert p.shape == (3, len(CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p >= 0).all()


def test_devnithw_param_count_matches_hand_count():
    # 64 px: conv 3x3 valid → 62 → pool 31 → conv → 29 → pool 14; Dense(128) acts per position
    # (before Flatten, as in the source), so the last layer sees 14*14*128 features.
    m = build_model("devnithw_cnn", 64)
    expected = (3 * 3 * 3 * 32 + 32) + (3 * 3 * 32 * 32 + 32) + (32 * 128 + 128) + (14 * 14 * 128 * 8 + 8)
    assert count_params(m)["total"] == expected
    names = [layer.name for layer in m.layers]
    assert names.index("dense128") < names.index("flatten")


def test_bloodcells_param_count_matches_hand_count():
    m = build_model("bloodcells_cnn", 64)
    expected = (5 * 5 * 3 * 8 + 8) + (5 * 5 * 8 * 16 + 16) + (5 * 5 * 16 * 32 + 32) + (8 * 8 * 32 * 8 + 8)
    assert count_params(m) == {"trainable": expected, "non_trainable": 0, "total": expected}


def test_improved_flags_change_the_architecture():
    full = improved_cnn(32)
    kinds = {type(layer).__name__ for layer in full.layers}
    assert {"BatchNormalization", "GlobalAveragePooling2D", "Dropout", "RandomFlip"} <= kinds
    bare = improved_cnn_variant(32, batch_norm=False, global_pool=False, dropout=0.0, augment=False)
    kinds = {type(layer).__name__ for layer in bare.layers}
    assert not kinds & {"BatchNormalization", "GlobalAveragePooling2D", "Dropout", "RandomFlip", "RandomRot90"}
    assert "Flatten" in kinds
    assert count_params(full)["non_trainable"] > 0 and count_params(bare)["non_trainable"] == 0
    # global pooling makes the head independent of the image size; Flatten does not
    assert count_params(improved_cnn(32))["total"] == count_params(improved_cnn(64))["total"]
    assert count_params(improved_cnn_variant(32, global_pool=False))["total"] < count_params(
        improved_cnn_variant(64, global_pool=False))["total"]


@pytest.mark.parametrize("seed", [3, 42])
def test_the_page_builder_and_its_switchable_twin_build_one_network(seed):
    """Chapter 3 shows improved_cnn; ablations change switches of improved_cnn_variant, whose defaults are the
    recipe: same layers, same names, and from one seed the same initial weights."""
    keras.utils.set_random_seed(seed)
    page = improved_cnn(48, seed=seed)
    keras.utils.set_random_seed(seed)
    twin = improved_cnn_variant(48, seed=seed)
    assert [(type(a).__name__, a.name) for a in page.layers] == [(type(b).__name__, b.name) for b in twin.layers]
    assert all(np.array_equal(a, b) for a, b in zip(page.get_weights(), twin.get_weights(), strict=True))
    assert page.get_config()["layers"] == twin.get_config()["layers"]
    switched = build_model("improved_cnn", 48, seed=seed, **{**RECIPE, "dropout": 0.0})
    assert "dropout" not in [layer.name for layer in switched.layers]
    assert all(np.array_equal(a, b) for a, b in zip(build_model("improved_cnn", 48, seed=seed).get_weights(),
                                                     page.get_weights(), strict=True))


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown model .resnet9000.*bloodcells_cnn.*devnithw_cnn.*improved_cnn"):
        build_model("resnet9000", 64)


@pytest.mark.parametrize("bad", [0, 4, "64", (64,), 5000])
def test_bad_image_size_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="IMAGE_SIZE"):
        build_model("devnithw_cnn", bad)


def test_bad_improved_options_are_clear_errors():
    with pytest.raises(ValueError, match="dropout"):
        improved_cnn_variant(32, dropout=1.5)
    with pytest.raises(ValueError, match="at least one stage"):
        improved_cnn_variant(32, widths=())


def test_in_model_augmentation_keeps_its_layer_names_and_seeds():
    """The layer names are part of saved models; the seeds fix the random draws of training."""
    s001 = {layer.name: layer for layer in build_model("bloodcells_cnn", 32).layers}
    assert [type(s001[n]).__name__ for n in ("flip", "rotate")] == ["RandomFlip", "RandomRotation"]
    assert s001["flip"].seed == s001["rotate"].seed == 42 and s001["rotate"].factor == (-0.4, 0.4)
    names = [layer.name for layer in improved_cnn(32).layers]
    assert names[1:7] == ["rescale", "aug_flip", "aug_rot90", "aug_brightness", "aug_contrast", "conv_stem"]
    plain = improved_cnn_variant(32, colour_augment=0.0)
    assert [layer.name for layer in plain.layers][2:4] == ["aug_flip", "aug_rot90"]


def test_augmentation_is_inactive_at_inference():
    m = build_model("bloodcells_cnn", 32)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(m(x, training=False)), np.asarray(m(x, training=False)))


def test_input_standardisation_and_bn_init_options():
    from helpers.models import channel_stats

    rng = np.random.default_rng(0)
    x = rng.uniform(100, 200, (8, 16, 16, 3)).astype("float32")
    mean, std = channel_stats([(x[:4], None), (x[4:], None)])
    np.testing.assert_allclose(mean, x.reshape(-1, 3).astype("float64").mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, x.reshape(-1, 3).astype("float64").std(0), rtol=1e-6)
    m = improved_cnn_variant(16, input_stats=(mean, std), augment=False, widths=(4,))
    assert "standardise" in [layer.name for layer in m.layers]
    z = np.asarray(keras.Model(m.input, m.get_layer("standardise").output)(x))
    np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-4)
    zero = improved_cnn_variant(16, widths=(4,), bn_zero_init=True)
    ones = improved_cnn_variant(16, widths=(4,), bn_zero_init=False)
    assert np.all(np.asarray(zero.get_layer("bn1_1").moving_variance) == 0)
    assert np.all(np.asarray(ones.get_layer("bn1_1").moving_variance) == 1)
    with pytest.raises(ValueError, match="empty"):
        channel_stats([])


def test_a_seeded_build_repeats_its_initial_weights():
    a = build_model("improved_cnn", 32, widths=(4,), seed=3).get_weights()
    b = build_model("improved_cnn", 32, widths=(4,), seed=3).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert build_model("bloodcells_cnn", 32, seed=5).get_layer("flip").seed == 5


def test_a_block_is_set_beside_the_network_layer_by_layer():
    # chapters 5 and 6 write a block on the page and hold it against Keras' own network
    def block(x):
        y = keras.layers.Conv2D(4, 3, padding="same", name="b1_conv")(x)
        return keras.layers.Add(name="b1_add")([x, keras.layers.ReLU(name="b1_relu")(y)])

    x = keras.Input((None, None, 4))
    net = keras.Model(x, keras.layers.Dense(2, name="top")(block(x)), name="net")
    mine = keras.Input((None, None, 4))
    ours = keras.Model(mine, block(mine))
    t = layer_table(ours, net, prefix="b1_")
    assert list(t["Keras' layer"]) == ["b1_conv", "b1_relu", "b1_add"]
    assert list(t["our layer"]) == ["Conv2D", "ReLU", "Add"]
    assert list(t["weights"]) == list(t["our weights"]) == [3 * 3 * 4 * 4 + 4, 0, 0]
    with pytest.raises(ValueError, match="our block has 3 layers, net's top\\* has 1"):
        layer_table(ours, net, prefix="top")
