"""A laboratory's own classes: the classes come from the dataset's class folders (PBC's eight stay the default).

A generated 7-class bone-marrow-style dataset (the class names of Matek et al. 2021) goes through discovery,
the split, a training run's record and bundle, and the command line's scoring. No real data needed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import CLASSES, class_order, display_name
from helpers.config import ConfigError
from helpers.data import DataNotFoundError, class_counts, find_classes, load_split
from helpers.predictions import Predictions
from helpers.synthetic import BONE_MARROW_CLASSES, make_synthetic_pbc


@pytest.fixture(scope="module")
def marrow(tmp_path_factory) -> Path:
    """``<tmp>/lab/marrow/<7 class folders>`` of generated JPEGs (20 per class) plus an empty folder."""
    top = tmp_path_factory.mktemp("lab")
    make_synthetic_pbc(top, n_per_class=20, size=40, classes=BONE_MARROW_CLASSES, wrapper="marrow")
    (top / "marrow" / "notes").mkdir()  # a folder without images is not a class
    return top


def test_the_classes_are_the_datasets_own_folders(marrow):
    folder, classes = find_classes(marrow)
    assert folder == marrow / "marrow" and classes == BONE_MARROW_CLASSES


def test_pbc_classes_win_and_a_pbc_copy_missing_a_class_is_an_error(tmp_path):
    root = make_synthetic_pbc(tmp_path, n_per_class=2, size=16)
    folder, classes = find_classes(root)
    assert classes == CLASSES and folder.name == "PBC_dataset_normal_DIB"
    shutil.rmtree(folder / "platelet")
    with pytest.raises(ConfigError, match="platelet"):  # not silently a 7-class dataset
        find_classes(root)


def test_a_classes_parameter_picks_and_orders_the_folders(marrow):
    folder, classes = find_classes(marrow, ["PMO", "BLA"])
    assert classes == ("PMO", "BLA")
    with pytest.raises(ConfigError, match="at least two"):
        find_classes(marrow, ["BLA"])
    with pytest.raises(ConfigError, match="lacks"):
        find_classes(marrow, ["BLA", "XYZ"])


def test_bloodcells_classes_picks_the_classes_for_every_chapter(marrow, monkeypatch):
    """``$BLOODCELLS_CLASSES``: the classes as configuration (one variable, like the data folder)."""
    monkeypatch.setenv("BLOODCELLS_CLASSES", " PMO, BLA ,EOS")
    data = load_split(marrow, seed=1, progress=False)
    assert data.classes == ("PMO", "BLA", "EOS") and data.dataset == "folders"
    assert set(data.files["label"]) == {"PMO", "BLA", "EOS"}
    monkeypatch.setenv("BLOODCELLS_CLASSES", "BLA")
    with pytest.raises(ConfigError, match="BLOODCELLS_CLASSES"):
        load_split(marrow, seed=1, progress=False)
    monkeypatch.setenv("BLOODCELLS_CLASSES", "")  # empty: unset, the folders decide
    assert load_split(marrow, seed=1, progress=False).classes == BONE_MARROW_CLASSES
    monkeypatch.setenv("BLOODCELLS_CLASSES", "PMO,BLA")
    given = load_split(marrow, seed=1, progress=False, classes=["BLA", "LYT"])
    assert given.classes == ("BLA", "LYT")  # the argument wins


def test_a_folder_without_class_folders_is_a_clear_error(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataNotFoundError, match="one folder of images per class"):
        find_classes(tmp_path)


def test_load_split_on_a_labs_classes(marrow):
    data = load_split(marrow, progress=False)
    assert data.classes == BONE_MARROW_CLASSES and data.dataset == "folders"
    assert data.check == {}  # PBC's committed manifest is not consulted for other data
    for split in ("train", "val", "test"):
        labels = data.labels(split)
        assert len(labels) and set(labels) <= set(range(7))
    prov = data.provenance()
    assert prov["classes"] == list(BONE_MARROW_CLASSES) and prov["dataset"] == "folders"
    counts = class_counts(data.files)
    assert list(counts.index) == list(BONE_MARROW_CLASSES) and counts.sum() == 140
    assert "BLA" in data.summary() or "140" in data.summary()


def test_class_order_and_display_names():
    assert class_order(["PMO", "ig", "BLA", "basophil"]) == ["basophil", "ig", "BLA", "PMO"]
    assert display_name("ig") == "Immature granulocyte" and display_name("NGS") == "NGS"


def test_predictions_carry_their_class_names(tmp_path):
    probs = np.eye(7, dtype="float32")[[0, 1, 2, 2]]
    p = Predictions(("a", "b", "c", "d"), [0, 1, 2, 3], probs, BONE_MARROW_CLASSES)
    m = p.metrics()
    assert list(m["per_class"]) == list(BONE_MARROW_CLASSES) and m["accuracy"] == 0.75
    back = Predictions.load(p.save(tmp_path / "p.npz"))
    assert back.classes == BONE_MARROW_CLASSES and np.array_equal(back.probs, p.probs)
    with pytest.raises(ValueError, match="class names"):
        Predictions(("a",), [0], np.ones((1, 7)) / 7).metrics()  # seven columns are not PBC's eight
    with pytest.raises(ValueError, match="7 class names"):
        Predictions(("a",), [0], np.ones((1, 8)) / 8, BONE_MARROW_CLASSES)


@pytest.mark.slow
def test_a_model_of_a_labs_classes_is_saved_and_scored_with_their_names(marrow, tmp_path, capsys):
    from helpers import predict
    from helpers.models import build_model
    from helpers.runs import FROM_SCRATCH, save_run
    from helpers.train import split_predictions

    data = load_split(marrow, progress=False)
    model = build_model("improved_cnn", 32, seed=0, n_classes=len(data.classes), widths=(8,),
                        convs_per_stage=1)
    preds = split_predictions(model, data, 32)
    run = save_run(model, "marrow_cnn", data, preds, image_size=32, epochs=0, train_seconds=0.0,
                   weights_source=dict(FROM_SCRATCH), seed=0, results_directory=tmp_path / "results",
                   models_directory=tmp_path / "models")
    assert list(run.record["test"]["per_class"]) == list(BONE_MARROW_CLASSES)
    assert np.array(run.record["test"]["confusion"]).shape == (7, 7)
    side = json.loads((run.bundle / "bundle.json").read_text())
    assert side["classes"] == list(BONE_MARROW_CLASSES) and side["data"]["dataset"] == "folders"
    code = predict.main([str(run.bundle), str(marrow / "marrow")])
    out = capsys.readouterr().out
    assert code == 0 and "(n=140, labels from folder names)" in out
    assert any(line.startswith("BLA ") for line in out.splitlines())  # a row of the confusion matrix
