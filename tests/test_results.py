"""Tests of helpers.results: record validation, atomic writes, loading, comparison."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from badinputs import helpers_log  # noqa: F401  (fixture)

from helpers import results
from helpers.evaluate import metrics_block


def _rec(model="cnn_small", **kw):
    block = metrics_block([0, 1, 2, 2], [0, 1, 2, 1])
    args = dict(image_size=64, epochs=2, train_seconds=12.345, weights_source={"kind": "random"},
                data={"data_fingerprint": "abc", "counts": {"train": 4}}, seed=42, val=block, test=block,
                mode="smoke")
    args.update(kw)
    return results.make_record(model, **args)


def test_make_record_fields_and_types():
    r = _rec(params=1234)
    for k in results.REQUIRED:
        assert k in r
    assert r["schema"] == results.SCHEMA_VERSION and r["mode"] == "smoke"
    assert r["train_seconds"] == 12.35 and r["params"] == 1234
    assert "python" in r["versions"] and r["created"].endswith("+00:00")
    json.dumps(r)  # JSON-ready


@pytest.mark.parametrize("field", list(results.REQUIRED))
def test_validate_record_missing_field(field):
    r = _rec()
    del r[field]
    with pytest.raises(ValueError, match=f"result record lacks '{field}'"):
        results.validate_record(r)


@pytest.mark.parametrize("block,metric", [("val", "accuracy"), ("val", "macro_f1"), ("test", "per_class")])
def test_validate_record_missing_metric(block, metric):
    r = _rec()
    del r[block][metric]
    with pytest.raises(ValueError, match=f"'{block}' block lacks '{metric}'"):
        results.validate_record(r)


@pytest.mark.parametrize("bad", [None, [], "text", 3])
def test_validate_record_not_an_object(bad):
    with pytest.raises(ValueError, match="must be a JSON object"):
        results.validate_record(bad)


@pytest.mark.parametrize("name", ["", "   ", None])
def test_validate_record_needs_a_model_name(name):
    with pytest.raises(ValueError, match="'model' must be a non-empty name"):
        results.validate_record(_rec(model=name))


def test_test_block_may_be_none_before_final_evaluation():
    results.validate_record(_rec(test=None))


def test_write_and_load_roundtrip(tmp_path):
    p = results.write_record(_rec("cnn/small v2"), tmp_path)
    assert p.name == "cnn_small_v2.json"  # safe file name
    results.write_record(_rec("resnet50"), tmp_path)
    recs = results.load_records(tmp_path)
    assert [r["model"] for r in recs] == ["cnn/small v2", "resnet50"]


def test_write_record_invalid_writes_nothing(tmp_path):
    r = _rec()
    del r["seed"]
    with pytest.raises(ValueError, match="lacks 'seed'"):
        results.write_record(r, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_serialisation_leaves_earlier_record_intact(tmp_path):
    p = results.write_record(_rec(), tmp_path)
    before = p.read_bytes()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        results.write_record(_rec(extra_thing=object()), tmp_path)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cnn_small.json"]  # no temp file left behind


def test_load_records_skips_corrupt_files_with_one_log_line(tmp_path, helpers_log):
    results.write_record(_rec("good"), tmp_path)
    (tmp_path / "truncated.json").write_text('{"model": "x", "image_si')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "null.json").write_text("null")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "incomplete.json").write_text(json.dumps({"model": "y"}))
    recs = results.load_records(tmp_path)
    assert [r["model"] for r in recs] == ["good"]
    for name in ("truncated", "list", "null", "binary", "incomplete"):
        lines = [r for r in helpers_log.records if f"{name}.json" in r.getMessage()]
        assert len(lines) == 1, name
        assert lines[0].levelno == logging.WARNING and "ignored result file" in lines[0].getMessage()


def test_results_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOODCELLS_RESULTS_DIR", str(tmp_path / "reg"))
    p = results.write_record(_rec())
    assert p.parent == (tmp_path / "reg").resolve()
    assert len(results.load_records()) == 1


def test_comparison_table(tmp_path):
    recs = [_rec("a", train_seconds=600, params=10), _rec("b", test=None, weights_source="imagenet")]
    t = results.comparison_table(recs)
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "accuracy"] == pytest.approx(0.75) and t.loc["a", "train_min"] == 10.0
    assert t.loc["a", "weights"] == "random" and t.loc["b", "weights"] == "imagenet"
    assert pd.isna(t.loc["b", "accuracy"])
    assert results.comparison_table([]).empty


def test_label_efficiency_records_table_and_plot(tmp_path):
    import json

    from helpers.plots import label_efficiency_plot
    from helpers.results import label_efficiency_records, label_efficiency_table

    folder = tmp_path / "label_efficiency"
    folder.mkdir()
    for arm, n, seed, acc in (("scratch", 10, 42, 0.80), ("scratch", 10, 43, 0.84), ("transfer", 10, 42, 0.87),
                              ("scratch", 50, 42, 0.90), ("transfer", 50, 42, 0.93)):
        (folder / f"{arm}_{n}pc_s{seed}.json").write_text(json.dumps({
            "model": f"{arm}_{n}pc_s{seed}", "seed": seed, "train_seconds": 120.0,
            "label_efficiency": {"arm": arm, "per_class": n, "steps": 600,
                                 "batch_size": 64 if arm == "scratch" else 32},
            "test": {"accuracy": acc, "macro_f1": acc - 0.01,
                     "per_class": {"basophil": {"recall": acc - 0.1}, "ig": {"recall": acc - 0.2}}}}))
    points = label_efficiency_records(tmp_path)
    assert len(points) == 5 and points["minutes"].eq(2.0).all()
    assert points.groupby("arm")["batch_size"].first().to_dict() == {"scratch": 64, "transfer": 32}
    assert points.loc[points["arm"].eq("transfer") & points["per_class"].eq(10), "recall ig"].item() == \
        pytest.approx(0.67)
    table = label_efficiency_table(points)
    assert table.loc[10, ("mean", "scratch")] == pytest.approx(0.82) and table.loc[10, ("count", "scratch")] == 2
    assert table.loc[50, ("max", "transfer")] == pytest.approx(0.93)
    ax = label_efficiency_plot(points).axes[0]
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"


def test_spread_words_say_the_range_on_which_data_and_nothing_when_unmeasured():
    capped = {"min": 0.9, "max": 0.93, "seeds": [42, 43, 44], "budget": f"24 per class ({results.SMALLER_BUDGET})"}
    words = results.spread_words(capped)
    assert words["spread_text"].startswith("on that capped set the validation accuracy runs from 0.900 to 0.930")
    assert "3 seeds: ±1.5 points" in words["spread_text"]
    assert words["spread_half_pt"] == pytest.approx(1.5) and words["spread_range"] == "0.90–0.93"
    full = results.spread_words({**capped, "budget": "the whole split, 12 epochs"})
    assert full["spread_text"].startswith("on the full data")
    none = results.spread_words(None)
    assert none["spread_text"] == "no seed spread was measured for these classes"
    assert none["spread_range"] == "not measured" and none["spread_half_pt"] != none["spread_half_pt"]  # NaN


def test_schedule_words_judge_the_trials_against_the_first_schedules_seeds():
    """Chapter 6's schedule grew from 6 to 12 epochs: its trials are judged against the 6-epoch seeds, and the
    two schedules' seeds and test reads are set against each other (the committed records)."""
    from pathlib import Path

    from helpers.results import PILOTS, recipe_trials, schedule_seeds, schedule_words

    root = Path(__file__).resolve().parents[1] / "results"
    if not (root / PILOTS).is_file():
        pytest.skip("the committed pilots are not here")
    trials, runs = recipe_trials("mobilenetv2", root), schedule_seeds("mobilenetv2", root)
    first = int(trials[trials.index.str.startswith("earlier schedule")]["phase-3 epochs"].iloc[0])
    six = runs.loc[runs["phase-3 epochs"] == first, "val accuracy"].tolist()
    words = schedule_words(trials, runs, None, 12, 0.98, 3067)
    assert words["trials_longer"] == results.trial_verdicts(trials, results.retrain_tolerance(
        {"spread": {"values": six}}))["longer"]
    assert words["schedules"] == results.schedules_compared(runs, first, 12)
    assert words["schedules_test"].startswith("On the test split")
    same = schedule_words(trials.loc[~trials.index.str.startswith("earlier schedule")], runs, None, 12, 0.98, 3067)
    assert same["schedules"] == "only one schedule has several seeds"
    assert same["trials_lesson"]
