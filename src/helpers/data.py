"""Find, scan and describe a PBC-style dataset.

The PBC release (Acevedo et al. 2020) is a folder per class::

    <root>/[one or two wrapper folders]/PBC_dataset_normal_DIB/<class>/<file>.jpg

:func:`find_dataset_root` locates the folder that holds the class folders, whatever
the wrapper (Mendeley zip, Kaggle copy, a reader's own copy). :func:`scan_files`
opens every image once, so that unreadable files are found *here*, with a clear log
line, and never deep inside TensorFlow during training.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import CLASSES, class_order
from .config import CLASSES_ENV, ConfigError, classes_from_env, data_dir_candidates, positive_int
from .io import text_digest

log = logging.getLogger("helpers.data")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif"}
# The formats tf.io.decode_image reads (MPO is a JPEG with extra preview frames). Files in other
# formats (TIFF) are skipped by the scan; the predict command converts them with Pillow instead.
TF_NATIVE_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF"}
# Pixel modes seen in practice that TensorFlow decodes to correct 8-bit RGB (CMYK JPEGs and
# 16-bit PNGs included). Informational: the scan asks TensorFlow itself (see _inspect).
TF_NATIVE_MODES = {"RGB", "L", "RGBA", "LA", "P", "PA", "1", "CMYK", "I;16", "I;16B", "I"}
# Folders never searched for class folders: hidden ones and the resource forks macOS adds to zips.
SKIP_DIRS = {"__MACOSX"}


class DataNotFoundError(FileNotFoundError):
    """No usable PBC-style dataset was found; the message says what to do."""


def subtype_of(filename: str) -> str:
    """Finer label from the PBC file-name prefix: ``SNE_123.jpg`` → ``SNE``."""
    stem = Path(filename).stem
    return stem.split("_", 1)[0].upper() if "_" in stem else "?"


def _class_dirs(folder: Path, classes: Sequence[str]) -> set[str]:
    try:
        return {p.name for p in folder.iterdir() if p.is_dir() and p.name in classes}
    except OSError:
        return set()


def _usable_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path, or a :class:`DataNotFoundError` saying why it cannot hold a dataset."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataNotFoundError(f"The data folder {root} does not exist. Check the spelling of DATA_DIR / "
                                "$BLOODCELLS_DATA_DIR.")
    if not root.is_dir():
        raise DataNotFoundError(f"The data folder {root} is a file, not a folder. Unzip it and point DATA_DIR / "
                                "$BLOODCELLS_DATA_DIR at the unzipped folder.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataNotFoundError(f"The data folder {root} is not readable. Check its permissions "
                                f"(e.g. chmod -R u+rX {root}).")
    return root


def find_dataset_root(root: str | os.PathLike, classes: Sequence[str] = CLASSES, depth: int = 3) -> Path:
    """The folder under ``root`` (at most ``depth`` levels down) that holds the class folders.

    Raises :class:`DataNotFoundError` when ``root`` does not exist, is not readable or
    holds no class folders, and :class:`ConfigError` when some classes are missing.
    """
    root = _usable_root(root)
    best: tuple[int, Path] | None = None
    frontier = [root]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for folder in frontier:
            found = _class_dirs(folder, classes)
            if found and (best is None or len(found) > best[0]):
                best = (len(found), folder)
            try:
                nxt.extend(sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS))
            except OSError:
                continue
        if best and best[0] == len(classes):
            break
        frontier = nxt
    if best is None:
        raise DataNotFoundError(
            f"No class folders ({', '.join(classes)}) were found in {root} or up to {depth} levels below it. "
            "Point DATA_DIR / $BLOODCELLS_DATA_DIR at the unzipped PBC dataset (the folder that contains "
            "PBC_dataset_normal_DIB).")
    n, folder = best
    if n < len(classes):
        missing = sorted(set(classes) - _class_dirs(folder, classes))
        raise ConfigError(f"The dataset at {folder} lacks class folder(s) {missing}. Every one of the "
                          f"{len(classes)} classes is needed; is the download complete?")
    return folder


def _image_subdirs(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder`` that hold at least one image file directly."""
    out = []
    try:
        subs = sorted(p for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS)
    except OSError:
        return out
    for sub in subs:
        try:
            if any(f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") for f in sub.iterdir()):
                out.append(sub.name)
        except OSError:
            continue
    return out


def find_classes(root: str | os.PathLike, classes: Sequence[str] | None = None,
                 depth: int = 3) -> tuple[Path, tuple[str, ...]]:
    """``(the folder that holds the class folders, the class names)`` of a dataset under ``root``.

    ``classes`` given: those folders (:func:`find_dataset_root`). ``None``: PBC's eight classes when their
    folders are there (a PBC copy missing one of them is an error, not a smaller dataset); otherwise the
    classes are the dataset's own — the nearest folder (breadth-first, at most ``depth`` levels down) with at
    least two sub-folders holding images, each such sub-folder one class, in :func:`helpers.class_order`.
    """
    if classes is not None:
        classes = tuple(classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ConfigError(f"CLASSES (or ${CLASSES_ENV}) must name at least two distinct class folders, "
                              f"got {list(classes)}")
        return find_dataset_root(root, classes, depth), classes
    top = _usable_root(root)  # a missing or unreadable folder is that error, not "no classes"
    try:
        return find_dataset_root(top, CLASSES, depth), CLASSES
    except DataNotFoundError:
        pass  # no PBC class folder anywhere: the dataset's own classes
    frontier = [top]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for folder in frontier:
            found = _image_subdirs(folder)
            if len(found) >= 2:
                log.info("classes from the dataset's folders: %s", ", ".join(class_order(found)))
                return folder, tuple(class_order(found))
            try:
                nxt.extend(sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS))
            except OSError:
                continue
        frontier = nxt
    raise DataNotFoundError(
        f"No class folders were found in {root} or up to {depth} levels below it: neither PBC's "
        f"({', '.join(CLASSES)}) nor at least two folders of images of a dataset's own classes. Point DATA_DIR / "
        "$BLOODCELLS_DATA_DIR at the folder that contains one folder of images per class.")


@dataclass
class FileList:
    """Candidate image files of a dataset, before they are opened."""

    root: Path
    paths: list[str]            # relative POSIX paths, e.g. "basophil/BA_1.jpg"
    labels: list[str]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def list_files(root: Path, classes: Sequence[str] = CLASSES) -> FileList:
    """List candidate image files in the class folders of ``root`` (sorted, so order never depends
    on the file system). Unknown folders, hidden files and non-image extensions are ignored and logged.
    """
    root = Path(root)
    paths: list[str] = []
    labels: list[str] = []
    ignored: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir() and entry.name not in classes and not entry.name.startswith(".") \
                and entry.name not in SKIP_DIRS:
            ignored.append((entry.name + "/", "not one of the classes"))
    for cls in classes:
        cdir = root / cls
        for f in sorted(cdir.rglob("*"), key=lambda p: p.as_posix()):
            rel = f.relative_to(root).as_posix()
            if f.is_dir():
                continue
            if f.name.startswith("."):
                ignored.append((rel, "hidden file"))
            elif f.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append((rel, f"not an image extension ({f.suffix or 'none'})"))
            else:
                paths.append(rel)
                labels.append(cls)
    for rel, why in ignored:
        log.info("ignored %s: %s", rel, why)
    return FileList(root=root, paths=paths, labels=labels, ignored=ignored)


def _tf_decode_error(data: bytes) -> str | None:
    """Why the training pipeline (``tf.io.decode_image``) cannot decode ``data``, or None if it can.

    Pillow is more forgiving than TensorFlow (e.g. a PNG or BMP missing its last bytes), so
    the scan asks the pipeline's own decoder: a file that passes never fails during training.
    """
    import tensorflow as tf

    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except Exception as e:  # tf.errors.OpError, in several sub-types
        msg = getattr(e, "message", None) or str(e)
        return msg.split("}}")[-1].strip().splitlines()[0] if msg else type(e).__name__
    return None


def _inspect(path: Path) -> dict:
    """Open one image fully (Pillow, then TensorFlow's decoder); return its facts or an ``error``."""
    from PIL import Image, UnidentifiedImageError

    out: dict = {"bytes": None, "md5": None, "width": None, "height": None, "mode": None, "format": None,
                 "error": None}
    try:
        data = path.read_bytes()
    except OSError as e:
        out["error"] = f"cannot read file ({e.strerror})"
        return out
    out["bytes"] = len(data)
    out["md5"] = hashlib.md5(data).hexdigest()
    if not data:
        out["error"] = "empty file (0 bytes)"
        return out
    try:
        import io

        with Image.open(io.BytesIO(data)) as im:
            out.update(width=im.width, height=im.height, mode=im.mode, format=im.format)
            im.load()  # decodes all pixels: catches truncated and corrupt files
    except UnidentifiedImageError:
        out["error"] = "not an image (Pillow cannot identify it)"
    except Image.DecompressionBombError as e:
        out["error"] = f"image too large ({e}); resize it below {Image.MAX_IMAGE_PIXELS} pixels"
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        out["error"] = f"corrupt or truncated image ({e})"
    except Exception as e:  # Pillow raises odd types on malformed files; a scan never stops for one file
        out["error"] = f"corrupt image ({type(e).__name__}: {e})"
    if out["error"] is None and out["format"] not in TF_NATIVE_FORMATS:
        out["error"] = (f"{out['format']} image is not supported by the training pipeline (TensorFlow reads "
                        "JPEG, PNG, BMP and GIF); convert it to an 8-bit RGB JPEG or PNG")
    if out["error"] is None:
        why = _tf_decode_error(data)
        if why:
            out["error"] = (f"the training pipeline (TensorFlow) cannot decode this {out['format']} file ({why}); "
                            "re-save it as an 8-bit RGB JPEG or PNG")
    return out


@dataclass
class ScanResult:
    """Every usable image (``files``) and every skipped one with its reason (``skipped``)."""

    root: Path
    files: pd.DataFrame
    skipped: pd.DataFrame
    ignored: list[tuple[str, str]]

    def summary(self) -> str:
        counts = self.files["label"].value_counts().reindex(class_order(self.files["label"]), fill_value=0)
        parts = ", ".join(f"{c} {n}" for c, n in counts.items())
        return (f"{len(self.files)} usable images in {self.root.name}/ ({parts}); "
                f"{len(self.skipped)} skipped, {len(self.ignored)} ignored")


def scan_files(root: Path, paths: Sequence[str], labels: Sequence[str], *, progress: bool = True,
               workers: int = 4) -> ScanResult:
    """Open every listed image once (threads; Pillow releases the GIL while decoding).

    Usable files get size, mode, byte md5 and sub-type; unusable ones go to ``skipped``
    with one logged line each. Never raises for a bad file.
    """
    from tqdm import tqdm  # plain text bar: works in notebooks without ipywidgets

    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    root = Path(root)
    if len(paths):
        import tensorflow  # noqa: F401  (imported once here, not by every worker thread)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        facts = list(tqdm(pool.map(_inspect, (root / p for p in paths)), total=len(paths),
                          desc="Checking images", unit="img", disable=not progress, mininterval=2))
    df = pd.DataFrame(facts, columns=["bytes", "md5", "width", "height", "mode", "format", "error"])
    df.insert(0, "path", list(paths))
    df.insert(1, "label", list(labels))
    df.insert(2, "subtype", [subtype_of(p) for p in paths])
    bad = df["error"].notna()
    skipped = df.loc[bad, ["path", "label", "error"]].reset_index(drop=True)
    for row in skipped.itertuples():
        log.warning("skipped %s: %s", row.path, row.error)
    files = df.loc[~bad].drop(columns="error").reset_index(drop=True)
    files[["bytes", "width", "height"]] = files[["bytes", "width", "height"]].astype("int64")
    return ScanResult(root=root, files=files, skipped=skipped, ignored=[])


