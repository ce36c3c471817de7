"""Tests of helpers.pipeline: shapes, dtypes and value range of the tf.data pipeline, on generated
images and on real sample images (skipped with a reason when the real data is not configured)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import CLASSES
from helpers.data import find_dataset_root, list_files, scan_files
from helpers.pipeline import decode_resize, load_images, make_dataset, validate_image_size

_ORIG = os.environ.get("BLOODCELLS_ORIGINALS_DIR")
_DATA = os.environ.get("BLOODCELLS_DATA_DIR")
HAVE_ORIG = bool(_ORIG) and Path(_ORIG).is_dir()
HAVE_REAL = bool(_DATA) and Path(_DATA).is_dir() and not os.environ.get("BLOODCELLS_SYNTHETIC_DATA")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """10 images of different sizes and formats; image i is a solid grey of value 20·i + 10."""
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i in range(10):
        v = 20 * i + 10
        size = (30 + 7 * i, 50 - 2 * i)  # (width, height): not square, all different
        fmt = ["png", "jpg", "bmp"][i % 3]
        p = d / f"img_{i}.{fmt}"
        Image.new("RGB", size, (v, v, v)).save(p, **({"quality": 98} if fmt == "jpg" else {}))
        paths.append(str(p))
    return paths


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_validate_image_size():
    assert validate_image_size(64) == (64, 64)
    assert validate_image_size((32, 48)) == (32, 48)
    with pytest.raises(ValueError, match="IMAGE_SIZE"):
        validate_image_size(0)


def test_make_dataset_shapes_dtypes_range(images):
    labels = np.arange(10) % 8
    ds = make_dataset(images, labels, image_size=(24, 32), batch_size=4)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x, y = _all(ds)
    assert x.shape == (10, 24, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() >= 0 and x.max() <= 255
    assert np.array_equal(y, labels)
    # order kept without shuffle, pixels of image i are its grey value
    assert np.allclose(x.mean(axis=(1, 2, 3)), 20 * np.arange(10) + 10, atol=1.5)
    assert np.allclose(x, np.round(x))  # uint8 values carried in float32


def test_shuffle_is_seeded_and_keeps_pairs(images):
    labels = np.arange(10)
    a = _all(make_dataset(images, labels, 16, batch_size=3, shuffle=True, seed=1))
    b = _all(make_dataset(images, labels, 16, batch_size=3, shuffle=True, seed=1))
    assert np.array_equal(a[1], b[1]) and sorted(a[1]) == list(range(10))
    assert not np.array_equal(a[1], labels)
    # each image still carries its own label after shuffling
    assert np.allclose(a[0].mean(axis=(1, 2, 3)), 20 * a[1] + 10, atol=1.5)
    ds = make_dataset(images, labels, 16, batch_size=10, shuffle=True, seed=1)
    e1, e2 = _all(ds)[1], _all(ds)[1]
    assert sorted(e1) == sorted(e2)  # reshuffled each epoch, same content


def test_cache_and_augment(images):
    plain = _all(make_dataset(images, np.zeros(10), 16, cache=False))[0]
    cached_ds = make_dataset(images, np.zeros(10), 16, cache=True)
    assert np.array_equal(_all(cached_ds)[0], plain) and np.array_equal(_all(cached_ds)[0], plain)

    def invert(x, training=False):
        assert training is True
        return 255.0 - x

    aug = _all(make_dataset(images, np.zeros(10), 16, augment=invert))[0]
    assert np.allclose(aug, 255 - plain)


def test_decode_resize_and_load_images(images):
    t = decode_resize(images[1], (20, 10))
    assert tuple(t.shape) == (20, 10, 3) and t.dtype.name == "uint8"
    arr = load_images(images[:3], 16)
    assert arr.shape == (3, 16, 16, 3) and arr.dtype == np.uint8


def test_make_dataset_argument_errors(images):
    with pytest.raises(ValueError, match="2 paths but 3 labels"):
        make_dataset(images[:2], [0, 1, 2], 16)
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        make_dataset(images, np.zeros(10), 16, batch_size=0)
    with pytest.raises(ValueError, match="IMAGE_SIZE"):
        make_dataset(images, np.zeros(10), 0)


@pytest.mark.skipif(not HAVE_ORIG, reason="BLOODCELLS_ORIGINALS_DIR (200 native 360×363 PBC originals) not set "
                                          "or missing")
def test_real_originals_native_resolution():
    root = find_dataset_root(_ORIG)
    fl = list_files(root)
    assert len(fl.paths) == 200
    res = scan_files(root, fl.paths, fl.labels, progress=False)
    assert res.skipped.empty
    ref = pd.read_csv(Path(_ORIG) / "originals.csv")
    ref["path"] = ref["path"].str.split("/", n=1).str[1]
    m = res.files.merge(ref, on="path", suffixes=("", "_ref"))
    assert len(m) == 200
    assert (m["width"] == m["orig_width"]).all() and (m["height"] == m["orig_height"]).all()
    assert (m["md5"] == m["orig_md5"]).all() and (m["bytes"] == m["orig_bytes"]).all()
    assert set(zip(m["width"], m["height"])) >= {(360, 363)}
    labels = np.array([CLASSES.index(c) for c in res.files["label"]], dtype="int32")
    x, y = _all(make_dataset([str(root / p) for p in res.files["path"]], labels, 64, batch_size=64, cache=False))
    assert x.shape == (200, 64, 64, 3) and x.dtype == np.float32 and np.array_equal(y, labels)
    assert x.min() >= 0 and x.max() <= 255
    assert x.std(axis=(1, 2, 3)).min() > 5  # real cells, not blank frames


@pytest.mark.skipif(not HAVE_REAL, reason="BLOODCELLS_DATA_DIR (real PBC data, 160 px) not set or missing; "
                                          "synthetic data is used instead")
def test_real_160px_sample():
    root = find_dataset_root(_DATA)
    fl = list_files(root)
    pick = [fl.paths.index(next(p for p in fl.paths if p.startswith(c + "/"))) for c in CLASSES]
    paths = [str(root / fl.paths[i]) for i in pick]
    res = scan_files(root, [fl.paths[i] for i in pick], [fl.labels[i] for i in pick], progress=False)
    assert res.skipped.empty and (res.files[["width", "height"]].min(axis=1) == 160).all()
    x, y = _all(make_dataset(paths, np.arange(8), 96, batch_size=3))
    assert x.shape == (8, 96, 96, 3) and x.dtype == np.float32 and list(y) == list(range(8))
    assert x.min() >= 0 and x.max() <= 255 and x.std(axis=(1, 2, 3)).min() > 5
