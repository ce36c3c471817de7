"""Data augmentation and class weights: every augmenter of the book is built here.

Two kinds, both made of Keras' random preprocessing layers (plus :mod:`helpers.layers`):

* **Pipeline augmenters** (:func:`flip_rotate_augmentation`, :func:`stain_augmentation`, their combination,
  :func:`make_augmentation` by name, and :func:`finetune_augmentation`): a ``keras.Sequential`` that

  - takes and returns batches of ``float32`` images in ``[0, 255]``, ``(N, H, W, 3)`` — what
    :func:`helpers.pipeline.make_dataset` produces (any N and image size; for a single image add a
    batch axis, ``aug(x[None])[0]``: a Keras ``Sequential`` fixes the rank on its first call);
  - is the identity when called with ``training=False`` (so it may also sit inside a model);
  - is reproducible: the same ``seed`` gives the same random draws, call after call.

  Pass one to ``make_dataset(..., augment=make_augmentation("flip_rotate"))``: it runs on whole
  batches after the cache, so every epoch sees new variants.
* **In-model layers** (:func:`flip_rotate_layers`, :func:`model_augmentation_layers`): lists of layers that the
  builders of :mod:`helpers.models` insert *after* the model's rescaling, active only while training.

The builders create their layers in a fixed order with fixed seeds and names: the layer names are part of
the saved models, and the order of construction fixes Keras' random state.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _keras():
    import keras  # imported only when an augmenter is built (class_weights needs no TensorFlow)

    return keras


def flip_rotate_layers(flip_seed: int | None, rotation_seed: int | None,
                       rotation: float = 0.4,
                       names: tuple[str | None, str | None] = (None, None)
                       ) -> list:
    """RandomFlip on both axes, then RandomRotation by up to ±rotation of a
    turn (the corners it uncovers filled by reflection)."""
    import keras

    return [keras.layers.RandomFlip("horizontal_and_vertical",
                                    seed=flip_seed, name=names[0]),
            keras.layers.RandomRotation(rotation, seed=rotation_seed,
                                        name=names[1])]


def flip_rotate_augmentation(seed: int | None = 42, rotation: float = 0.4):
    """The BloodCells project's augmentation: flips and free rotations."""
    import keras

    # the rotation's seed is seed + 1 here, while bloodcells_cnn seeds both of its layers with one seed, as the
    # project did: each is kept as it is, because the recorded results depend on it
    rotation_seed = None if seed is None else seed + 1
    return keras.Sequential(
        flip_rotate_layers(seed, rotation_seed, rotation),
        name="flip_rotate_augmentation")


def stain_augmentation(brightness: float = 0.1, contrast: float = 0.2,
                       saturation: float = 0.15, hue: float = 0.04,
                       seed: int | None = 42):
    """Colour jitter for stain and lamp: brightness, contrast, saturation
    and hue (0 switches one off), then clipped back to [0, 255]."""
    import keras

    from .layers import ClipToRange

    limits = {"brightness": (brightness, 1), "contrast": (contrast, 1),
              "saturation": (saturation, 0.49), "hue": (hue, 1)}
    for name, (v, top) in limits.items():
        if not isinstance(v, (int, float)) or not 0 <= v <= top:
            raise ValueError(f"stain_augmentation: {name} must be a "
                             f"number between 0 and {top}, got {v!r}")
    s = [None] * 4 if seed is None else [seed + k for k in (10, 11, 12, 13)]
    L, r = keras.layers, (0.0, 255.0)  # r: the images' value range
    layers = []
    if brightness:
        layers.append(L.RandomBrightness(brightness, value_range=r,
                                         seed=s[0]))
    if contrast:
        layers.append(L.RandomContrast(contrast, value_range=r, seed=s[1]))
    if saturation:  # Keras' factor: 0.5 is no change
        layers.append(L.RandomSaturation(
            (0.5 - saturation, 0.5 + saturation), value_range=r, seed=s[2]))
    if hue:  # 0.04: the hue turned by up to ±0.02 of the colour circle
        layers.append(L.RandomHue(hue, value_range=r, seed=s[3]))
    layers.append(ClipToRange(0.0, 255.0, name="clip"))
    return keras.Sequential(layers, name="stain_augmentation")


def geometric_and_stain_augmentation(seed: int | None = 42):
    """Seed-001 geometry followed by stain jitter: the book's default for training from scratch."""
    keras = _keras()
    geo = flip_rotate_augmentation(seed)
    stain = stain_augmentation(seed=None if seed is None else seed + 100)
    return keras.Sequential([*geo.layers, *stain.layers], name="flip_rotate_stain_augmentation")


