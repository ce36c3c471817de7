"""Tests of helpers.split: the deterministic, duplicate-aware, stratified split and its manifest.

Example-based tests first, then property-based tests (hypothesis) over random class sizes,
random duplicate groups and random listing orders.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from badinputs import helpers_log, log_lines  # noqa: F401  (fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import CLASSES
from helpers.config import ConfigError
from helpers.split import (
    EXCLUDED,
    FRACTIONS,
    MANIFEST_COLUMNS,
    SPLITS,
    apply_manifest,
    cap_per_class,
    check_split,
    load_manifest,
    make_split,
    manifest_fingerprint,
    manifest_text,
    save_manifest,
)


def frame(sizes: dict[str, int], dups: list[list[tuple[str, int]]] = ()) -> pd.DataFrame:
    """``sizes[c]`` files per class with unique md5s; each ``dups`` entry makes its (class, index)
    files byte-identical."""
    rows = [{"path": f"{c}/{c[:2].upper()}_{i:04d}.jpg", "label": c, "subtype": c[:2].upper(), "md5": f"{c}-{i}"}
            for c, n in sizes.items() for i in range(n)]
    df = pd.DataFrame(rows)
    for g in dups:
        idx = [df.index[df["path"] == f"{c}/{c[:2].upper()}_{i:04d}.jpg"][0] for c, i in g]
        df.loc[idx, "md5"] = df.loc[idx[0], "md5"]
    return df


def deviation(man: pd.DataFrame) -> dict[str, float]:
    """Worst |count − target| per class, over the splits."""
    used = man[man["split"].isin(SPLITS)]
    return {c: max(abs((g["split"] == s).sum() - f * len(g)) for s, f in zip(SPLITS, FRACTIONS))
            for c, g in used.groupby("label")}


# ------------------------------------------------------------------------------------------------
# make_split
# ------------------------------------------------------------------------------------------------
def test_stratified_within_one_image_per_class():
    sizes = {c: n for c, n in zip(CLASSES, [1, 2, 3, 7, 10, 33, 101, 250])}
    man = make_split(frame(sizes))
    assert list(man.columns) == MANIFEST_COLUMNS
    assert len(man) == sum(sizes.values()) and man["path"].is_unique
    assert max(deviation(man).values()) <= 1
    assert set(man["split"]) == set(SPLITS)
    big = man[man["label"] == "platelet"]["split"].value_counts()
    assert (big["train"], big["val"], big["test"]) == (160, 40, 50)  # 64/16/20 of 250


def test_duplicate_groups_stay_together_and_are_named_by_first_path():
    sizes = {"basophil": 20, "eosinophil": 20}
    dups = [[("basophil", i), ("basophil", i + 1)] for i in range(0, 18, 3)] + [[("eosinophil", 1), ("eosinophil", 5),
                                                                                    ("eosinophil", 9)]]
    df = frame(sizes, dups)
    man = make_split(df).merge(df[["path", "md5"]], on="path")
    assert (man.groupby("md5")["split"].nunique() == 1).all()
    g = man[man["md5"] == "eosinophil-1"]
    assert set(g["group"]) == {"eosinophil/EO_0001.jpg"} and len(g) == 3
    assert (man.loc[man.groupby("md5")["path"].transform("size") == 1, "group"] == "").all()


def test_cross_class_group_is_excluded_and_logged(helpers_log):
    df = frame({"eosinophil": 10, "neutrophil": 10}, [[("eosinophil", 3), ("neutrophil", 7)]])
    man = make_split(df)
    excl = man[man["split"] == EXCLUDED]
    assert sorted(excl["path"]) == ["eosinophil/EO_0003.jpg", "neutrophil/NE_0007.jpg"]
    assert set(excl["group"]) == {"eosinophil/EO_0003.jpg"}
    for p in excl["path"]:
        assert len(log_lines(helpers_log, f"excluded {p}: the same image is filed under two labels")) == 1
    assert (man["split"] != EXCLUDED).sum() == 18


def test_deterministic_and_independent_of_listing_order():
    df = frame({c: 13 for c in CLASSES}, [[("ig", 0), ("ig", 12)], [("basophil", 2), ("monocyte", 2)]])
    ref = manifest_text(make_split(df))
    for seed in range(3):
        shuffled = df.sample(frac=1, random_state=seed).reset_index(drop=True)
        assert manifest_text(make_split(shuffled)) == ref
    assert manifest_text(make_split(df, seed=7)) != ref  # the seed matters


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions must be non-negative and sum to 1"):
        make_split(frame({"ig": 3}), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="fractions must be non-negative"):
        make_split(frame({"ig": 3}), fractions=(1.2, -0.2, 0.0))


# ------------------------------------------------------------------------------------------------
# manifest I/O
# ------------------------------------------------------------------------------------------------
def test_manifest_roundtrip_is_byte_identical(tmp_path):
    man = make_split(frame({c: 9 for c in CLASSES}, [[("ig", 1), ("lymphocyte", 1)]]))
    p1 = save_manifest(man, tmp_path / "a.csv")
    p2 = save_manifest(load_manifest(p1), tmp_path / "b.csv")
    assert p1.read_bytes() == p2.read_bytes()
    assert b"\r\n" not in p1.read_bytes()
    assert p1.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    back = load_manifest(p1)
    pd.testing.assert_frame_equal(back, man.astype(str))
    assert manifest_fingerprint(back) == manifest_fingerprint(man)
    # row order of the frame does not change the text
    assert manifest_text(man.iloc[::-1]) == manifest_text(man)


def test_manifest_fingerprint_changes_with_one_assignment():
    man = make_split(frame({"ig": 10}))
    other = man.copy()
    other.loc[0, "split"] = "test" if other.loc[0, "split"] != "test" else "train"
    assert manifest_fingerprint(other) != manifest_fingerprint(man)


@pytest.mark.parametrize("text,message", [
    ("path,label\na.jpg,ig\n", r"is not a split manifest \(missing columns \['group', 'split', 'subtype'\]\)"),
    ("path,label,subtype,group,split\na.jpg,ig,IG,,holdout\n", r"unknown split names \['holdout'\]"),
    ("path,label,subtype,group,split\na.jpg,ig,IG,,train\na.jpg,ig,IG,,test\n", r"lists 1 path\(s\) more than once"),
    ("", r"is not a readable split manifest .*Restore it from git"),
])
def test_load_manifest_errors(tmp_path, text, message):
    p = tmp_path / "m.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_manifest(p)


def test_load_manifest_binary_garbage(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)))
    with pytest.raises(ValueError, match="split manifest"):
        load_manifest(p)


# ------------------------------------------------------------------------------------------------
# check_split, apply_manifest, cap_per_class
# ------------------------------------------------------------------------------------------------
def test_check_split_clean_and_detects_problems():
    df = frame({"ig": 20, "platelet": 20}, [[("ig", 0), ("ig", 1)]])
    man = make_split(df).merge(df[["path", "md5"]], on="path")
    ok = check_split(man)
    assert (ok.overlap, ok.crossing_groups) == (0, 0) and ok.max_deviation <= 1
    bad = man.copy()
    bad.loc[bad["path"] == "ig/IG_0001.jpg", "split"] = "test" if bad.loc[0, "split"] != "test" else "val"
    bad = pd.concat([bad, bad.iloc[[5]].assign(split="val" if bad.iloc[5]["split"] != "val" else "train")])
    chk = check_split(bad)
    assert chk.crossing_groups >= 1 and chk.overlap == 1
    lopsided = man.assign(split="train")
    assert check_split(lopsided).max_deviation == pytest.approx(0.36 * 20)


def test_apply_manifest_extra_files_are_logged_and_left_out(helpers_log):
    df = frame({"ig": 10, "platelet": 10})
    man = make_split(df.iloc[:15])
    out = apply_manifest(df, man)
    assert len(out) == 15 and set(out["path"]) == set(man["path"])
    assert out["split"].isin(SPLITS).all()
    lines = log_lines(helpers_log, "image(s) on disk are not in the split manifest")
    assert len(lines) == 1 and lines[0].startswith("5 image(s)")
    helpers_log.clear()
    apply_manifest(df, man, log_missing=False)
    assert log_lines(helpers_log, "manifest") == []


def test_apply_manifest_counts_absent_files_and_drops_excluded(helpers_log):
    df = frame({"eosinophil": 10, "neutrophil": 10}, [[("eosinophil", 0), ("neutrophil", 0)]])
    man = make_split(df)
    out = apply_manifest(df.iloc[3:], man)
    assert EXCLUDED not in set(out["split"])
    assert "eosinophil/EO_0000.jpg" not in set(out["path"]) and len(out) == 20 - 3 - 1
    assert len(log_lines(helpers_log, "2 file(s) of the manifest are absent or unusable here")) == 1


def test_apply_manifest_label_disagreement_is_an_error():
    df = frame({"ig": 5, "platelet": 5})
    man = make_split(df)
    moved = df.copy()
    moved.loc[0, "label"] = "platelet"  # same path, but the data now says another class
    with pytest.raises(ValueError, match=r"1 file\(s\) sit in a different class folder than the manifest says "
                                         r"\(e\.g\. ig/IG_0000\.jpg\).*Restore the original class folders"):
        apply_manifest(moved, man)


def test_cap_per_class():
    man = make_split(frame({"ig": 40, "platelet": 7}))
    capped = cap_per_class(man, 3)
    counts = capped.groupby(["label", "split"]).size()
    assert counts.max() <= 3
    assert counts[("ig", "train")] == 3 and counts[("platelet", "val")] == min(3, (man["label"].eq("platelet")
                                                                                 & man["split"].eq("val")).sum())
    assert set(capped["path"]) <= set(man["path"]) and capped["path"].is_monotonic_increasing
    assert cap_per_class(man, 3).equals(capped)  # deterministic
    assert not cap_per_class(man, 3, seed=1).equals(capped)  # seeded
    assert cap_per_class(man, None) is man
    assert len(cap_per_class(man, 10_000)) == len(man)
    assert set(cap_per_class(man, 2)["path"]) <= set(cap_per_class(man, 3)["path"])  # nested caps


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_cap_per_class_bad_value(bad):
    with pytest.raises(ConfigError, match="MAX_PER_CLASS must be a positive integer or None"):
        cap_per_class(make_split(frame({"ig": 5})), bad)


# ------------------------------------------------------------------------------------------------
# properties (hypothesis)
# ------------------------------------------------------------------------------------------------
@st.composite
def datasets(draw):
    classes = draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=4, unique=True))
    sizes = {c: draw(st.integers(1, 45)) for c in classes}
    df = frame(sizes)
    n = len(df)
    groups = draw(st.lists(st.lists(st.integers(0, n - 1), min_size=2, max_size=4, unique=True), max_size=6)
                  if n > 1 else st.just([]))
    for g in groups:
        df.loc[g, "md5"] = df.loc[g[0], "md5"]
    order = draw(st.permutations(range(n)))
    seed = draw(st.integers(0, 3))
    return df, order, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_split_properties(data):
    df, order, seed = data
    shuffled = df.iloc[list(order)].reset_index(drop=True)
    man = make_split(shuffled, seed=seed)
    # byte-identical manifest whatever the listing order
    assert manifest_text(man) == manifest_text(make_split(df, seed=seed))
    # every usable file appears exactly once; union = all files
    assert man["path"].is_unique and set(man["path"]) == set(df["path"])
    m = man.merge(df[["path", "md5"]], on="path")
    # excluded = exactly the files of groups that mix labels
    mixed = m.groupby("md5")["label"].transform("nunique") > 1
    assert set(m.loc[mixed, "path"]) == set(m.loc[m["split"] == EXCLUDED, "path"])
    used = m[~mixed]
    assert used["split"].isin(SPLITS).all()
    # duplicate groups are never split
    assert (used.groupby("md5")["split"].nunique() == 1).all()
    # stratified: within one image per class (within the largest group where duplicates force it)
    dev = deviation(used)
    for c, g in used.groupby("label"):
        largest = int(g.groupby("md5").size().max())
        assert dev[c] <= max(1, largest) + 1e-9, (c, dev[c], largest)
    chk = check_split(used)
    assert chk.overlap == 0 and chk.crossing_groups == 0


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 80), min_size=1), st.integers(0, 10))
def test_split_without_duplicates_is_within_one_image(sizes, seed):
    man = make_split(frame(sizes), seed=seed)
    assert max(deviation(man).values()) <= 1
    assert (man["group"] == "").all()


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 30), min_size=1), st.integers(1, 6),
       st.integers(0, 5))
def test_cap_per_class_properties(sizes, cap, seed):
    man = make_split(frame(sizes))
    capped = cap_per_class(man, cap, seed)
    assert capped.groupby(["label", "split"]).size().max() <= cap
    full = man.groupby(["label", "split"]).size()
    got = capped.groupby(["label", "split"]).size().reindex(full.index, fill_value=0)
    assert (got == np.minimum(full, cap)).all()
    merged = capped.merge(man, on="path", suffixes=("", "_m"))
    assert len(merged) == len(capped) and (merged["split"] == merged["split_m"]).all()


def test_save_manifest_failure_keeps_the_old_manifest(tmp_path, monkeypatch):
    from helpers import io as hio

    man = make_split(frame({"ig": 6}))
    p = save_manifest(man, tmp_path / "m.csv")
    before = p.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hio.os, "fsync", full_disk)
    with pytest.raises(OSError):
        save_manifest(make_split(frame({"ig": 6}), seed=3), p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.csv"]


def test_same_manifest_in_fresh_processes_with_other_hash_seeds(tmp_path):
    """Deterministic across runs: Python's per-process string hashing must not leak into the split."""
    import subprocess
    import sys

    df = frame({c: 11 for c in CLASSES[:4]}, [[("basophil", 1), ("ig", 1)], [("eosinophil", 2), ("eosinophil", 3)]])
    df.to_csv(tmp_path / "files.csv", index=False)
    code = ("import sys, pandas as pd; from helpers.split import make_split, manifest_text; "
            "sys.stdout.write(manifest_text(make_split(pd.read_csv(sys.argv[1], dtype=str))))")
    outs = []
    for seed in ("1", "2"):
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "files.csv")], capture_output=True,
                           text=True, env=env, timeout=120, check=True)
        outs.append(r.stdout)
    assert outs[0] == outs[1] == manifest_text(make_split(df))


