"""Measuring throughput (images per second), shared by chapter 2 and ``benchmarks/``.

A timing on a busy machine is noisy, so every number here comes from :func:`measure`: one or
more un-timed warm-up runs (graph tracing, caches, thread pools), then ``repeats`` timed runs,
reported as the median with the min–max spread. Compare two set-ups only through ratios of
medians measured in the same run, never across runs or machines.

The input pipelines compared:

* :func:`naive_epoch` — a plain Python loop: open each file with Pillow, resize, stack into a
  batch, one image after the other (what a first attempt looks like);
* :func:`tuned_dataset` — ``tf.data``: parallel decode + resize, an in-memory cache of the
  small ``uint8`` images, shuffle, batch, augmentation after the cache (per batch or per
  image), prefetch (:func:`helpers.pipeline.make_dataset` is the per-batch version).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .pipeline import AUTOTUNE, decode_resize, make_dataset, validate_image_size


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


def measurements_table(ms: Sequence[Measurement], baseline: str | None = None) -> "pd.DataFrame":
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
def training_measurements(model_factories: dict[str, Callable[[], Any]], x: np.ndarray, y: np.ndarray, *,
                          batch_size: int = 32, repeats: int = 3, **params: Any) -> list[Measurement]:
    """Training images/s of freshly built models on in-memory batches (no input-pipeline cost).

    Each model is compiled with Adam and sparse categorical cross-entropy; its warm-up epoch traces
    the training step; then each timed run is one epoch over ``x``, the models taking turns
    (:func:`measure_interleaved`).
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x, "float32"), np.asarray(y, "int32")))
    ds = ds.batch(batch_size).cache().prefetch(AUTOTUNE)
    n = int(len(x))
    if n == 0:
        raise ValueError("training_measurements needs at least one image")
    setups = []
    for name, factory in model_factories.items():
        model = factory()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

        def one_epoch(model=model) -> int:
            model.fit(ds, epochs=1, verbose=0, shuffle=False)
            return n

        setups.append((name, one_epoch, n, {"batch_size": batch_size, "params_count": int(model.count_params()),
                                            **params}))
    return measure_interleaved(setups, repeats=repeats, warmup=1)


def training_measurement(model_factory: Callable[[], Any], x: np.ndarray, y: np.ndarray, *, batch_size: int = 32,
                         repeats: int = 3, name: str = "training", **params: Any) -> Measurement:
    """:func:`training_measurements` for one model."""
    return training_measurements({name: model_factory}, x, y, batch_size=batch_size, repeats=repeats, **params)[0]


def reference_cnn(image_size: int = 64, n_classes: int = 8):
    """A tiny CNN (two 3×3 conv/pool stages) used when :mod:`helpers.models` is unavailable."""
    import keras

    L = keras.layers
    h, w = validate_image_size(image_size)
    return keras.Sequential([keras.Input((h, w, 3)), L.Rescaling(1 / 255), L.Conv2D(16, 3, activation="relu"),
                             L.MaxPooling2D(), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                             L.GlobalAveragePooling2D(), L.Dense(n_classes, activation="softmax")],
                            name="reference_cnn")


# --------------------------------------------------------------------------------------------
# Where the numbers were taken
# --------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def markdown_table(df: "pd.DataFrame", digits: int = 2) -> str:
    """A GitHub-flavoured markdown table of ``df`` (no extra dependency); floats get ``digits``
    decimals, or none above 100."""
    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "–"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Measuring in a separate process: fixed threads, pinned cores, peak memory
# --------------------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """A benchmark subprocess failed; the message carries the end of its log."""


