"""The deterministic, duplicate-aware, stratified train/val/test split.

Rules (chapter 1 explains why):

* files with identical bytes form a *group*; a group always lands in one split;
* a group whose files carry *different* labels is excluded (we cannot know the true label);
* :func:`split_by_rule` (the book's split): a keyed hash of the group's first relative path, compared
  with 0.64 and 0.80, gives its split — so a group's split depends on nothing but the group, and the full
  download, a re-encoded copy and any subset agree on every image they share;
* :func:`make_split` (kept for comparison, chapter 1): within each class, groups ordered by a seeded
  hash and cut at 64 % / 80 %, stratified to within one image but dependent on which images are present.

The rule applied to the book's copy is committed as a manifest of relative paths
(``src/helpers/splits/pbc_split.csv``); :func:`helpers.data.load_split` checks every run against it.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .io import atomic_write_text, text_digest

log = logging.getLogger("helpers.split")

SPLITS = ("train", "val", "test")
FRACTIONS = (0.64, 0.16, 0.20)
EXCLUDED = "excluded"
MANIFEST_COLUMNS = ["path", "label", "subtype", "group", "split"]
DEFAULT_MANIFEST = "pbc_split.csv"


def _rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _groups(files: pd.DataFrame, fractions: tuple[float, float, float], dup_key: str):
    """Both splits' common start: ``(manifest columns + group, each file's group key, mixed-label mask)``.

    A group is the files with identical ``dup_key``, named by its smallest path (``group`` is empty for a
    file without duplicates); groups whose files carry different labels are logged and marked.
    """
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    df = files[["path", "label", "subtype", dup_key]].copy()
    first = df.groupby(dup_key)["path"].transform("min")
    size = df.groupby(dup_key)["path"].transform("size")
    df["group"] = first.where(size > 1, "")
    mixed = df.groupby(first)["label"].transform("nunique") > 1
    for path in df.loc[mixed, "path"]:
        log.warning("excluded %s: the same image is filed under two labels", path)
    return df, first, mixed


def make_split(files: pd.DataFrame, seed: int = 42, fractions: tuple[float, float, float] = FRACTIONS,
               dup_key: str = "md5") -> pd.DataFrame:
    """Assign every file of ``files`` (columns ``path``, ``label``, ``subtype``, ``dup_key``) to a split.

    Returns the manifest: one row per file, sorted by path, with ``group`` (first path of
    its duplicate group, empty for unique files) and ``split``.
    """
    df, first, mixed = _groups(files, fractions, dup_key)
    df["_gkey"] = first
    df["split"] = ""
    df.loc[mixed, "split"] = EXCLUDED
    bounds = (fractions[0], fractions[0] + fractions[1])
    for _label, cls in df.loc[~mixed].groupby("label"):
        groups = cls.groupby("_gkey").size()
        order = sorted(groups.index, key=lambda k: _rank(k, seed))
        n = int(groups.sum())
        done = 0
        assign = {}
        for k in order:
            centre = (done + groups[k] / 2) / n
            assign[k] = SPLITS[0] if centre < bounds[0] else SPLITS[1] if centre < bounds[1] else SPLITS[2]
            done += groups[k]
        df.loc[cls.index, "split"] = cls["_gkey"].map(assign)
    return df.sort_values("path")[MANIFEST_COLUMNS].reset_index(drop=True)


RULE_KEY = "bloodcells-split-v1"
"""The key of the split rule's hash; changing it would re-deal every image."""


