"""tools/reproduce.py: a re-run's records beside the committed ones, within the spread they state or not."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import reproduce  # noqa: E402


def _write(folder: Path, name: str, val: float, test: float, spread: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"model": name, "val": {"accuracy": val, "macro_f1": val - 0.01},
           "test": {"accuracy": test, "macro_f1": test - 0.01}}
    if spread is not None:
        rec["spread"] = spread
    (folder / f"{name}.json").write_text(json.dumps(rec))


@pytest.fixture
def runs(tmp_path):
    committed, new = tmp_path / "committed", tmp_path / "new"
    # a full-data spread on test accuracy: sd 0.002 over 3 seeds, 95 % tolerance 4.30 × √2 × 0.002 = 0.0122
    _write(committed, "ref_cnn", 0.90, 0.91, {"budget": "full data", "values": [0.908, 0.910, 0.912],
                                              "test": {"accuracy": 0.002}})
    _write(new, "ref_cnn", 0.905, 0.925)
    # a spread measured on val at a smaller budget (sd 0.02, tolerance 0.12): it stands in for test accuracy
    _write(committed, "big_cnn", 0.97, 0.97, {"budget": "capped set", "values": [0.95, 0.97, 0.99],
                                              "val": {"accuracy": 0.02}})
    _write(new, "big_cnn", 0.96, 0.955)
    # no spread stated
    _write(committed, "tta", 0.97, 0.98)
    _write(new, "tta", 0.97, 0.98)
    _write(new, "brand_new", 0.5, 0.5)
    return committed, new


def test_records_table_says_within_or_not(runs):
    committed, new = runs
    rows, outside = reproduce.records_table(new, committed, {"ref_cnn.json", "big_cnn.json", "tta.json",
                                                            "brand_new.json"})
    by = {(r["model"], r["metric"]): r for r in rows}
    assert by["ref_cnn", "test accuracy"]["within"] is False  # 0.015 > 0.0122
    assert by["ref_cnn", "test accuracy"]["tolerance"] == pytest.approx(4.3027 * 2 ** 0.5 * 0.002, rel=1e-4)
    assert by["ref_cnn", "test accuracy"]["seeds"] == 3
    assert by["big_cnn", "test accuracy"]["within_half_range"] is True  # 0.015 <= 0.02
    assert by["ref_cnn", "val accuracy"]["within_half_range"] is False  # 0.005 > 0.002, yet within the tolerance
    assert by["ref_cnn", "test accuracy"]["difference"] == pytest.approx(0.015)
    assert by["ref_cnn", "val accuracy"]["within"] is True
    assert by["ref_cnn", "test macro_f1"]["within"] is None  # no spread of macro-F1 stated
    assert by["big_cnn", "val accuracy"]["within"] is True
    assert by["big_cnn", "test accuracy"]["within"] is True  # |−0.015| ≤ 0.12, the val spread standing in
    assert by["big_cnn", "test accuracy"]["spread_of"] == "val accuracy, capped set"
    assert by["tta", "test accuracy"]["within"] is None and by["tta", "test accuracy"]["spread"] is None
    assert by["brand_new", "test accuracy"]["committed"] is None and by["brand_new", "test accuracy"]["within"] is None
    assert outside == 1


def test_printed_table_names_where_each_spread_comes_from(runs):
    committed, new = runs
    rows, _ = reproduce.records_table(new, committed, {"ref_cnn.json", "big_cnn.json"})
    out = "\n".join(reproduce.records_report(rows))
    assert "yes [1]" in out and "NO [2]" in out  # rows by name: big_cnn, then ref_cnn
    assert "[1] spread: the seeds' val accuracy, capped set" in out
    assert "[2] spread: the seeds' test accuracy, full data" in out
    assert "95 % retrain tolerance" in out or "95 % tolerance" in out


def test_compare_skips_timings_and_names_changed_values():
    ref = {"chapters": {"03": {"records": {"a.json": {"test.accuracy": 0.9, "history.epoch_seconds": [1.0]}},
                               "glue": {"acc": 0.9, "train_minutes": 3.0}}}}
    same = {"chapters": {"03": {"records": {"a.json": {"test.accuracy": 0.9, "history.epoch_seconds": [9.0]}},
                                "glue": {"acc": 0.9, "train_minutes": 7.0}}}}
    assert reproduce.compare(same, ref) == []
    moved = json.loads(json.dumps(same))
    moved["chapters"]["03"]["glue"]["acc"] = 0.8
    assert reproduce.compare(moved, ref) == ["03: glue acc: 0.9 -> 0.8"]
    assert reproduce.compare({"chapters": {}}, ref) == ["03: not run"]


def test_no_run_compares_an_earlier_run_and_writes_the_report(runs, tmp_path, capsys):
    committed, new = runs
    out = new.parent
    (new.parent / "results").mkdir()
    for p in new.glob("*.json"):
        p.rename(out / "results" / p.name)
    snap = {"mode": "book", "deterministic": True,
            "chapters": {"03_baseline_cnn": {"seconds": 120.0, "records": {"ref_cnn.json": {}, "big_cnn.json": {}},
                                             "glue": {}}}}
    (out / "snapshot.json").write_text(json.dumps(snap))
    before = {p.name: p.read_text() for p in committed.glob("*.json")}
    status = reproduce.main(["--no-run", "--out", str(out), "--records", str(committed),
                             "--report", str(tmp_path / "report.md")])
    assert status == 1  # ref_cnn's test accuracy lies outside its spread
    report = (tmp_path / "report.md").read_text()
    assert "03_baseline_cnn (2.0 min)" in report and "1 outside" in report and "| ref_cnn | test accuracy |" in report
    assert "| ref_cnn | test accuracy |" in capsys.readouterr().out
    assert {p.name: p.read_text() for p in committed.glob("*.json")} == before  # the committed records: only read


def _snapshot(out: Path, chapter: str, records: list[str]) -> None:
    snap = {"mode": "book", "deterministic": True, "commit": "0123456789abcdef", "cpu": "Test CPU", "cores": 2,
            "date": "2026-01-02",
            "chapters": {chapter: {"seconds": 60.0, "records": {f"{r}.json": {} for r in records}, "glue": {}}}}
    (out / "snapshot.json").write_text(json.dumps(snap))


def test_collect_keeps_one_section_per_chapter_under_a_summary(runs, tmp_path):
    committed, new = runs
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    for p in new.glob("*.json"):
        (out / "results" / p.name).write_text(p.read_text())
    report = tmp_path / "REPRODUCE.md"
    args = ["--no-run", "--out", str(out), "--records", str(committed), "--collect", str(report)]
    _snapshot(out, "03_baseline_cnn", ["ref_cnn", "tta"])
    reproduce.main(args)
    _snapshot(out, "05_transfer_resnet50", ["big_cnn"])
    reproduce.main(args)
    text = report.read_text()
    assert text.count("## Chapter 03") == 1 and text.count("## Chapter 05") == 1
    assert "of commit 0123456 on Test CPU (2 cores), 2026-01-02: 03_baseline_cnn (1.0 min)" in text
    # the summary: one headline row per model with a committed number, in chapter order
    assert "| 03 | ref_cnn | test accuracy | 0.9100 | 0.9250 | +0.0150 | 0.0122 | NO | the run's own budget |" in text
    assert "| 03 | tta | test accuracy | 0.9800 | 0.9800 | +0.0000 | — | — | — |" in text
    # its spread says "capped set", not "not the full data": only the latter is read as a smaller budget
    assert "| 05 | big_cnn | test accuracy | 0.9700 | 0.9550 | -0.0150 | 0.1217 | yes | the run's own budget |" in text
    assert "1 of 2 headline numbers lie within their tolerance (1 more state no spread). The largest difference is "\
        "1.50 points (" in text
    assert "the median 1.50 points" in text
    data = json.loads(report.with_suffix(".json").read_text())
    assert set(data["runs"]) == {"03_baseline_cnn", "05_transfer_resnet50"}
    assert data["runs"]["03_baseline_cnn"]["outside"] == 1
    # re-running a chapter replaces its section, and the summary follows
    (out / "results" / "ref_cnn.json").write_text(json.dumps(
        {"model": "ref_cnn", "val": {"accuracy": 0.9}, "test": {"accuracy": 0.912}}))
    _snapshot(out, "03_baseline_cnn", ["ref_cnn"])
    reproduce.main(args)
    text = report.read_text()
    assert text.count("## Chapter 03") == 1 and "| 03 | tta |" not in text
    assert "2 of 2 headline numbers lie within their tolerance. The largest" in text


def test_headline_row_is_test_accuracy_else_val():
    rows = [{"model": "m", "metric": "val accuracy", "committed": 0.8, "new": 0.81},
            {"model": "m", "metric": "test accuracy", "committed": 0.9, "new": 0.91},
            {"model": "ablation", "metric": "val accuracy", "committed": 0.7, "new": 0.72},
            {"model": "ablation", "metric": "test accuracy", "committed": None, "new": None},
            {"model": "brand_new", "metric": "test accuracy", "committed": None, "new": 0.5}]
    picked = [(r["model"], r["metric"]) for r in reproduce.headline_rows(rows)]
    assert picked == [("m", "test accuracy"), ("ablation", "val accuracy")]


COLLECTED = Path(__file__).resolve().parents[1] / "benchmarks" / "REPRODUCE.json"


def test_the_collected_report_compares_with_the_records_committed_now():
    """benchmarks/REPRODUCE.md sets re-runs against the committed records: when a chapter's records change,
    its re-run must be made again (`make reproduce CHAPTER=NN REPRO_COLLECT=benchmarks/REPRODUCE.md`)."""
    runs = json.loads(COLLECTED.read_text())["runs"]
    results = COLLECTED.parents[1] / "results"
    stale = []
    for chapter, run in runs.items():
        for r in run["rows"]:
            split, metric = r["metric"].split()
            rec = results / r["record"]
            now = (json.loads(rec.read_text()).get(split) or {}).get(metric) if rec.is_file() else None
            if (now is None) != (r["committed"] is None) or (now is not None and abs(now - r["committed"]) > 5e-5):
                stale.append(f"{chapter}: {r['model']} {r['metric']}: report {r['committed']}, record {now}")
    assert not stale, "re-run these chapters: " + "; ".join(stale)
    assert (COLLECTED.with_suffix(".md").read_text() == reproduce.collected_markdown(runs))


def test_report_and_collect_need_the_committed_records(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--no-run", "--out", str(tmp_path), "--collect", str(tmp_path / "R.md")])
    assert "give --records too" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()