def in_model_colour_jitter(colour: float, seed: int | None = 42) -> list:
    """Mild brightness and contrast jitter of ``±colour`` for use *inside* a model, after its rescaling.

    Why a second colour jitter next to :func:`stain_augmentation`: this one was designed for
    :func:`helpers.models.improved_cnn`, where it runs after the model's ``Rescaling(1/255)`` (or the
    per-channel standardisation), so it works on the ``[0, 1]`` scale: brightness shifts by up to
    ``±colour`` and is clipped to ``[0, 1]``, contrast (Keras' default value range) is clipped to
    ``[0, 255]``; both layers share ``seed``; no saturation or hue. :func:`stain_augmentation` runs on
    pipeline images in ``[0, 255]`` and also jitters saturation and hue (stain colour), with its own seeds.
    The trained models and the recorded results depend on each as it is, so both stay.
    """
    L = _keras().layers
    return [L.RandomBrightness(colour, value_range=(0.0, 1.0), seed=seed, name="aug_brightness"),
            L.RandomContrast(colour, seed=seed, name="aug_contrast")]


def model_augmentation_layers(*, flip: bool = True, rotate: float = 0.0, rot90: bool = True,
                              colour: float = 0.0, seed: int | None = 42) -> list:
    """Random layers for geometric (and optionally mild colour) augmentation, for use inside a model.

    ``rot90`` uses exact quarter turns (:class:`helpers.layers.RandomRot90`: no interpolation, no corners to
    fill) — a cell has no "up". ``rotate`` adds a free rotation of ``±rotate·360°``. ``colour`` adds
    :func:`in_model_colour_jitter` to imitate stain and illumination variation.
    """
    from .layers import RandomRot90

    L = _keras().layers
    out: list = []
    if flip:
        out.append(L.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip"))
    if rot90:
        out.append(RandomRot90(seed=seed, name="aug_rot90"))
    if rotate:
        out.append(L.RandomRotation(rotate, fill_mode="reflect", seed=seed, name="aug_rotate"))
    if colour:
        out.extend(in_model_colour_jitter(colour, seed))
    return out


def finetune_augmentation(seed: int | None = 42):
    """Label-preserving augmentation for end-to-end fine-tuning: flips, quarter turns, stain jitter.

    Built from stock Keras layers plus :class:`helpers.layers.RandomRot90`; it wraps the
    deployable model only while training, so the saved model contains none of it.
    """
    keras = _keras()
    return keras.Sequential([*model_augmentation_layers(flip=True, rot90=True, seed=seed),
                             *stain_augmentation(seed=None if seed is None else seed + 100).layers],
                            name="finetune_augmentation")


AUGMENTATIONS: dict[str, Callable] = {
    "flip_rotate": flip_rotate_augmentation,
    "stain": stain_augmentation,
    "flip_rotate+stain": geometric_and_stain_augmentation,
}
"""Named augmenters: ``make_augmentation(name)`` builds one (a notebook parameter picks it)."""


def make_augmentation(name: str | None, seed: int | None = 42):
    """The augmenter called ``name`` (see :data:`AUGMENTATIONS`), or ``None`` for ``None``/"none"."""
    if name is None or (isinstance(name, str) and name.strip().lower() in ("", "none")):
        return None
    if not isinstance(name, str) or name.strip().lower() not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {name!r}. Use one of {sorted(AUGMENTATIONS)} or None "
                         "(no augmentation).")
    return AUGMENTATIONS[name.strip().lower()](seed=seed)


def augment_examples(augmenter, image: np.ndarray, n: int = 8) -> np.ndarray:
    """``n`` augmented versions of one image (``uint8``/float, ``(H, W, 3)``) as ``float32`` (n, H, W, 3)."""
    x = np.repeat(np.asarray(image, dtype="float32")[None], n, axis=0)
    return np.asarray(augmenter(x, training=True), dtype="float32")


def class_weights(labels: Sequence[int] | np.ndarray, n_classes: int | None = None) -> dict[int, float]:
    """'Balanced' class weights ``n_samples / (n_classes * count_c)`` as ``{class index: weight}``.

    Pass the result to ``model.fit(..., class_weight=...)``: every class then contributes the same
    total weight to the loss, ``sum_c count_c * w_c = n_samples``. With ``n_classes`` (e.g.
    ``len(CLASSES)``), classes absent from ``labels`` raise a clear error instead of being skipped.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"class_weights needs a non-empty 1-D array of integer labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"class_weights needs integer labels (class indices), got dtype {y.dtype}")
    present = np.unique(y)
    if n_classes is not None:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        if missing:
            raise ValueError(f"class(es) {missing} have no examples in the labels, so no balanced weight exists; "
                             "check the split or the MAX_PER_CLASS cap")
    w = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(v) for c, v in zip(present, w)}
