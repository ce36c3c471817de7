"""Host memory of the gpu profile at 224 px, measured at smaller sizes and extrapolated.

A free Colab machine has about 12.7 GB of host memory. What the gpu profile keeps there grows with the image size
and the number of images: the frozen base's pooled features (``pooled_only``: one vector per image, never the
activations at the split layer) and phase 3's input pipeline, which caches every decoded image as uint8 after its
first epoch. Each size in :data:`SIZES` runs in a worker process of its own on ``N`` training and validation
images of the real split: the base is loaded (ResNet50, the largest pooled output of the three), the pooled
features extracted, then one pass over phase 3's cached training and validation datasets; the worker reports its
resident memory after each step and its high-water mark (``VmHWM``). Per size:

* *fixed*: resident memory with the base loaded (runtime, libraries, weights);
* *extraction peak*: the high-water mark of feature extraction above *fixed* (on a CPU the activations of one
  batch live in host memory; on a GPU most of them live on the device, so this is an upper bound), which grows
  with the image area;
* *cache*: the memory the cached pass added, per image pixel.

The extrapolation to 224 px and the book's whole split (train + val) adds *fixed* (at the largest size), the
extraction peak scaled by the image area, the pooled features of every image and the cache at its measured
bytes per pixel (:func:`cache_bytes_per_pixel`): an upper estimate, since the extraction peak and the full cache
are not held at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

SIZES = (64, 96, 128)
TARGET_SIZE = 224
FAMILY = "resnet50"
COLAB_FREE_GB = 12.7


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(x.split()[1]) / 1024 for x in fh if x.startswith("VmRSS:"))


def measure(size: int, per_class: int) -> dict[str, Any]:
    """In this process: the gpu profile's host memory at ``size`` px on ``per_class`` images per class."""
    from harness import peak_rss_mb

    from helpers.data import load_split
    from helpers.pipeline import make_dataset
    from helpers.profiles import recipe
    from helpers.transfer_run import extract, start_run
    from helpers.weights import resolve_weights

    r = recipe(FAMILY, "gpu", "book", image_size=size)
    data = load_split(None, max_per_class=per_class, seed=42, progress=False)
    provenance = resolve_weights(FAMILY, None, allow_download=False, allow_random=False)
    tl = start_run(FAMILY, size, provenance, r.split_layer, seed=42, batch_size=r.batch_size, profile="gpu",
                   precision="float32")
    fixed = _rss_mb()
    extract(tl, data)
    after_extract, extract_peak = _rss_mb(), peak_rss_mb()
    kept = []  # both caches stay alive, as in phase 3
    for split in ("train", "val"):
        kept.append(make_dataset(data.paths(split), data.labels(split), size, r.batch_size, cache=True))
        for _ in kept[-1]:  # the first epoch fills the cache
            pass
    n_images = sum(len(data.paths(s)) for s in ("train", "val"))
    cached = _rss_mb()
    pooled_dim = int(next(iter(tl.pooled.values())).shape[1])
    return {"size": size, "images": n_images, "pooled_dim": pooled_dim, "fixed_mb": round(fixed, 1),
            "extract_peak_mb": round(extract_peak - fixed, 1), "after_extract_mb": round(after_extract, 1),
            "cache_mb": round(cached - after_extract, 1), "peak_mb": round(peak_rss_mb(), 1),
            "cache_bytes_per_pixel": round((cached - after_extract) * 2**20 / (n_images * size * size), 2)}


def cache_bytes_per_pixel(rows: list[dict[str, Any]]) -> float:
    """The cache's growth per image pixel: the slope of its bytes against images × pixels across the sizes (a
    fixed overhead drops out), or the one size's ratio; never below the 3 bytes of a uint8 RGB pixel."""
    if len(rows) < 2:
        return max(3.0, rows[0]["cache_bytes_per_pixel"])
    x = np.array([r["images"] * r["size"] ** 2 for r in rows], dtype=float)
    y = np.array([r["cache_bytes_per_pixel"] * r["images"] * r["size"] ** 2 for r in rows], dtype=float)
    return max(3.0, float(np.polyfit(x, y, 1)[0]))


