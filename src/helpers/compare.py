"""The saved model bundles: find them, map old record names, find moved images, time a model (chapter 8).

Every training chapter saves its final model as a bundle with its validation and test predictions
(:func:`helpers.runs.save_run`); chapter 8 reads their scores through :mod:`helpers.scores`.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .export import MODEL_FILE, SIDECAR_FILE, register_custom_layers  # noqa: F401
from .predictions import _key

log = logging.getLogger("helpers.compare")

BEST = "best"


def find_bundles(models_dir: str | os.PathLike, exclude: Sequence[str] = (BEST,)) -> list[Path]:
    """Complete bundles (``model.keras`` + ``bundle.json``) directly in ``models_dir``, sorted by name.

    Hidden folders (temporary or old copies) and ``exclude`` (the published ``best`` copy) are skipped.
    """
    d = Path(models_dir)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        if not p.is_dir() or p.name.startswith(".") or p.name in exclude:
            continue
        if (p / MODEL_FILE).is_file() and (p / SIDECAR_FILE).is_file():
            out.append(p)
        else:
            log.info("ignored %s: not a complete bundle", p.name)
    return out


RENAMED = {"seed004_cnn": "devnithw_cnn", "seed001_cnn": "bloodcells_cnn"}
"""Old names of the from-scratch models (records written before the rename) → their names now."""


def canonical_name(name: str) -> str:
    """A model's current name (old record names are mapped through :data:`RENAMED`)."""
    return RENAMED.get(name, name)


def resolve_paths(paths: Sequence[str], data_root: str | os.PathLike | None = None) -> list[str]:
    """The saved image paths where they exist; otherwise the same ``<class>/<file>`` under ``data_root``
    (the data moved since training). Raises naming the first image found in neither place."""
    out = []
    for p in map(str, paths):
        if Path(p).is_file():
            out.append(p)
            continue
        alt = Path(data_root) / _key(p) if data_root is not None else None
        if alt is None or not alt.is_file():
            raise FileNotFoundError(f"image {p} of the saved predictions is missing"
                                    + (f" (also not at {alt})" if alt else "") + "; set DATA_DIR to the data "
                                    "the models were trained on")
        out.append(str(alt))
    return out


def latency(model, images, batch_sizes: Sequence[int] = (1, 32), repeats: int = 5) -> dict[int, float]:
    """Median wall time in milliseconds of one forward pass per batch size (after one warm-up call), through
    the model's traced inference function (:func:`helpers.predictions.inference_fn`), as a server calls it.

    ``images`` (float32, model input size) are repeated to fill the batch. Only images, no labels.
    """
    from .predictions import inference_fn

    x = np.asarray(images, dtype="float32")
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"need an (N, H, W, 3) array of images, got {x.shape}")
    call, out = inference_fn(model), {}
    for bs in batch_sizes:
        batch = np.resize(x, (int(bs),) + x.shape[1:])
        np.asarray(call(batch))  # warm-up: graph tracing, memory allocation
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            np.asarray(call(batch))
            times.append(time.perf_counter() - t0)
        out[int(bs)] = 1000 * float(np.median(times))
    return out
