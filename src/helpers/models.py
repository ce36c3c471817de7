"""Model builders: the two reference CNNs of the source write-ups and the book's improved baseline.

``devnithw_cnn`` rebuilds the CNN of the Kaggle notebook by devnithw, ``bloodcells_cnn`` the one of the
"BloodCells project" write-up (their records' earlier names are mapped by :func:`helpers.compare.canonical_name`).

Every builder takes images as the pipeline delivers them (``float32`` in ``[0, 255]``, shape
``(H, W, 3)``), rescales them *inside* the model (so a saved model needs no separate
pre-processing) and ends in ``Dense(8)`` (the logits, layer ``"logits"``) and a softmax (layer ``"probs"``).
Get one by name with :func:`build_model`, which seeds Keras globally first when given ``seed`` (so the
initial weights repeat). Their augmentation
layers come from :mod:`helpers.augment`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from . import CLASSES
from .augment import model_augmentation_layers
from .layers import RandomRot90
from .pipeline import validate_image_size

RECIPE: dict[str, Any] = {"widths": (32, 64, 128), "convs_per_stage": 2, "stem_stride": 2, "batch_norm": True,
                          "bn_momentum": 0.9, "bn_zero_init": True, "global_pool": True, "dropout": 0.3,
                          "augment": True, "colour_augment": 0.1}
"""The switches of :func:`improved_cnn_variant` that make chapter 3's recipe (an ablation changes one of them)."""


def image_input(image_size: int | tuple[int, int]):
    """The input every model takes: RGB images as float32 in [0, 255]."""
    h, w = validate_image_size(image_size)
    return keras.Input(shape=(h, w, 3), dtype="float32", name="image")


def devnithw_cnn(image_size=64, n_classes: int = 8):
    """The CNN of devnithw's Kaggle notebook, as the source built it.

    Its Dense(128) comes *before* Flatten: it acts on each position's 32
    channels (a 1×1 convolution in disguise).
    """
    L = keras.layers
    inputs = image_input(image_size)
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    x = L.Dense(128, activation="relu", name="dense128")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(n_classes, name="logits")(x)  # one score per class
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="devnithw_cnn")


def bloodcells_cnn(image_size=64, n_classes: int = 8, seed: int = 42):
    """The BloodCells project's CNN: random flips and rotations inside the
    model, then three 5×5 convolution and pooling stages."""
    L = keras.layers
    inputs = image_input(image_size)
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.RandomFlip("horizontal_and_vertical", seed=seed, name="flip")(x)
    x = L.RandomRotation(0.4, seed=seed, name="rotate")(x)
    for i, filters in enumerate((8, 16, 32), 1):
        x = L.Conv2D(filters, 5, activation="relu", padding="same",
                     name=f"conv{i}")(x)
        x = L.MaxPooling2D(name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(n_classes, name="logits")(x)  # one score per class
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="bloodcells_cnn")


def conv_bn_relu(x, filters: int, name: str, strides: int = 1):
    """A 3×3 convolution (no bias: batch norm shifts), batch norm, ReLU.

    The running variance starts at 0 and follows with momentum 0.9.
    """
    L = keras.layers
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                 name=f"conv{name}")(x)
    x = L.BatchNormalization(momentum=0.9, moving_variance_initializer="zeros",
                             name=f"bn{name}")(x)
    return L.Activation("relu", name=f"relu{name}")(x)


def improved_cnn(image_size=64, n_classes: int = 8, seed: int = 42):
    """The book's improved baseline: augmentation in the model, a strided
    stem, three stages of two convolutions, global pooling, dropout."""
    L = keras.layers
    inputs = image_input(image_size)
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip")(x)
    x = RandomRot90(seed=seed, name="aug_rot90")(x)
    x = L.RandomBrightness(0.1, value_range=(0, 1), seed=seed,
                           name="aug_brightness")(x)
    x = L.RandomContrast(0.1, seed=seed, name="aug_contrast")(x)
    x = conv_bn_relu(x, 32, "_stem", strides=2)
    for stage, filters in enumerate((32, 64, 128), 1):
        x = conv_bn_relu(x, filters, f"{stage}_1")
        x = conv_bn_relu(x, filters, f"{stage}_2")
        x = L.MaxPooling2D(name=f"pool{stage}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.3, name="dropout")(x)
    x = L.Dense(n_classes, name="logits")(x)  # one score per class
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="improved_cnn")