def scan_dataset(root: str | os.PathLike, classes: Sequence[str] = CLASSES, *, progress: bool = True) -> ScanResult:
    """Find the class folders under ``root`` and scan every image in them."""
    droot = find_dataset_root(root, classes)
    fl = list_files(droot, classes)
    res = scan_files(droot, fl.paths, fl.labels, progress=progress)
    res.ignored = fl.ignored
    if res.files.empty:
        raise DataNotFoundError(f"No usable images in {droot}: {len(res.skipped)} files were skipped "
                                f"as unreadable. Re-download or re-extract the dataset.")
    empty = [c for c in classes if not (res.files["label"] == c).any()]
    if empty:
        log.warning("no usable images in the class folder(s) %s of %s", empty, droot)
    return res


def duplicate_groups(files: pd.DataFrame, key: str = "md5") -> list[list[str]]:
    """Groups (sorted lists of paths) of files with identical bytes, largest first then by path."""
    groups = [sorted(g["path"]) for _, g in files.groupby(key) if len(g) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def duplicates_table(files: pd.DataFrame) -> pd.DataFrame:
    """One row per duplicate file: its group number, label, and whether the group mixes classes."""
    rows = []
    lab = dict(zip(files["path"], files["label"]))
    for i, g in enumerate(duplicate_groups(files), 1):
        mixed = len({lab[p] for p in g}) > 1
        rows.extend({"group": i, "path": p, "label": lab[p], "cross_class": mixed} for p in g)
    return pd.DataFrame(rows, columns=["group", "path", "label", "cross_class"])


def data_fingerprint(files: pd.DataFrame) -> str:
    """Short sha256 over the sorted (path, md5) pairs: changes when any file changes."""
    lines = sorted(f"{p}\t{m}" for p, m in zip(files["path"], files["md5"]))
    return text_digest("\n".join(lines))


def class_counts(files: pd.DataFrame, by: str | None = None,
                 classes: Sequence[str] | None = None) -> pd.DataFrame | pd.Series:
    """Images per class (optionally per ``by`` column, e.g. ``split``), in ``classes`` order (default: the
    classes present, :func:`helpers.class_order`)."""
    order = list(classes) if classes is not None else class_order(files["label"])
    if by is None:
        return files["label"].value_counts().reindex(order, fill_value=0)
    return pd.crosstab(files["label"], files[by]).reindex(order, fill_value=0)


# --------------------------------------------------------------------------------------------
# Locating the data: parameter → environment → Kaggle input → download
# --------------------------------------------------------------------------------------------
PBC_DOI = "10.17632/snkd93bnjr.1"
PBC_URL_ENV = "BLOODCELLS_PBC_URL"
PBC_SHA256_ENV = "BLOODCELLS_PBC_SHA256"

HOW_TO_GET_DATA = f"""\
No PBC dataset was found, and the automatic download did not succeed. Do one of these, then run again:
  1. Download "PBC_dataset_normal_DIB" from Mendeley Data (doi:{PBC_DOI}, CC BY 4.0) or its Kaggle
     mirror (unclesamulus/blood-cells-image-dataset), unzip it anywhere, and set DATA_DIR (notebook
     parameter) or the environment variable BLOODCELLS_DATA_DIR to that folder.
  2. On Kaggle: add the dataset unclesamulus/blood-cells-image-dataset as an input of the notebook;
     it is found under /kaggle/input.
  3. With internet and nothing configured, the official zip is downloaded from Mendeley Data into the
     output folder and verified by its content (17,092 images, the published count of every class);
     {PBC_URL_ENV} / {PBC_SHA256_ENV} point it at another copy / pin its sha256."""


def download_pbc(dest: Path, url: str | None = None, sha256: str | None = None) -> Path:
    """The PBC release downloaded into ``dest`` and verified (:func:`helpers.download.fetch_pbc`); its root."""
    from .download import DownloadError, fetch_pbc

    try:
        root, _summary = fetch_pbc(dest, url=url, sha256=sha256)
    except DownloadError as e:
        raise DataNotFoundError(f"{e}\n\n{HOW_TO_GET_DATA}") from None
    return root


def _download_provenance(root: Path) -> dict:
    """``{"download": {zip sha256, counts, url}}`` when ``root`` was unpacked by :func:`download_pbc`."""
    from .download import read_complete

    for folder in list(root.parents)[:3]:
        done = read_complete(folder)
        if done is not None:
            return {"download": {k: done.get(k) for k in ("zip", "zip_sha256", "n_images", "url")}}
    return {}


def locate_data(data_dir: str | os.PathLike | None = None, classes: Sequence[str] | None = CLASSES) -> Path:
    """The dataset root to use: ``data_dir`` → ``$BLOODCELLS_DATA_DIR`` → Kaggle inputs → download.

    An explicitly given folder that is unusable raises at once (a typo should not
    trigger a 250 MB download). Otherwise a clear :class:`DataNotFoundError` says what to do.
    ``classes=None``: the dataset's own classes are accepted too (:func:`find_classes`);
    :func:`locate_classes` returns them.
    """
    return locate_classes(data_dir, classes)[0]


def locate_classes(data_dir: str | os.PathLike | None = None,
                   classes: Sequence[str] | None = None) -> tuple[Path, tuple[str, ...]]:
    """:func:`locate_data` and the dataset's classes (:func:`find_classes`): ``(root, classes)``.

    ``classes`` ``None``: ``$BLOODCELLS_CLASSES`` if set (:func:`helpers.config.classes_from_env`), else found."""
    if classes is None and (classes := classes_from_env()) is not None:
        log.info("classes from $%s: %s", CLASSES_ENV, ", ".join(classes))
    candidates = data_dir_candidates(data_dir)
    explicit = candidates[0][0] in ("parameter DATA_DIR",) or candidates[0][0].startswith("$")
    for i, (source, path) in enumerate(candidates):
        # a dataset's own classes only from a folder the reader named; Kaggle inputs and downloads are PBC
        want = classes if classes is not None or (explicit and i == 0) else CLASSES
        try:
            root, found = find_classes(path, want)
            log.info("using data from %s: %s/", source, root.name)  # the name, not the machine's path
            return root, found
        except DataNotFoundError as e:
            if explicit:
                raise DataNotFoundError(f"{e}\n(The folder came from {source}.)\n\n{HOW_TO_GET_DATA}") from None
            log.info("no data in %s (%s): %s", path, source, e)
    dest = candidates[-1][1]
    download_pbc(dest)
    return find_classes(dest, classes if classes is not None else CLASSES)


# --------------------------------------------------------------------------------------------
# One call for the chapters: locate, apply the committed split, scan
# --------------------------------------------------------------------------------------------
@dataclass
class SplitData:
    """The usable images of a dataset with their split, plus provenance for result records."""

    root: Path
    files: pd.DataFrame          # path, label, subtype, bytes, md5, width, height, mode, format, split
    skipped: pd.DataFrame
    manifest_path: Path | None   # the manifest that defined the split; None when the book's rule did
    split_fingerprint: str
    data_fingerprint: str
    max_per_class: int | None
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): hidden files, other folders
    on_disk: int = 0             # image files found in the class folders
    check: dict = field(default_factory=dict)  # the rule's agreement with the committed manifest
    classes: tuple[str, ...] = CLASSES  # integer label i is classes[i]; PBC's eight unless the dataset has its own
    dataset: str = "pbc"         # "pbc" (class folders), "bloodmnist" (MedMNIST's official split), or "folders"

    def subset(self, split: str) -> pd.DataFrame:
        return self.files[self.files["split"] == split].reset_index(drop=True)

    def paths(self, split: str) -> list[str]:
        """Absolute paths of one split, in path order."""
        return [str(self.root / p) for p in self.subset(split)["path"]]

    def labels(self, split: str):
        """Integer labels (index into :attr:`classes`) of one split."""
        import numpy as np

        idx = {c: i for i, c in enumerate(self.classes)}
        return np.array([idx[c] for c in self.subset(split)["label"]], dtype="int32")

    def provenance(self) -> dict:
        """What a result record stores about the data."""
        from .split import RULE_KEY, SPLITS

        source = {"manifest": self.manifest_path.name} if self.manifest_path else {"split_rule": RULE_KEY}
        return {"dataset": self.dataset, "classes": list(self.classes),
                "root_name": self.root.name, "data_fingerprint": self.data_fingerprint,
                "split_fingerprint": self.split_fingerprint, **source,
                "max_per_class": self.max_per_class, "skipped_files": int(len(self.skipped)),
                "images_on_disk": int(self.on_disk),
                "counts": {s: int((self.files["split"] == s).sum()) for s in SPLITS},
                **({"manifest_check": self.check} if self.check else {}),
                **_download_provenance(self.root)}

    def summary(self) -> str:
        from .split import SPLITS

        parts = ", ".join(f"{s} {int((self.files['split'] == s).sum())}" for s in SPLITS)
        cap = f" (capped at {self.max_per_class} per class and split)" if self.max_per_class else ""
        return (f"{len(self.files)} of the {self.on_disk} images in {self.root.name}; {len(self.skipped)} skipped\n"
                f"{parts}{cap}\nsplit {self.split_fingerprint}, data {self.data_fingerprint}")