# ------------------------------------------------------------------------------------------------
# the split rule: a file's split depends only on its own duplicate group
# ------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.data())
def test_rule_split_is_stable_under_subsets_and_keeps_groups_whole(data, draw):
    from helpers.split import split_by_rule

    df, order, _ = data
    full = split_by_rule(df.iloc[list(order)].reset_index(drop=True))
    assert manifest_text(full) == manifest_text(split_by_rule(df))  # listing order does not matter
    m = full.merge(df[["path", "md5"]], on="path")
    mixed = m.groupby("md5")["label"].transform("nunique") > 1
    assert set(m.loc[mixed, "path"]) == set(m.loc[m["split"] == EXCLUDED, "path"])
    assert (m[~mixed].groupby("md5")["split"].nunique() == 1).all()  # no group straddles splits
    # any subset that keeps duplicate groups whole gets the same split for every file it keeps
    md5s = sorted(df["md5"].unique())
    keep = draw.draw(st.lists(st.sampled_from(md5s), min_size=1, unique=True))
    sub = df[df["md5"].isin(keep)]
    got = split_by_rule(sub).set_index("path")["split"]
    assert (got == full.set_index("path").loc[got.index, "split"]).all()


def test_rule_split_proportions_are_near_64_16_20_on_many_files():
    from helpers.split import realised_fractions, split_by_rule

    man = split_by_rule(frame({c: 2000 for c in CLASSES[:3]}))
    fr = realised_fractions(man)
    assert np.allclose(fr.to_numpy(), np.array(FRACTIONS)[None, :], atol=0.035), fr


