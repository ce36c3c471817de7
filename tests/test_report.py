"""Tests of helpers.report: reading the benchmark report that the book quotes."""
from __future__ import annotations

import pytest

from helpers import report


def _report(tmp_path, **sections):
    import json

    doc = {"finished": "2026-01-01 00:00 UTC", "git_commit": "abcdef0123",
           "machine": {"cpu_model": "X", "cpus_usable": 2}, "sections": sections}
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    return p


def test_report_summary_copies_the_headline_numbers(tmp_path):
    p = _report(tmp_path,
                pipeline={"key": {"naive": 100.0, "tuned_cached": 1500.0, "ratio_tuned_cached_vs_naive": 15.0,
                                  "fastest_model": "seed001_cnn"}},
                inference={"key": {"ms_per_image_1core": {"keras": 2.5, "tflite": 1.25}, "target_ms": 10.0,
                                   "model": "the `best` bundle", "tflite_check": {"agreement": 0.999, "n": 1000}},
                           "targets": [{"target": "≤ 10 ms", "value_ms": 2.5, "met": True, "margin": "-7.5 ms"}]},
                book={"key": {"total_minutes": 55.5, "complete": True}})
    doc = report.load_report(p)
    s = report.report_summary(doc)
    assert s["pipeline_ratio_vs_naive"] == 15.0 and s["pipeline_fastest_model"] == "bloodcells_cnn"  # renamed
    assert s["inference_keras_ms"] == 2.5 and s["inference_tflite_ms"] == 1.25
    assert s["inference_tflite_agreement"] == 0.999 and s["inference_tflite_n"] == 1000
    assert s["inference_model"] == "the best bundle"          # markdown backticks dropped for the prose
    assert s["inference_tta_views"] == 1 and "inference_single_view_tflite_ms" not in s
    assert s["book_minutes"] == 55.5 and s["cores"] == 2 and s["git_commit"] == "abcdef0"
    t = report.report_targets(doc)
    assert list(t["met"]) == ["yes"] and t["measured"][0] == "2.5 ms"


def test_report_summary_of_a_tta_model(tmp_path):
    """A TTA model's report also gives the single-view network's latency and the number of views."""
    p = _report(tmp_path, inference={"key": {"ms_per_image_1core": {"keras": 30.0, "tflite": 13.5}, "tta_views": 8,
                                             "single_view_ms_per_image_1core": {"keras": 9.0, "tflite": 1.7}}})
    s = report.report_summary(report.load_report(p))
    assert s["inference_tta_views"] == 8 and s["inference_tflite_ms"] == 13.5
    assert s["inference_single_view_tflite_ms"] == 1.7 and s["inference_single_view_keras_ms"] == 9.0


def test_report_summary_leaves_out_missing_sections(tmp_path):
    s = report.report_summary(report.load_report(_report(tmp_path)))
    assert not any(k.startswith(("pipeline_", "inference_", "book_")) for k in s)
    assert report.report_targets(report.load_report(_report(tmp_path))).empty


def test_find_report(tmp_path, monkeypatch):
    monkeypatch.delenv(report.REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert report.find_report() is None                          # nothing here: the chapter says what to run
    (tmp_path / "notebooks").mkdir()
    p = _report(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    p.rename(tmp_path / "benchmarks" / "results.json")
    monkeypatch.chdir(tmp_path / "notebooks")                   # a notebook runs in notebooks/
    assert report.find_report() == tmp_path / "benchmarks" / "results.json"
    with pytest.raises(FileNotFoundError, match="make bench"):
        report.find_report(tmp_path / "nope.json")
    monkeypatch.setenv(report.REPORT_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError):
        report.find_report()


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"finished": "x"}'])
def test_load_report_rejects_other_files(tmp_path, text):
    p = tmp_path / "results.json"
    p.write_text(text)
    with pytest.raises(ValueError, match="bench"):
        report.load_report(p)


def test_report_summary_of_the_runtime_comparison_and_the_served_configuration(tmp_path):
    doc = {"sections": {"inference": {"key": {
        "ms_per_image_1core": {"keras": 20.0, "litert": 9.0, "onnx": 7.5}, "tta_views": 8, "target_ms": 10.0,
        "runtime_checks": {"litert": {"agreement": 1.0, "n": 3000}, "onnx": {"error": "conversion failed"}},
        "served": {"runtime": "litert", "views": 4, "ms_per_image_1core": 6.1, "test_accuracy": 0.981,
                   "source_bundle": "transfer_mobilenetv2_tta", "fits_target": True}}}}}
    s = report.report_summary(doc)
    assert s["inference_onnx_ms"] == 7.5 and s["inference_litert_agreement"] == 1.0 and s["inference_litert_n"] == 3000
    assert "inference_onnx_agreement" not in s
    assert (s["served_runtime"], s["served_views"], s["served_ms"]) == ("litert", 4, 6.1)
    assert s["served_accuracy"] == 0.981 and s["served_fits"] is True  # its test accuracy


def test_old_reports_show_the_reference_cnns_by_their_current_names():
    doc = {"sections": {"pipeline": {"key": {"fastest_model": "seed004_cnn"}},
                        "training": {"key": {"seed001_cnn": {"img_per_s": 800.0},
                                             "improved_cnn": {"img_per_s": 200.0}}}}}
    assert report.report_summary(doc)["pipeline_fastest_model"] == "devnithw_cnn"
    assert list(report.training_table(doc).index) == ["bloodcells_cnn", "improved_cnn"]