def _hash_listing(root: Path, paths: Sequence[str], labels: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(path, label, subtype, md5)`` of every readable file, and the unreadable ones as skipped rows.

    Hashing the bytes is all the split needs (a second, not the half minute a full decode of 15,000
    images takes); only the images that will be used are then decoded by :func:`scan_files`.
    """
    rows, bad = [], []
    for p, lab in zip(paths, labels):
        try:
            data = (root / p).read_bytes()
        except OSError as e:
            bad.append((p, lab, f"cannot read file ({e.strerror})"))
            continue
        if not data:  # all empty files would form one "duplicate group"
            bad.append((p, lab, "empty file (0 bytes)"))
            continue
        rows.append((p, lab, subtype_of(p), hashlib.md5(data).hexdigest()))
    listing = pd.DataFrame(rows, columns=["path", "label", "subtype", "md5"])
    return listing, pd.DataFrame(bad, columns=["path", "label", "error"])


def check_against_manifest(split: pd.DataFrame, manifest: pd.DataFrame) -> dict:
    """How many images both list, and on how many of those their splits agree."""
    both = split.merge(manifest[["path", "split"]], on="path", suffixes=("", "_manifest"))
    agree = int((both["split"] == both["split_manifest"]).sum())
    return {"listed_in_both": int(len(both)), "agree": agree, "disagree": int(len(both) - agree)}


def load_split(data_dir: str | os.PathLike | None = None, *, manifest: str | os.PathLike | None = None,
               max_per_class: int | None = None, seed: int = 42, progress: bool = True,
               classes: Sequence[str] | None = None, dataset: str | None = None) -> SplitData:
    """Locate the data, split it by the book's rule and open every image that will be used.

    The split is :func:`helpers.split.split_by_rule`: a duplicate group's split follows from the group's own
    name alone, so the full 17,092-image download, the 160-px copy and any subset agree on every image they
    share, and every image found is used. The committed manifest (``src/helpers/splits/pbc_split.csv``) is
    a check: on the images it lists, the rule must give its split; a disagreement is logged and counted in
    the records. Pass ``manifest=`` to use a split of your own instead of the rule.

    ``classes``: the class folders to use (their order gives the integer labels); ``None`` takes PBC's eight
    when present, else the dataset's own class folders (:func:`find_classes`), e.g. a laboratory's bone-marrow
    classes. ``dataset`` names the source in the records (default ``"pbc"`` for PBC's classes, else
    ``"folders"``).
    """
    from .config import splits_dir
    from .split import (
        DEFAULT_MANIFEST,
        apply_manifest,
        cap_per_class,
        check_split,
        load_manifest,
        manifest_fingerprint,
        split_by_rule,
    )

    max_per_class = positive_int(max_per_class, "MAX_PER_CLASS", allow_none=True)
    root, classes = locate_classes(data_dir, classes)
    dataset = dataset or ("pbc" if tuple(classes) == CLASSES else "folders")
    fl = list_files(root, classes)
    if not fl.paths:
        raise DataNotFoundError(f"The class folders in {root} hold no image files ({len(fl.ignored)} other "
                                "entries ignored). Point DATA_DIR / $BLOODCELLS_DATA_DIR at the unzipped PBC "
                                "dataset, or re-extract it.")
    listing, unreadable = _hash_listing(root, fl.paths, fl.labels)
    for row in unreadable.itertuples():
        log.warning("skipped %s: %s", row.path, row.error)
    mpath, check = (Path(manifest) if manifest else None), {}
    if mpath is not None:
        if not mpath.is_file():
            raise ConfigError(f"The split manifest {mpath} does not exist. Pass an existing manifest, or "
                              "manifest=None for the book's split rule.")
        m = load_manifest(mpath)
    else:
        m = split_by_rule(listing)
        committed = splits_dir() / DEFAULT_MANIFEST
        if committed.is_file() and dataset == "pbc":
            check = check_against_manifest(m, load_manifest(committed))
            if check["disagree"]:
                log.warning("%d of the %d images listed in %s get another split from the rule here (their "
                            "duplicate groups differ in this copy of the data)", check["disagree"],
                            check["listed_in_both"], committed.name)
    sel = apply_manifest(listing, m, log_missing=max_per_class is None)
    sel = cap_per_class(sel, max_per_class, seed)  # before decoding: only used images are opened
    scan = scan_files(root, list(sel["path"]), list(sel["label"]), progress=progress)
    files = scan.files.assign(split=scan.files["path"].map(sel.set_index("path")["split"]))
    skipped = pd.concat([unreadable, scan.skipped], ignore_index=True)
    name = mpath.name if mpath else "the split rule"
    if files.empty:
        raise DataNotFoundError(f"No usable images for {name} were found in {root} "
                                f"({len(skipped)} skipped). Check DATA_DIR / $BLOODCELLS_DATA_DIR.")
    empty = [c for c in classes if not (files["label"] == c).any()]
    if empty:
        raise ConfigError(f"The class folder(s) {empty} in {root} hold no usable images "
                          f"({len(skipped)} files skipped in all). Every one of the {len(classes)} classes is "
                          "needed; is the download complete?")
    chk = check_split(files)
    if chk.crossing_groups:
        raise ValueError(f"{chk.crossing_groups} group(s) of identical images fall into different splits of "
                         f"{name}; the manifest was made for other data. Use manifest=None for the rule.")
    for split_name in ("train", "val", "test"):
        if not (files["split"] == split_name).any():
            raise DataNotFoundError(f"The {split_name} split is empty ({len(files)} usable images in {root}). "
                                    "Use more images per class (raise MAX_PER_CLASS) or check DATA_DIR.")
    return SplitData(root=root, files=files, skipped=skipped, manifest_path=mpath,
                     split_fingerprint=manifest_fingerprint(m), data_fingerprint=data_fingerprint(files),
                     max_per_class=max_per_class, ignored=fl.ignored, on_disk=len(fl.paths), check=check,
                     classes=tuple(classes), dataset=dataset)


DATASETS = ("pbc", "bloodmnist")
"""The sources a chapter's ``DATASET`` parameter names."""


def load_dataset(dataset: str = "pbc", data_dir: str | os.PathLike | None = None, *, image_size: int = 64,
                 **kw) -> SplitData:
    """The chapters' data, from the ``DATASET`` parameter: :class:`SplitData` either way.

    * ``"pbc"``: class folders (PBC, or a laboratory's own classes) split by the book's rule,
      :func:`load_split`.
    * ``"bloodmnist"``: BloodMNIST (MedMNIST's centre-cropped copy of the same PBC images) at the smallest
      release of at least ``image_size`` px, with its official split, for comparison with the MedMNIST
      benchmarks (:func:`helpers.download.bloodmnist_folders`). ``data_dir``: a folder that already holds the
      ``.npz`` file (read only, MD5-checked); else it is downloaded into the output folder.
    """
    if dataset == "pbc":
        return load_split(data_dir, **kw)
    if dataset != "bloodmnist":
        raise ConfigError(f"DATASET must be one of {', '.join(map(repr, DATASETS))}, not {dataset!r}")
    from .config import output_dir
    from .download import bloodmnist_folders, bloodmnist_size_for

    size = bloodmnist_size_for(image_size)
    dest = output_dir() / "data"
    npz = None
    if data_dir not in (None, ""):
        name = "bloodmnist.npz" if size == 28 else f"bloodmnist_{size}.npz"
        given = Path(data_dir).expanduser() / name
        if not given.is_file():
            raise DataNotFoundError(f"DATA_DIR holds no {name} (BloodMNIST at {size} px). Put the file there, or "
                                    "leave DATA_DIR = None to download it.")
        npz = given  # MD5-checked and only read: the PNG folders go to the output folder
        log.info("BloodMNIST %d px from DATA_DIR (its MD5 is checked before use)", size)
    root, manifest = bloodmnist_folders(size, dest, npz=npz, progress=kw.get("progress", True))
    return load_split(root, manifest=manifest, classes=CLASSES, dataset="bloodmnist", **kw)
