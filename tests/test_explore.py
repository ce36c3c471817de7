"""Tests of helpers.explore (descriptive statistics for chapter 1)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import explore


def _solid(path, rgb, size=(20, 20)):
    Image.fromarray(np.full((*size, 3), rgb, dtype=np.uint8)).save(path)
    return str(path)


def test_colour_stats_of_solid_images(tmp_path):
    paths = [_solid(tmp_path / "r.png", (255, 0, 0)), _solid(tmp_path / "b.png", (0, 0, 255)),
             _solid(tmp_path / "b2.png", (0, 0, 255))]
    st = explore.colour_stats(paths, ["platelet", "basophil", "basophil"])
    assert list(st.index) == ["basophil", "platelet"]  # CLASSES order
    assert st.loc["platelet", ["R", "G", "B"]].tolist() == [255, 0, 0]
    assert st.loc["basophil", "H"] == pytest.approx(2 / 3)
    assert st.loc["basophil", "S"] == pytest.approx(1) and st.loc["basophil", "V"] == pytest.approx(1)
    assert st.loc["basophil", "images"] == 2 and st.loc["basophil", "B_std"] == 0


def test_colour_stats_hue_is_circular(tmp_path):
    # hues just below 1 and just above 0 average to red (≈0), not to cyan (0.5)
    paths = [_solid(tmp_path / "a.png", (255, 0, 20)), _solid(tmp_path / "b.png", (255, 20, 0))]
    st = explore.colour_stats(paths, ["ig", "ig"])
    h = st.loc["ig", "H"]
    assert min(h, 1 - h) < 0.02


def test_colour_stats_bad_input(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        explore.colour_stats(["a"], [])
    with pytest.raises(ValueError, match="no images"):
        explore.colour_stats([], [])


def test_size_table_pools_the_rest():
    w = [360] * 6 + [366] * 2 + [300, 200]
    h = [363] * 6 + [369] * 2 + [300, 200]
    t = explore.size_table(w, h, top=2)
    assert t["size"].tolist() == ["360 × 363", "366 × 369", "other (2 sizes)"]
    assert t["images"].tolist() == [6, 2, 2]
    assert t["share"].sum() == pytest.approx(1)
    with pytest.raises(ValueError):
        explore.size_table([], [])


def test_subtype_table():
    files = pd.DataFrame({"label": ["neutrophil", "neutrophil", "ig", "ig", "basophil"],
                          "subtype": ["SNE", "BNE", "MY", "MY", "BA"]})
    t = explore.subtype_table(files, ["neutrophil", "ig"])
    assert list(t.index) == ["ig", "neutrophil"]
    assert sorted(t.columns) == ["BNE", "MY", "SNE"]
    assert t.loc["ig", "MY"] == 2 and t.loc["neutrophil", "MY"] == 0
    with pytest.raises(ValueError):
        explore.subtype_table(files, ["platelet"])


def test_originals_found_beside_the_root(tmp_path):
    root = tmp_path / "copy" / "PBC_dataset_normal_DIB"
    root.mkdir(parents=True)
    assert explore.find_originals_csv(root) is None
    csv = tmp_path / "copy" / "originals.csv"
    csv.write_text("path,label,orig_width,orig_height\nPBC_dataset_normal_DIB/ig/IG_1.jpg,ig,360,363\n")
    assert explore.find_originals_csv(root) == csv
    df = explore.load_originals(csv, root)
    assert df["path"].tolist() == ["ig/IG_1.jpg"] and df["orig_width"].tolist() == [360]


def test_load_originals_rejects_other_csv(tmp_path):
    csv = tmp_path / "originals.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="originals"):
        explore.load_originals(csv)


def test_sample_per_class_is_seeded_and_capped():
    files = pd.DataFrame({"path": [f"p{i}" for i in range(30)], "label": ["a"] * 25 + ["b"] * 5})
    s1 = explore.sample_per_class(files, 10, seed=1)
    s2 = explore.sample_per_class(files, 10, seed=1)
    assert s1.equals(s2)
    assert s1["label"].value_counts().to_dict() == {"a": 10, "b": 5}
    with pytest.raises(ValueError):
        explore.sample_per_class(files, 0)


def test_normal_differential_is_the_one_reference_table():
    from helpers import CLASSES
    from helpers.explore import normal_differential

    ref = normal_differential()
    assert list(ref.columns) == ["low %", "high %"]
    assert "platelet" not in ref.index and set(ref.index) == set(CLASSES) - {"platelet"}
    assert list(ref.index) == [c for c in CLASSES if c in ref.index]
    assert (ref["low %"] <= ref["high %"]).all() and ref.loc["erythroblast", "high %"] == 0
