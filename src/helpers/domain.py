"""Domain shift: does a PBC-trained model still work on another lab's smears?

BCCD (Shenggan 2017, MIT licence) holds 364 Giemsa-stained smear photos (640×480) with Pascal
VOC boxes for WBC, RBC and platelets — from another microscope, camera and lab than PBC, and
with **no white-cell type labels**. So the model's accuracy there cannot be measured; what we
can measure is how the model *behaves*: which classes it predicts, how confident it is, and how
well a confidence score separates BCCD crops from PBC images (out-of-distribution detection).

The BCCD folder is only read, never written: crops live in memory.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .ood import max_softmax  # noqa: F401  (the MSP score lives in helpers.ood; chapter 7 imports it here)

log = logging.getLogger("helpers.domain")

BCCD_ENV = "BLOODCELLS_BCCD_DIR"


class BCCDNotFound(FileNotFoundError):
    """No BCCD folder is configured or it lacks the VOC layout; the message says what to do."""


def bccd_root(path: str | os.PathLike | None = None) -> Path:
    """The folder holding ``JPEGImages/`` and ``Annotations/``: ``path`` or ``$BLOODCELLS_BCCD_DIR``, or one
    or two levels below it (the upstream repository nests it in ``BCCD/``)."""
    raw = path if path not in (None, "") else os.environ.get(BCCD_ENV)
    if not raw:
        raise BCCDNotFound(f"No BCCD dataset configured: set the environment variable {BCCD_ENV} (or the "
                           "notebook parameter BCCD_DIR) to a copy of github.com/Shenggan/BCCD_Dataset.")
    root = Path(raw).expanduser()
    for cand in (root, root / "BCCD", *sorted(root.glob("*/BCCD"))):
        if (cand / "JPEGImages").is_dir() and (cand / "Annotations").is_dir():
            return cand
    raise BCCDNotFound(f"{root} has no JPEGImages/ and Annotations/ folders (Pascal VOC layout) in it or in "
                       f"{root / 'BCCD'}; point {BCCD_ENV} at the BCCD_Dataset folder.")


def parse_voc(xml_path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """One VOC annotation → ``({"filename", "width", "height"}, [{"name", "xmin", "ymin", "xmax", "ymax"}, ...])``.

    Class names are stripped of stray whitespace (BCCD has a few ``"RBC "``-style entries)."""
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    info = {"filename": (root.findtext("filename") or Path(xml_path).stem + ".jpg").strip(),
            "width": int(float(size.findtext("width"))) if size is not None else None,
            "height": int(float(size.findtext("height"))) if size is not None else None}
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        boxes.append({"name": (obj.findtext("name") or "").strip(),
                      **{k: int(round(float(bb.findtext(k)))) for k in ("xmin", "ymin", "xmax", "ymax")}})
    return info, boxes


def bccd_boxes(root: str | os.PathLike | None = None, names: Sequence[str] = ("WBC",),
               image_set: str | None = None) -> pd.DataFrame:
    """Every box of the given class ``names`` as a table (image path, box, image size).

    ``image_set`` (``"train"``, ``"val"``, ``"test"``, ``"trainval"``) restricts to an upstream id list.
    Annotations whose image file is missing are logged and left out.
    """
    root = bccd_root(root)
    ids = None
    if image_set is not None:
        f = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not f.is_file():
            raise BCCDNotFound(f"{f} does not exist; image_set must be one of train, val, test, trainval")
        ids = {ln.strip() for ln in f.read_text().splitlines() if ln.strip()}
    rows = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        if ids is not None and xml.stem not in ids:
            continue
        info, boxes = parse_voc(xml)
        img = root / "JPEGImages" / info["filename"]
        if not img.is_file():
            img = root / "JPEGImages" / f"{xml.stem}.jpg"
        if not img.is_file():
            log.warning("skipped %s: its image %s is missing", xml.name, info["filename"])
            continue
        for i, b in enumerate(boxes):
            if b["name"] in names:
                rows.append({"image": img.name, "path": str(img), "box": i, **b,
                             "img_width": info["width"], "img_height": info["height"]})
    return pd.DataFrame(rows, columns=["image", "path", "box", "name", "xmin", "ymin", "xmax", "ymax",
                                       "img_width", "img_height"])


def square_box(xmin: int, ymin: int, xmax: int, ymax: int, width: int, height: int,
               margin: float = 0.15, min_side: int = 8) -> tuple[int, int, int, int] | None:
    """A square around the box, ``margin`` × its longer side added on every side, kept inside the image.

    The square is shifted (not cut) to stay inside the image; only when it is larger than the image
    is it shrunk to the image's shorter side. ``None`` for a degenerate box (side < ``min_side`` px
    or outside the image).
    """
    xmin, xmax = max(0, min(xmin, xmax)), min(width, max(xmin, xmax))
    ymin, ymax = max(0, min(ymin, ymax)), min(height, max(ymin, ymax))
    w, h = xmax - xmin, ymax - ymin
    if w < min_side or h < min_side:
        return None
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = min(side, width, height)
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, x0 + side, y0 + side


@dataclass
class Crops:
    """Square RGB crops (uint8, ``size``×``size``) of boxes, with the table of what they are."""

    images: np.ndarray
    meta: pd.DataFrame


def crop_boxes(boxes: pd.DataFrame, size: int = 160, margin: float = 0.15, limit: int | None = None,
               seed: int = 42) -> Crops:
    """Cut a square crop around every box (in memory) and resize it to ``size`` px (Lanczos).

    Degenerate boxes are skipped with one log line each. ``limit`` keeps a seeded random subset.
    """
    from PIL import Image

    if limit is not None and len(boxes) > limit:
        boxes = boxes.sample(n=limit, random_state=seed).sort_index()
    out, keep = [], []
    for row in boxes.itertuples():
        with Image.open(row.path) as im:
            im = im.convert("RGB")
            sq = square_box(row.xmin, row.ymin, row.xmax, row.ymax, im.width, im.height, margin)
            if sq is None:
                log.info("skipped degenerate %s box %d of %s: (%d, %d, %d, %d)", row.name, row.box, row.image,
                         row.xmin, row.ymin, row.xmax, row.ymax)
                continue
            out.append(np.asarray(im.crop(sq).resize((size, size), Image.LANCZOS)))
            keep.append({**row._asdict(), "crop": sq})
    meta = pd.DataFrame(keep).drop(columns="Index", errors="ignore")
    return Crops(np.stack(out) if out else np.zeros((0, size, size, 3), "uint8"), meta)


# --------------------------------------------------------------------------------------------
# Out-of-distribution scores
# --------------------------------------------------------------------------------------------
def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Energy score (Liu et al. 2020) ``−T·logsumexp(logits / T)``: low = looks in-distribution.

    Needs the real logits. With probabilities only, ``log p`` equals the logits up to an unknown
    constant per item, and that constant is exactly what the energy measures: ``energy(log p) = 0``
    for every item. Use :func:`helpers.explain.logits` to get the logits from a model ending in a softmax.
    """
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=float)
    return -temperature * logsumexp(z / temperature, axis=1)


