"""Measuring throughput (images per second): the measurements chapter 2 and chapters 4–6 show.

A timing on a busy machine is noisy, so every number here comes from :func:`measure`: one or
more un-timed warm-up runs (graph tracing, caches, thread pools), then ``repeats`` timed runs,
reported as the median with the min–max spread. Compare two set-ups only through ratios of
medians measured in the same run, never across runs or machines.

The input pipelines compared (chapter 2):

* :func:`naive_epoch` — a plain Python loop: open each file with Pillow, resize, stack into a
  batch, one image after the other (what a first attempt looks like);
* :func:`tuned_dataset` — ``tf.data``: parallel decode + resize, an in-memory cache of the
  small ``uint8`` images, shuffle, batch, augmentation after the cache (per batch or per
  image), prefetch (:func:`helpers.pipeline.make_dataset` is the per-batch version).

How fast a model consumes images: :func:`training_epoch` is the one training-speed probe
(:func:`training_measurements` in chapter 2, :func:`measure_train` in chapters 4–6, and the
benchmark workers); :func:`measure_forward` is the forward-pass speed of a transfer base.
The process-pool harness and per-layer timing of ``make bench`` live in ``benchmarks/harness.py``,
the report readers in :mod:`helpers.report`, TFLite in :mod:`helpers.serve`.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import cpu_model
from .pipeline import AUTOTUNE, decode_resize, make_dataset, validate_image_size

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Measurement:
    """Repeated timings of one set-up: ``n_items`` processed per timed run, in ``seconds``."""

    name: str
    n_items: int
    seconds: list[float]
    warmup_seconds: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def rates(self) -> list[float]:
        """Items per second of every timed run."""
        return [self.n_items / s if s > 0 else float("inf") for s in self.seconds]

    @property
    def median(self) -> float:
        """Median items per second (the number to report)."""
        return float(statistics.median(self.rates))

    @property
    def low(self) -> float:
        return float(min(self.rates))

    @property
    def high(self) -> float:
        return float(max(self.rates))

    @property
    def spread(self) -> float:
        """(max − min) / median of the rates: 0.1 means the runs differed by 10 %."""
        return (self.high - self.low) / self.median if self.median else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(median_per_s=self.median, min_per_s=self.low, max_per_s=self.high, spread=self.spread)
        return d


def measure(fn: Callable[[], int | None], n_items: int, *, name: str = "", repeats: int = 3, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter, **params: Any) -> Measurement:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``fn`` processes ``n_items`` items per call; if it returns an integer, that must equal
    ``n_items`` (catches a pipeline that silently drops images).
    """
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    return measure_interleaved([(name, fn, n_items, params)], repeats=repeats, warmup=warmup, clock=clock)[0]


