"""Save and load a trained model as a *bundle*: ``model.keras`` plus a ``bundle.json`` sidecar.

The sidecar says everything a user of the model needs to know: class names, input size,
how images are preprocessed, where the weights came from, the metrics and the data it was
trained on. Bundles live outside git (``helpers.config.output_dir() / "models"``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import CLASSES
from .io import atomic_dir, atomic_write_json
from .predictions import Predictions

MODEL_FILE = "model.keras"
SIDECAR_FILE = "bundle.json"


class BundleError(ValueError):
    """A model bundle is missing or incomplete; the message names the file."""


def save_bundle(model, directory: str | os.PathLike, *, image_size: int, weights_source: Any,
                metrics: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                classes: tuple[str, ...] = CLASSES, preprocessing: str = "float32 RGB in [0, 255]; "
                "resize with antialiasing; the model normalises internally",
                predictions: Mapping[str, Predictions] | None = None, **extra: Any) -> Path:
    """Save atomically: the bundle is written to a temporary sibling folder, then renamed into place.

    ``predictions`` maps a split name to its :class:`helpers.predictions.Predictions`; each is
    stored as ``predictions_<split>.npz`` so the evaluation chapter never has to run the test split again.
    """
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save(tmp / MODEL_FILE)
        sidecar = {"classes": list(classes), "image_size": int(image_size), "preprocessing": preprocessing,
                   "weights_source": weights_source, "metrics": dict(metrics or {}), "data": dict(data or {}),
                   "model_name": getattr(model, "name", None), **extra}
        atomic_write_json(tmp / SIDECAR_FILE, sidecar)
        for split, pred in (predictions or {}).items():
            if not isinstance(pred, Predictions):
                raise TypeError(f"predictions[{split!r}] must be a helpers.predictions.Predictions, "
                                f"got {type(pred).__name__}")
            pred.save(tmp / f"predictions_{split}.npz")
    return directory


def read_sidecar(directory: str | os.PathLike) -> dict[str, Any]:
    """The bundle's sidecar, checked for the fields prediction needs."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory} is not a model folder (expected a folder with {MODEL_FILE} and "
                          f"{SIDECAR_FILE}, as saved by the book's evaluation chapter).")
    for name in (MODEL_FILE, SIDECAR_FILE):
        if not (directory / name).is_file():
            raise BundleError(f"{directory} lacks {name}; it is not a complete model bundle.")
    try:
        side = json.loads((directory / SIDECAR_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{directory / SIDECAR_FILE} is unreadable: {e}") from e
    for key in ("classes", "image_size"):
        if key not in side:
            raise BundleError(f"{directory / SIDECAR_FILE} lacks {key!r}")
    return side


def register_custom_layers() -> None:
    """Make the book's custom Keras layers known before loading a saved model: importing
    :mod:`helpers.layers` registers them all (Keras can only rebuild a saved model whose layer classes have
    been registered in this process)."""
    from . import layers  # noqa: F401  (registers every custom layer on import)


def load_bundle(directory: str | os.PathLike):
    """``(keras model, sidecar dict)`` of a bundle."""
    import keras

    register_custom_layers()
    side = read_sidecar(directory)
    model = keras.models.load_model(Path(directory) / MODEL_FILE, compile=False)
    return model, side


def load_predictions(directory: str | os.PathLike, split: str) -> Predictions:
    """The :class:`helpers.predictions.Predictions` saved with the bundle for ``split``."""
    p = Path(directory) / f"predictions_{split}.npz"
    if not p.is_file():
        raise BundleError(f"{directory} has no saved {split} predictions ({p.name}).")
    return Predictions.load(p)
