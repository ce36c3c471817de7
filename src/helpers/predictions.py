"""One value for a model's answers on one split, and the one function that makes it.

Every chapter, the bundle writer, the record writer and the comparison of models use
:class:`Predictions` (which images, their true labels, the predicted probabilities) and
:func:`predict` (run a model over the images of a split, through the training pipeline's
decoding and resizing).
"""
from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("helpers.predictions")


@dataclass(frozen=True)
class Predictions:
    """``paths[i]`` has true label ``y_true[i]`` and predicted probabilities ``probs[i]`` (one row per class).

    ``classes`` names the columns of ``probs`` (``None``: PBC's eight, :data:`helpers.CLASSES`; PBC's eight
    given explicitly are stored as ``None``, so saved predictions of PBC models look the same either way).
    """

    paths: tuple[str, ...]
    y_true: np.ndarray
    probs: np.ndarray
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(map(str, self.paths)))
        object.__setattr__(self, "y_true", np.asarray(self.y_true, dtype="int32").reshape(-1))
        object.__setattr__(self, "probs", np.asarray(self.probs, dtype="float32"))
        n = len(self.paths)
        if self.probs.ndim != 2 or len(self.probs) != n or len(self.y_true) != n:
            raise ValueError(f"predictions need one label and one probability row per image: {n} paths, "
                             f"{len(self.y_true)} labels, probabilities of shape {self.probs.shape}")
        if self.classes is not None:
            from . import CLASSES

            names = tuple(map(str, self.classes))
            if len(names) != self.probs.shape[1]:
                raise ValueError(f"{len(names)} class names for probabilities of {self.probs.shape[1]} "
                                 "classes")
            object.__setattr__(self, "classes", None if names == CLASSES else names)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def y_pred(self) -> np.ndarray:
        """The most probable class of each image."""
        return self.probs.argmax(axis=1)

    def class_names(self) -> tuple[str, ...]:
        """The names of the columns of ``probs``: :attr:`classes`, else PBC's eight (when there are eight)."""
        from . import CLASSES

        if self.classes is not None:
            return self.classes
        if self.probs.shape[1] != len(CLASSES):
            raise ValueError(f"probabilities of {self.probs.shape[1]} classes need their class names "
                             "(Predictions(..., classes=...)); PBC's eight do not fit")
        return CLASSES

    def first_right(self, classes: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
        """The first correctly classified image of each class (a class with none is left out), and a caption for
        each: its class and the probability the model gave it."""
        names = list(classes) if classes is not None else list(self.class_names())
        right = self.y_pred == self.y_true
        picks = [int(np.flatnonzero(right & (self.y_true == k))[0])
                 for k in range(self.probs.shape[1]) if (right & (self.y_true == k)).any()]
        return picks, [f"{names[self.y_true[i]]} ({self.probs[i].max():.2f})" for i in picks]

    def metrics(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        """:func:`helpers.evaluate.metrics_block` of these predictions."""
        from .evaluate import metrics_block

        return metrics_block(self.y_true, self.probs, classes if classes is not None else self.class_names())

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``paths``, ``y_true`` and ``probs`` to one ``.npz`` file (atomically)."""
        import io

        from .io import atomic_write_bytes

        buf = io.BytesIO()
        extra = {"classes": np.asarray(self.classes, dtype=str)} if self.classes is not None else {}
        np.savez_compressed(buf, paths=np.asarray(self.paths, dtype=str), y_true=self.y_true, probs=self.probs,
                            **extra)
        return atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        """The predictions saved by :meth:`save`."""
        with np.load(path) as z:
            classes = tuple(z["classes"].tolist()) if "classes" in z.files else None
            return cls(tuple(z["paths"].tolist()), z["y_true"], z["probs"], classes)


@dataclass
class Aligned:
    """Predictions of several models on the same items of one split."""

    split: str
    paths: np.ndarray
    y_true: np.ndarray
    probs: dict[str, np.ndarray]
    index: dict[str, np.ndarray] = field(default_factory=dict)  # rows of each model's own arrays, in this order

    def predictions(self, name: str) -> Predictions:
        """Model ``name``'s predictions on the shared items."""
        return Predictions(tuple(self.paths.tolist()), self.y_true, self.probs[name])


def _key(path: str) -> str:
    """``.../<class>/<file>`` → ``<class>/<file>``: the same image whatever folder the data sat in."""
    return "/".join(Path(str(path)).parts[-2:])


def align(loaded: Mapping[str, Predictions], split: str) -> Aligned:
    """Several models' predictions on one split, restricted to the items all of them have, in one order.

    Items are matched by ``<class>/<file>``; raises ``ValueError`` (:class:`helpers.export.BundleError` is one)
    when there is nothing to align, no shared item, or the models disagree on an item's true label (they were
    trained on different data).
    """
    if not loaded:
        raise ValueError(f"no model has saved {split} predictions")
    keyed = {name: [_key(q) for q in p.paths] for name, p in loaded.items()}
    common = set.intersection(*(set(k) for k in keyed.values()))
    if not common:
        raise ValueError(f"the models share no {split} item: were they trained on different splits?")
    for name, k in keyed.items():
        if len(k) != len(common):
            log.warning("%s has %d %s items, %d shared by all models: comparing on the shared ones", name,
                        len(k), split, len(common))
    keys = sorted(common)
    paths, y_true, probs, index = None, None, {}, {}
    for name, p in loaded.items():
        order = {q: i for i, q in enumerate(keyed[name])}
        idx = index[name] = np.array([order[q] for q in keys])
        y = p.y_true[idx]
        if y_true is None:
            y_true, paths = y, np.asarray(p.paths)[idx]
        elif not np.array_equal(y, y_true):
            raise ValueError(f"{name} disagrees with the other models on the true labels of {split} items")
        probs[name] = p.probs[idx]
    return Aligned(split, paths, y_true, probs, index)


_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_fn(model):
    """``model(x, training=False)`` as a ``tf.function``, traced once per Keras model and reused (a model
    called eagerly runs layer by layer from Python: 2.5-4x slower for MobileNetV2 and ResNet50 on a CPU).
    Any other callable is called as it is."""
    import keras
    import tensorflow as tf

    if not isinstance(model, keras.Model):
        return lambda x: model(x, training=False)
    try:
        return _INFERENCE[model]
    except KeyError:
        ref = weakref.ref(model)  # the function must not keep the model alive (it is the dictionary's key)
        fn = tf.function(lambda x: ref()(x, training=False), reduce_retracing=True)
        _INFERENCE[model] = fn
        return fn


def predict_array(model, images, batch_size: int = 32) -> np.ndarray:
    """``model``'s probabilities for an array of images, one :func:`inference_fn` call per batch."""
    call, x = inference_fn(model), np.asarray(images, dtype="float32")
    return np.concatenate([np.asarray(call(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def predict_dataset(model, dataset, max_batches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, probabilities)`` of ``model`` over a labelled, batched ``tf.data`` dataset, in order.

    The model is called in inference mode (``training=False``, :func:`inference_fn`) one batch at a time;
    ``max_batches`` stops after that many batches (e.g. a quick look at the training split).
    """
    call = inference_fn(model)
    ys, ps = [], []
    for i, (x, y) in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        ps.append(np.asarray(call(x)))
        ys.append(np.asarray(y))
    if not ps:
        raise ValueError("the dataset is empty: nothing to predict")
    return np.concatenate(ys), np.concatenate(ps)


def predict(model, paths: Sequence[str], labels: Sequence[int] | np.ndarray, image_size: int, *,
            batch_size: int = 64, classes: Sequence[str] | None = None) -> Predictions:
    """Run ``model`` over the image files ``paths`` (decoded and resized exactly as in training).

    ``labels`` are the true classes (integer indices) of the files, kept beside the probabilities;
    ``classes`` their names (``None``: PBC's eight).
    """
    from .pipeline import make_dataset

    ds = make_dataset(paths, labels, image_size, batch_size, cache=False)
    y, p = predict_dataset(model, ds)
    return Predictions(tuple(map(str, paths)), y, p, tuple(classes) if classes is not None else None)


def predict_split(model, data, split: str, image_size: int, *, batch_size: int = 64) -> Predictions:
    """:func:`predict` on split ``split`` of a :class:`helpers.data.SplitData`."""
    return predict(model, data.paths(split), data.labels(split), image_size, batch_size=batch_size,
                   classes=getattr(data, "classes", None))