def measure_interleaved(setups: Sequence[tuple[str, Callable[[], int | None], int, dict[str, Any]]], *,
                        repeats: int = 3, warmup: int = 1, clock: Callable[[], float] = time.perf_counter,
                        progress: Callable[[str], None] | None = None) -> list[Measurement]:
    """Like :func:`measure` for several set-ups ``(name, fn, n_items, params)``, run round-robin.

    Every set-up is warmed up first; then each round times every set-up once. On a shared machine
    the load changes from minute to minute: interleaving spreads those changes over all set-ups
    instead of penalising whichever happened to run during a busy spell, so their *ratios* are fairer.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, got {warmup}")
    say = progress or (lambda s: None)

    def once(name: str, fn: Callable[[], int | None], n: int) -> float:
        t0 = clock()
        got = fn()
        dt = clock() - t0
        if got is not None and int(got) != n:
            raise RuntimeError(f"{name or 'benchmark'}: processed {got} items, expected {n}")
        return dt

    out = []
    for name, fn, n, params in setups:
        if n < 1:
            raise ValueError(f"{name}: n_items must be positive, got {n}")
        say(f"warm-up: {name}")
        out.append(Measurement(name=name, n_items=int(n), seconds=[],
                               warmup_seconds=[once(name, fn, n) for _ in range(warmup)], params=dict(params)))
    for r in range(repeats):
        say(f"timed round {r + 1}/{repeats}")
        for m, (name, fn, n, _) in zip(out, setups):
            m.seconds.append(once(name, fn, n))
    return out


def measurements_table(ms: Sequence[Measurement], baseline: str | None = None) -> pd.DataFrame:
    """One row per measurement: median items/s, min–max, spread and the ratio to ``baseline``.

    ``baseline`` is the name of a measurement (the first one when omitted); rows with the same
    ``image_size`` parameter are compared with the baseline of that size when one exists.
    """
    import pandas as pd

    if not ms:
        raise ValueError("no measurements to tabulate")
    base_name = baseline or ms[0].name
    bases = {m.params.get("image_size"): m.median for m in ms if m.name == base_name}
    if not bases:
        raise ValueError(f"baseline {base_name!r} is not among the measurements {[m.name for m in ms]}")
    rows = []
    for m in ms:
        b = bases.get(m.params.get("image_size"), next(iter(bases.values())))
        rows.append({"setup": m.name, **{k: v for k, v in m.params.items() if k in ("image_size",)},
                     "images/s (median)": m.median, "min": m.low, "max": m.high,
                     "spread": m.spread, "runs": len(m.seconds), f"× {base_name}": m.median / b})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The pipelines under test
# --------------------------------------------------------------------------------------------
def naive_batches(paths: Sequence[str], labels: Sequence[int] | np.ndarray, image_size: int | Sequence[int] = 64,
                  batch_size: int = 32, augment: Callable | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The naive loader: Pillow opens and resizes each file in turn; batches of ``float32`` [0, 255].

    With ``augment`` the augmenter is called eagerly on every batch.
    """
    from PIL import Image

    h, w = validate_image_size(image_size)
    labels = np.asarray(labels, dtype="int32")
    for start in range(0, len(paths), batch_size):
        imgs = []
        for p in paths[start:start + batch_size]:
            with Image.open(p) as im:
                imgs.append(np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype="float32"))
        x = np.stack(imgs)
        if augment is not None:
            x = np.asarray(augment(x, training=True))
        yield x, labels[start:start + batch_size]


def consume(batches: Iterable) -> int:
    """Iterate over batches ``(x, y)`` (a ``tf.data.Dataset`` or a generator); return the image count."""
    n = 0
    for x, _ in batches:
        n += int(x.shape[0])
    return n


def naive_epoch(paths: Sequence[str], image_size: int | Sequence[int] = 64, batch_size: int = 32,
                augment: Callable | None = None) -> int:
    """One pass of :func:`naive_batches` over ``paths``; returns the number of images."""
    return consume(naive_batches(paths, np.zeros(len(paths), "int32"), image_size, batch_size, augment))


