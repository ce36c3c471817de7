"""Download the book's datasets when a reader has none: verified, cached, never half-used.

* :func:`fetch_pbc` — the official PBC zip from Mendeley Data (doi:10.17632/snkd93bnjr.1). Mendeley does
  not publish a checksum, so the download is verified by its *content* after unpacking: the number of
  images of every class must be the published one (17,092 in all). The zip's SHA-256 is computed and
  returned, so that a run can record exactly which file it used (and, given ``sha256``, it is checked).
* :func:`fetch_bloodmnist` / :func:`load_bloodmnist` — BloodMNIST (MedMNIST v2/MedMNIST+: the same PBC
  images, centre-cropped and resized, with its official split) from Zenodo, checked by MD5, read with
  NumPy (no ``medmnist`` package: it pulls in PyTorch).

Everything is written to a temporary sibling first and renamed into place only when complete and
verified: an interrupted, truncated or corrupt download leaves nothing that a later run could use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .io import atomic_dir, file_digest

log = logging.getLogger("helpers.download")

PBC_URL = ("https://data.mendeley.com/public-files/datasets/snkd93bnjr/files/"
           "2fc38728-2ae7-4a62-a857-032af82334c3/file_downloaded")
PBC_ZIP = "PBC_dataset_normal_DIB.zip"
PBC_SHA256: str | None = None
"""The zip's SHA-256 once known (Mendeley publishes none); until then the content check below decides."""
PBC_COUNTS: dict[str, int] = {"basophil": 1218, "eosinophil": 3117, "erythroblast": 1551, "ig": 2895,
                              "lymphocyte": 1214, "monocyte": 1420, "neutrophil": 3329, "platelet": 2348}
"""Images per class in the official release (Acevedo et al. 2020): 17,092 in all."""
PBC_URL_ENV, PBC_SHA256_ENV = "BLOODCELLS_PBC_URL", "BLOODCELLS_PBC_SHA256"
KAGGLE_MIRROR = "unclesamulus/blood-cells-image-dataset"
"""The Kaggle copy of PBC; added as a notebook input it is found under ``/kaggle/input``."""
COMPLETE = ".download.json"
"""Written last into an unpacked dataset: its presence means the folder is complete and verified."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

BLOODMNIST_URL = "https://zenodo.org/records/10519652/files/bloodmnist{suffix}.npz?download=1"
BLOODMNIST_MD5: dict[int, str] = {28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
                                  128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"}
BLOODMNIST_SPLIT: dict[str, int] = {"train": 11959, "val": 1712, "test": 3421}
"""The official split of BloodMNIST (17,092 images)."""
BLOODMNIST_URL_ENV = "BLOODCELLS_BLOODMNIST_URL"
BLOODMNIST_MD5_ENV = "BLOODCELLS_BLOODMNIST_MD5"  # the MD5 of the copy that $BLOODCELLS_BLOODMNIST_URL serves


class DownloadError(RuntimeError):
    """A download failed or its content is not what was expected; the message says what to do."""


def _junk(name: str) -> bool:
    """macOS archive litter and hidden files: ``__MACOSX/…``, ``.DS_Store``, ``._name``."""
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" or (p.startswith(".") and p not in (".", "..")) for p in parts)


def _retrieve(url: str, dest: Path, fname: str, known_hash: str | None, progress: bool) -> Path:
    """pooch's download: to a temporary file, renamed only when complete (and matching ``known_hash``)."""
    import pooch

    try:
        return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=dest, progressbar=progress))
    except ValueError as e:  # pooch: hash mismatch
        raise DownloadError(f"{fname} from {url} does not match its checksum ({e}); nothing was kept. "
                            "Try again later, or download it by hand.") from e
    except Exception as e:  # network errors come in many types (requests, urllib3, OSError)
        raise DownloadError(f"downloading {fname} from {url} failed: {type(e).__name__}: {e}; nothing was "
                            "kept. Check the connection and run again.") from e


