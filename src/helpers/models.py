"""Model builders: the two reference CNNs of the source write-ups and the book's improved baseline.

``devnithw_cnn`` rebuilds the CNN of the Kaggle notebook by devnithw, ``bloodcells_cnn`` the one of the
"BloodCells project" write-up (their records' earlier names are mapped by :func:`helpers.compare.canonical_name`).

Every builder takes images as the pipeline delivers them (``float32`` in ``[0, 255]``, shape
``(H, W, 3)``), rescales them *inside* the model (so a saved model needs no separate
pre-processing) and ends in an 8-way softmax. Get one by name with :func:`build_model`, which seeds
Keras globally first when given ``seed`` (so the initial weights repeat). Their augmentation
layers come from :mod:`helpers.augment`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from . import CLASSES
from .augment import flip_rotate_layers, model_augmentation_layers
from .pipeline import validate_image_size


def _input(image_size, name: str = "image"):
    h, w = validate_image_size(image_size)
    return keras.Input(shape=(h, w, 3), dtype="float32", name=name)


def devnithw_cnn(image_size: int | Sequence[int] = 64, n_classes: int = len(CLASSES)):
    """The CNN of devnithw's Kaggle notebook, reproduced faithfully.

    Rescaling(1/255) → Conv2D(32, 3×3, relu) → MaxPool → Conv2D(32, 3×3, relu) → MaxPool →
    Dropout(0.2) → **Dense(128, relu) → Flatten** → Dense(8, softmax).
    Note the order: the Dense(128) layer acts on each spatial position's 32 channels
    (a 1×1 convolution in disguise) *before* flattening, so the final layer sees
    ``H'·W'·128`` features. That is what the source did; we keep it.
    """
    L = keras.layers
    inp = _input(image_size)
    x = L.Rescaling(1.0 / 255, name="rescale")(inp)
    x = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    x = L.Dense(128, activation="relu", name="dense128")(x)  # before Flatten, as in the source
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="devnithw_cnn")


def bloodcells_cnn(image_size: int | Sequence[int] = 64, n_classes: int = len(CLASSES), seed: int | None = 42):
    """The BloodCells project's CNN: augmentation inside the model, three 5×5 conv/pool stages.

    Rescaling → RandomFlip("horizontal_and_vertical") → RandomRotation(0.4) → Conv2D(8, 5×5) →
    MaxPool → Conv2D(16, 5×5) → MaxPool → Conv2D(32, 5×5) → MaxPool → Flatten → Dense(8, softmax).
    The random layers are active only in training (``model(x, training=True)`` / ``fit``).
    """
    L = keras.layers
    inp = _input(image_size)
    x = L.Rescaling(1.0 / 255, name="rescale")(inp)
    for layer in flip_rotate_layers(seed, seed, 0.4, names=("flip", "rotate")):
        x = layer(x)
    for i, filters in enumerate((8, 16, 32), 1):
        x = L.Conv2D(filters, 5, activation="relu", padding="same", name=f"conv{i}")(x)
        x = L.MaxPooling2D(name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="bloodcells_cnn")


def improved_cnn(image_size: int | Sequence[int] = 64, n_classes: int = len(CLASSES), *,
                 widths: Sequence[int] = (32, 64, 128), convs_per_stage: int = 2, stem_stride: int = 1,
                 batch_norm: bool = True, bn_momentum: float = 0.9, bn_zero_init: bool = True,
                 global_pool: bool = True, input_stats: tuple[Sequence[float], Sequence[float]] | None = None,
                 dropout: float = 0.3, augment: bool = True, colour_augment: float = 0.1,
                 kernel_init: str | None = None, seed: int | None = 42):
    """The book's improved baseline: small, and every change can be switched off for an ablation.

    Per stage: two 3×3 convolutions (``padding="same"``), each followed by batch norm
    (``batch_norm``) and ReLU, then 2×2 max-pooling. After the last stage either
    global average pooling (``global_pool``) or Flatten, then Dropout(``dropout``) and
    the softmax layer. ``bn_momentum`` is 0.9, not Keras' 0.99: with a few hundred steps per
    epoch the slower moving averages lag the fast-changing weights, and the model predicts
    nonsense in inference mode for the first epochs (we measured chance-level validation accuracy
    at 90 % training accuracy with 0.99). ``augment`` adds flips and quarter turns (plus a mild brightness/contrast
    jitter of ``colour_augment``) inside the model, active only while training. ``kernel_init``: the
    convolutions' initialiser; ``None`` means Keras' Glorot-uniform with batch norm and He-normal without it
    (without batch norm to re-scale them, ReLU activations shrink layer by layer under Glorot's variance, and
    the seven-convolution network starts out predicting one class).
    """
    L = keras.layers
    if not widths:
        raise ValueError("improved_cnn needs at least one stage: widths=(32, 64, 128), for example")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    bn_var_init = "zeros" if bn_zero_init else "ones"
    init = kernel_init or ("glorot_uniform" if batch_norm else "he_normal")
    inp = _input(image_size)
    if input_stats is not None:  # standardise each channel with the training set's mean and std (0–255 scale)
        mean, std = (np.asarray(v, dtype="float32").reshape(3) for v in input_stats)
        x = L.Normalization(mean=mean, variance=std ** 2, name="standardise")(inp)
    else:
        x = L.Rescaling(1.0 / 255, name="rescale")(inp)
    if augment:
        for layer in model_augmentation_layers(flip=True, rot90=True, colour=colour_augment, seed=seed):
            x = layer(x)
    if stem_stride > 1:  # a cheap strided convolution first: later layers work on 1/stride² the pixels
        x = L.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=not batch_norm,
                     kernel_initializer=init, name="stem")(x)
        if batch_norm:
            x = L.BatchNormalization(momentum=bn_momentum, moving_variance_initializer=bn_var_init,
                                     name="bn_stem")(x)
        x = L.Activation("relu", name="relu_stem")(x)
    for s, filters in enumerate(widths, 1):
        for j in range(1, int(convs_per_stage) + 1):
            x = L.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, kernel_initializer=init,
                         name=f"conv{s}_{j}")(x)
            if batch_norm:
                x = L.BatchNormalization(momentum=bn_momentum, moving_variance_initializer=bn_var_init,
                                         name=f"bn{s}_{j}")(x)
            x = L.Activation("relu", name=f"relu{s}_{j}")(x)
        x = L.MaxPooling2D(name=f"pool{s}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x) if global_pool else L.Flatten(name="flatten")(x)
    if dropout:
        x = L.Dropout(float(dropout), name="dropout")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="improved_cnn")


MODELS: dict[str, Callable[..., Any]] = {
    "devnithw_cnn": devnithw_cnn,
    "bloodcells_cnn": bloodcells_cnn,
    "improved_cnn": improved_cnn,
}
"""Every model :func:`build_model` knows, by name."""


def channel_stats(dataset, max_batches: int = 20) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0–255 scale) of the images in a few batches of ``dataset``."""
    xs = [np.asarray(x, dtype="float64") for i, (x, _) in enumerate(dataset) if i < max_batches]
    if not xs:
        raise ValueError("channel_stats: the dataset is empty")
    x = np.concatenate([a.reshape(-1, a.shape[-1]) for a in xs])
    return x.mean(0).tolist(), x.std(0).tolist()


def build_model(name: str, image_size: int | Sequence[int] = 64, *, seed: int | None = None, **kw: Any):
    """Build the model registered as ``name`` for ``image_size`` images.

    ``seed``: ``keras.utils.set_random_seed(seed)`` first, so the initial weights repeat; it also goes to
    builders that take a ``seed`` (their augmentation layers). ``kw`` go to the builder.
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(sorted(MODELS))}.") from None
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
        if "seed" in inspect.signature(builder).parameters:
            kw["seed"] = seed
    return builder(image_size, **kw)


def count_params(model) -> dict[str, int]:
    """Trainable, non-trainable and total parameter counts of a keras model."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non, "total": trainable + non}
