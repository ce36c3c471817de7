"""Tests of helpers.data: discovery, listing, scanning, duplicates, fingerprints, load_split.

Real-data tests run when ``$BLOODCELLS_DATA_DIR`` points at the real PBC data (not the synthetic
stand-in that conftest.py generates) and are skipped with a reason otherwise.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from badinputs import helpers_log, log_lines, make_layout, snapshot  # noqa: F401  (fixture)
from PIL import Image
from synthetic import make_synthetic_pbc

from helpers import CLASSES, data
from helpers.config import ConfigError
from helpers.data import (
    DataNotFoundError,
    SplitData,
    class_counts,
    data_fingerprint,
    duplicate_groups,
    duplicates_table,
    find_dataset_root,
    list_files,
    load_split,
    locate_data,
    scan_dataset,
    scan_files,
    subtype_of,
)
from helpers.io import file_digest
from helpers.split import EXCLUDED, SPLITS, load_manifest, make_split, manifest_text, save_manifest, split_by_rule

_DATA = os.environ.get("BLOODCELLS_DATA_DIR")
REAL = bool(_DATA) and not os.environ.get("BLOODCELLS_SYNTHETIC_DATA") and Path(_DATA).is_dir()
real_only = pytest.mark.skipif(not REAL, reason="needs the real PBC data: set BLOODCELLS_DATA_DIR to "
                                                "the pbc_160px folder (unset or missing here; synthetic data used)")
ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "src" / "helpers" / "splits" / "pbc_split.csv"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A synthetic PBC dataset (12 per class) with two byte-identical pairs: one within ig, one across
    eosinophil/neutrophil (like the real data)."""
    root = make_synthetic_pbc(tmp_path_factory.mktemp("synth"), n_per_class=12, size=40)
    d = root / "PBC_dataset_normal_DIB"
    shutil.copyfile(d / "ig" / "MY_1000.jpg", d / "ig" / "MY_2000.jpg")
    shutil.copyfile(d / "eosinophil" / "EO_1003.jpg", d / "neutrophil" / "SNE_2003.jpg")
    return root


# ------------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrappers", [(), ("PBC_dataset_normal_DIB",), ("x", "PBC_dataset_normal_DIB")],
                         ids=["0 levels", "1 level", "2 levels"])
def test_find_dataset_root_nesting(tmp_path, wrappers):
    d = make_layout(tmp_path, wrappers=wrappers, n_per_class=1)
    assert find_dataset_root(tmp_path) == d


def test_mendeley_layout(tmp_path):
    # the Mendeley zip unpacks to PBC_dataset_normal_DIB/<class>/ (plus a licence at top level)
    d = make_layout(tmp_path / "download", wrappers=("PBC_dataset_normal_DIB",), n_per_class=1)
    (tmp_path / "download" / "LICENSE.txt").write_text("CC BY 4.0")
    assert find_dataset_root(tmp_path / "download") == d


def test_kaggle_layout(tmp_path):
    # Kaggle copies add a doubled folder: /kaggle/input/<slug>/PBC_dataset_normal_DIB/PBC_dataset_normal_DIB/<class>
    slug = tmp_path / "input" / "blood-cells-pbc"
    d = make_layout(slug, wrappers=("PBC_dataset_normal_DIB", "PBC_dataset_normal_DIB"), n_per_class=1)
    assert find_dataset_root(slug) == d
    assert find_dataset_root(tmp_path / "input") == d  # searched from /kaggle/input itself: 3 levels


def test_kaggle_inputs_are_candidates(tmp_path, monkeypatch):
    from helpers import config

    slug = tmp_path / "input" / "pbc"
    d = make_layout(slug, wrappers=("bloodcells_dataset",), n_per_class=1)
    (tmp_path / "input" / "other-dataset").mkdir()
    monkeypatch.delenv("BLOODCELLS_DATA_DIR", raising=False)
    monkeypatch.setattr(config, "KAGGLE_INPUT", tmp_path / "input")
    assert locate_data() == d


def test_most_complete_folder_wins(tmp_path):
    make_layout(tmp_path / "a_partial", classes=CLASSES[:3], n_per_class=1)
    full = make_layout(tmp_path / "b_full", n_per_class=1)
    assert find_dataset_root(tmp_path) == full


def test_missing_classes_named(tmp_path):
    make_layout(tmp_path, classes=[c for c in CLASSES if c not in ("ig", "platelet")], n_per_class=1)
    with pytest.raises(ConfigError, match=r"lacks class folder\(s\) \['ig', 'platelet'\]"):
        find_dataset_root(tmp_path)