def improved_cnn_variant(image_size: int | Sequence[int] = 64, n_classes: int = len(CLASSES), *,
                         widths: Sequence[int] = (32, 64, 128), convs_per_stage: int = 2, stem_stride: int = 2,
                         batch_norm: bool = True, bn_momentum: float = 0.9, bn_zero_init: bool = True,
                         global_pool: bool = True, input_stats: tuple[Sequence[float], Sequence[float]] | None = None,
                         dropout: float = 0.3, augment: bool = True, colour_augment: float = 0.1,
                         kernel_init: str | None = None, seed: int | None = 42):
    """:func:`improved_cnn` with every change behind a switch, for ablations and small tests.

    With the defaults (:data:`RECIPE`) it builds the very network of :func:`improved_cnn`, layer for layer and,
    from one seed, weight for weight. ``batch_norm``/``bn_momentum``/``bn_zero_init`` (running variance starting
    at 0, else Keras' 1), ``global_pool`` (else Flatten), ``dropout``, ``augment`` (flips, quarter turns and a
    brightness/contrast jitter of ``colour_augment``), ``widths``/``convs_per_stage``/``stem_stride`` (1: no
    stem), ``input_stats`` (standardise each channel with these mean and std instead of rescaling).
    ``kernel_init``: the convolutions' initialiser; ``None`` means Keras' Glorot-uniform with batch norm and
    He-normal without it (without batch norm to re-scale them, ReLU activations shrink layer by layer under
    Glorot's variance, and the seven-convolution network starts out predicting one class).
    """
    L = keras.layers
    if not widths:
        raise ValueError("improved_cnn needs at least one stage: widths=(32, 64, 128), for example")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    bn_var_init = "zeros" if bn_zero_init else "ones"
    init = kernel_init or ("glorot_uniform" if batch_norm else "he_normal")

    def block(x, filters: int, name: str, strides: int = 1):
        x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=not batch_norm, kernel_initializer=init,
                     name=f"conv{name}")(x)
        if batch_norm:
            x = L.BatchNormalization(momentum=bn_momentum, moving_variance_initializer=bn_var_init,
                                     name=f"bn{name}")(x)
        return L.Activation("relu", name=f"relu{name}")(x)

    inp = image_input(image_size)
    if input_stats is not None:  # standardise each channel with the training set's mean and std (0–255 scale)
        mean, std = (np.asarray(v, dtype="float32").reshape(3) for v in input_stats)
        x = L.Normalization(mean=mean, variance=std ** 2, name="standardise")(inp)
    else:
        x = L.Rescaling(1.0 / 255, name="rescale")(inp)
    if augment:
        for layer in model_augmentation_layers(flip=True, rot90=True, colour=colour_augment, seed=seed):
            x = layer(x)
    if stem_stride > 1:  # a cheap strided convolution first: later layers work on 1/stride² the pixels
        x = block(x, widths[0], "_stem", strides=stem_stride)
    for s, filters in enumerate(widths, 1):
        for j in range(1, int(convs_per_stage) + 1):
            x = block(x, filters, f"{s}_{j}")
        x = L.MaxPooling2D(name=f"pool{s}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x) if global_pool else L.Flatten(name="flatten")(x)
    if dropout:
        x = L.Dropout(float(dropout), name="dropout")(x)
    x = L.Dense(n_classes, name="logits")(x)
    out = L.Activation("softmax", name="probs")(x)
    return keras.Model(inp, out, name="improved_cnn")


def _improved(image_size: int | Sequence[int] = 64, n_classes: int = len(CLASSES), seed: int | None = 42,
              **switches: Any):
    """``build_model("improved_cnn", …)``: the recipe, or with switches its variant."""
    if switches:
        return improved_cnn_variant(image_size, n_classes, seed=seed, **switches)
    return improved_cnn(image_size, n_classes, seed=seed)


MODELS: dict[str, Callable[..., Any]] = {
    "devnithw_cnn": devnithw_cnn,
    "bloodcells_cnn": bloodcells_cnn,
    "improved_cnn": _improved,
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


def layer_table(block, network, prefix: str):
    """A block we built beside the layers of ``network`` whose names start with ``prefix`` (a block of Keras'
    own network): names, types and weights, row by row. A clear error when the two differ in length."""
    import pandas as pd

    ours = block.layers[1:]  # the input aside
    theirs = [layer for layer in network.layers if layer.name.startswith(prefix)]
    if len(ours) != len(theirs):
        raise ValueError(f"our block has {len(ours)} layers, {network.name}'s {prefix}* has {len(theirs)}")
    return pd.DataFrame({"Keras' layer": [t.name for t in theirs],
                         "weights": [t.count_params() for t in theirs],
                         "our layer": [type(o).__name__ for o in ours],
                         "our weights": [o.count_params() for o in ours]})