def test_rule_value_depends_on_the_key():
    from helpers.split import rule_value

    assert rule_value("basophil/BA_1.jpg") == rule_value("basophil/BA_1.jpg")
    assert rule_value("basophil/BA_1.jpg") != rule_value("basophil/BA_1.jpg", key="other")
    assert 0 <= rule_value("x") < 1


@pytest.mark.shared
def test_rule_split_on_the_real_data_is_stratified_and_keeps_the_pairs_together():
    """On the real copy: realised shares per class within 4 points of 64/16/20, no group across splits."""
    import os
    from pathlib import Path

    from helpers.config import splits_dir
    from helpers.split import DEFAULT_MANIFEST, realised_fractions, split_by_rule

    if os.environ.get("BLOODCELLS_SYNTHETIC_DATA"):
        pytest.skip("no real data configured (BLOODCELLS_DATA_DIR)")
    committed = load_manifest(Path(splits_dir()) / DEFAULT_MANIFEST)
    # the committed manifest records the duplicate groups (by their first path): the rule needs nothing else
    files = committed.assign(md5=committed["group"].where(committed["group"] != "", committed["path"]))
    man = split_by_rule(files)
    fr = realised_fractions(man)
    assert np.allclose(fr.to_numpy(), np.array(FRACTIONS)[None, :], atol=0.04), fr
    used = man[man["split"] != EXCLUDED].merge(files[["path", "md5"]], on="path")
    assert (used.groupby("md5")["split"].nunique() == 1).all()
    assert set(man.loc[man["split"] == EXCLUDED, "path"]) == set(committed.loc[committed["split"] == EXCLUDED, "path"])
