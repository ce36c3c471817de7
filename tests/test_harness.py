"""Tests of benchmarks/harness.py (set-ups in their own processes, per-layer timing, tables) and of the
benchmark sections' pure parts, with fake clocks: no timed assertions."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from benchfakes import FakeClock, tiny_model

import helpers
from helpers import bench

pytestmark = pytest.mark.slow  # starts benchmark worker processes that train

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
SRC = str(Path(helpers.__file__).resolve().parents[1])
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
import harness  # noqa: E402


def test_training_measurement_reference_cnn():
    x = np.random.default_rng(0).uniform(0, 255, (16, 24, 24, 3)).astype("float32")
    m = bench.training_measurements({"ref": lambda: harness.reference_cnn(24)}, x, np.arange(16) % 8, batch_size=8,
                                    repeats=1)[0]
    assert m.n_items == 16 and m.params["params_count"] > 0 and m.median > 0

def test_markdown_table():
    import pandas as pd

    md = harness.markdown_table(pd.DataFrame({"setup": ["a", "b"], "img/s": [1234.5, 3.14159]}))
    assert md.splitlines() == ["| setup | img/s |", "|---|---|", "| a | 1,234 |", "| b | 3.14 |"]

# ---------------------------------------------------------------------- subprocess workers
ECHO_WORKER = '''
import sys
sys.path.insert(0, {src!r})
sys.path.insert(0, {benchmarks!r})
import harness
out = harness.protocol_stream()
print("stray print that must not reach the protocol")
calls = []
def run(req):
    calls.append(req)
    return {{"n": int(req.get("n", 4)), "calls": len(calls)}}
def boom(req):
    raise ValueError("bad request")
harness.serve({{"run": run, "boom": boom}}, {{"built": "echo"}}, out=out)
'''


@pytest.fixture
def echo_worker(tmp_path):
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO_WORKER.format(src=SRC, benchmarks=BENCHMARKS))
    return [sys.executable, str(script)]


def test_worker_protocol_and_peak_memory(echo_worker):
    w = harness.Worker(echo_worker, name="echo", timeout=60)
    try:
        assert w.wait_ready() == {"ready": True, "built": "echo"}
        assert w.request({"cmd": "run", "n": 7}) == {"n": 7, "calls": 1}
        with pytest.raises(harness.WorkerError, match="ValueError: bad request"):
            w.request({"cmd": "boom"})
        with pytest.raises(harness.WorkerError, match="unknown command"):
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

    w = harness.Worker([sys.executable, "-c", "import sys; sys.stderr.write('import failed here'); sys.exit(3)"],
                     name="dies", timeout=60)
    with pytest.raises(harness.WorkerError, match="(?s)exited with code 3.*import failed here"):
        w.wait_ready()


def test_measure_workers_interleaves_and_counts(echo_worker):
    clock = FakeClock([1.0] * 6)
    w1, w2 = harness.Worker(echo_worker, name="a"), harness.Worker(echo_worker, name="b")
    try:
        ms = harness.measure_workers([("a", w1, {"cmd": "run", "n": 10}, 10, {"cores": 1}),
                                    ("b", w2, {"cmd": "run", "n": 20}, 20, {})], repeats=2, warmup=1,
                                   clock=lambda: clock.t)
        assert [m.name for m in ms] == ["a", "b"] and ms[0].params == {"cores": 1}
        assert all(len(m.seconds) == 2 for m in ms)
        with pytest.raises(RuntimeError, match="processed 10 items, expected 11"):
            harness.measure_workers([("a", w1, {"cmd": "run", "n": 10}, 11, {})], repeats=1, warmup=0)
    finally:
        w1.kill()
        w2.kill()


def test_run_json_returns_parsed_last_line():
    import sys

    code = "import json; print('log line'); print(json.dumps({'ms': 1.5, 'ok': True}))"
    assert harness.run_json([sys.executable, "-c", code], timeout=60) == {"ms": 1.5, "ok": True}
    with pytest.raises(harness.WorkerError, match="code 2"):
        harness.run_json([sys.executable, "-c", "import sys; sys.exit(2)"], timeout=60)
    with pytest.raises(harness.WorkerError, match="not JSON"):
        harness.run_json([sys.executable, "-c", "print('hello')"], timeout=60)


def test_limit_threads_validates_and_none_is_a_no_op():
    assert harness.limit_threads(None) == {"threads": None, "pinned": None}
    with pytest.raises(ValueError, match="at least 1"):
        harness.limit_threads(0)


def test_limit_threads_in_a_fresh_process():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no os.sched_setaffinity on this platform")
    code = (f"import sys, json, os; sys.path.insert(0, {SRC!r}); sys.path.insert(0, {BENCHMARKS!r}); "
            "import harness; info = harness.limit_threads(1); import tensorflow as tf; "
            "print(json.dumps({**info, 'intra': tf.config.threading.get_intra_op_parallelism_threads(), "
            "'inter': tf.config.threading.get_inter_op_parallelism_threads(), "
            "'affinity': len(os.sched_getaffinity(0))}))")
    got = harness.run_json([sys.executable, "-c", code], timeout=300)
    assert got["threads"] == 1 and got["intra"] == 1 and got["inter"] == 1
    assert got["affinity"] == 1 and len(got["pinned"]) == 1


# ---------------------------------------------------------------------- TFLite and the profile

def test_layer_times_opens_nested_models_and_shares_sum_to_one():
    model = tiny_model()
    x = np.random.default_rng(1).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    ticks = itertools.count()
    rows = harness.layer_times(model, x, repeats=3, clock=lambda: float(next(ticks)))  # fake clock: 1 s per call
    types = [r["type"] for r in rows]
    assert types == ["Rescaling", "Conv2D", "BatchNormalization", "GlobalAveragePooling2D", "Dense", "Dense"]
    assert {r["part"] for r in rows if r["type"] == "Dense"} == {"head"}
    assert all(r["ms"] == pytest.approx(1000.0) for r in rows)
    by_type = harness.share_by(rows, "type")
    assert by_type[0]["type"] == "Dense" and by_type[0]["layers"] == 2
    assert sum(d["share"] for d in by_type) == pytest.approx(1.0)
    by_part = harness.share_by(rows, "part")
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
    e2e = {s["family"]: s for s in specs if s["kind"] == "transfer_end_to_end"}  # every chapter runs phase 3
    assert set(e2e) == {"vgg19", "resnet50", "mobilenetv2"} and all(s["lr"] > 0 for s in e2e.values())
    assert e2e["vgg19"]["first_layer"] == "block4_conv1" and e2e["mobilenetv2"]["first_layer"] is None
    assert e2e["resnet50"]["first_layer"] == "conv3_block1_1_conv"  # the cpu recipe's, the parameter is None
    ft = [s["family"] for s in specs if s["kind"] == "transfer_finetune"]  # phase 2 only where it runs
    assert ft == ["mobilenetv2"]


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

def test_book_time_breakdown_reads_the_records(tmp_path, benchmarks_path):
    import json

    import book_bench

    (tmp_path / "ablation").mkdir()
    (tmp_path / "a.json").write_text(json.dumps({"model": "a", "mode": "book", "train_seconds": 100.0}))
    (tmp_path / "t.json").write_text(json.dumps({"model": "t", "mode": "book",
                                                 "phase_seconds": {"extract_train": 50.0, "phase3_end_to_end": 700.0}}))
    (tmp_path / "ablation" / "b.json").write_text(json.dumps({"model": "b", "mode": "book", "train_seconds": 30.0}))
    (tmp_path / "s.json").write_text(json.dumps({"model": "s", "mode": "smoke", "train_seconds": 999.0}))  # not book
    (tmp_path / "a_tta.json").write_text(json.dumps({"model": "a_tta", "mode": "book", "train_seconds": 100.0,
                                                     "tta": {"of": "a", "views": 2}}))  # a's training, once
    (tmp_path / "notebook_timings.json").write_text(json.dumps({"01.ipynb": {"seconds": 3}}))  # not a record
    rows = book_bench.time_breakdown(tmp_path, top=3)
    assert [(r["record"], r["part"]) for r in rows] == [("t", "phase3_end_to_end"), ("a", "training"),
                                                         ("t", "extract_train")]
    assert len(book_bench.time_breakdown(tmp_path)) == 3  # ablation/b ran outside the chapters
    assert not any(r["record"].startswith("ablation") for r in book_bench.time_breakdown(tmp_path))  # make ablation


def test_scratch_against_transfer_and_label_efficiency_read_the_records(tmp_path, benchmarks_path):
    """Each ImageNet model against the from-scratch model chosen on validation, one view against one view and
    TTA against TTA; smoke records do not count; the label-efficiency grid summarised per budget and arm."""
    import json

    import book_bench

    def rec(name, val_f1, acc, kind, mode="book", folder=tmp_path, **extra):
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps({
            "model": name, "mode": mode, "weights_source": {"kind": kind}, "image_size": 64, "epochs": 1,
            "train_seconds": 60.0, "data": {}, "seed": 42, "git_commit": "x",
            "val": {"macro_f1": val_f1, "accuracy": val_f1, "per_class": {}},
            "test": {"accuracy": acc, "macro_f1": acc, "per_class": {}}, **extra}))

    scratch = "none (trained from scratch)"
    rec("improved_cnn", 0.97, 0.975, scratch)
    rec("bloodcells_cnn", 0.93, 0.94, scratch)
    rec("improved_cnn_tta", 0.975, 0.980, scratch)
    rec("transfer_vgg19", 0.95, 0.960, "imagenet-keras-cache")
    rec("transfer_mobilenetv2_tta", 0.985, 0.990, "imagenet-local-file")
    rec("transfer_resnet50", 0.999, 0.999, "imagenet-local-file", mode="smoke")  # not counted
    rows = {r["transfer model"]: r for r in book_bench.scratch_vs_transfer(tmp_path)}
    assert set(rows) == {"transfer_vgg19", "transfer_mobilenetv2_tta"}
    assert rows["transfer_vgg19"]["from-scratch model"] == "improved_cnn"
    assert rows["transfer_vgg19"]["difference (points)"] == -1.5
    assert rows["transfer_mobilenetv2_tta"]["from-scratch model"] == "improved_cnn_tta"
    assert rows["transfer_mobilenetv2_tta"]["difference (points)"] == 1.0
    for seed, acc in ((42, 0.80), (43, 0.84)):
        rec(f"scratch_10pc_s{seed}", 0.8, acc, scratch, folder=tmp_path / "label_efficiency",
            label_efficiency={"arm": "scratch", "per_class": 10, "steps": 600})
    le = book_bench.label_efficiency(tmp_path)
    assert len(le) == 1 and (le[0]["images per class"], le[0]["arm"], le[0]["seeds"]) == (10, "scratch", 2)
    assert le[0]["mean test accuracy (%)"] == 82.0 and (le[0]["min (%)"], le[0]["max (%)"]) == (80.0, 84.0)
    assert not any(r["record"].startswith("label_efficiency") for r in book_bench.time_breakdown(tmp_path))

