"""tools/transfer_spread.py and how chapters 4–6 read the seed spreads it measures."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from helpers import CLASSES
from helpers.results import SPREAD_FOLDER, seed_table, spread_record, transfer_spread
from helpers.train import spread_block

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("transfer_spread_tool", ROOT / "tools" / "transfer_spread.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

WEIGHTS = {"family": "vgg19", "kind": "imagenet-keras-cache", "path": "/somewhere/file.h5", "sha256": "ab"}


def test_a_spread_is_read_back_for_its_classes_only(tmp_path):
    block = spread_block([0.8, 0.85, 0.9], [42, 43, 44], metric="val accuracy", budget="capped set")
    path = spread_record("vgg19", block, tmp_path / SPREAD_FOLDER, classes=CLASSES, image_size=64,
                         head={"units": 256}, weights=WEIGHTS, minutes=3.2)
    rec = json.loads(path.read_text())
    assert "path" not in rec["weights_source"]  # no machine paths in a committed record
    got = transfer_spread("vgg19", CLASSES, tmp_path)
    assert got["values"] == [0.8, 0.85, 0.9] and got["val"]["accuracy"] == pytest.approx(0.05)
    assert got["created"] == rec["created"] and got["git_commit"] == rec["git_commit"]
    assert transfer_spread("vgg19", ["a", "b"], tmp_path) is None  # a lab's own classes: not this spread
    assert transfer_spread("resnet50", CLASSES, tmp_path) is None  # never measured


@pytest.mark.parametrize("family", tool.FAMILIES)
def test_the_committed_spreads_are_the_recipes_at_a_stated_budget(family):
    rec = json.loads((ROOT / "results" / SPREAD_FOLDER / f"transfer_{family}.json").read_text())
    s = rec["spread"]
    assert rec["family"] == family and rec["classes"] == list(CLASSES) and rec["mode"] == "book"
    assert len(s["values"]) == len(s["seeds"]) >= 3 and s["metric"] == "val accuracy"
    assert s["min"] == min(s["values"]) and s["max"] == max(s["values"])
    assert "not the full data" in s["budget"]  # chapter 8 refuses it as a tolerance for full-data runs
    chapter = json.loads((ROOT / "results" / f"transfer_{family}.json").read_text())
    if family != "mobilenetv2":
        assert chapter["spread"]["values"] == s["values"]  # the chapter's record carries the measurement it read


def test_the_committed_full_data_spread_is_chapter_6s_own_schedule():
    """Chapter 6 reads the spread of its own recipe on the whole split: every seed ran the recipe's schedule."""
    from helpers.profiles import recipe
    from helpers.results import full_seed_name, spread_name

    r = recipe("mobilenetv2", "cpu", "book")
    rec = json.loads((ROOT / "results" / SPREAD_FOLDER / spread_name("mobilenetv2", full=True)).read_text())
    s = rec["spread"]
    assert len(s["seeds"]) >= 3 and s["budget"].startswith("full data:") and "not the full data" not in s["budget"]
    assert f"{r.e2e_epochs} epochs of phase 3" in s["budget"]
    for seed, value in zip(s["seeds"], s["values"]):
        run = json.loads((ROOT / "results" / SPREAD_FOLDER / "full" / full_seed_name("mobilenetv2", r.e2e_epochs,
                                                                                     seed)).read_text())
        assert run["e2e_epochs"] == r.e2e_epochs and run["val_accuracy"] == value and run["mode"] == "book"
    chapter = json.loads((ROOT / "results" / "transfer_mobilenetv2.json").read_text())
    assert chapter["spread"]["values"] == s["values"]  # the chapter's record carries the spread it read


@pytest.mark.slow
def test_the_tool_writes_one_record_per_family_and_skips_it_after(tmp_path, monkeypatch):
    from synthetic import make_synthetic_pbc

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("BLOODCELLS_DATA_DIR", str(make_synthetic_pbc(tmp_path / "pbc", n_per_class=10)))
    argv = ["--families", "mobilenetv2", "--smoke", "--results", str(tmp_path / "r")]
    assert tool.main(argv) == 0
    path = tmp_path / "r" / SPREAD_FOLDER / "transfer_mobilenetv2.json"
    rec = json.loads(path.read_text())
    assert rec["mode"] == "smoke" and rec["spread"]["seeds"] == [42, 43]
    stamp = path.stat().st_mtime_ns
    assert tool.main(argv) == 0  # done before: nothing trained or written again
    assert path.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_the_full_data_spread_keeps_one_record_per_seed_and_resumes(tmp_path, monkeypatch):
    from synthetic import make_synthetic_pbc

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("BLOODCELLS_DATA_DIR", str(make_synthetic_pbc(tmp_path / "pbc", n_per_class=10)))
    argv = ["--families", "mobilenetv2", "--smoke", "--full", "--results", str(tmp_path / "r")]
    assert tool.main(argv + ["--seeds", "42"]) == 1  # one seed is no spread: a clear error, nothing lost
    seed42 = tmp_path / "r" / SPREAD_FOLDER / "full" / "transfer_mobilenetv2_e1_s42.json"  # smoke: 1 epoch
    rec = json.loads(seed42.read_text())
    assert rec["seed"] == 42 and rec["git_commit"] and rec["created"] and "path" not in rec["weights_source"]
    stamp = seed42.stat().st_mtime_ns
    assert tool.main(argv + ["--seeds", "43"]) == 0  # seed 42 is read back, only 43 is trained
    assert seed42.stat().st_mtime_ns == stamp
    got = transfer_spread("mobilenetv2", CLASSES, tmp_path / "r", full=True)
    assert got["seeds"] == [42, 43] and got["budget"].startswith("full data:")
    assert "the chapter's budget" in got["budget"]
    assert transfer_spread("mobilenetv2", CLASSES, tmp_path / "r") is None  # the capped one: not measured
    assert transfer_spread("mobilenetv2", CLASSES, tmp_path / "r", full=True, e2e_epochs=1)["seeds"] == [42, 43]
    assert transfer_spread("mobilenetv2", CLASSES, tmp_path / "r", full=True, e2e_epochs=12) is None  # another
    # schedule: a run of 12 epochs of phase 3 does not borrow the spread of 1


def test_a_spread_is_shown_as_its_budget_and_a_table_by_seed(capsys):
    table = seed_table({"budget": "word " * 30, "seeds": [42, 43], "values": [0.91, 0.93]}, width=40)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) > 1 and max(map(len, printed)) <= 40
    assert table.index.name == "seed" and list(table.index) == [42, 43]
    assert list(table["val accuracy"]) == [0.91, 0.93]
    assert seed_table(None) is None and capsys.readouterr().out == ""
