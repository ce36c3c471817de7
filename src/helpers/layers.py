"""The book's custom Keras layers, in one place, registered with Keras on import.

A saved model (``model.keras``) names each custom layer by its *registered name*; Keras can rebuild the model
only in a process where that name is registered. Importing this module registers all of them:

* :class:`ClipToRange`   (``bloodcells>ClipToRange``)   – clip to a value range; ends the stain jitter
  (:func:`helpers.augment.stain_augmentation`);
* :class:`RandomRot90`   (``bloodcells>RandomRot90``)   – random quarter turns, an augmentation inside models;
* :class:`DihedralViews` (``bloodcells>DihedralViews``) – stack the symmetries of a square image (TTA);
* :class:`MeanOverViews` (``bloodcells>MeanOverViews``) – average the probabilities over those views (TTA).

The registered names are part of every saved bundle: keep them when renaming or moving a class.
"""
from __future__ import annotations

from typing import Any

import keras

PACKAGE = "bloodcells"
"""The package under which every layer here is registered (``"bloodcells>ClassName"``)."""

VIEW_NAMES = ("identity", "rot180", "rot90", "rot270", "mirror", "mirror+rot180", "mirror+rot90", "mirror+rot270")
"""The views of :func:`dihedral`, in order. The first 1, 2, 4 and 8 of them are *groups* (no change; half
turns; quarter turns; all eight symmetries of the square), so a TTA model over them gives exactly the same
answer for an image and for any of its views in the group."""
VIEW_COUNTS = (1, 2, 4, 8)
_TURNS = (0, 2, 1, 3)  # quarter turns of view k % 4


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClipToRange(keras.layers.Layer):
    """Clip values to ``[low, high]`` (colour jitter such as the saturation layer can leave the range)."""

    def __init__(self, low: float = 0.0, high: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, x):
        return keras.ops.clip(x, self.low, self.high)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomRot90(keras.layers.Layer):
    """Rotate each image of a batch by a random multiple of 90° (training only; square images).

    Quarter turns need no interpolation and leave no empty corners, unlike a free rotation.
    """

    def __init__(self, seed: int | None = None, **kw):
        super().__init__(**kw)
        self.seed = seed
        self._gen = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        import tensorflow as tf

        if x.shape[1] != x.shape[2]:
            raise ValueError(f"RandomRot90 needs square images, got {x.shape[1]}x{x.shape[2]}; "
                             "use a square IMAGE_SIZE or switch rot90 off")
        k = keras.random.randint((tf.shape(x)[0],), 0, 4, seed=self._gen)
        t = tf.transpose(x, (0, 2, 1, 3))  # transpose + flip = a quarter turn (no asserts, no interpolation)
        turns = [x, tf.reverse(t, [1]), tf.reverse(x, [1, 2]), tf.reverse(t, [2])]
        stacked = tf.stack(turns, axis=1)  # (B, 4, H, W, C)
        return tf.gather(stacked, k, axis=1, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def dihedral(x, k: int):
    """View ``k`` (0–7, named in :data:`VIEW_NAMES`) of a batch of square images ``(B, S, S, C)``: a left-right
    mirror when ``k >= 4``, then quarter turns anticlockwise. Works on NumPy arrays and tensors."""
    if not 0 <= int(k) < 8:
        raise ValueError(f"view index must be in 0..7, got {k}")
    ops = keras.ops
    if k >= 4:
        x = ops.flip(x, axis=2)
    for _ in range(_TURNS[int(k) % 4]):  # one quarter turn anticlockwise = transpose, then flip rows
        x = ops.flip(ops.transpose(x, (0, 2, 1, 3)), axis=1)
    return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class DihedralViews(keras.layers.Layer):
    """``(B, S, S, C)`` → ``(views·B, S, S, C)``: the first ``views`` symmetries stacked view by view."""

    def __init__(self, views: int = 8, **kwargs):
        super().__init__(**kwargs)
        if int(views) not in VIEW_COUNTS:
            raise ValueError(f"views must be one of {VIEW_COUNTS} (the groups of symmetries), got {views}")
        self.views = int(views)

    def call(self, x):
        return keras.ops.concatenate([dihedral(x, k) for k in range(self.views)], axis=0)

    def compute_output_shape(self, input_shape):
        b = input_shape[0]
        return (None if b is None else b * self.views, *input_shape[1:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "views": self.views}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanOverViews(keras.layers.Layer):
    """``(views·B, C)`` probabilities → ``(B, C)``: the average over the views of each image."""

    def __init__(self, views: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.views = int(views)

    def call(self, p):
        c = p.shape[-1]
        return keras.ops.mean(keras.ops.reshape(p, (self.views, -1, c)), axis=0)

    def compute_output_shape(self, input_shape):
        b = input_shape[0]
        return (None if b is None else b // self.views, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "views": self.views}


CUSTOM_LAYERS: tuple[type, ...] = (ClipToRange, RandomRot90, DihedralViews, MeanOverViews)
"""Every custom layer of the book (each registered as ``bloodcells>`` + its class name)."""


def is_tta(model) -> bool:
    """True for a model built by :func:`helpers.tta.tta_model`."""
    return any(isinstance(layer, DihedralViews) for layer in getattr(model, "layers", []))


def tta_views(model) -> int:
    """How many views a :func:`helpers.tta.tta_model` wrapper averages (1 for any other model)."""
    return next((layer.views for layer in getattr(model, "layers", []) if isinstance(layer, DihedralViews)), 1)


def tta_core(model):
    """The single-view model inside a :func:`helpers.tta.tta_model` wrapper (the model itself when it is not one)."""
    if not is_tta(model):
        return model
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"{model.name!r} is a TTA wrapper without exactly one inner model")
    return inner[0]