def extrapolate(rows: list[dict[str, Any]], n_images: int, size: int = TARGET_SIZE) -> dict[str, float]:
    """The upper estimate at ``size`` px for ``n_images`` (see the module's docstring), in GB (10⁹ bytes)."""
    top = max(rows, key=lambda r: r["size"])
    area = (size / top["size"]) ** 2
    parts = {"fixed": top["fixed_mb"] * 2**20, "extraction": top["extract_peak_mb"] * 2**20 * area,
             "pooled features": n_images * top["pooled_dim"] * 4.0,
             "image cache": n_images * size * size * cache_bytes_per_pixel(rows)}
    out = {k: round(v / 1e9, 2) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / 1e9, 2)
    return out


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    """The benchmark section: one worker per size, then the extrapolation to the book's split at 224 px."""
    from helpers.data import DataNotFoundError, load_split

    per_class = 100 if not ctx.get("quick") else 4
    sizes = SIZES if not ctx.get("quick") else SIZES[:2]
    try:
        full = load_split(None, seed=42, progress=False)
    except DataNotFoundError:
        return {"title": "Host memory of the gpu profile", "markdown": "Needs the PBC data (not configured).",
                "results": {}}
    n_full = len(full.paths("train")) + len(full.paths("val"))
    rows = []
    for size in sizes:
        ctx["progress"](f"gpu memory: {size} px")
        proc = subprocess.run([sys.executable, __file__, str(size), str(per_class)], capture_output=True,
                              text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        line = next((x for x in proc.stdout.splitlines() if x.startswith("ROW ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"the {size}-px worker failed: {proc.stderr[-2000:]}")
        rows.append(json.loads(line[4:]))
    est = extrapolate(rows, n_full)
    fits = est["total"] < COLAB_FREE_GB
    md = ["### Host memory of the gpu profile at 224 px, extrapolated",
          "",
          f"{FAMILY}, gpu profile (pooled features only), {rows[0]['images']} images per size; each size in its "
          "own process. MB = MiB of resident memory.",
          "",
          "| px | fixed MB | extraction peak MB | cache MB | cache bytes/pixel | peak MB |",
          "|---|---|---|---|---|---|",
          *[f"| {r['size']} | {r['fixed_mb']:.0f} | {r['extract_peak_mb']:.0f} | {r['cache_mb']:.0f} | "
            f"{r['cache_bytes_per_pixel']:.2f} | {r['peak_mb']:.0f} |" for r in rows],
          "",
          f"Extrapolated to {TARGET_SIZE} px and the book's {n_full:,} training and validation images (an upper "
          "estimate: the extraction peak and the full cache are added, though not held at once): "
          + ", ".join(f"{k} {v:.2f} GB" for k, v in est.items() if k != "total")
          + f"; **total {est['total']:.2f} GB**, "
          + ("within" if fits else "**above**") + f" a free Colab machine's {COLAB_FREE_GB} GB."]
    return {"title": "Host memory of the gpu profile", "markdown": "\n".join(md),
            "results": {"family": FAMILY, "rows": rows, "images_full": n_full, "target_size": TARGET_SIZE,
                        "estimate_gb": est, "colab_free_gb": COLAB_FREE_GB},
            "targets": [{"target": f"gpu profile ≤ {COLAB_FREE_GB} GB host memory at {TARGET_SIZE} px "
                                   "(upper estimate, a free Colab)", "value_gb": est["total"], "met": fits,
                         "margin": f"{est['total'] - COLAB_FREE_GB:+.2f} GB"}]}


if __name__ == "__main__":  # a worker: python gpu_memory_bench.py SIZE PER_CLASS
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here.parent / "src"), str(here)]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print("ROW " + json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))), flush=True)
