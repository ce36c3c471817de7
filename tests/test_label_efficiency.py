"""tools/label_efficiency.py and helpers.budgets: nested subsets, equal steps, one record per point (tiny runs on
synthetic data)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.budgets import nested_subset, steps_for

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("label_efficiency", ROOT / "tools" / "label_efficiency.py")
le = importlib.util.module_from_spec(spec)
spec.loader.exec_module(le)


def test_subsets_are_nested_per_seed_and_differ_between_seeds():
    labels = np.repeat(np.arange(8), [30, 12, 40, 25, 25, 25, 25, 25])
    small, mid, big = (set(nested_subset(labels, n, 42)) for n in (3, 10, 20))
    assert small < mid < big
    assert [int((labels[list(mid)] == c).sum()) for c in range(8)] == [10] * 8
    assert int((labels[list(big)] == 1).sum()) == 12  # a class smaller than the budget gives all it has
    assert set(nested_subset(labels, 10, 43)) != mid


def test_steps_scale_with_the_subset_between_a_floor_and_a_cap():
    assert [steps_for(8 * n) for n in (10, 50, 250, 500)] == [600, 600, 1250, 1600]


@pytest.mark.slow
def test_one_point_of_each_arm_writes_a_scored_record(tmp_path):
    from synthetic import make_synthetic_pbc

    from helpers.data import load_split
    from helpers.weights import resolve_weights

    data = load_split(make_synthetic_pbc(tmp_path / "pbc", n_per_class=12), progress=False)
    random = resolve_weights("mobilenetv2", "random", allow_random=True)
    for arm in le.ARMS:
        path = le.run_point(data, arm, 3, 42, random, tmp_path / "res", steps=2)
        rec = json.loads(path.read_text())
        assert path.name == f"{arm}_3pc_s42.json" and rec["label_efficiency"]["n_train"] == 24
        assert rec["label_efficiency"]["steps"] == 2 and rec["test"]["n"] == len(data.paths("test"))
        assert rec["weights_source"]["kind"] == ("none (trained from scratch)" if arm == "scratch"
                                                 else random["kind"])
