"""Descriptive statistics of a scanned dataset for chapter 1 (and any later look at new data).

The scan (:func:`helpers.data.scan_dataset`) gives one row per usable image; these
functions summarise it: image sizes (from the files, or from the ``originals.csv`` that
a re-encoded copy ships with), colour per class, and the finer sub-types that PBC file
names carry.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import CLASSES, class_order

log = logging.getLogger("helpers.explore")

ORIGINALS_FILE = "originals.csv"
ORIGINALS_COLUMNS = ["path", "orig_width", "orig_height"]


def find_originals_csv(dataset_root: str | os.PathLike) -> Path | None:
    """The ``originals.csv`` of a re-encoded copy, looked for in the data folder that holds
    ``dataset_root`` (the class-folder root) and in ``dataset_root`` itself; None if absent."""
    root = Path(dataset_root)
    for folder in (root.parent, root):
        p = folder / ORIGINALS_FILE
        if p.is_file():
            return p
    return None


def load_originals(csv_path: str | os.PathLike, dataset_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read an ``originals.csv`` (original width, height, bytes of each re-encoded file).

    Its ``path`` column is made relative to ``dataset_root`` (the folder with the class
    folders), the form the scan and the split manifest use, by dropping a leading
    ``<root name>/`` component.
    """
    df = pd.read_csv(csv_path)
    missing = sorted(set(ORIGINALS_COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"{csv_path} lacks the column(s) {missing}; it is not an originals table.")
    if dataset_root is not None:
        prefix = Path(dataset_root).name + "/"
        df["path"] = [p[len(prefix):] if p.startswith(prefix) else p for p in df["path"]]
    return df


def size_table(widths: Sequence[int], heights: Sequence[int], top: int = 8) -> pd.DataFrame:
    """The most common ``width × height`` sizes with their image count and share (largest first);
    all remaining sizes are pooled into one ``other`` row."""
    df = pd.DataFrame({"width": np.asarray(widths, dtype=int), "height": np.asarray(heights, dtype=int)})
    if df.empty:
        raise ValueError("no image sizes to tabulate")
    counts = df.value_counts(["width", "height"]).rename("images").reset_index()
    counts["size"] = counts["width"].astype(str) + " × " + counts["height"].astype(str)
    head = counts.head(top)[["size", "images"]]
    rest = int(counts["images"].iloc[top:].sum())
    if rest:
        head = pd.concat([head, pd.DataFrame({"size": [f"other ({len(counts) - top} sizes)"], "images": [rest]})])
    head["share"] = head["images"] / len(df)
    return head.reset_index(drop=True)


def subtype_table(files: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Images per file-name sub-type (columns) within each class (rows), zero columns dropped."""
    df = files if classes is None else files[files["label"].isin(classes)]
    if df.empty:
        raise ValueError(f"no images of the classes {list(classes or [])}")
    order = class_order(df["label"])
    t = pd.crosstab(df["label"], df["subtype"]).reindex(order)
    return t.loc[:, t.sum() > 0]


def _image_colours(path: str, size: int) -> tuple[float, ...]:
    from matplotlib.colors import rgb_to_hsv
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        rgb = np.asarray(im, dtype="float64").reshape(-1, 3)
    hsv = rgb_to_hsv(rgb / 255.0)
    ang = 2 * np.pi * hsv[:, 0]
    hue = (np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi)) % 1.0  # circular mean
    return (*rgb.mean(axis=0), hue, hsv[:, 1].mean(), hsv[:, 2].mean())


def colour_stats(paths: Sequence[str], labels: Sequence[str], size: int = 64) -> pd.DataFrame:
    """Mean colour of each class: per image the mean R, G, B (0–255) and H, S, V (0–1) over all
    pixels (hue as a circular mean), then the mean and standard deviation over the class's images.

    Returns one row per class (in :data:`CLASSES` order) with columns ``R G B H S V``,
    ``R_std`` … ``V_std`` and ``images``. Images are shrunk to ``size`` px first (the mean
    hardly changes; reading is much faster).
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if not len(paths):
        raise ValueError("no images to measure")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        vals = list(pool.map(lambda p: _image_colours(str(p), size), paths))
    per = pd.DataFrame(vals, columns=list("RGBHSV"))
    per["label"] = list(labels)
    rows = {}
    for cls, g in per.groupby("label"):
        ang = 2 * np.pi * g["H"].to_numpy()
        c, s = np.cos(ang).mean(), np.sin(ang).mean()
        row = {k: g[k].mean() for k in "RGBSV"}
        row["H"] = (np.arctan2(s, c) / (2 * np.pi)) % 1.0
        row.update({f"{k}_std": g[k].std(ddof=0) for k in "RGBSV"})
        row["H_std"] = float(np.sqrt(max(0.0, -2 * np.log(max(np.hypot(c, s), 1e-12)))) / (2 * np.pi))
        row["images"] = len(g)
        rows[cls] = row
    order = [c for c in CLASSES if c in rows] + sorted(set(rows) - set(CLASSES))
    cols = list("RGBHSV") + [f"{k}_std" for k in "RGBHSV"] + ["images"]
    return pd.DataFrame.from_dict(rows, orient="index").loc[order, cols]


def sample_per_class(files: pd.DataFrame, n: int, seed: int = 42) -> pd.DataFrame:
    """At most ``n`` seeded random rows of each class (all rows of smaller classes)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    parts = [g.sample(min(n, len(g)), random_state=seed) for _, g in files.groupby("label", sort=False)]
    return pd.concat(parts).sort_values("path").reset_index(drop=True)


def normal_differential() -> pd.DataFrame:
    """Approximate adult reference intervals of the white-cell differential (% of white cells).

    The one table of the book (chapter 1 shows it, chapter 7 compares predicted class shares with it),
    committed as ``helpers/tables/normal_differential.csv``. Laboratories set their own limits; these are
    typical textbook values. Index: the class names of :data:`helpers.CLASSES` (platelets are not part of
    the white-cell differential and are absent); columns ``low %`` and ``high %``.
    """
    from importlib.resources import files

    with files("helpers").joinpath("tables/normal_differential.csv").open() as f:
        df = pd.read_csv(f)
    unknown = set(df["class"]) - set(CLASSES)
    if unknown:
        raise ValueError(f"normal_differential.csv names unknown classes: {sorted(unknown)}")
    out = df.set_index("class")[["low_pct", "high_pct"]].astype(float)
    out.columns = ["low %", "high %"]
    out.index.name = None
    return out.reindex([c for c in CLASSES if c in out.index])
