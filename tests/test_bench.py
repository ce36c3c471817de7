"""Tests of helpers.bench: the statistics are right (with a fake clock: no timed assertions) and
the pipelines under test deliver the same images."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from PIL import Image

from helpers import bench


class FakeClock:
    """Each call to ``fn`` advances time by the next of ``durations``."""

    def __init__(self, durations):
        self.t = 0.0
        self.durations = iter(durations)

    def __call__(self) -> float:
        return self.t

    def step(self) -> int:
        self.t += next(self.durations)
        return 10


def test_measure_statistics():
    clock = FakeClock([5.0, 1.0, 2.0, 4.0])  # first is warm-up
    m = bench.measure(clock.step, 10, name="x", repeats=3, warmup=1, clock=clock, image_size=64)
    assert m.warmup_seconds == [5.0]
    assert m.seconds == [1.0, 2.0, 4.0]
    assert m.rates == [10.0, 5.0, 2.5]
    assert m.median == 5.0 and m.low == 2.5 and m.high == 10.0
    assert m.spread == pytest.approx(1.5)
    d = m.as_dict()
    assert d["median_per_s"] == 5.0 and d["params"] == {"image_size": 64}


def test_measure_checks_counts_and_arguments():
    with pytest.raises(RuntimeError, match="processed 3 items, expected 4"):
        bench.measure(lambda: 3, 4, name="drop", repeats=1, warmup=0)
    with pytest.raises(ValueError, match="repeats"):
        bench.measure(lambda: None, 4, repeats=0)
    with pytest.raises(ValueError, match="n_items"):
        bench.measure(lambda: None, 0)


def test_measurements_table_ratios():
    mk = lambda name, secs, size: bench.Measurement(name, 100, secs, params={"image_size": size})  # noqa: E731
    ms = [mk("naive", [1.0, 1.0, 1.0], 64), mk("tuned", [0.25, 0.25, 0.5], 64),
          mk("naive", [2.0, 2.0, 2.0], 96), mk("tuned", [0.5, 0.5, 0.5], 96)]
    t = bench.measurements_table(ms, baseline="naive")
    assert list(t["× naive"]) == pytest.approx([1.0, 4.0, 1.0, 4.0])
    assert list(t["images/s (median)"]) == pytest.approx([100, 400, 50, 200])
    with pytest.raises(ValueError, match="baseline 'nope'"):
        bench.measurements_table(ms, baseline="nope")


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        p = tmp_path / f"c{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (50, 44, 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(str(p))
    return paths


def test_naive_and_tuned_deliver_the_same_images(image_files):
    naive = list(bench.naive_batches(image_files, np.arange(7), 16, batch_size=3))
    assert [x.shape for x, _ in naive] == [(3, 16, 16, 3), (3, 16, 16, 3), (1, 16, 16, 3)]
    assert all(x.dtype == np.float32 for x, _ in naive)
    tuned = bench.make_dataset(image_files, np.arange(7), 16, batch_size=3)
    a = np.concatenate([x for x, _ in naive])
    b = np.concatenate([x.numpy() for x, _ in tuned])
    # different resampling code (Pillow vs TensorFlow), same pictures
    assert np.abs(a - b).mean() < 12
    assert bench.naive_epoch(image_files, 16, batch_size=3) == 7


@pytest.mark.parametrize("placement", ["batch", "image"])
def test_tuned_dataset_with_augmentation(image_files, placement):
    from helpers.augment import make_augmentation

    ds = bench.tuned_dataset(image_files, np.arange(7), 16, batch_size=4, augment=make_augmentation("seed001"),
                             placement=placement)
    assert bench.consume(ds) == 7
    assert bench.consume(ds) == 7  # second epoch from the cache


def test_tuned_dataset_rejects_unknown_placement(image_files):
    with pytest.raises(ValueError, match="placement"):
        bench.tuned_dataset(image_files, np.arange(7), 16, augment=lambda x, training: x, placement="model")


def test_pipeline_measurements_small(image_files):
    from helpers.augment import make_augmentation

    ms = bench.pipeline_measurements(image_files, 16, batch_size=4, repeats=1, cached_epochs=2,
                                     augment_factory=lambda: make_augmentation("seed001"))
    names = [m.name for m in ms]
    assert names == ["naive", "tuned, epoch 1", "tuned, cached", "naive + aug", "tuned, cached + aug per batch",
                     "tuned, cached + aug per image"]
    assert ms[2].n_items == 14 and all(m.median > 0 for m in ms)


def test_training_measurement_reference_cnn():
    x = np.random.default_rng(0).uniform(0, 255, (16, 24, 24, 3)).astype("float32")
    m = bench.training_measurement(lambda: bench.reference_cnn(24), x, np.arange(16) % 8, batch_size=8,
                                   repeats=1, name="ref")
    assert m.n_items == 16 and m.params["params_count"] > 0 and m.median > 0


def test_machine_info():
    info = bench.machine_info()
    assert info["cpu_count"] >= 1 and isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert set(info["libraries"]) >= {"tensorflow", "keras", "numpy"}
    assert info["libraries"]["numpy"] == np.__version__
    assert list(itertools.islice(info, 1))  # a non-empty dict


def test_markdown_table():
    import pandas as pd

    md = bench.markdown_table(pd.DataFrame({"setup": ["a", "b"], "img/s": [1234.5, 3.14159]}))
    assert md.splitlines() == ["| setup | img/s |", "|---|---|", "| a | 1,234 |", "| b | 3.14 |"]


def test_measure_interleaved_runs_round_robin():
    order = []
    clock = FakeClock([1.0] * 8)

    def make(name):
        def fn():
            order.append(name)
            return clock.step()
        return fn

    ms = bench.measure_interleaved([("a", make("a"), 10, {}), ("b", make("b"), 10, {"k": 1})], repeats=3,
                                   warmup=1, clock=clock)
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-ups, then rounds
    assert [m.name for m in ms] == ["a", "b"] and ms[1].params == {"k": 1}
    assert all(len(m.seconds) == 3 and len(m.warmup_seconds) == 1 for m in ms)


# ---------------------------------------------------------------------- subprocess workers
ECHO_WORKER = '''
import sys
sys.path.insert(0, {src!r})
from helpers import bench
out = bench.protocol_stream()
print("stray print that must not reach the protocol")
calls = []
def run(req):
    calls.append(req)
    return {{"n": int(req.get("n", 4)), "calls": len(calls)}}
def boom(req):
    raise ValueError("bad request")
bench.serve({{"run": run, "boom": boom}}, {{"built": "echo"}}, out=out)
'''


@pytest.fixture
def echo_worker(tmp_path):
    from pathlib import Path

    src = str(Path(bench.__file__).resolve().parents[1])
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO_WORKER.format(src=src))
    import sys

    return [sys.executable, str(script)]


def test_worker_protocol_and_peak_memory(echo_worker):
    w = bench.Worker(echo_worker, name="echo", timeout=60)
    try:
        assert w.wait_ready() == {"ready": True, "built": "echo"}
        assert w.request({"cmd": "run", "n": 7}) == {"n": 7, "calls": 1}
        with pytest.raises(bench.WorkerError, match="ValueError: bad request"):
            w.request({"cmd": "boom"})
        with pytest.raises(bench.WorkerError, match="unknown command"):
            w.request({"cmd": "nope"})
        assert w.request({"cmd": "run"})["calls"] == 2  # still serving after errors
        assert "stray print" in w._tail()  # went to the log, not the protocol
        info = w.close()
        # the worker's own peak (Python + numpy), not this large test process's (ru_maxrss survives exec)
        assert 1 < info["peak_rss_mb"] < 250
    finally:
        w.kill()
    assert not os.path.exists(w.log.name)  # a clean exit removes the log


def test_worker_that_dies_is_reported(tmp_path):
    import sys

    w = bench.Worker([sys.executable, "-c", "import sys; sys.stderr.write('import failed here'); sys.exit(3)"],
                     name="dies", timeout=60)
    with pytest.raises(bench.WorkerError, match="(?s)exited with code 3.*import failed here"):
        w.wait_ready()


def test_measure_workers_interleaves_and_counts(echo_worker):
    clock = FakeClock([1.0] * 6)
    w1, w2 = bench.Worker(echo_worker, name="a"), bench.Worker(echo_worker, name="b")
    try:
        ms = bench.measure_workers([("a", w1, {"cmd": "run", "n": 10}, 10, {"cores": 1}),
                                    ("b", w2, {"cmd": "run", "n": 20}, 20, {})], repeats=2, warmup=1,
                                   clock=lambda: clock.t)
        assert [m.name for m in ms] == ["a", "b"] and ms[0].params == {"cores": 1}
        assert all(len(m.seconds) == 2 for m in ms)
        with pytest.raises(RuntimeError, match="processed 10 items, expected 11"):
            bench.measure_workers([("a", w1, {"cmd": "run", "n": 10}, 11, {})], repeats=1, warmup=0)
    finally:
        w1.kill()
        w2.kill()


def test_run_json_returns_parsed_last_line():
    import sys

    code = "import json; print('log line'); print(json.dumps({'ms': 1.5, 'ok': True}))"
    assert bench.run_json([sys.executable, "-c", code], timeout=60) == {"ms": 1.5, "ok": True}
    with pytest.raises(bench.WorkerError, match="code 2"):
        bench.run_json([sys.executable, "-c", "import sys; sys.exit(2)"], timeout=60)
    with pytest.raises(bench.WorkerError, match="not JSON"):
        bench.run_json([sys.executable, "-c", "print('hello')"], timeout=60)


def test_limit_threads_validates_and_none_is_a_no_op():
    assert bench.limit_threads(None) == {"threads": None, "pinned": None}
    with pytest.raises(ValueError, match="at least 1"):
        bench.limit_threads(0)


def test_limit_threads_in_a_fresh_process():
    import os
    import sys
    from pathlib import Path

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no os.sched_setaffinity on this platform")
    src = str(Path(bench.__file__).resolve().parents[1])
    code = (f"import sys, json, os; sys.path.insert(0, {src!r}); from helpers import bench; "
            "info = bench.limit_threads(1); import tensorflow as tf; "
            "print(json.dumps({**info, 'intra': tf.config.threading.get_intra_op_parallelism_threads(), "
            "'inter': tf.config.threading.get_inter_op_parallelism_threads(), 'affinity': len(os.sched_getaffinity(0))}))")
    got = bench.run_json([sys.executable, "-c", code], timeout=300)
    assert got["threads"] == 1 and got["intra"] == 1 and got["inter"] == 1
    assert got["affinity"] == 1 and len(got["pinned"]) == 1


# ---------------------------------------------------------------------- TFLite and the profile
def _tiny_model(size: int = 16):
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(8, 3, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    head_in = keras.Input((8,))
    head = keras.Model(head_in, L.Dense(8, activation="softmax")(L.Dense(16, activation="relu")(head_in)), name="head")
    return keras.Model(inp, head(x), name="tiny")


def test_tflite_conversion_matches_keras_top1():
    model = _tiny_model()
    x = np.random.default_rng(1).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    content = bench.to_tflite(model)
    assert isinstance(content, bytes) and len(content) > 100
    lite = bench.TFLiteModel(content, threads=1)
    assert lite.runtime
    p_lite = np.concatenate([lite(x[:5]), lite(x[5:6]), lite(x[6:])])  # batch size changes re-allocate
    p_keras = np.asarray(model(x, training=False))
    assert p_lite.shape == p_keras.shape == (12, 8)
    np.testing.assert_array_equal(p_lite.argmax(1), p_keras.argmax(1))
    np.testing.assert_allclose(p_lite, p_keras, atol=1e-4)


def test_layer_times_opens_nested_models_and_shares_sum_to_one():
    model = _tiny_model()
    x = np.random.default_rng(1).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    ticks = itertools.count()
    rows = bench.layer_times(model, x, repeats=3, clock=lambda: float(next(ticks)))  # fake clock: 1 s per call
    types = [r["type"] for r in rows]
    assert types == ["Rescaling", "Conv2D", "BatchNormalization", "GlobalAveragePooling2D", "Dense", "Dense"]
    assert {r["part"] for r in rows if r["type"] == "Dense"} == {"head"}
    assert all(r["ms"] == pytest.approx(1000.0) for r in rows)
    by_type = bench.share_by(rows, "type")
    assert by_type[0]["type"] == "Dense" and by_type[0]["layers"] == 2
    assert sum(d["share"] for d in by_type) == pytest.approx(1.0)
    by_part = bench.share_by(rows, "part")
    assert {d["part"] for d in by_part} >= {"head"}
    assert [d for d in by_part if d["part"] == "head"][0]["share"] == pytest.approx(2 / 6)


# ---------------------------------------------------------------------- benchmark sections' pure parts
@pytest.fixture
def benchmarks_path():
    import sys
    from pathlib import Path

    d = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, d)
    yield d
    sys.path.remove(d)


def test_notebook_assignments_reads_literals_without_executing(tmp_path, benchmarks_path):
    import nbformat

    import training_bench

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("IMAGE_SIZE = 999  # not the parameters cell"),
                nbformat.v4.new_code_cell('MODE = "book"\nIMAGE_SIZE = 64\nA, B = 15, 2.5\nX = open("boom")\n'
                                          "%matplotlib inline", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("IMPROVED = dict(widths=(32, 64), dropout=0.3)\nOTHER = 1")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    assert training_bench.notebook_assignments(path) == {"MODE": "book", "IMAGE_SIZE": 64, "A": 15, "B": 2.5}
    assert training_bench.notebook_assignments(path, {"IMPROVED"}) == {"IMPROVED": {"widths": (32, 64),
                                                                                   "dropout": 0.3}}


def test_training_setups_follow_the_chapters(benchmarks_path):
    import training_bench

    specs = training_bench.setups(quick=False)
    kinds = [s["kind"] for s in specs]
    assert kinds.count("train_cnn") == 3 and kinds.count("frozen_lower") == 3
    assert {s["family"] for s in specs if "family" in s} == {"vgg19", "resnet50", "mobilenetv2"}
    assert all(s["epoch_images"] > 0 and s["batch_size"] > 0 for s in specs)
    e2e = [s for s in specs if s["kind"] == "transfer_end_to_end"]    # chapter 6 runs phase 3
    assert [s["family"] for s in e2e] == ["mobilenetv2"] and e2e[0]["lr"] > 0


def test_end_to_end_worker_trains(benchmarks_path):
    """The phase-3 set-up builds and takes a training step (tiny input)."""
    import bench_worker

    spec = {"kind": "transfer_end_to_end", "family": "mobilenetv2", "image_size": 32, "split_layer": "block_15_add",
            "batch_size": 4, "steps": 1, "head": {"units": 0, "dropout": 0.0}, "lr": 1e-4, "first_layer": None}
    handlers, info = bench_worker.build_training(spec)
    assert info["params_count"] > 2_000_000                     # the whole base is trainable (minus BN)
    assert handlers["run"]({})["n"] == 4


def test_book_times_reports_missing_notebooks(tmp_path, benchmarks_path):
    import json

    import book_bench

    p = tmp_path / "t.json"
    p.write_text(json.dumps({"01_a.ipynb": {"seconds": 60.0, "finished": "x"},
                             "09_gone.ipynb": {"seconds": 5.0, "finished": "y"}}))
    t = book_bench.book_times(p, ["01_a.ipynb", "02_b.ipynb"])
    assert t["total_seconds"] == 60.0 and t["missing"] == ["02_b.ipynb"] and not t["complete"]
    assert [r["notebook"] for r in t["rows"]] == ["01_a.ipynb", "02_b.ipynb", "09_gone.ipynb"]
    t2 = book_bench.book_times(tmp_path / "absent.json", ["01_a.ipynb"])
    assert t2["missing"] == ["01_a.ipynb"] and t2["total_seconds"] == 0


# ---------------------------------------------------------------------------------------------
# Reading the report that the book quotes
# ---------------------------------------------------------------------------------------------
def _report(tmp_path, **sections):
    import json

    doc = {"finished": "2026-01-01 00:00 UTC", "git_commit": "abcdef0123", "machine": {"cpu_model": "X", "cpus_usable": 2},
           "sections": sections}
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
    doc = bench.load_report(p)
    s = bench.report_summary(doc)
    assert s["pipeline_ratio_vs_naive"] == 15.0 and s["pipeline_fastest_model"] == "seed001_cnn"
    assert s["inference_keras_ms"] == 2.5 and s["inference_tflite_ms"] == 1.25
    assert s["inference_tflite_agreement"] == 0.999 and s["inference_tflite_n"] == 1000
    assert s["inference_model"] == "the best bundle"          # markdown backticks dropped for the prose
    assert s["inference_tta_views"] == 1 and "inference_single_view_tflite_ms" not in s
    assert s["book_minutes"] == 55.5 and s["cores"] == 2 and s["git_commit"] == "abcdef0"
    t = bench.report_targets(doc)
    assert list(t["met"]) == ["yes"] and t["measured"][0] == "2.5 ms"


def test_report_summary_of_a_tta_model(tmp_path):
    """A TTA model's report also gives the single-view network's latency and the number of views."""
    p = _report(tmp_path, inference={"key": {"ms_per_image_1core": {"keras": 30.0, "tflite": 13.5}, "tta_views": 8,
                                             "single_view_ms_per_image_1core": {"keras": 9.0, "tflite": 1.7}}})
    s = bench.report_summary(bench.load_report(p))
    assert s["inference_tta_views"] == 8 and s["inference_tflite_ms"] == 13.5
    assert s["inference_single_view_tflite_ms"] == 1.7 and s["inference_single_view_keras_ms"] == 9.0


def test_report_summary_leaves_out_missing_sections(tmp_path):
    s = bench.report_summary(bench.load_report(_report(tmp_path)))
    assert not any(k.startswith(("pipeline_", "inference_", "book_")) for k in s)
    assert bench.report_targets(bench.load_report(_report(tmp_path))).empty


def test_find_report(tmp_path, monkeypatch):
    monkeypatch.delenv(bench.REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert bench.find_report() is None                          # nothing here: the chapter says what to run
    (tmp_path / "notebooks").mkdir()
    p = _report(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    p.rename(tmp_path / "benchmarks" / "results.json")
    monkeypatch.chdir(tmp_path / "notebooks")                   # a notebook runs in notebooks/
    assert bench.find_report() == tmp_path / "benchmarks" / "results.json"
    with pytest.raises(FileNotFoundError, match="make bench"):
        bench.find_report(tmp_path / "nope.json")
    monkeypatch.setenv(bench.REPORT_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError):
        bench.find_report()


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"finished": "x"}'])
def test_load_report_rejects_other_files(tmp_path, text):
    p = tmp_path / "results.json"
    p.write_text(text)
    with pytest.raises(ValueError, match="bench"):
        bench.load_report(p)


def test_book_time_breakdown_reads_the_records(tmp_path, benchmarks_path):
    import json

    import book_bench

    (tmp_path / "ablation").mkdir()
    (tmp_path / "a.json").write_text(json.dumps({"model": "a", "mode": "book", "train_seconds": 100.0}))
    (tmp_path / "t.json").write_text(json.dumps({"model": "t", "mode": "book",
                                                 "phase_seconds": {"extract_train": 50.0, "phase3_end_to_end": 700.0}}))
    (tmp_path / "ablation" / "b.json").write_text(json.dumps({"model": "b", "mode": "book", "train_seconds": 30.0}))
    (tmp_path / "s.json").write_text(json.dumps({"model": "s", "mode": "smoke", "train_seconds": 999.0}))  # not book
    (tmp_path / "notebook_timings.json").write_text(json.dumps({"01.ipynb": {"seconds": 3}}))  # not a record
    rows = book_bench.time_breakdown(tmp_path, top=3)
    assert [(r["record"], r["part"]) for r in rows] == [("t", "phase3_end_to_end"), ("a", "training"),
                                                         ("t", "extract_train")]
    assert book_bench.time_breakdown(tmp_path)[-1] == {"record": "ablation/b", "part": "training", "seconds": 30.0}