def test_locate_data_explicit_folder_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv(data.PBC_URL_ENV, "http://never-used.invalid/x.zip")
    with pytest.raises(DataNotFoundError, match=r"(?s)does not exist.*came from parameter DATA_DIR.*Mendeley Data"):
        locate_data(tmp_path / "typo")


def test_no_data_anywhere_and_the_download_fails(tmp_path, monkeypatch):
    """Nothing configured: the download is tried (here from a closed loopback port, never the real host)
    and its failure ends in the instructions."""
    import socket

    from helpers import config

    with socket.socket() as s:  # a free port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("BLOODCELLS_DATA_DIR", raising=False)
    monkeypatch.setenv(data.PBC_URL_ENV, f"http://127.0.0.1:{port}/PBC.zip")
    monkeypatch.delenv(data.PBC_SHA256_ENV, raising=False)
    monkeypatch.setattr(config, "KAGGLE_INPUT", tmp_path / "none")
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    with pytest.raises(DataNotFoundError, match=r"(?s)No PBC dataset was found.*BLOODCELLS_DATA_DIR.*/kaggle/input"):
        locate_data()


# ------------------------------------------------------------------------------------------------
# listing and scanning
# ------------------------------------------------------------------------------------------------
def test_subtype_of():
    assert subtype_of("SNE_123.jpg") == "SNE"
    assert subtype_of("neutrophil/bne_1.jpg") == "BNE"
    assert subtype_of("PLATELET_9.png") == "PLATELET"
    assert subtype_of("noprefix.jpg") == "?"


def test_list_files_is_sorted_and_independent_of_creation_order(tmp_path):
    names = ["b_2.jpg", "A_10.jpg", "a_1.jpg", "c.JPEG", "z.png"]
    for folder, order in (("one", names), ("two", names[::-1])):
        for c in CLASSES:
            (tmp_path / folder / c).mkdir(parents=True)
            for n in order:
                (tmp_path / folder / c / n).write_bytes(b"x")
    a, b = list_files(tmp_path / "one"), list_files(tmp_path / "two")
    assert a.paths == b.paths and a.labels == b.labels
    assert a.paths == sorted(a.paths) and len(a.paths) == 5 * len(CLASSES)
    assert a.labels[:5] == ["basophil"] * 5


def test_scan_files_facts(synth):
    d = synth / "PBC_dataset_normal_DIB"
    fl = list_files(d)
    res = scan_files(d, fl.paths, fl.labels, progress=False)
    f = res.files
    assert list(f.columns[:3]) == ["path", "label", "subtype"]
    assert {"bytes", "md5", "width", "height", "mode", "format"} <= set(f.columns)
    assert len(f) == 12 * len(CLASSES) + 2 and res.skipped.empty
    assert f[["bytes", "width", "height"]].dtypes.eq("int64").all()
    row = f[f["path"] == "basophil/BA_1000.jpg"].iloc[0]
    assert (row["width"], row["height"], row["mode"], row["format"]) == (40, 40, "RGB", "JPEG")
    assert row["md5"] == hashlib.md5((d / row["path"]).read_bytes()).hexdigest()
    assert row["bytes"] == (d / row["path"]).stat().st_size and row["subtype"] == "BA"
    assert list(f["path"]) == fl.paths  # order kept


def test_scan_files_empty_and_mismatched():
    res = scan_files(Path("."), [], [], progress=False)
    assert res.files.empty and res.skipped.empty
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        scan_files(Path("."), ["a", "b"], ["ig"], progress=False)


def test_scan_dataset_summary_and_counts(synth):
    res = scan_dataset(synth, progress=False)
    assert res.root.name == "PBC_dataset_normal_DIB"
    assert res.summary().startswith(f"{12 * 8 + 2} usable images in ")
    counts = class_counts(res.files)
    assert list(counts.index) == list(CLASSES)
    assert counts["ig"] == 13 and counts["neutrophil"] == 13 and counts["basophil"] == 12


# ------------------------------------------------------------------------------------------------
# duplicates and fingerprints
# ------------------------------------------------------------------------------------------------
def test_duplicates_found_including_cross_class_pair(synth):
    res = scan_dataset(synth, progress=False)
    groups = duplicate_groups(res.files)
    assert groups == [["eosinophil/EO_1003.jpg", "neutrophil/SNE_2003.jpg"], ["ig/MY_1000.jpg", "ig/MY_2000.jpg"]]
    t = duplicates_table(res.files)
    assert list(t.columns) == ["group", "path", "label", "cross_class"]
    assert t.groupby("group")["cross_class"].first().tolist() == [True, False]


def test_duplicate_groups_ordering_and_empty():
    f = pd.DataFrame({"path": ["c", "a", "b", "d", "e", "f"], "md5": ["x", "y", "x", "y", "y", "z"]})
    assert duplicate_groups(f) == [["a", "d", "e"], ["b", "c"]]  # largest first, then by first path
    assert duplicates_table(f.iloc[[0, 5]].assign(label="ig")).empty


