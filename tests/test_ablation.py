"""tools/ablation.py and the helpers chapter 3 reads its records with (tiny runs on synthetic data)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ablation", ROOT / "tools" / "ablation.py")
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)


def test_largest_drop_finds_the_fall_and_its_epoch():
    from helpers.results import largest_drop

    assert largest_drop([0.2, 0.8, 0.3, 0.9, 0.85]) == pytest.approx((0.5, 3))
    assert largest_drop([0.1, 0.5, 0.9]) == (0.0, 0)
    assert largest_drop([0.5]) == (0.0, 0)


def test_ablation_table_sets_each_variant_against_the_recipe_seeds():
    from helpers.results import ablation_table

    runs = pd.DataFrame({"variant": ["recipe"] * 3 + ["no_dropout"] * 3 + ["no_augmentation"] * 3,
                         "label": ["the recipe"] * 3 + ["− dropout"] * 3 + ["− augmentation"] * 3,
                         "seed": [42, 43, 44] * 3,
                         "val_accuracy": [0.97, 0.975, 0.972, 0.971, 0.973, 0.976, 0.95, 0.955, 0.96]})
    t = ablation_table(runs)
    assert list(t.index) == ["the recipe", "− dropout", "− augmentation"]
    assert t.loc["− augmentation", "Δ vs recipe (points)"] == pytest.approx(100 * (0.955 - 0.9723333), abs=1e-4)
    assert t.loc["− augmentation", "outside the recipe's range"] == "yes"
    assert t.loc["− dropout", "outside the recipe's range"] == "no"  # ranges overlap
    assert list(t["seeds"]) == [3, 3, 3]


@pytest.mark.slow
def test_runs_write_val_only_records_and_a_rerun_skips_them(tmp_path, monkeypatch):
    from synthetic import make_synthetic_pbc

    from helpers.results import ablation_runs

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("BLOODCELLS_DATA_DIR", str(make_synthetic_pbc(tmp_path / "pbc", n_per_class=6)))
    argv = ["--variants", "recipe", "no_dropout", "--seeds", "1", "--epochs", "2", "--results", str(tmp_path / "r")]
    assert ab.main(argv) == 0
    recs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "r" / "ablation").glob("*.json")}
    assert set(recs) == {"recipe_s1", "no_dropout_s1"}
    assert recs["no_dropout_s1"]["ablation"]["flags"]["dropout"] == 0.0
    assert recs["recipe_s1"]["ablation"]["flags"]["dropout"] == 0.3
    assert all(r["test"] is None and r["epochs"] == 2 for r in recs.values())  # the test split is not touched
    runs = ablation_runs(tmp_path / "r")
    assert sorted(runs["variant"]) == ["no_dropout", "recipe"] and all(len(c) == 2 for c in runs["val_curve"])
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r" / "ablation").glob("*.json")}
    assert ab.main(argv) == 0  # done before: nothing is trained or written again
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r" / "ablation").glob("*.json")}
    np.testing.assert_array_equal(runs["seed"], [1, 1])
