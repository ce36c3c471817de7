"""A model's saved scores: what the evaluation chapter needs, without the model.

When a training chapter saves a model that was scored on the test split (:func:`helpers.runs.save_run`),
it also writes ``<results>/scores/<name>.npz`` beside the record: the probabilities and logits of the
model on every validation and test cell (relative paths, true labels) and on the white cells cropped from
the BCCD smears (when BCCD is configured). The record names the file and its sha256. The evaluation chapter
computes its tables, tests, calibration, ensemble choice and figures from these files alone, so it runs on a
fresh machine that has neither the trained models nor the data.
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .predictions import Predictions

log = logging.getLogger("helpers.scores")

FOLDER = "scores"
SPLITS = ("val", "test")
BCCD_CROP_SIZE = 256  # px: crops are cut at this size, then resized to each model's input as in training
BCCD_MARGIN = 0.5     # margin around a BCCD box, share of its longer side (the cell then fills about half)
SMOKE_BCCD_LIMIT = 16
RESULTS_URL_ENV = "BLOODCELLS_RESULTS_URL"  # another address of the book's results archive (tests, mirrors)


class ScoresError(ValueError):
    """A scores file is missing, unreadable or not the one its record names."""


@dataclass(frozen=True)
class Scores:
    """One model's saved scores: ``splits`` (val, test) as :class:`Predictions` with relative paths,
    ``logits`` per split and for ``"bccd"`` (``None`` where the model has no pre-softmax layer), and the
    BCCD crops' probabilities with the crops' ids (``"<image>#<box>"``)."""

    name: str
    image_size: int
    splits: dict[str, Predictions]
    logits: dict[str, np.ndarray | None]
    bccd_probs: np.ndarray | None = None
    bccd_ids: tuple[str, ...] = field(default_factory=tuple)


def relative_paths(paths: Sequence[str], root: str | os.PathLike | None) -> tuple[str, ...]:
    """``paths`` relative to the data root, as POSIX strings (no machine path in a committed file); without a
    root, or outside it, ``<class>/<file>``."""
    from .predictions import _key

    r = Path(root) if root is not None else None
    return tuple(Path(p).relative_to(r).as_posix() if r is not None and Path(p).is_relative_to(r)
                 else _key(p) for p in paths)


def _logits_over(model, paths: Sequence[str], labels, image_size: int, batch_size: int = 128) -> np.ndarray | None:
    from .explain import logits_fn
    from .pipeline import make_dataset

    fn = logits_fn(model)
    if fn is None:
        return None
    ds = make_dataset(list(paths), labels, image_size, batch_size, cache=False)
    return np.concatenate([fn(x.numpy()) for x, _ in ds]).astype("float32")


def bccd_crops(limit: int | None = None, seed: int = 42):
    """The white-cell crops of the configured BCCD copy (:mod:`helpers.domain`), or ``None`` without BCCD."""
    from .domain import BCCDNotFound, bccd_root

    try:
        root = bccd_root()
    except BCCDNotFound as e:
        log.debug("no BCCD crops scored: %s", e)
        return None
    return _crops(str(root), limit, seed)


@lru_cache(maxsize=2)  # a chapter saves several models: crop once
def _crops(root: str, limit: int | None, seed: int):
    from .domain import bccd_boxes, crop_boxes

    return crop_boxes(bccd_boxes(root), size=BCCD_CROP_SIZE, margin=BCCD_MARGIN, limit=limit, seed=seed)


def score_bccd(model, image_size: int, limit: int | None = None, seed: int = 42):
    """``(ids, probs, logits)`` of ``model`` on the BCCD crops at its input size; ``None`` without BCCD."""
    from .explain import logits
    from .pipeline import to_model_input
    from .predictions import predict_array

    crops = bccd_crops(limit, seed)
    if crops is None or not len(crops.images):
        return None
    x = np.stack([to_model_input(c, image_size) for c in crops.images])
    ids = tuple(f"{r.image}#{r.box}" for r in crops.meta.itertuples())
    z = logits(model, x, 64)
    return ids, predict_array(model, x).astype("float32"), None if z is None else z.astype("float32")


def save_scores(model, name: str, predictions: Mapping[str, Predictions], *, image_size: int,
                data_root: str | os.PathLike | None, directory: str | os.PathLike | None = None,
                bccd_limit: int | None = None, seed: int = 42) -> dict[str, Any]:
    """Score ``model`` once more for its logits, write ``<results>/scores/<name>.npz`` atomically and return
    what the record says of it: ``{"file", "sha256", "bccd_crops", "logits", "params"}``."""
    from .config import results_dir
    from .io import atomic_write_bytes, file_digest

    arrays: dict[str, np.ndarray] = {}
    has_logits = True
    for split in SPLITS:
        p = predictions[split]
        arrays[f"{split}_paths"] = np.asarray(relative_paths(p.paths, data_root), dtype=str)
        arrays[f"{split}_y"] = p.y_true
        arrays[f"{split}_probs"] = p.probs.astype("float32")
        z = _logits_over(model, p.paths, p.y_true, image_size)
        if z is not None:
            arrays[f"{split}_logits"] = z
        has_logits = has_logits and z is not None
    arrays["classes"] = np.asarray(predictions["val"].class_names(), dtype=str)
    arrays["image_size"] = np.asarray(int(image_size))
    bccd = score_bccd(model, image_size, bccd_limit, seed)
    if bccd is not None:
        arrays["bccd_ids"] = np.asarray(bccd[0], dtype=str)
        arrays["bccd_probs"] = bccd[1]
        if bccd[2] is not None:
            arrays["bccd_logits"] = bccd[2]
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = atomic_write_bytes(results_dir(directory) / FOLDER / f"{name}.npz", buf.getvalue())
    return {"file": f"{FOLDER}/{path.name}", "sha256": file_digest(path),
            "bccd_crops": None if bccd is None else len(bccd[0]), "logits": has_logits,
            "params": int(model.count_params())}


def load_scores(record: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Scores:
    """The scores a record names, checked against the sha256 the record holds."""
    from .config import results_dir
    from .io import file_digest

    meta = record.get("scores")
    if not meta:
        raise ScoresError(f"the record of {record.get('model')!r} names no scores file: re-run its chapter")
    path = results_dir(directory) / meta["file"]
    if not path.is_file():
        raise ScoresError(f"{meta['file']} (scores of {record['model']!r}) is missing from the results folder")
    if file_digest(path) != meta["sha256"]:
        raise ScoresError(f"{meta['file']} is not the file the record of {record['model']!r} was written with "
                          "(sha256 differs): re-run its chapter, or restore both from the same commit")
    with np.load(path) as z:
        classes = tuple(z["classes"].tolist())
        splits = {s: Predictions(tuple(z[f"{s}_paths"].tolist()), z[f"{s}_y"], z[f"{s}_probs"], classes)
                  for s in SPLITS}
        logits = {k: (z[f"{k}_logits"] if f"{k}_logits" in z.files else None) for k in (*SPLITS, "bccd")}
        bccd = z["bccd_probs"] if "bccd_probs" in z.files else None
        ids = tuple(z["bccd_ids"].tolist()) if "bccd_ids" in z.files else ()
        return Scores(str(record["model"]), int(z["image_size"]), splits, logits, bccd, ids)


@dataclass(frozen=True)
class Scored:
    """Every scored model on the same cells: ``val`` and ``test`` aligned item by item
    (:class:`helpers.predictions.Aligned`), each model's logits in that order (``None`` where it has none), and the
    BCCD crops every model scored (``bccd_probs``/``bccd_logits`` empty without BCCD)."""

    names: tuple[str, ...]
    image_size: dict[str, int]
    val: Any
    test: Any
    logits: dict[str, dict[str, np.ndarray | None]]
    bccd_ids: tuple[str, ...]
    bccd_probs: dict[str, np.ndarray]
    bccd_logits: dict[str, np.ndarray | None]
    left_out: dict[str, str]

    def calibration_logits(self, split: str, name: str) -> np.ndarray:
        """What temperature scaling divides: the model's logits where their softmax gives its probabilities,
        else ``log p`` (a TTA model averages probabilities, not logits; ``log p`` differs from the logits
        only by a constant per cell, which softmax ignores)."""
        from scipy.special import softmax

        from .calibrate import logits_from_probs

        al = getattr(self, split)
        p, z = al.probs[name], self.logits[split][name]
        if z is not None and np.abs(softmax(z.astype("float64"), axis=1) - p).max() < 1e-4:
            return z.astype("float64")
        return logits_from_probs(p)


def load_all(records: Mapping[str, Mapping[str, Any]], directory: str | os.PathLike | None = None) -> Scored:
    """The scores of every record that names one (:func:`load_scores`), lined up for comparison.

    A record without scores, or with a file that fails its check, is left out with the reason
    (``Scored.left_out``); models scored on different BCCD crops keep their BCCD scores out of the comparison.
    """
    from .predictions import align

    loaded: dict[str, Scores] = {}
    left_out: dict[str, str] = {}
    for name, rec in records.items():
        if not rec.get("scores"):
            left_out[name] = "no scores saved with its record"
            continue
        try:
            loaded[name] = load_scores(rec, directory)
        except ScoresError as e:
            left_out[name] = str(e)
    if not loaded:
        raise ScoresError("no record names a scores file: run the training chapters first")
    val, test = (align({n: s.splits[split] for n, s in loaded.items()}, split) for split in SPLITS)
    logits = {split: {n: (None if s.logits[split] is None else s.logits[split][al.index[n]])
                      for n, s in loaded.items()} for split, al in zip(SPLITS, (val, test))}
    with_bccd = {n: s for n, s in loaded.items() if s.bccd_probs is not None}
    ids = next(iter(with_bccd.values())).bccd_ids if with_bccd else ()
    same = {n: s for n, s in with_bccd.items() if s.bccd_ids == ids}
    for n in set(with_bccd) - set(same):
        log.warning("%s scored other BCCD crops: its BCCD scores are left out of the comparison", n)
    return Scored(tuple(loaded), {n: s.image_size for n, s in loaded.items()}, val, test, logits, ids,
                  {n: s.bccd_probs for n, s in same.items()}, {n: s.logits["bccd"] for n, s in same.items()},
                  left_out)


def book_results(directory: str | os.PathLike | None = None, needs: str = f"{FOLDER}/*.npz") -> Path:
    """The results folder a chapter reads committed measurements from: ``directory``; else
    ``$BLOODCELLS_RESULTS_DIR`` or the checkout's ``results/``, the first that holds files matching ``needs`` (the
    saved scores; ``"ablation/*.json"`` for chapter 3's ablation); elsewhere (a fresh Colab or Kaggle machine)
    the ``results/`` of this version of the book, downloaded once from the repository's archive of its tag
    ``v<version>`` into the output folder. Scores are then checked against their records (:func:`load_scores`)."""
    from .config import project_root, results_dir

    local = results_dir(directory)
    if directory is not None:
        return local
    for folder in (local, project_root() / "results"):  # a smoke run's own folder, then the checkout's
        if any(folder.glob(needs)):
            return folder
    return _download_results()


def _archive_url() -> tuple[str, str]:
    from importlib.metadata import metadata, version

    ver = version("bloodcells-helpers")
    urls = dict(u.split(", ", 1) for u in metadata("bloodcells-helpers").get_all("Project-URL") or [])
    url = os.environ.get(RESULTS_URL_ENV) or f"{urls['Repository'].rstrip('/')}/archive/refs/tags/v{ver}.tar.gz"
    return ver, url


def _download_results() -> Path:
    """``results/`` of the archive of this version's tag, unpacked (nothing else) into the output folder."""
    import tarfile
    import tempfile

    from .config import output_dir
    from .download import _retrieve
    from .io import atomic_dir

    ver, url = _archive_url()
    dest = output_dir() / "book-results" / f"v{ver}"
    if (dest / "results").is_dir():
        return dest / "results"
    log.info("downloading the results of version %s of the book (records and saved scores)", ver)
    with tempfile.TemporaryDirectory() as tmp, atomic_dir(dest) as out:
        archive = _retrieve(url, Path(tmp), f"book-v{ver}.tar.gz", None, progress=False)
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                parts = Path(m.name).parts
                if len(parts) < 3 or parts[1] != "results" or not m.isfile() or ".." in parts:
                    continue
                target = out.joinpath("results", *parts[2:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
        if not (out / "results").is_dir():
            raise ScoresError(f"the archive {url} holds no results/ folder")
    return dest / "results"