def limit_threads(n: int | None, pin: bool = True) -> dict[str, Any]:
    """Make this process compute on ``n`` cores: pin it to the first ``n`` usable CPUs (where
    :func:`os.sched_setaffinity` exists) and give TensorFlow ``n`` intra-op threads and 1 inter-op
    thread. Must run before TensorFlow executes anything; ``n=None`` changes nothing."""
    if n is None:
        return {"threads": None, "pinned": None}
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    pinned = None
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < n:
            raise ValueError(f"asked for {n} cores but only {len(cpus)} are usable ({cpus})")
        os.sched_setaffinity(0, cpus[:n])
        pinned = cpus[:n]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return {"threads": n, "pinned": pinned}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` survives ``exec``, so in a subprocess
    started by a large parent (``subprocess`` forks or vforks, then execs) it reports at least the
    parent's size. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    import resource
    import sys

    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def protocol_stream():
    """The worker side's message channel: a copy of stdout, after which file descriptor 1 (Python's
    and C libraries' prints, e.g. TFLite's converter log) goes to stderr, so stdout carries only
    JSON lines."""
    import sys

    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def serve(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], ready: dict[str, Any] | None = None, *,
          stdin=None, out=None) -> None:
    """Worker loop: answer JSON requests ``{"cmd": name, ...}`` one per line with ``handlers[name](request)``.

    Writes ``ready`` first; ``{"cmd": "quit"}`` answers ``{"peak_rss_mb": ...}`` and returns. A failing
    handler answers ``{"error": ...}`` and the loop goes on.
    """
    import json
    import sys
    import traceback

    stdin = stdin or sys.stdin
    out = out or sys.stdout

    def send(d: dict[str, Any]) -> None:
        out.write(json.dumps(d) + "\n")
        out.flush()

    send({"ready": True, **(ready or {})})
    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                send({"peak_rss_mb": round(peak_rss_mb(), 1)})
                return
            if cmd not in handlers:
                raise KeyError(f"unknown command {cmd!r}; known: {sorted(handlers)} and 'quit'")
            send(handlers[cmd](req))
        except Exception as e:  # report, keep serving
            send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]})


class Worker:
    """A benchmark set-up living in its own Python process (``argv``), driven by JSON lines (:func:`serve`).

    Its own process gives it its own thread settings and core pinning, and its own peak memory
    (returned by :meth:`close`). stderr goes to a log file whose end is quoted on failure.
    """

    def __init__(self, argv: Sequence[str], *, name: str = "worker", timeout: float = 900.0,
                 env: dict[str, str] | None = None):
        import subprocess
        import tempfile

        self.name, self.timeout = name, float(timeout)
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name.replace(' ', '_')}-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(list(map(str, argv)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env)
        self.ready_info: dict[str, Any] | None = None

    def _tail(self, n: int = 1500) -> str:
        try:
            self.log.flush()
            with open(self.log.name, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-n:]
        except OSError:
            return ""

    def _read(self) -> dict[str, Any]:
        import json
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.kill()
            raise WorkerError(f"{self.name}: no answer within {self.timeout:.0f} s; log {self.log.name}:\n{self._tail()}")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=30)
            raise WorkerError(f"{self.name} exited with code {code}; log {self.log.name}:\n{self._tail()}")
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            raise WorkerError(f"{self.name} wrote a line that is not JSON: {line[:200]!r}") from None
        if "error" in msg:
            raise WorkerError(f"{self.name}: {msg['error']}\n{msg.get('traceback', '')}")
        return msg

    def wait_ready(self) -> dict[str, Any]:
        """The worker's first message (what it built, how long that took)."""
        if self.ready_info is None:
            self.ready_info = self._read()
        return self.ready_info

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the parsed answer (raises :class:`WorkerError` on an error answer)."""
        import json

        self.wait_ready()
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.name} is gone; log {self.log.name}:\n{self._tail()}") from None
        return self._read()

    def close(self) -> dict[str, Any]:
        """Ask the worker to quit; returns ``{"peak_rss_mb": ...}``."""
        try:
            info = self.request({"cmd": "quit"})
            self.proc.wait(timeout=60)
        finally:
            self.kill()
        try:  # the log is kept only when something went wrong
            os.unlink(self.log.name)
        except OSError:
            pass
        return info

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def run_json(argv: Sequence[str], timeout: float = 900.0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` to completion and return the JSON object on the last line of its stdout."""
    import json
    import subprocess

    p = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        raise WorkerError(f"{argv[0]} … exited with code {p.returncode}; stderr:\n{p.stderr[-1500:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise WorkerError(f"the last line of the output is not JSON: {lines[-1][:200]!r}") from None


def measure_workers(setups: Sequence[tuple[str, Worker, dict[str, Any], int, dict[str, Any]]], *, repeats: int = 3,
                    warmup: int = 1, clock: Callable[[], float] = time.perf_counter,
                    progress: Callable[[str], None] | None = None) -> list[Measurement]:
    """:func:`measure_interleaved` over set-ups ``(name, worker, request, n_items, params)``: each timed run
    sends ``request`` to its worker, which must answer ``{"n": n_items}``. Workers start in parallel
    (all are waited for before the first run), so the set-ups take turns as in one process."""
    for _, w, _, _, _ in setups:
        w.wait_ready()

    def fn(w: Worker, req: dict[str, Any]) -> Callable[[], int | None]:
        return lambda: w.request(req).get("n")

    return measure_interleaved([(name, fn(w, req), n, dict(params)) for name, w, req, n, params in setups],
                               repeats=repeats, warmup=warmup, clock=clock, progress=progress)


# --------------------------------------------------------------------------------------------
# A second inference runtime: TensorFlow Lite
# --------------------------------------------------------------------------------------------
def to_tflite(model) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (no quantisation, so results should match)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tflite_interpreter_class() -> tuple[Any, str]:
    """``(Interpreter class, description)``: LiteRT's (``ai_edge_litert``) when installed, else
    ``tf.lite.Interpreter`` (deprecated in favour of LiteRT, still shipped with TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter, "ai_edge_litert.interpreter.Interpreter"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__}, deprecated for LiteRT)"