def count_images(root: Path) -> dict[str, int]:
    """Images per class folder directly below ``root`` (hidden files ignored)."""
    return {d.name: sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def _find_class_root(top: Path, classes: set[str], depth: int = 3) -> Path | None:
    level = [top]
    for _ in range(depth + 1):
        for d in level:
            if classes <= {c.name for c in d.iterdir() if c.is_dir()}:
                return d
        level = [c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")]
    return None


def unpack_verified(zip_path: Path, dest: Path, expected: Mapping[str, int]) -> dict[str, Any]:
    """Unpack ``zip_path`` into ``dest`` (atomically) if its class folders hold exactly ``expected`` images.

    Junk entries are skipped, entries that would leave the folder are refused. Returns the verification
    summary that is also written to ``dest/.download.json``.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{zip_path.name} is not a readable zip ({e}): the download is incomplete or "
                            "corrupt. It was removed; run again to download it anew.") from e
    with zf, atomic_dir(dest) as tmp:
        for info in zf.infolist():
            name = info.filename
            if _junk(name) or info.is_dir():
                continue
            target = (tmp / name).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise DownloadError(f"{zip_path.name} contains an entry outside its folder ({name!r}); refused.")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DownloadError(f"{zip_path.name} is corrupt at {name!r} ({e}); nothing was kept.") from e
        root = _find_class_root(tmp, set(expected))
        if root is None:
            found = sorted(p.name for p in tmp.rglob("*") if p.is_dir())
            missing = sorted(set(expected) - set(found))
            raise DownloadError(f"{zip_path.name} lacks the class folder(s) {missing}; it is not the PBC "
                                "release. Nothing was kept.")
        counts = count_images(root)
        wrong = {c: (counts.get(c, 0), n) for c, n in expected.items() if counts.get(c, 0) != n}
        if wrong:
            detail = ", ".join(f"{c}: {got} instead of {n}" for c, (got, n) in wrong.items())
            raise DownloadError(f"{zip_path.name} does not hold the published images ({detail}); nothing was kept.")
        summary = {"zip": zip_path.name, "zip_sha256": file_digest(zip_path), "counts": counts,
                   "n_images": int(sum(counts.values())), "root": str(root.relative_to(tmp))}
        (tmp / COMPLETE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def read_complete(folder: Path) -> dict[str, Any] | None:
    """The verification summary of an unpacked download, or ``None`` when the folder is not complete."""
    try:
        return json.loads((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def fetch_pbc(dest: str | os.PathLike, url: str | None = None, sha256: str | None = None,
              expected: Mapping[str, int] | None = None, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """The PBC dataset under ``dest`` (downloaded, verified and unpacked once; cached after that).

    Returns ``(dataset root with the class folders, summary)``; the summary holds the zip's SHA-256 and
    the image counts, for the run records. ``url``/``sha256`` default to ``$BLOODCELLS_PBC_URL`` /
    ``$BLOODCELLS_PBC_SHA256``, then to the official Mendeley file; ``expected`` (per-class image counts)
    to :data:`PBC_COUNTS`.
    """
    dest = Path(dest)
    folder = dest / "pbc"
    done = read_complete(folder)
    if done is not None:
        return folder / done["root"], done
    url = url or os.environ.get(PBC_URL_ENV) or PBC_URL
    sha256 = sha256 or os.environ.get(PBC_SHA256_ENV) or PBC_SHA256
    log.info("downloading the PBC dataset from %s into %s", url, dest)
    zip_path = _retrieve(url, dest, PBC_ZIP, f"sha256:{sha256}" if sha256 else None, progress)
    try:
        summary = unpack_verified(zip_path, folder, expected or PBC_COUNTS)
    except DownloadError:
        zip_path.unlink(missing_ok=True)
        raise
    summary["url"] = url
    log.info("PBC verified: %d images; zip sha256 %s", summary["n_images"], summary["zip_sha256"])
    zip_path.unlink(missing_ok=True)  # the unpacked, verified folder is the cache
    return folder / summary["root"], summary


def fetch_bloodmnist(size: int, dest: str | os.PathLike, url: str | None = None, progress: bool = True) -> Path:
    """The BloodMNIST ``.npz`` file of ``size`` (28, 64, 128 or 224 px) under ``dest``, MD5-checked."""
    if size not in BLOODMNIST_MD5:
        raise ValueError(f"BloodMNIST comes in sizes {sorted(BLOODMNIST_MD5)}, not {size!r}")
    suffix = "" if size == 28 else f"_{size}"
    url = url or os.environ.get(BLOODMNIST_URL_ENV, "").format(suffix=suffix) or BLOODMNIST_URL.format(suffix=suffix)
    return _retrieve(url, Path(dest), f"bloodmnist{suffix}.npz", f"md5:{bloodmnist_md5(size)}", progress)


def bloodmnist_md5(size: int) -> str:
    """The MD5 a BloodMNIST file must have: ``$BLOODCELLS_BLOODMNIST_MD5`` (another copy), else the published one."""
    return os.environ.get(BLOODMNIST_MD5_ENV) or BLOODMNIST_MD5[size]


def load_bloodmnist(path: str | os.PathLike, expected: Mapping[str, int] | None = BLOODMNIST_SPLIT,
                    n_classes: int = 8) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (uint8 images (N, H, W, 3), int labels (N,))}`` from a BloodMNIST ``.npz`` file.

    BloodMNIST's labels 0–7 are PBC's classes in the book's (alphabetical) order. ``expected`` split sizes
    are checked (``None`` skips the check, e.g. for a subset).
    """
    out = {}
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise DownloadError(f"{path} is not a readable .npz file ({e})") from e
    with z:
        for split in ("train", "val", "test"):
            try:
                x, y = z[f"{split}_images"], z[f"{split}_labels"].reshape(-1).astype("int32")
            except KeyError as e:
                raise DownloadError(f"{path} lacks {e}; it is not a MedMNIST file") from None
            if x.ndim == 3:  # grayscale MedMNIST sets; BloodMNIST is RGB
                x = np.repeat(x[..., None], 3, axis=-1)
            if x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y) or x.dtype != np.uint8:
                raise DownloadError(f"{path}: {split} images of shape {x.shape} ({x.dtype}) and {len(y)} labels "
                                    "are not the BloodMNIST layout (N, H, W, 3) uint8")
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise DownloadError(f"{path}: {split} labels outside 0–{n_classes - 1}")
            if expected is not None and len(y) != expected[split]:
                raise DownloadError(f"{path}: {len(y)} {split} images, the official split has {expected[split]}")
            out[split] = (x, y)
    return out


BLOODMNIST_MANIFEST = "bloodmnist_split.csv"
_SPLIT_RANK = {"test": 0, "val": 1, "train": 2}  # where a duplicate group stays when the official split cuts it


def bloodmnist_size_for(image_size: int) -> int:
    """The BloodMNIST file to train at ``image_size`` px: the smallest release at least that large (else 224)."""
    return min((s for s in BLOODMNIST_MD5 if s >= int(image_size)), default=max(BLOODMNIST_MD5))


def bloodmnist_folders(size: int, dest: str | os.PathLike, *, npz: str | os.PathLike | None = None,
                       url: str | None = None, progress: bool = True,
                       expected: Mapping[str, int] | None = BLOODMNIST_SPLIT) -> tuple[Path, Path]:
    """BloodMNIST at ``size`` px as PBC-style class folders of PNG files, and a manifest of its official split.

    ``(image root, manifest path)`` under ``dest/bloodmnist_<size>/``, written once (atomically) and reused.
    The test split stays the official one. A group of identical images that the official split puts into
    more than one split keeps only its members in the split nearest to test (test, then val) — the others
    are marked ``excluded`` — and a group with two different labels is excluded whole; both are counted
    in the folder's summary (``.download.json``), so that duplicates never cross the book's splits.
    ``npz``: a copy the reader already has (read only, MD5-checked); else it is downloaded into ``dest``.
    """
    from PIL import Image

    from . import CLASSES
    from .split import EXCLUDED, save_manifest

    if npz is None:
        npz = fetch_bloodmnist(size, dest, url=url, progress=progress)
    else:
        import pooch

        npz = Path(npz)
        if size not in BLOODMNIST_MD5 or pooch.file_hash(str(npz), alg="md5") != bloodmnist_md5(size):
            raise DownloadError(f"{npz.name} is not the published BloodMNIST {size} px file (its MD5 differs from "
                                f"{BLOODMNIST_MD5.get(size)}); re-download it, or leave DATA_DIR = None.")
    out = Path(dest) / f"bloodmnist_{size}"
    done = read_complete(out)
    if done is not None and done.get("md5") == bloodmnist_md5(size):  # written from this very file
        return out / "images", out / BLOODMNIST_MANIFEST
    arrays = load_bloodmnist(npz, expected=expected)
    rows = []
    with atomic_dir(out) as tmp:
        for cls in CLASSES:
            (tmp / "images" / cls).mkdir(parents=True)
        for split, (x, y) in arrays.items():
            for i, (img, lab) in enumerate(zip(x, y)):
                rel = f"{CLASSES[lab]}/{split}-{i:05d}.png"  # no "_": BloodMNIST has no PBC sub-type prefix
                Image.fromarray(img).save(tmp / "images" / rel, optimize=False)
                md5 = hashlib.md5(img.tobytes()).hexdigest()
                rows.append({"path": rel, "label": CLASSES[lab], "subtype": "?", "group": md5, "split": split})
        import pandas as pd

        m = pd.DataFrame(rows)
        moved = mixed = 0
        for _, g in m.groupby("group"):
            if len(g) < 2:
                continue
            if g["label"].nunique() > 1:
                m.loc[g.index, "split"] = EXCLUDED
                mixed += len(g)
            elif g["split"].nunique() > 1:
                keep = min(g["split"], key=_SPLIT_RANK.__getitem__)
                drop = g.index[g["split"] != keep]
                m.loc[drop, "split"] = EXCLUDED
                moved += len(drop)
        save_manifest(m, tmp / BLOODMNIST_MANIFEST)
        counts = {s: int((m["split"] == s).sum()) for s in ("train", "val", "test")}
        summary = {"zip": npz.name, "md5": bloodmnist_md5(size), "size": int(size), "n_images": int(len(m)),
                   "official_split": {s: int(len(a[1])) for s, a in arrays.items()}, "counts": counts,
                   "excluded_crossing_duplicates": int(moved), "excluded_mixed_label": int(mixed)}
        if moved or mixed:
            log.warning("BloodMNIST %d px: %d duplicate image(s) that the official split puts beside a copy in "
                        "another split, and %d with two labels, are left out", size, moved, mixed)
        (tmp / COMPLETE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return out / "images", out / BLOODMNIST_MANIFEST
