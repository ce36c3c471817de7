"""The frozen lower part of a pretrained base, run once over a split: its activations and their cache.

The lower part of a frozen base (everything up to the cut, see :func:`helpers.transfer.split_model`)
gives the same output every epoch, so transfer learning on a CPU runs it **once** and keeps the
activations (``float16``). :func:`activations` computes them, or reloads them from
``outputs/features/<family>_<size>_<key>_<split>.npy`` when a run with the same family, image size,
cut, weights and files computed them before; the seconds the computation took are stored beside the
array (``.json``), so a reloaded cache reports the cost of computing it, not of reading it.
``split_layer`` names what is cached: :func:`helpers.transfer_run.extract` passes the whole base and ``"pooled"``
for a run that keeps only the pooled features (the gpu profile), a cache of its own.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import output_dir
from .io import atomic_write_json, text_digest

log = logging.getLogger("helpers.features")

PROGRESS_EVERY_S = 60  # a log line while a long extraction runs


@dataclass(frozen=True)
class Activations:
    """The lower part's output for one split: ``X[i]`` belongs to the i-th file; ``seconds`` to compute it."""

    X: np.ndarray
    seconds: float
    how: str  # "computed" or "read from the cache (computed <when>)"


def cache_key(family: str, image_size: int, split_layer: str, weights_sha256: str | None,
              paths: Sequence[str]) -> str:
    """Digest of everything the activations depend on: family, size, cut, weights file and image files."""
    ident = "|".join([family, str(image_size), split_layer, str(weights_sha256), *map(str, paths)])
    return text_digest(ident)


def run_lower(preprocess, lower, paths: Sequence[str], labels: np.ndarray, image_size: int,
              desc: str = "features", graph: bool = True) -> np.ndarray:
    """``lower(preprocess(image), training=False)`` over the files ``paths``, in order, as ``float16``.

    The network runs in its own dtype (float32; float16 under mixed precision); the activations are stored as
    float16 on the numpy side.
    ``graph=False`` runs eagerly: for a few batches through many models (the resolution probe), where
    tracing a graph for each would cost more than it saves and TensorFlow warns about the retracing.
    """
    import tensorflow as tf

    from .pipeline import make_dataset

    ds = make_dataset(paths, labels, image_size, batch_size=64, cache=False)

    # float32 in the graph, float16 only in numpy: a float16 op on a CPU without AVX-512 makes oneDNN
    # print an error-level line ("DT_HALF only on platforms with AVX-512") that no log level hides.
    def step(x):
        return lower(preprocess(x), training=False)

    if graph:
        step = tf.function(step, reduce_retracing=True)

    out, done, t0, last = [], 0, time.perf_counter(), time.perf_counter()
    for x, _ in ds:
        out.append(step(x).numpy().astype(np.float16))
        done += int(x.shape[0])
        if time.perf_counter() - last > PROGRESS_EVERY_S:
            log.info("%s: %d/%d images (%.0f img/s)", desc, done, len(paths),
                     done / (time.perf_counter() - t0))
            last = time.perf_counter()
    return np.concatenate(out)


def _save(f: Path, X: np.ndarray, seconds: float, images: int) -> None:
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, X)
    os.replace(tmp, f)
    atomic_write_json(f.with_suffix(".json"), {"seconds": round(seconds, 1), "images": images,
                                                "created": time.strftime("%Y-%m-%d %H:%M")})


def activations(preprocess, lower, paths: Sequence[str], labels: np.ndarray, *, family: str,
                image_size: int, split_layer: str, weights_sha256: str | None, split: str,
                cache: bool = True, folder: str | os.PathLike | None = None) -> Activations:
    """The lower part's activations of ``paths``: from the cache if there, else computed (and cached).

    ``folder`` defaults to ``outputs/features``; ``cache=False`` neither reads nor writes it.
    """
    folder = Path(folder) if folder else output_dir() / "features"
    key = cache_key(family, image_size, split_layer, weights_sha256, paths)
    f = folder / f"{family}_{image_size}_{key}_{split}.npy"
    meta_file = f.with_suffix(".json")
    t0 = time.perf_counter()
    if cache and f.is_file() and meta_file.is_file():
        X = np.load(f)
        meta = json.loads(meta_file.read_text())
        how = f"read from the cache (computed {meta['created']})"
        return Activations(X, float(meta["seconds"]), how)
    X = run_lower(preprocess, lower, paths, labels, image_size, f"{family} {split}")
    secs = time.perf_counter() - t0
    if cache:
        _save(f, X, secs, len(paths))
    return Activations(X, secs, "computed")