def tuned_dataset(paths: Sequence[str], labels: Sequence[int] | np.ndarray, image_size: int | Sequence[int] = 64,
                  batch_size: int = 32, *, augment: Callable | None = None, placement: str = "batch",
                  cache: bool = True, seed: int = 42):
    """The tuned ``tf.data`` pipeline, with augmentation after the cache ``per "batch"`` or ``per "image"``.

    ``placement="batch"`` is exactly :func:`helpers.pipeline.make_dataset` (shuffled). ``"image"``
    calls the augmenter on every single image before batching, for comparison.
    """
    if placement == "batch" or augment is None:
        return make_dataset(paths, labels, image_size, batch_size, shuffle=True, augment=augment, cache=cache,
                            seed=seed)
    if placement != "image":
        raise ValueError(f"placement must be 'batch' or 'image', got {placement!r}")
    import tensorflow as tf

    size = validate_image_size(image_size)
    ds = tf.data.Dataset.from_tensor_slices((list(map(str, paths)), np.asarray(labels, dtype="int32")))
    ds = ds.map(lambda p, y: (decode_resize(p, size), y), num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    ds = ds.shuffle(min(len(paths), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, y: (augment(tf.cast(x, tf.float32)[None], training=True)[0], y),
                num_parallel_calls=AUTOTUNE)
    return ds.batch(int(batch_size)).prefetch(AUTOTUNE)


def pipeline_measurements(paths: Sequence[str], image_size: int = 64, *, batch_size: int = 32,
                          augment_factory: Callable[[], Callable] | None = None, repeats: int = 3,
                          cached_epochs: int = 3, placements: Sequence[str] = ("batch", "image"),
                          naive_augment: bool = True, progress: Callable[[str], None] | None = None
                          ) -> list[Measurement]:
    """Images/s of the naive loop and the tuned pipeline at one ``image_size`` (interleaved runs).

    Set-ups (``name``): ``naive``; ``tuned, epoch 1`` (parallel decode that fills the cache, a fresh
    dataset per run); ``tuned, cached`` (later epochs, ``cached_epochs`` per timed run); and with
    ``augment_factory`` also ``naive + aug`` and ``tuned, cached + aug per <placement>``. The warm-up
    run of each cached set-up fills its cache.
    """
    paths = list(map(str, paths))
    n = len(paths)
    if n == 0:
        raise ValueError("pipeline_measurements needs at least one image path")
    y = np.zeros(n, "int32")
    common = {"image_size": int(image_size), "batch_size": batch_size, "n_images": n}
    ds = tuned_dataset(paths, y, image_size, batch_size)
    setups: list[tuple[str, Callable[[], int | None], int, dict[str, Any]]] = [
        ("naive", lambda: naive_epoch(paths, image_size, batch_size), n, common),
        ("tuned, epoch 1", lambda: consume(tuned_dataset(paths, y, image_size, batch_size)), n, common),
        ("tuned, cached", lambda: sum(consume(ds) for _ in range(cached_epochs)), n * cached_epochs, common),
    ]
    if augment_factory is not None:
        if naive_augment:
            aug = augment_factory()
            setups.append(("naive + aug", lambda: naive_epoch(paths, image_size, batch_size, aug), n, common))
        for placement in placements:
            ds_a = tuned_dataset(paths, y, image_size, batch_size, augment=augment_factory(), placement=placement)
            setups.append((f"tuned, cached + aug per {placement}", lambda d=ds_a: consume(d), n, common))
    say = progress or (lambda s: None)
    return measure_interleaved(setups, repeats=repeats, warmup=1,
                               progress=lambda s: say(f"{image_size}px {s}"))


# --------------------------------------------------------------------------------------------
# How fast a model consumes images
# --------------------------------------------------------------------------------------------
def training_epoch(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 32,
                   learning_rate: float = 1e-3) -> Callable[[], int]:
    """Compile ``model`` as the chapters train it (:func:`helpers.train.compile_classifier`) and return a
    function that trains it for one epoch over the in-memory ``(x, y)`` and returns the image count.

    The batches are cached in memory, so a call costs the model's training steps and no input
    pipeline. This is the one training-speed probe: chapter 2 (:func:`training_measurements`),
    chapters 4–6 (:func:`measure_train`) and the benchmark workers time calls of it.
    """
    import tensorflow as tf

    from .train import compile_classifier

    n = int(len(x))
    if n == 0:
        raise ValueError("a training epoch needs at least one image")
    compile_classifier(model, learning_rate)
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x, "float32"), np.asarray(y, "int32")))
    ds = ds.batch(int(batch_size)).cache().prefetch(AUTOTUNE)

    def epoch() -> int:
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        return n

    return epoch


def training_measurements(model_factories: dict[str, Callable[[], Any]], x: np.ndarray, y: np.ndarray, *,
                          batch_size: int = 32, repeats: int = 3, **params: Any) -> list[Measurement]:
    """Training images/s of freshly built models on in-memory batches (no input-pipeline cost).

    Each model trains through :func:`training_epoch`; its warm-up epoch traces the training step;
    then each timed run is one epoch over ``x``, the models taking turns (:func:`measure_interleaved`).
    """
    if len(x) == 0:
        raise ValueError("training_measurements needs at least one image")
    setups = []
    for name, factory in model_factories.items():
        model = factory()
        setups.append((name, training_epoch(model, x, y, batch_size=batch_size), int(len(x)),
                       {"batch_size": batch_size, "params_count": int(model.count_params()), **params}))
    return measure_interleaved(setups, repeats=repeats, warmup=1)


def _random_base(family: str, image_size: int):
    """An ImageNet application of ``family`` with random weights, pooled (speed does not depend on weights)."""
    from .weights import application

    return application(family)(include_top=False, weights=None, input_shape=(image_size, image_size, 3),
                               pooling="avg")


