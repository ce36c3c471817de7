"""Tests of helpers.augment: augmenters keep shape/dtype/range, are the identity outside training,
are reproducible with a seed, and class weights balance the classes."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CLASSES
from helpers.augment import (
    AUGMENTATIONS,
    augment_examples,
    class_weights,
    finetune_augmentation,
    flip_rotate_augmentation,
    flip_rotate_layers,
    in_model_colour_jitter,
    make_augmentation,
    model_augmentation_layers,
    stain_augmentation,
)

NAMES = sorted(AUGMENTATIONS)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """A batch of smooth, cell-like float32 images in [0, 255] (a disc on a pale background)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    disc = ((yy - 14) ** 2 + (xx - 17) ** 2 < 81)[..., None]
    imgs = np.where(disc, [120.0, 60.0, 150.0], [235.0, 215.0, 205.0]) + rng.normal(0, 5, (4, 32, 32, 3))
    return np.clip(imgs, 0, 255).astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_preserved(name, batch):
    out = np.asarray(make_augmentation(name, seed=1)(batch, training=True))
    assert out.shape == batch.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.isfinite(out).all()
    assert not np.allclose(out, batch), "training=True should change the images"


@pytest.mark.parametrize("name", NAMES)
def test_other_batch_and_image_sizes(name, batch):
    aug = make_augmentation(name, seed=1)
    aug(batch, training=True)
    big = np.repeat(np.repeat(batch[:3], 2, axis=1), 2, axis=2)  # 3 images, 64 px
    assert np.asarray(aug(big, training=True)).shape == (3, 64, 64, 3)


@pytest.mark.parametrize("name", NAMES)
def test_identity_when_not_training(name, batch):
    out = np.asarray(make_augmentation(name, seed=1)(batch, training=False))
    np.testing.assert_allclose(out, batch, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_with_seed(name, batch):
    a = np.asarray(make_augmentation(name, seed=7)(batch, training=True))
    b = np.asarray(make_augmentation(name, seed=7)(batch, training=True))
    c = np.asarray(make_augmentation(name, seed=8)(batch, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_successive_calls_differ(batch):
    aug = flip_rotate_augmentation(seed=3)
    assert not np.allclose(np.asarray(aug(batch, training=True)), np.asarray(aug(batch, training=True)))


def test_stain_changes_colour_not_geometry(batch):
    out = np.asarray(stain_augmentation(seed=1)(batch, training=True))
    # The disc stays where it is: darkest pixels (the cell) keep their position.
    for i in range(len(batch)):
        before = batch[i].mean(-1) < 180
        after = out[i].mean(-1) < out[i].mean()
        assert (before == after).mean() > 0.95


def test_stain_zero_is_identity_even_in_training(batch):
    aug = stain_augmentation(brightness=0, contrast=0, saturation=0, hue=0)
    np.testing.assert_allclose(np.asarray(aug(batch, training=True)), batch, atol=1e-4)


def test_stain_rejects_bad_strength():
    with pytest.raises(ValueError, match="saturation"):
        stain_augmentation(saturation=0.7)
    with pytest.raises(ValueError, match="hue"):
        stain_augmentation(hue=-0.1)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown augmentation 'mixup'.*flip_rotate"):
        make_augmentation("mixup")
    assert make_augmentation(None) is None
    assert make_augmentation("none") is None


def test_augment_examples(batch):
    ex = augment_examples(flip_rotate_augmentation(seed=0), batch[0].astype("uint8"), n=5)
    assert ex.shape == (5, 32, 32, 3) and ex.dtype == np.float32
    assert len({e.tobytes() for e in ex}) > 1


def test_in_tf_data_pipeline(tmp_path):
    from PIL import Image

    from helpers.pipeline import make_dataset

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    ds = make_dataset(paths, [0, 1, 2, 3, 4], 24, batch_size=2, augment=make_augmentation("flip_rotate+stain"))
    xs = [x.numpy() for x, _ in ds]
    assert [x.shape[0] for x in xs] == [2, 2, 1]  # a smaller last batch works too
    assert all(x.dtype == np.float32 and x.min() >= 0 and x.max() <= 255 for x in xs)


def test_finetune_augmentation_is_geometry_then_stain(batch):
    aug = finetune_augmentation(seed=5)
    assert aug.name == "finetune_augmentation"
    assert [type(layer).__name__ for layer in aug.layers] == [
        "RandomFlip", "RandomRot90", "RandomBrightness", "RandomContrast", "RandomSaturation", "RandomHue",
        "ClipToRange"]
    assert [layer.name for layer in aug.layers[:2]] == ["aug_flip", "aug_rot90"]
    out = np.asarray(aug(batch, training=True))
    assert out.shape == batch.shape and out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_allclose(np.asarray(aug(batch, training=False)), batch, atol=1e-4)
    np.testing.assert_array_equal(out, np.asarray(finetune_augmentation(seed=5)(batch, training=True)))


def test_in_model_layers_by_option():
    names = [layer.name for layer in model_augmentation_layers(rotate=0.1, colour=0.2, seed=1)]
    assert names == ["aug_flip", "aug_rot90", "aug_rotate", "aug_brightness", "aug_contrast"]
    assert model_augmentation_layers(flip=False, rot90=False) == []
    flip, rotate = flip_rotate_layers(3, 4, 0.25, names=("f", "r"))
    assert (flip.name, flip.seed, rotate.name, rotate.seed, rotate.factor) == ("f", 3, "r", 4, (-0.25, 0.25))
    assert [layer.seed for layer in flip_rotate_augmentation(seed=3).layers] == [3, 4]


def test_the_two_colour_jitters_differ_in_scale_and_parts():
    """In-model jitter: brightness/contrast on the [0, 1] scale; stain jitter: four parts on [0, 255], clipped."""
    unit = in_model_colour_jitter(0.1, seed=2)
    assert [type(layer).__name__ for layer in unit] == ["RandomBrightness", "RandomContrast"]
    assert list(unit[0].value_range) == [0.0, 1.0] and all(layer.seed == 2 for layer in unit)
    stain = stain_augmentation(seed=2).layers
    assert [type(layer).__name__ for layer in stain] == ["RandomBrightness", "RandomContrast", "RandomSaturation",
                                                         "RandomHue", "ClipToRange"]
    assert list(stain[0].value_range) == [0.0, 255.0] and [layer.seed for layer in stain[:4]] == [12, 13, 14, 15]


def test_class_weights_balance():
    y = np.array([0] * 50 + [1] * 10 + [2] * 40)
    w = class_weights(y)
    assert set(w) == {0, 1, 2}
    counts = np.bincount(y)
    # every class gets the same total weight, and the weighted total equals the number of samples
    totals = [counts[c] * w[c] for c in w]
    np.testing.assert_allclose(totals, len(y) / 3)
    assert sum(totals) == pytest.approx(len(y))
    assert w[1] > w[2] > w[0]


def test_class_weights_balanced_data_gives_ones():
    assert class_weights(np.repeat(np.arange(len(CLASSES)), 7)) == {i: 1.0 for i in range(len(CLASSES))}


def test_class_weights_errors():
    with pytest.raises(ValueError, match="no examples"):
        class_weights([0, 1, 1], n_classes=3)
    with pytest.raises(ValueError, match="integer labels"):
        class_weights(["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        class_weights([])
