"""Tests of helpers.bench: the statistics are right (with a fake clock: no timed assertions) and
the pipelines under test deliver the same images."""
from __future__ import annotations

import itertools

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