def measure_forward(family: str, image_size: int, batch_size: int = 32, seconds: float = 3.0) -> float:
    """Forward-pass speed (img/s) of a randomly initialised base at ``image_size`` — the cost of
    one pass over the data, measured before choosing a size (chapters 4–6)."""
    import tensorflow as tf

    base = _random_base(family, image_size)
    f = tf.function(lambda x: base(x, training=False))
    x = tf.random.uniform((batch_size, image_size, image_size, 3), 0, 255)
    f(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        f(x)
        n += batch_size
    return n / (time.perf_counter() - t0)


def measure_train(family: str, image_size: int, first_layer: str | None = None, batch_size: int = 32,
                  seconds: float = 3.0, n_classes: int = 8, warmup_steps: int = 3, min_steps: int = 3) -> float:
    """Training speed (img/s) of fine-tuning the base from ``first_layer`` up (``None``: every layer,
    batch-norm frozen as in :func:`helpers.transfer.unfreeze_from`) with a softmax head: forward, backward
    and Adam update (:func:`training_epoch`, one batch per epoch) on random images of ``image_size`` (random
    weights — the cost does not depend on them). This is what each epoch of phase 3 pays per image, before
    augmentation and validation (chapters 4–6). The first ``warmup_steps`` steps are not timed, then at
    least ``min_steps`` and ``seconds``: at ResNet50's speed a 2-second window holds a single step, and the
    steps right after building a model are not the steady state."""
    import keras

    from .transfer import unfreeze_from

    base = _random_base(family, image_size)
    unfreeze_from(base, first_layer)
    inp = keras.Input((image_size, image_size, 3))
    model = keras.Model(inp, keras.layers.Dense(n_classes, activation="softmax")(base(inp, training=False)))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    epoch = training_epoch(model, x, np.arange(batch_size) % n_classes, batch_size=batch_size, learning_rate=1e-4)
    for _ in range(warmup_steps):  # tracing, first-step allocations and oneDNN's kernel set-up run slower
        epoch()
    n, steps, t0 = 0, 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - t0 < seconds:
        n += epoch()
        steps += 1
    return n / (time.perf_counter() - t0)


def speed_table(family: str, sizes: Sequence[int], n_images: int, n_train: int | None = None,
                first_layer: str | None = None, seconds: float = 2.0):
    """Chapters 4–6's speed table: forward img/s at each size and the minutes of one pass over
    ``n_images``; with ``n_train``, also the training speed from ``first_layer`` up (phase 3's cost per
    image) and the minutes of one training epoch over ``n_train`` images."""
    import pandas as pd

    rows = []
    for size in sizes:
        fwd = measure_forward(family, size, seconds=seconds)
        row = {"image_size": size, "img/s": round(fwd, 1), f"minutes per {n_images:,} images":
               round(n_images / fwd / 60, 1)}
        if n_train is not None:
            train = measure_train(family, size, first_layer=first_layer, seconds=seconds)
            row["training img/s"] = round(train, 1)
            row["minutes per training epoch"] = round(n_train / train / 60, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("image_size")


# --------------------------------------------------------------------------------------------
# Where the numbers were taken
# --------------------------------------------------------------------------------------------
def library_versions(names: Sequence[str] = ("tensorflow", "keras", "numpy", "pillow", "scikit-learn")) -> dict:
    """Installed versions of ``names`` (``None`` for a missing one)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for n in names:
        out[n] = None
        for dist in (n, f"{n}-cpu"):  # TensorFlow is installed as tensorflow-cpu here
            try:
                out[n] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def machine_info() -> dict[str, Any]:
    """CPU count and model, load average, OS and Python: printed next to every benchmark."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "load_average_1_5_15min": load, "platform": platform.platform(),
            "python": platform.python_version(), "libraries": library_versions()}


def comparison_tables(family: str, provenance: dict[str, Any], data, r, record_path: str | os.PathLike,
                      *, seed: int = 42, mode: str = "book") -> None:
    """What chapter 8 sets side by side for every network, measured as chapter 4 measures it and kept in the record
    at ``record_path``: the frozen features' probe at a few image sizes and the forward speed at a few sizes."""
    from .results import add_tables
    from .transfer_run import resolution_probe

    probe = resolution_probe(family, provenance, data, sizes=r.probe_sizes or r.speed_sizes,
                             per_class=r.probe_per_class, seed=seed)
    speed = speed_table(family, r.speed_sizes, len(data.files), n_train=len(data.labels("train")),
                        first_layer=r.e2e_first_layer, seconds=2 if mode == "book" else 0.5)
    add_tables(record_path, probe=probe, speed=speed)
