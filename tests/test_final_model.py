"""One final model, and a speed report no older than what it describes (issue #32.1 and #32.3).

The model chapter 8 publishes (the highest validation macro-F1 of the scored runs) is the model the command line
and the app serve (``results/served.json``, written by the benchmark), with its own views and its own accuracy;
and every section of ``benchmarks/results.json`` was measured after the records it describes were written.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import nbformat
import pytest
from test_results_consistency import glued_values

from helpers.results import final_model, load_records, served_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
REPORT = ROOT / "benchmarks" / "results.json"
CHAPTER = ROOT / "notebooks" / "08_evaluation.ipynb"


def when(text: str) -> dt.datetime:
    """A record's ``created`` (ISO) or a report's ``finished`` (``YYYY-MM-DD HH:MM:SS UTC``), in UTC."""
    t = dt.datetime.fromisoformat(text.replace(" UTC", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return {r["model"]: r for r in load_records(RESULTS)}


def test_the_served_model_is_the_published_final_model(records):
    name = final_model(list(records.values()))
    served = served_record(RESULTS)
    assert name and served, "the final model and its served record are committed"
    final, sv = records[name], served["serving"]
    assert sv["source_bundle"] == name, f"the book publishes {name}; the command line serves {sv['source_bundle']}"
    assert sv["views"] == int((final.get("tta") or {}).get("views", 1)), "served with fewer views than published"
    for split in ("val", "test"):  # an agreeing runtime gives Keras' class on every cell: the same accuracy
        assert served[split]["accuracy"] == pytest.approx(final[split]["accuracy"], abs=1e-9), split
    glued = glued_values(nbformat.read(CHAPTER, as_version=4))
    assert glued.get("best_model", "").strip("'\"") == name, "chapter 8 publishes another model"
    assert name in glued.get("served_text", "") and f"{sv['ms_per_image_1core']:.1f} ms" in glued["served_text"]


def test_no_report_section_is_older_than_the_records_it_describes(records):
    report = json.loads(REPORT.read_text())
    trained = max(when(r["created"]) for n, r in records.items() if n != "served")
    stale = [f"{name} ({sec['finished']})" for name, sec in report["sections"].items()
             if name in ("pipeline", "training", "inference") and when(sec["finished"]) < trained]
    assert not stale, f"re-run the benchmark: sections measured before the newest record ({trained}): {stale}"
    assert when(served_record(RESULTS)["created"]) >= trained, "served.json predates the model it serves"
    timings = json.loads((RESULTS / "notebook_timings.json").read_text())
    last_chapter = max(when(t["finished"] + "+00:00") for t in timings.values())
    book = report["sections"]["book"]
    assert when(book["finished"]) >= last_chapter, "the book section predates the last chapter run"


def test_the_final_model_is_chosen_on_validation_among_scored_runs():
    recs = [{"model": "a", "scores": {"file": "a.npz"}, "val": {"macro_f1": 0.95}, "test": {"macro_f1": 0.99}},
            {"model": "b", "scores": {"file": "b.npz"}, "val": {"macro_f1": 0.97}, "test": {"macro_f1": 0.90}},
            {"model": "c", "val": {"macro_f1": 0.99}},  # no saved scores: not a candidate
            {"model": "served", "scores": {"file": "s.npz"}, "val": {"macro_f1": 0.98}}]  # a copy of "b"
    assert final_model(recs) == "b"
    assert final_model(recs[2:]) is None


def test_the_running_page_gives_each_chapters_time_as_last_run():
    """``book/running.md`` tells a reader how long each chapter takes: the block ``make bench`` writes from the
    notebook timings, the same numbers as the timings now hold."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import book_bench

    page = (ROOT / "book" / "running.md").read_text(encoding="utf-8")
    assert book_bench.TIMES_START in page and book_bench.TIMES_END in page
    shown = book_bench.TIMES_START + page.split(book_bench.TIMES_START, 1)[1].split(book_bench.TIMES_END, 1)[0]
    expected = book_bench.chapter_times_block(ROOT / "notebooks", RESULTS / "notebook_timings.json", RESULTS)
    assert shown + book_bench.TIMES_END == expected, "re-run the benchmark's book section (make bench)"


def test_the_chapter_times_block_replaces_only_itself(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import book_bench

    page = tmp_path / "running.md"
    page.write_text(f"before\n{book_bench.TIMES_START}\nold\n{book_bench.TIMES_END}\nafter\n")
    assert book_bench.write_running_times(f"{book_bench.TIMES_START}\nnew\n{book_bench.TIMES_END}", page)
    assert page.read_text() == f"before\n{book_bench.TIMES_START}\nnew\n{book_bench.TIMES_END}\nafter\n"
    page.write_text("no block\n")
    assert not book_bench.write_running_times("x", page) and page.read_text() == "no block\n"
