"""Tests of helpers.bench: the statistics are right (with a fake clock: no timed assertions), the
pipelines under test deliver the same images, and the speed probes of chapters 4–6 give speeds."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from benchfakes import FakeClock
from PIL import Image

from helpers import bench


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

    ds = bench.tuned_dataset(image_files, np.arange(7), 16, batch_size=4, augment=make_augmentation("flip_rotate"),
                             placement=placement)
    assert bench.consume(ds) == 7
    assert bench.consume(ds) == 7  # second epoch from the cache


def test_tuned_dataset_rejects_unknown_placement(image_files):
    with pytest.raises(ValueError, match="placement"):
        bench.tuned_dataset(image_files, np.arange(7), 16, augment=lambda x, training: x, placement="model")


def test_pipeline_measurements_small(image_files):
    from helpers.augment import make_augmentation

    ms = bench.pipeline_measurements(image_files, 16, batch_size=4, repeats=1, cached_epochs=2,
                                     augment_factory=lambda: make_augmentation("flip_rotate"))
    names = [m.name for m in ms]
    assert names == ["naive", "tuned, epoch 1", "tuned, cached", "naive + aug", "tuned, cached + aug per batch",
                     "tuned, cached + aug per image"]
    assert ms[2].n_items == 14 and all(m.median > 0 for m in ms)

def test_machine_info():
    info = bench.machine_info()
    assert info["cpu_count"] >= 1 and isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert set(info["libraries"]) >= {"tensorflow", "keras", "numpy"}
    assert info["libraries"]["numpy"] == np.__version__
    assert list(itertools.islice(info, 1))  # a non-empty dict

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


@pytest.mark.slow  # trains
def test_measure_forward_and_train_give_speeds():
    """Both speed probes return a positive rate; an unknown first layer is named in the error."""
    from helpers.bench import measure_forward, measure_train

    fwd = measure_forward("mobilenetv2", 32, batch_size=4, seconds=0.05)
    train = measure_train("mobilenetv2", 32, batch_size=4, seconds=0.05)
    assert np.isfinite(fwd) and fwd > 0 and np.isfinite(train) and train > 0
    late = measure_train("mobilenetv2", 32, first_layer="block_16_expand", batch_size=4, seconds=0.05)
    assert late > 0
    with pytest.raises(ValueError, match="no layer 'nope'"):
        measure_train("mobilenetv2", 32, first_layer="nope", batch_size=4, seconds=0.05)


@pytest.mark.slow  # builds a base
def test_speed_table_prices_a_pass_and_an_epoch():
    """One row per size; the minutes follow from the measured rates and the counts given."""
    from helpers.bench import speed_table

    t = speed_table("mobilenetv2", (32,), n_images=1000, n_train=600, first_layer="block_16_expand", seconds=0.05)
    assert list(t.index) == [32]
    row = t.loc[32]
    assert row["img/s"] > 0 and row["training img/s"] > 0
    assert row["minutes per 1,000 images"] == pytest.approx(1000 / row["img/s"] / 60, abs=0.06)
    assert row["minutes per training epoch"] == pytest.approx(600 / row["training img/s"] / 60, abs=0.06)
    assert "training img/s" not in speed_table("mobilenetv2", (32,), n_images=10, seconds=0.05)