class TFLiteModel:
    """Call a TFLite flatbuffer like a model: ``probs = TFLiteModel(content, threads)(x)``; the input is
    resized (and the tensors re-allocated) only when the batch shape changes."""

    def __init__(self, content: bytes, threads: int = 1):
        import warnings

        cls, self.runtime = tflite_interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice of tf.lite.Interpreter
            self.interpreter = cls(model_content=content, num_threads=int(threads))
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="float32")
        if self._shape != x.shape:
            self.interpreter.resize_tensor_input(self._in, list(x.shape))
            self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._out))


# --------------------------------------------------------------------------------------------
# Where the time goes: every layer timed on its own
# --------------------------------------------------------------------------------------------
def layer_times(model, x: np.ndarray, repeats: int = 3, clock: Callable[[], float] = time.perf_counter,
                compiled: bool = False) -> list[dict[str, Any]]:
    """Median wall time (ms) of every layer of a functional ``model``, each called on its own input
    (the activations of ``x``), as its own ``tf.function`` (``compiled``) or eagerly.

    Nested models (a transfer model's base and head) are opened up; ``part`` names the top-level
    layer a row belongs to. Every separate call carries a fixed overhead (and misses the graph
    optimiser's fusions, e.g. batch norm folded into the convolution), so the sum exceeds the whole
    model's latency: use the *shares* (by layer type, by part) and compare with the compiled latency.
    """
    import warnings

    import keras

    rows: list[dict[str, Any]] = []

    def walk(m, inp, part: str | None) -> None:
        nodes = [n for d in sorted(m._nodes_by_depth, reverse=True) for n in m._nodes_by_depth[d] if not n.is_input]
        needed: dict[int, Any] = {}
        for n in nodes:
            for t in n.input_tensors:
                needed.setdefault(id(t), t)
        feeder = keras.Model(m.inputs, list(needed.values()))  # the input of every layer, in one pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "structure of inputs doesn't match": a list of one vs a tensor
            values = feeder(inp, training=False)
        values = dict(zip(needed, values if isinstance(values, (list, tuple)) else [values]))
        for n in nodes:
            layer = n.operation
            args, kwargs = n.arguments.fill_in(values)
            kwargs = {**kwargs, "training": False}
            where = part or layer.name
            if isinstance(layer, keras.Model) and getattr(layer, "_nodes_by_depth", None):
                walk(layer, args[0] if len(args) == 1 else list(args), where)
                continue
            call = (lambda *a, layer=layer, kw=kwargs: layer(*a, **kw))
            if compiled:
                import tensorflow as tf

                call = tf.function(call)
            call(*args)  # warm-up (and tracing)
            ts = []
            for _ in range(max(1, repeats)):
                t0 = clock()
                out = call(*args)
                np.asarray(out[0] if isinstance(out, (list, tuple)) else out)
                ts.append(clock() - t0)
            rows.append({"part": where, "layer": layer.name, "type": type(layer).__name__,
                         "ms": 1000 * float(statistics.median(ts))})

    walk(model, np.asarray(x, dtype="float32"), None)
    return rows


def share_by(rows: Sequence[dict[str, Any]], key: str = "type") -> list[dict[str, Any]]:
    """Rows of :func:`layer_times` summed by ``key`` ("type" or "part"), largest first, with shares."""
    total = sum(r["ms"] for r in rows) or float("nan")
    acc: dict[str, list] = {}
    for r in rows:
        a = acc.setdefault(r[key], [0.0, 0])
        a[0] += r["ms"]
        a[1] += 1
    out = [{key: k, "layers": n, "ms": ms, "share": ms / total} for k, (ms, n) in acc.items()]
    return sorted(out, key=lambda d: -d["ms"])


# --------------------------------------------------------------------------------------------
# Reading the committed report (the book quotes it; a test checks the quotes)
# --------------------------------------------------------------------------------------------
REPORT_ENV = "BLOODCELLS_BENCH_REPORT"
REPORT_RELPATH = os.path.join("benchmarks", "results.json")