def test_fingerprint_changes_when_one_file_changes(tmp_path):
    make_layout(tmp_path, n_per_class=2)
    before = scan_dataset(tmp_path, progress=False)
    fp = data_fingerprint(before.files)
    assert data_fingerprint(scan_dataset(tmp_path, progress=False).files) == fp  # stable
    assert data_fingerprint(before.files.iloc[::-1]) == fp  # order-free
    target = tmp_path / "PBC_dataset_normal_DIB" / "ig" / "IG_1001.jpg"
    arr = np.asarray(Image.open(target)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(target, quality=95)
    after = scan_dataset(tmp_path, progress=False)
    assert data_fingerprint(after.files) != fp
    renamed = before.files.assign(path=before.files["path"].str.replace("IG_1001", "IG_1999"))
    assert data_fingerprint(renamed) != fp


# ------------------------------------------------------------------------------------------------
# load_split on generated data
# ------------------------------------------------------------------------------------------------
def test_load_split_fresh_split_on_synthetic(synth, helpers_log):
    before = snapshot(synth)
    sd = load_split(synth, progress=False)
    assert snapshot(synth) == before  # nothing written into the data folder
    assert isinstance(sd, SplitData) and sd.manifest_path is None  # the split rule, no manifest file
    assert "eosinophil/EO_1003.jpg" not in set(sd.files["path"])  # cross-class pair excluded
    assert "neutrophil/SNE_2003.jpg" not in set(sd.files["path"])
    assert len(sd.files) == 12 * 8 + 2 - 2
    ig = sd.files[sd.files["path"].isin(["ig/MY_1000.jpg", "ig/MY_2000.jpg"])]
    assert ig["split"].nunique() == 1
    for s in SPLITS:
        paths, labels = sd.paths(s), sd.labels(s)
        assert len(paths) == len(labels) > 0 and labels.dtype == np.int32
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
        assert [CLASSES[i] for i in labels] == [Path(p).parent.name for p in paths]
        assert sd.subset(s)["split"].eq(s).all()
    prov = sd.provenance()
    assert set(prov) == {"dataset", "classes", "root_name", "data_fingerprint", "split_fingerprint", "split_rule",
                         "max_per_class", "skipped_files", "counts", "images_on_disk", "manifest_check"}
    assert prov["dataset"] == "pbc" and prov["classes"] == list(CLASSES)
    assert prov["manifest_check"] == {"listed_in_both": 0, "agree": 0, "disagree": 0}  # other data
    assert prov["images_on_disk"] == 12 * 8 + 2
    assert sum(prov["counts"].values()) == len(sd.files) and prov["skipped_files"] == 0
    assert sd.split_fingerprint in sd.summary() and "; 0 skipped" in sd.summary()
    assert not log_lines(helpers_log, "get another split")
    # deterministic: same fingerprints on a second call
    again = load_split(synth, progress=False)
    assert (again.split_fingerprint, again.data_fingerprint) == (sd.split_fingerprint, sd.data_fingerprint)


def test_load_split_with_own_manifest_leaves_extra_files_out(synth, tmp_path, helpers_log):
    res = scan_dataset(synth, progress=False)
    man = make_split(res.files.iloc[10:])  # the first 10 files are "extra" (like the hold-out)
    mpath = save_manifest(man, tmp_path / "m.csv")
    sd = load_split(synth, manifest=mpath, progress=False)
    assert sd.manifest_path == mpath
    assert not set(res.files["path"].iloc[:10]) & set(sd.files["path"])
    assert len(log_lines(helpers_log, "10 image(s) on disk are not in the split manifest")) == 1
    m = load_manifest(mpath).set_index("path")
    assert (sd.files["split"].values == m.loc[sd.files["path"], "split"].values).all()


def test_load_split_manifest_label_disagreement(synth, tmp_path):
    res = scan_dataset(synth, progress=False)
    man = make_split(res.files)
    man.loc[man["path"] == "basophil/BA_1001.jpg", "label"] = "platelet"
    mpath = save_manifest(man, tmp_path / "m.csv")
    with pytest.raises(ValueError, match=r"sit in a different class folder than the manifest says \(e\.g\. "
                                         r"basophil/BA_1001\.jpg\)"):
        load_split(synth, manifest=mpath, progress=False)


def test_load_split_cap(synth):
    sd = load_split(synth, max_per_class=2, progress=False)
    assert sd.max_per_class == 2
    assert sd.files.groupby(["label", "split"]).size().max() <= 2
    assert "capped at 2 per class and split" in sd.summary()
    assert sd.provenance()["max_per_class"] == 2


# ------------------------------------------------------------------------------------------------
# real data (skipped without it)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_listing():
    root = find_dataset_root(_DATA)
    fl = list_files(root)
    md5 = [file_digest(root / p, "md5") for p in fl.paths]
    return root, pd.DataFrame({"path": fl.paths, "label": fl.labels,
                               "subtype": [subtype_of(p) for p in fl.paths], "md5": md5})


@real_only
def test_real_data_reproduces_committed_manifest(real_listing):
    """The split rule over every file of the real data == src/helpers/splits/pbc_split.csv, byte for byte.

    (The split needs only path, label, sub-type and the bytes' md5, so the files are hashed rather than
    decoded; that a full scan skips none of them is checked by the opt-in full-scan test below.)"""
    _, files = real_listing
    assert len(files) == 15_382
    assert manifest_text(split_by_rule(files)) == COMMITTED.read_text()


@real_only
def test_real_data_duplicates(real_listing):
    _, files = real_listing
    groups = duplicate_groups(files)
    assert len(groups) == 17
    t = duplicates_table(files)
    cross = t[t["cross_class"]]
    assert cross["group"].nunique() == 1
    assert sorted(cross["label"]) == ["eosinophil", "neutrophil"]
    man = load_manifest(COMMITTED)
    assert sorted(man.loc[man["split"] == EXCLUDED, "path"]) == sorted(cross["path"])


@real_only
def test_real_load_split_follows_committed_manifest():
    sd = load_split(_DATA, max_per_class=3, progress=False)
    assert sd.manifest_path is None and sd.on_disk == 15_382
    assert sd.check == {"listed_in_both": 15_382, "agree": 15_382, "disagree": 0}
    m = load_manifest(COMMITTED).set_index("path")
    assert (sd.files["split"].values == m.loc[sd.files["path"], "split"].values).all()
    assert (sd.files["label"].values == m.loc[sd.files["path"], "label"].values).all()
    assert sd.files.groupby(["label", "split"]).size().tolist() == [3] * 24
    assert sd.skipped.empty


@pytest.mark.skipif(not (REAL and os.environ.get("BLOODCELLS_TEST_FULL_SCAN")),
                    reason="opt-in (≈1 min of CPU): set BLOODCELLS_TEST_FULL_SCAN=1 with the real data")
def test_real_full_scan_and_load_split_match_manifest():
    res = scan_dataset(_DATA, progress=False)
    assert len(res.files) == 15_382 and res.skipped.empty and not res.ignored
    assert manifest_text(split_by_rule(res.files)) == COMMITTED.read_text()
    sd = load_split(_DATA, progress=False)
    man = load_manifest(COMMITTED)
    used = man[man["split"] != EXCLUDED]
    assert list(sd.files["path"]) == list(used["path"]) and list(sd.files["split"]) == list(used["split"])


def test_load_split_superset_keeps_every_shared_image_in_its_split(synth, tmp_path):
    """A fuller copy of the data (like the 17,092-image download) uses every image and moves none."""
    big = tmp_path / "big"
    shutil.copytree(synth, big)
    for i in range(5):  # new, distinct images in one class folder
        Image.new("RGB", (40, 40), (10 * i, 200, 30)).save(big / "PBC_dataset_normal_DIB" / "ig" / f"MY_9{i}.jpg"
                                                             if (big / "PBC_dataset_normal_DIB").is_dir()
                                                             else big / "ig" / f"MY_9{i}.jpg")
    small, full = load_split(synth, progress=False), load_split(big, progress=False)
    assert full.on_disk == small.on_disk + 5 and len(full.files) == len(small.files) + 5
    both = small.files[["path", "split"]].merge(full.files[["path", "split"]], on="path")
    assert len(both) == len(small.files) and (both["split_x"] == both["split_y"]).all()


def test_load_split_counts_disagreements_with_the_committed_manifest(synth, tmp_path, monkeypatch, helpers_log):
    from helpers import config

    sd = load_split(synth, progress=False)
    man = sd.files[["path", "label", "subtype", "split"]].assign(group="")
    flip = man.index[0]
    man.loc[flip, "split"] = "test" if man.loc[flip, "split"] != "test" else "train"
    save_manifest(man, tmp_path / "splits" / "pbc_split.csv")
    monkeypatch.setattr(config, "splits_dir", lambda: tmp_path / "splits")
    again = load_split(synth, progress=False)
    assert again.check == {"listed_in_both": len(man), "agree": len(man) - 1, "disagree": 1}
    assert len(log_lines(helpers_log, "get another split from the rule")) == 1
    assert list(again.files["split"]) == list(sd.files["split"])  # the rule decides; the manifest only checks
