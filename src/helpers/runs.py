"""One way to save a trained model: its results record and its bundle, from its predictions.

:func:`save_run` is the only writer of training results: every chapter (from-scratch CNNs,
transfer learning, test-time augmentation) and the stand-in model of a smoke run call it. The
record goes to the results registry (:mod:`helpers.results`), the bundle — model, sidecar and the
saved predictions — to ``outputs/models/<name>`` (:mod:`helpers.export`), and, for a model scored on the
test split, its scores (probabilities and logits) to ``results/scores/<name>.npz`` (:mod:`helpers.scores`),
which the evaluation chapter reads.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .predictions import Predictions

FROM_SCRATCH = {"kind": "none (trained from scratch)"}
"""The ``weights_source`` of a model trained from random initialisation."""


@dataclass(frozen=True)
class SavedRun:
    """What :func:`save_run` wrote: the record (as written), its path and the bundle folder (or ``None``)."""

    record: dict[str, Any]
    record_path: Path
    bundle: Path | None


def save_run(model, name: str, data, predictions: Mapping[str, Predictions], *, image_size: int, epochs: int,
             train_seconds: float, weights_source: Any, seed: int, mode: str = "book",
             record: Mapping[str, Any] | None = None, bundle: Mapping[str, Any] | None = None,
             preprocessing: str | None = None, save_model: bool = True, save_scores: bool = True,
             results_directory: str | os.PathLike | None = None,
             models_directory: str | os.PathLike | None = None) -> SavedRun:
    """Write the record ``<results>/<name>.json`` and (``save_model``) the bundle ``<models>/<name>``.

    ``predictions`` maps a split name to its :class:`Predictions`; ``"val"`` is required, ``"test"`` is
    present only when the model was scored on the test split (its one look). Their metrics go into the
    record and the bundle's sidecar; the predictions themselves are saved with the bundle.
    ``record``/``bundle``: extra fields for the record / the sidecar (e.g. ``history``, ``family``).
    ``data`` is the :class:`helpers.data.SplitData` the model was trained on (its provenance is recorded).
    The bundle also stores the out-of-distribution threshold chosen on the validation predictions
    (:func:`helpers.ood.fit_threshold`), which the command line and the app warn with.
    ``save_scores``: with test predictions, also write the scores file (:func:`helpers.scores.save_scores`).
    """
    from .config import output_dir
    from .export import save_bundle
    from .results import make_record, validate_record, write_record

    if "val" not in predictions:
        raise ValueError("save_run needs the validation predictions (predictions['val'])")
    from . import CLASSES

    classes = tuple(getattr(data, "classes", None) or CLASSES)
    metrics = {split: p.metrics(classes) for split, p in predictions.items()}
    provenance = data.provenance() if hasattr(data, "provenance") else dict(data)
    rec = make_record(name, image_size=image_size, epochs=epochs, train_seconds=train_seconds,
                      weights_source=weights_source, data=provenance, seed=seed, val=metrics["val"],
                      test=metrics.get("test"), mode=mode, **dict(record or {}))
    validate_record(rec)  # a bad record fails before anything is written
    folder = None
    if save_model:  # the bundle first: a record never names a model whose bundle failed to save
        d = Path(models_directory) if models_directory else output_dir() / "models"
        from .ood import fit_threshold

        extra = {"ood": fit_threshold(predictions["val"].probs), **dict(bundle or {})}
        if preprocessing is not None:
            extra["preprocessing"] = preprocessing
        folder = save_bundle(model, d / name, image_size=image_size, weights_source=weights_source,
                             metrics=metrics, data=provenance, predictions=dict(predictions), classes=classes,
                             **extra)
    if save_scores and "test" in predictions:
        from .scores import SMOKE_BCCD_LIMIT
        from .scores import save_scores as write_scores

        rec["scores"] = write_scores(model, name, predictions, image_size=image_size,
                                     data_root=getattr(data, "root", None), directory=results_directory,
                                     bccd_limit=SMOKE_BCCD_LIMIT if mode == "smoke" else None, seed=seed)
    path = write_record(rec, results_directory)
    return SavedRun(record=rec, record_path=path, bundle=folder)