def find_report(path: str | os.PathLike | None = None) -> "Path | None":
    """The benchmark report ``results.json`` written by ``make bench``, or ``None``.

    Looks at ``path``, then ``$BLOODCELLS_BENCH_REPORT``, then ``benchmarks/results.json`` in
    the working folder and its parent (a notebook runs in ``notebooks/``). A path that was
    given explicitly and does not exist is an error, not a silent ``None``.
    """
    from pathlib import Path

    for given in (path, os.environ.get(REPORT_ENV) or None):
        if given is not None:
            p = Path(given).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"benchmark report {p} does not exist; run `make bench` to write it, or "
                                        f"leave the path unset to look in ./{REPORT_RELPATH}")
            return p
    for folder in (Path.cwd(), Path.cwd().parent):
        p = folder / REPORT_RELPATH
        if p.is_file():
            return p
    return None


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed report, checked for the parts the book quotes (a clear error otherwise)."""
    import json
    from pathlib import Path

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{p} is not a readable benchmark report ({e}); re-run `make bench`") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), dict):
        raise ValueError(f"{p} has no 'sections': not a report written by benchmarks/run.py")
    return doc


def report_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The report's headline numbers as one flat dict (the book glues them as ``report_<key>``).

    Sections missing from the report are left out; every value is copied, never recomputed, so
    the book shows exactly what ``BENCHMARKS.md`` shows.
    """
    secs = doc["sections"]
    out: dict[str, Any] = {"finished": str(doc.get("finished", "?")),
                           "git_commit": str(doc.get("git_commit", "?"))[:7]}
    m = doc.get("machine") or {}
    out["cpu_model"] = str(m.get("cpu_model", "?"))
    if m.get("cpus_usable") is not None:
        out["cores"] = int(m["cpus_usable"])
    k = (secs.get("pipeline") or {}).get("key") or {}
    for src, dst in (("naive", "pipeline_naive_img_s"), ("tuned_cached", "pipeline_tuned_img_s"),
                     ("ratio_tuned_cached_vs_naive", "pipeline_ratio_vs_naive"),
                     ("ratio_tuned_aug_vs_naive_aug", "pipeline_ratio_aug_vs_naive_aug"),
                     ("fastest_model_train_per_s", "pipeline_fastest_model_img_s"),
                     ("ratio_tuned_aug_vs_training", "pipeline_ratio_aug_vs_fastest_model")):
        if src in k:
            out[dst] = float(k[src])
    if "fastest_model" in k:
        out["pipeline_fastest_model"] = str(k["fastest_model"])
    k = (secs.get("inference") or {}).get("key") or {}
    for runtime, ms in (k.get("ms_per_image_1core") or {}).items():
        out[f"inference_{runtime}_ms"] = float(ms)
    if "target_ms" in k:
        out["inference_target_ms"] = float(k["target_ms"])
    if k:
        out["inference_tta_views"] = int(k.get("tta_views") or 1)
    for runtime, ms in (k.get("single_view_ms_per_image_1core") or {}).items():
        out[f"inference_single_view_{runtime}_ms"] = float(ms)
    chk = k.get("tflite_check") or {}
    if "agreement" in chk:
        out["inference_tflite_agreement"] = float(chk["agreement"])
        out["inference_tflite_n"] = int(chk.get("n", 0))
    if "model" in k:
        out["inference_model"] = str(k["model"]).replace("`", "")  # plain text for the prose
    k = (secs.get("book") or {}).get("key") or {}
    if "total_minutes" in k:
        out["book_minutes"] = float(k["total_minutes"])
        out["book_complete"] = bool(k.get("complete", False))
    return out


def report_targets(doc: dict[str, Any]) -> "pd.DataFrame":
    """Every target in the report: section, target, measured value, met, margin."""
    import pandas as pd

    rows = []
    for name, sec in doc["sections"].items():
        for t in sec.get("targets") or []:
            value = next((v for key, v in t.items() if key.startswith("value")), None)
            unit = next((key[len("value_"):] for key in t if key.startswith("value_")), "")
            rows.append({"section": name, "target": t.get("target", "?"),
                         "measured": f"{value:.3g} {unit}".strip() if isinstance(value, (int, float)) else str(value),
                         "met": "yes" if t.get("met") else "no", "margin": t.get("margin", "")})
    return pd.DataFrame(rows, columns=["section", "target", "measured", "met", "margin"])


def training_table(doc: dict[str, Any]) -> "pd.DataFrame":
    """The training section's images/s, seconds per epoch and peak memory per model, fastest first."""
    import pandas as pd

    k = (doc["sections"].get("training") or {}).get("key") or {}
    df = pd.DataFrame(k).T.rename(columns={"img_per_s": "images/s", "s_per_epoch": "s per epoch",
                                           "peak_rss_mb": "peak memory (MB)"})
    return df.sort_values("images/s", ascending=False) if len(df) else df
