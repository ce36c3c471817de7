"""The chapters on data other than PBC, end to end in smoke mode (slow; no real data needed).

* A laboratory's own classes: a generated 7-class bone-marrow-style dataset (the class names of Matek et al.
  2021) through chapters 1, 3 and 6 (``DATA_DIR`` pointing at it); the command line then scores it with
  chapter 3's and chapter 6's models.
* BloodMNIST: chapters 3 and 6 with ``DATASET = "bloodmnist"``, downloading a generated file of the official
  layout and split sizes from 127.0.0.1 (``$BLOODCELLS_BLOODMNIST_URL`` / ``$BLOODCELLS_BLOODMNIST_MD5``).

The two executions (one per dataset, the chapters in order) run side by side, into a scratch results and output
folder; the committed records are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from localserver import LocalServer

from helpers import CLASSES
from helpers.download import BLOODMNIST_SPLIT
from helpers.synthetic import BONE_MARROW_CLASSES, make_synthetic_bloodmnist, make_synthetic_pbc

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Execute the chapter runs once; ``{name: (exit code, log)}`` plus the folders they wrote."""
    tmp = tmp_path_factory.mktemp("other")
    marrow = make_synthetic_pbc(tmp / "lab", n_per_class=20, size=48, classes=BONE_MARROW_CLASSES,
                                wrapper="marrow")
    npz = make_synthetic_bloodmnist(tmp / "bloodmnist_64.npz", size=64)
    server = LocalServer()
    server.files["/bloodmnist_64.npz"] = npz.read_bytes()
    env = {**os.environ, "BLOODCELLS_RESULTS_DIR": str(tmp / "results"), "BLOODCELLS_OUTPUT_DIR": str(tmp / "out"),
           "BLOODCELLS_BLOODMNIST_URL": server.url + "/bloodmnist{suffix}.npz",
           "BLOODCELLS_BLOODMNIST_MD5": hashlib.md5(npz.read_bytes()).hexdigest(), "TF_CPP_MIN_LOG_LEVEL": "2",
           "MPLBACKEND": "Agg"}

    def run(name, chapters, *params):
        out = tmp / "nb" / name
        out.mkdir(parents=True)
        cmd = [sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--mode", "smoke", "--out", str(out),
               *[a for p in params for a in ("-p", p)], *chapters]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        return name, (proc.returncode, proc.stdout[-3000:] + proc.stderr[-3000:])

    jobs = [("lab", ["01", "03", "06"], f"DATA_DIR={marrow}"), ("bloodmnist", ["03", "06"], "DATASET=bloodmnist")]
    try:
        with ThreadPoolExecutor(2) as pool:
            done = dict(pool.map(lambda j: run(*j), jobs))
    finally:
        server.close()
    return {"done": done, "tmp": tmp, "marrow": marrow / "marrow"}


def _record(runs, name):
    return json.loads((runs["tmp"] / "results" / f"{name}.json").read_text())


def _ok(runs, name):
    code, log = runs["done"][name]
    assert code == 0, log


def test_a_labs_classes_run_through_chapters_1_and_3(runs):
    _ok(runs, "lab")
    nb1 = (runs["tmp"] / "nb" / "lab" / "01_background_and_data.ipynb").read_text()
    assert "140 usable images" in nb1  # 7 classes × 20 generated images, found by their folder names
    for name in ("devnithw_cnn_folders", "bloodcells_cnn_folders", "improved_cnn_folders",
                 "improved_cnn_tta_folders"):
        rec = _record(runs, name)
        assert rec["data"]["classes"] == list(BONE_MARROW_CLASSES) and rec["data"]["dataset"] == "folders"
        assert list(rec["test"]["per_class"]) == list(BONE_MARROW_CLASSES)
        assert np.array(rec["test"]["confusion"]).shape == (7, 7)
    side = json.loads((runs["tmp"] / "out" / "models" / "improved_cnn_folders" / "bundle.json").read_text())
    assert side["classes"] == list(BONE_MARROW_CLASSES)
    assert not (runs["tmp"] / "results" / "improved_cnn.json").exists()  # PBC's names are never reused


@pytest.mark.parametrize("model", ["improved_cnn_tta_folders", "transfer_mobilenetv2_folders"])
def test_the_command_line_scores_a_labs_classes_with_the_chapters_models(runs, model, capsys):
    from helpers import predict

    _ok(runs, "lab")
    code = predict.main([str(runs["tmp"] / "out" / "models" / model), str(runs["marrow"])])
    out = capsys.readouterr().out
    assert code == 0 and "(n=140, labels from folder names)" in out
    rows = [line.split()[0] for line in out.splitlines()[-7:]]
    assert rows == list(BONE_MARROW_CLASSES)  # the confusion matrix names the lab's classes


def test_a_labs_classes_run_through_chapter_6(runs):
    _ok(runs, "lab")
    for name in ("transfer_mobilenetv2_folders", "transfer_mobilenetv2_tta_folders"):
        rec = _record(runs, name)
        assert rec["data"]["classes"] == list(BONE_MARROW_CLASSES) and rec["data"]["dataset"] == "folders"
        assert np.array(rec["test"]["confusion"]).shape == (7, 7)
    nb6 = (runs["tmp"] / "nb" / "lab" / "06_transfer_mobilenetv2.ipynb").read_text()
    assert "no seed spread was measured for these classes" in nb6  # not PBC's spread for a lab's classes
    assert not _record(runs, "transfer_mobilenetv2_folders").get("spread")
    assert not (runs["tmp"] / "results" / "transfer_mobilenetv2.json").exists()


@pytest.mark.parametrize("model", ["improved_cnn_bloodmnist", "transfer_mobilenetv2_bloodmnist"])
def test_chapters_3_and_6_on_bloodmnist_with_its_official_split(runs, model):
    _ok(runs, "bloodmnist")
    rec = _record(runs, model)
    assert rec["data"]["dataset"] == "bloodmnist" and rec["data"]["classes"] == list(CLASSES)
    assert rec["data"]["manifest"] == "bloodmnist_split.csv"
    summary = json.loads((runs["tmp"] / "out" / "data" / "bloodmnist_64" / ".download.json").read_text())
    assert summary["official_split"] == BLOODMNIST_SPLIT and summary["counts"]["test"] == BLOODMNIST_SPLIT["test"]
    assert not (runs["tmp"] / "results" / "improved_cnn.json").exists()
