"""What resizing and normalisation do to an image (chapter 2).

* :func:`resize_views` — one image at several sizes, resized by the training pipeline's own
  :func:`helpers.pipeline.resize_uint8`, for side-by-side figures;
* :func:`resize_loss` — how much of the picture a size throws away: shrink, enlarge back to the
  native size, and compare (mean absolute error, PSNR), plus the memory a cached image takes;
* :func:`normalisation_table` — the value ranges that the common input normalisations produce.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .pipeline import resize_uint8, validate_image_size


def _read(path: str) -> np.ndarray:
    """The file's pixels, ``uint8`` RGB, at its native size (Pillow)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resize_views(path: str, sizes: Sequence[int]) -> list[np.ndarray]:
    """``path`` resized to each of ``sizes`` (square, as the models see it), then the native image last."""
    img = _read(path)
    return [resize_uint8(img, validate_image_size(s)).numpy() for s in sizes] + [img]


def resize_loss(paths: Sequence[str], sizes: Sequence[int]) -> pd.DataFrame:
    """Per size: what is lost by shrinking to ``size`` px and what a cached image costs.

    Each image is shrunk to ``size``×``size`` and enlarged back to its native size; the
    difference to the original (mean absolute error in grey levels, and PSNR in dB — higher is
    closer) is the detail the model can never see. Aspect-ratio distortion of non-square files
    is included, as in training. ``kB per image`` is the ``uint8`` size in the pipeline's cache.
    """
    if not len(paths):
        raise ValueError("resize_loss needs at least one image path")
    rows = []
    imgs = [_read(p) for p in paths]
    for s in sizes:
        size = validate_image_size(s)
        maes, psnrs = [], []
        for img in imgs:
            back = resize_uint8(resize_uint8(img, size), img.shape[:2]).numpy().astype("float64")
            err = back - img.astype("float64")
            mse = float(np.mean(err ** 2))
            maes.append(float(np.mean(np.abs(err))))
            psnrs.append(10 * np.log10(255.0 ** 2 / mse) if mse > 0 else float("inf"))
        rows.append({"size (px)": int(s), "pixels": size[0] * size[1], "kB per image": size[0] * size[1] * 3 / 1000,
                     "MAE to native (grey levels)": float(np.mean(maes)), "PSNR (dB)": float(np.median(psnrs)),
                     "images": len(imgs)})
    return pd.DataFrame(rows)


NORMALISATIONS = {
    "Rescaling(1/255) → [0, 1]": "rescale01",
    "Rescaling(1/127.5, offset=-1) → [-1, 1] (MobileNetV2 preprocess_input)": "mobilenet_v2",
    "'caffe': RGB→BGR, minus ImageNet means (ResNet50 / VGG19 preprocess_input)": "resnet50",
    "'torch': [0, 1], minus ImageNet mean, ÷ std (e.g. DenseNet preprocess_input)": "densenet",
    "per-channel standardisation with this data's mean/std (keras Normalization.adapt)": "adapt",
}
"""Normalisation families compared in chapter 2 (label → key)."""


def normalise(x: np.ndarray, key: str, adapt_on: np.ndarray | None = None) -> np.ndarray:
    """Apply the normalisation ``key`` (see :data:`NORMALISATIONS`) to float images in [0, 255]."""
    import keras

    x = np.asarray(x, dtype="float32")
    if key == "rescale01":
        return np.asarray(keras.layers.Rescaling(1 / 255)(x))
    if key == "mobilenet_v2":
        return np.asarray(keras.applications.mobilenet_v2.preprocess_input(x.copy()))
    if key == "resnet50":
        return np.asarray(keras.applications.resnet50.preprocess_input(x.copy()))
    if key == "densenet":
        return np.asarray(keras.applications.densenet.preprocess_input(x.copy()))
    if key == "adapt":
        layer = keras.layers.Normalization(axis=-1)
        layer.adapt(np.asarray(adapt_on if adapt_on is not None else x, dtype="float32"))
        return np.asarray(layer(x))
    raise ValueError(f"Unknown normalisation {key!r}; use one of {sorted(NORMALISATIONS.values())}")


def normalisation_table(x: np.ndarray) -> pd.DataFrame:
    """Range and per-channel means (R, G, B order of the *output*) of each normalisation on ``x``."""
    rows = []
    for label, key in NORMALISATIONS.items():
        y = normalise(x, key)
        means = y.reshape(-1, y.shape[-1]).mean(axis=0)
        rows.append({"normalisation": label, "min": float(y.min()), "max": float(y.max()),
                     "mean ch0": float(means[0]), "mean ch1": float(means[1]), "mean ch2": float(means[2])})
    return pd.DataFrame(rows)
