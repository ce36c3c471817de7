"""Gather the saved model bundles for a side-by-side comparison (chapter 7).

Every training chapter saves its final model as a bundle with its validation and test predictions
(:func:`helpers.runs.save_run`). This module finds those bundles, lines their predictions up
item by item (McNemar's test needs the *same* items), measures what only the model itself can tell
(size on disk, latency) and publishes the chosen model as the ``best`` bundle.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .export import (  # noqa: F401
    MODEL_FILE,
    SIDECAR_FILE,
    BundleError,
    load_predictions,
    read_sidecar,
    register_custom_layers,
)
from .io import atomic_dir, atomic_write_json
from .predictions import Aligned, Predictions, _key, align  # noqa: F401 (Aligned: part of this API)

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


CHAPTER_OF = {
    "devnithw_cnn": "03_baseline_cnn", "bloodcells_cnn": "03_baseline_cnn", "improved_cnn": "03_baseline_cnn",
    "improved_cnn_tta": "03_baseline_cnn", "transfer_vgg19": "04_transfer_vgg19",
    "transfer_resnet50": "05_transfer_resnet50", "transfer_mobilenetv2": "06_transfer_mobilenetv2",
    "transfer_mobilenetv2_tta": "06_transfer_mobilenetv2",
}
"""Which chapter saves which bundle (the book's models)."""
BOOK_BUNDLES = ("improved_cnn", "improved_cnn_tta", "transfer_vgg19", "transfer_resnet50",
                "transfer_mobilenetv2", "transfer_mobilenetv2_tta")
"""The bundles chapters 3–6 save (the reproductions of the source write-ups are saved as records only)."""
RENAMED = {"seed004_cnn": "devnithw_cnn", "seed001_cnn": "bloodcells_cnn"}
"""Old names of the from-scratch models (records written before the rename) → their names now."""


def canonical_name(name: str) -> str:
    """A model's current name (old record names are mapped through :data:`RENAMED`)."""
    return RENAMED.get(name, name)


def missing_bundles(found: Sequence[str | os.PathLike], expected: Sequence[str] | None = None) -> list[str]:
    """One line per book model without a bundle, naming the chapter that saves it."""
    have = {canonical_name(Path(p).name) for p in found}
    return [f"{n}: no bundle — run chapter {CHAPTER_OF[n]} (it saves it); skipped here"
            for n in (expected or BOOK_BUNDLES) if n not in have and n in CHAPTER_OF]


def reproduction_gap(model, images, saved_probs, batch_size: int = 32) -> float:
    """Largest absolute difference between ``model``'s probabilities on ``images`` and the saved ones.

    The *whole* model is run (for a TTA model: all its views), so it is compared like with like.
    """
    from .predictions import predict_array

    if len(images) == 0:
        return 0.0
    p = predict_array(model, images, batch_size)
    return float(np.abs(p - np.asarray(saved_probs)).max())


def load_aligned(bundles: Sequence[Path], split: str) -> Aligned:
    """Every bundle's saved predictions for ``split``, restricted to the items all bundles share (:func:`align`).

    Bundles without predictions for ``split`` are logged and left out.
    """
    loaded: dict[str, Predictions] = {}
    for b in bundles:
        try:
            loaded[b.name] = load_predictions(b, split)
        except BundleError as e:
            log.warning("left out %s: %s", b.name, e)
    try:
        return align(loaded, split)
    except ValueError as e:
        raise BundleError(str(e)) from e


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


def size_mb(bundle: str | os.PathLike) -> float:
    """Size of the bundle's ``model.keras`` in MB (10^6 bytes)."""
    return (Path(bundle) / MODEL_FILE).stat().st_size / 1e6


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


def publish_best(src: str | os.PathLike, models_dir: str | os.PathLike, selection: Mapping[str, Any],
                 name: str = BEST) -> Path:
    """Copy bundle ``src`` to ``models_dir/name`` atomically and write ``selection`` (why it was chosen)
    into its ``bundle.json`` under ``"selected"``. Returns the new folder."""
    src = Path(src)
    read_sidecar(src)
    dest = Path(models_dir) / name
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        side = json.loads((tmp / SIDECAR_FILE).read_text())
        side["selected"] = {**dict(selection), "source_bundle": src.name}
        atomic_write_json(tmp / SIDECAR_FILE, side)
    return dest


SMOKE_NOTE = "tiny smoke-test model built by chapter 7 because no bundles existed; not a real result"


def smoke_bundle(data, models_dir: str | os.PathLike, image_size: int = 32, name: str = "smoke_tiny_cnn",
                 seed: int = 42, results_directory: str | os.PathLike | None = None) -> Path:
    """For a standalone smoke run only: train a tiny CNN for one epoch and save it with
    :func:`helpers.runs.save_run` (a ``mode="smoke"`` record and a bundle with its val/test predictions),
    so that the evaluation chapter has something to evaluate. Labelled as such. Returns the bundle folder."""
    import keras

    from .pipeline import make_dataset
    from .predictions import predict_split
    from .runs import FROM_SCRATCH, save_run

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(8, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name=name)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(make_dataset(data.paths("train"), data.labels("train"), image_size, 32, shuffle=True, seed=seed),
              epochs=1, verbose=0, shuffle=False)
    secs = time.perf_counter() - t0
    preds = {split: predict_split(model, data, split, image_size) for split in ("val", "test")}
    run = save_run(model, name, data, preds, image_size=image_size, epochs=1, train_seconds=secs,
                   weights_source=dict(FROM_SCRATCH), seed=seed, mode="smoke", record={"note": SMOKE_NOTE},
                   bundle={"train_seconds": round(secs, 2), "note": SMOKE_NOTE},
                   results_directory=results_directory or Path(models_dir) / ".smoke-results",
                   models_directory=models_dir)
    return run.bundle