def ood_auroc(score_in, score_out, higher_means_in: bool = True) -> float:
    """AUROC of telling out-of-distribution items (positives) from in-distribution ones by a score.

    0.5 = no better than chance, 1.0 = perfect separation. ``higher_means_in`` is True for MSP and
    False for energy.
    """
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(score_in, dtype=float), np.asarray(score_out, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"need in- and out-of-distribution scores, got {len(a)} and {len(b)}")
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    s = np.r_[a, b]
    return float(roc_auc_score(y, -s if higher_means_in else s))


def normal_differential(classes=("neutrophil", "lymphocyte")) -> dict[str, tuple[float, float]]:
    """``{class: (low, high)}`` as fractions, read from chapter 1's table
    (:func:`helpers.explore.normal_differential`): one source, so that every chapter agrees."""
    from .explore import normal_differential as table

    t = table()
    return {c: (t.loc[c, "low %"] / 100, t.loc[c, "high %"] / 100) for c in classes}


def differential_text(ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """E.g. ``"40–75 % neutrophils and 20–45 % lymphocytes"``, built from :func:`normal_differential` (for glue)."""
    r = normal_differential() if ranges is None else ranges
    parts = [f"{lo * 100:.0f}–{hi * 100:.0f} % {c}s" for c, (lo, hi) in r.items()]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
