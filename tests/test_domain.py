"""BCCD domain-shift helpers: VOC parsing, square crops, OOD scores (synthetic VOC; real BCCD if configured)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.domain import (
    BCCDNotFound,
    bccd_boxes,
    bccd_root,
    crop_boxes,
    energy,
    max_softmax,
    ood_auroc,
    parse_voc,
    square_box,
)

VOC = """<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = "<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"  # noqa: E501


@pytest.fixture()
def voc(tmp_path) -> Path:
    root = tmp_path / "BCCD_Dataset" / "BCCD"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    objs = {"img1": [("WBC", 10, 10, 40, 30), ("RBC ", 0, 0, 12, 12)],
            "img2": [("WBC", 50, 30, 64, 48), ("WBC", 5, 5, 6, 6)],   # at the corner; degenerate
            "img3": [("WBC", 1, 1, 20, 20)]}                          # image file missing
    for name, boxes in objs.items():
        xml = VOC.format(name=name, objects="".join(OBJ.format(n=n, a=a, b=b, c=c, d=d) for n, a, b, c, d in boxes))
        (root / "Annotations" / f"{name}.xml").write_text(xml)
        if name != "img3":
            Image.new("RGB", (64, 48), (200, 100, 50)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img1\n")
    return tmp_path / "BCCD_Dataset"


def test_root_and_parse(voc):
    root = bccd_root(voc)
    assert root.name == "BCCD"
    info, boxes = parse_voc(root / "Annotations" / "img1.xml")
    assert info == {"filename": "img1.jpg", "width": 64, "height": 48}
    assert [b["name"] for b in boxes] == ["WBC", "RBC"]


def test_root_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOODCELLS_BCCD_DIR", raising=False)
    with pytest.raises(BCCDNotFound, match="BLOODCELLS_BCCD_DIR"):
        bccd_root()
    with pytest.raises(BCCDNotFound, match="JPEGImages"):
        bccd_root(tmp_path)


def test_boxes_and_crops(voc, caplog):
    boxes = bccd_boxes(voc)
    assert len(boxes) == 3 and set(boxes["image"]) == {"img1.jpg", "img2.jpg"}   # img3 lacks its image
    assert len(bccd_boxes(voc, image_set="test")) == 1
    assert len(bccd_boxes(voc, names=("RBC",))) == 1
    before = sorted(p.name for p in (voc / "BCCD").rglob("*"))
    with caplog.at_level("INFO", logger="helpers.domain"):
        crops = crop_boxes(boxes, size=24)
    assert crops.images.shape == (2, 24, 24, 3) and crops.images.dtype == np.uint8
    assert "degenerate" in caplog.text
    assert sorted(p.name for p in (voc / "BCCD").rglob("*")) == before, "the data folder was written to"


def test_square_box():
    assert square_box(10, 10, 40, 30, 64, 48, margin=0.0) == (10, 5, 40, 35)
    x0, y0, x1, y1 = square_box(50, 30, 64, 48, 64, 48, margin=0.2)    # shifted inside the image
    assert x1 - x0 == y1 - y0 and x1 <= 64 and y1 <= 48 and x0 >= 0 and y0 >= 0
    assert square_box(0, 0, 64, 48, 64, 48, margin=0.5) == (8, 0, 56, 48)  # shrunk to the image
    assert square_box(5, 5, 6, 6, 64, 48) is None


def test_ood_scores():
    p_in = np.array([[0.98, 0.01, 0.01], [0.9, 0.05, 0.05]])
    p_out = np.array([[0.4, 0.3, 0.3], [0.5, 0.25, 0.25]])
    assert np.allclose(max_softmax(p_in), [0.98, 0.9])
    assert ood_auroc(max_softmax(p_in), max_softmax(p_out)) == 1.0
    z = np.array([[10.0, 0, 0], [0.1, 0, 0]])
    e = energy(z)
    assert e[0] < e[1]
    assert ood_auroc(e[:1], e[1:], higher_means_in=False) == 1.0
    assert np.allclose(energy(np.log(p_in)), 0.0)   # why probabilities alone cannot give an energy score
    with pytest.raises(ValueError, match="need in- and out"):
        ood_auroc([], [0.5])


@pytest.mark.skipif(not os.environ.get("BLOODCELLS_BCCD_DIR"), reason="real BCCD not configured "
                    "($BLOODCELLS_BCCD_DIR unset)")
def test_real_bccd_wbc_boxes():
    boxes = bccd_boxes()
    assert len(boxes) > 300 and (boxes["name"] == "WBC").all()
    crops = crop_boxes(boxes, size=32, limit=5)
    assert crops.images.shape == (5, 32, 32, 3)


def test_model_logits_match_probabilities():
    keras = pytest.importorskip("keras")
    from helpers.explain import logits as model_logits

    inp = keras.Input((8, 8, 3))
    out = keras.layers.Dense(8, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    z = model_logits(model, x, batch_size=2).astype("float64")
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.allclose(p, np.asarray(model(x)), atol=1e-5)
    relu_out = keras.Model(inp, keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inp)))
    assert model_logits(relu_out, x) is None


def test_differential_text_comes_from_one_source():
    from helpers.domain import differential_text, normal_differential
    from helpers.explore import normal_differential as table

    r = normal_differential()
    assert r["neutrophil"][0] < r["neutrophil"][1]
    assert r["lymphocyte"] == (table().loc["lymphocyte", "low %"] / 100, table().loc["lymphocyte", "high %"] / 100)
    assert differential_text({"neutrophil": (0.4, 0.7), "lymphocyte": (0.2, 0.4)}) == \
        "40–70 % neutrophils and 20–40 % lymphocytes"


def test_flag_rate_is_the_share_below_the_threshold():
    import numpy as np

    from helpers.ood import flag_rate

    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]])
    assert flag_rate(p, {"threshold": 0.7}) == 0.5
    assert np.isnan(flag_rate(p, None))