def rule_value(group_key: str, key: str = RULE_KEY) -> float:
    """A number in [0, 1) that depends only on ``group_key`` (a keyed SHA-256; uniform over many keys)."""
    digest = hashlib.sha256(f"{key}\0{group_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def rule_split_of(group_key: str, fractions: tuple[float, float, float] = FRACTIONS, key: str = RULE_KEY) -> str:
    """The split of a duplicate group named by ``group_key`` (its smallest relative path) under the rule."""
    u = rule_value(group_key, key)
    return SPLITS[0] if u < fractions[0] else SPLITS[1] if u < fractions[0] + fractions[1] else SPLITS[2]


def split_by_rule(files: pd.DataFrame, fractions: tuple[float, float, float] = FRACTIONS,
                  dup_key: str = "md5", key: str = RULE_KEY) -> pd.DataFrame:
    """Assign every file to a split by a rule that looks at nothing but the file's own duplicate group.

    A group (files with identical ``dup_key``) is named by its smallest relative path; a keyed hash of that
    name, compared with 0.64 / 0.80, gives its split. So the full download, a re-encoded copy and any subset
    that keeps groups whole agree on every image they share — unlike :func:`make_split`, whose cut points
    depend on which other images are present. Groups with two different labels are excluded. Returns a
    manifest like :func:`make_split`.
    """
    df, first, mixed = _groups(files, fractions, dup_key)
    df["split"] = [EXCLUDED if m else rule_split_of(g, fractions, key) for g, m in zip(first, mixed)]
    return df.sort_values("path")[MANIFEST_COLUMNS].reset_index(drop=True)


def realised_fractions(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per class: the share of its (non-excluded) images in each split."""
    m = manifest[manifest["split"] != EXCLUDED]
    table = pd.crosstab(m["label"], m["split"], normalize="index")
    return table.reindex(columns=list(SPLITS), fill_value=0.0)


def manifest_text(manifest: pd.DataFrame) -> str:
    """The canonical CSV text of a manifest (sorted by path, LF line ends)."""
    m = manifest[MANIFEST_COLUMNS].sort_values("path")
    buf = io.StringIO()
    m.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """Short sha256 of the manifest's canonical text: the split's identity in result records."""
    return text_digest(manifest_text(manifest))


def save_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the manifest atomically."""
    return atomic_write_text(path, manifest_text(manifest))


def load_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by :func:`save_manifest`."""
    try:
        m = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as e:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise ValueError(f"{path} is not a readable split manifest ({e}). Restore it from git "
                         "(git checkout -- src/helpers/splits/) or pass another manifest.") from e
    missing = set(MANIFEST_COLUMNS) - set(m.columns)
    if missing:
        raise ValueError(f"{path} is not a split manifest (missing columns {sorted(missing)})")
    bad = set(m["split"]) - set(SPLITS) - {EXCLUDED}
    if bad:
        raise ValueError(f"{path}: unknown split names {sorted(bad)}")
    twice = m["path"][m["path"].duplicated()]
    if len(twice):
        raise ValueError(f"{path} lists {len(twice)} path(s) more than once (e.g. {twice.iloc[0]}); "
                         "it was edited by hand. Restore it from git or make a fresh split.")
    return m


@dataclass
class SplitCheck:
    """Facts about a split, all of which :func:`check_split` requires to hold."""

    overlap: int            # files in more than one split
    crossing_groups: int    # duplicate groups spread over more than one split
    max_deviation: float    # worst |count - target| over (class, split), in images


def check_split(assigned: pd.DataFrame, dup_key: str = "md5",
                fractions: tuple[float, float, float] = FRACTIONS) -> SplitCheck:
    """Verify a split on the files actually present (``path``, ``label``, ``split``, ``dup_key``)."""
    used = assigned[assigned["split"].isin(SPLITS)]
    overlap = int((used.groupby("path")["split"].nunique() > 1).sum())
    crossing = int((used.groupby(dup_key)["split"].nunique() > 1).sum()) if dup_key in used else 0
    dev = 0.0
    for _label, cls in used.groupby("label"):
        n = len(cls)
        for s, f in zip(SPLITS, fractions):
            dev = max(dev, abs((cls["split"] == s).sum() - f * n))
    return SplitCheck(overlap=overlap, crossing_groups=crossing, max_deviation=float(dev))


def apply_manifest(files: pd.DataFrame, manifest: pd.DataFrame, log_missing: bool = True) -> pd.DataFrame:
    """Attach each usable file's split from the manifest.

    Files on disk that the manifest does not list (e.g. the hold-out of a full download)
    are left out, and manifest files absent from disk are counted; both are logged.
    """
    m = manifest.set_index("path")
    listed = files["path"].isin(m.index)
    extra = int((~listed).sum())
    if extra and log_missing:
        log.warning("%d image(s) on disk are not in the split manifest and are not used "
                    "(e.g. %s)", extra, files.loc[~listed, "path"].iloc[0])
    out = files.loc[listed].copy()
    out["split"] = out["path"].map(m["split"])
    wrong = out["label"] != out["path"].map(m["label"])
    if wrong.any():
        raise ValueError(f"{int(wrong.sum())} file(s) sit in a different class folder than the manifest says "
                         f"(e.g. {out.loc[wrong, 'path'].iloc[0]}); the data and the manifest disagree. Restore "
                         "the original class folders (re-extract the dataset), or pass another manifest.")
    missing = int((~m.index.isin(files["path"]) & (m["split"] != EXCLUDED)).sum())
    if missing and log_missing:
        log.warning("%d file(s) of the manifest are absent or unusable here", missing)
    return out[out["split"] != EXCLUDED].reset_index(drop=True)


def cap_per_class(assigned: pd.DataFrame, max_per_class: int | None, seed: int = 42) -> pd.DataFrame:
    """Keep at most ``max_per_class`` images of each class in each split (a seeded, stable choice)."""
    from .config import positive_int

    max_per_class = positive_int(max_per_class, "MAX_PER_CLASS", allow_none=True)
    if max_per_class is None:
        return assigned
    key = assigned["path"].map(lambda p: _rank(p, seed))
    ordered = assigned.assign(_k=key).sort_values("_k")
    kept = ordered.groupby(["split", "label"], sort=False).head(int(max_per_class))
    return kept.drop(columns="_k").sort_values("path").reset_index(drop=True)
