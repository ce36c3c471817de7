"""The benchmark harness (only ``benchmarks/`` uses it): set-ups in their own processes, per-layer timing, tables.

* separate processes — :class:`Worker` drives a set-up living in ``bench_worker.py`` over JSON lines
  (:func:`serve` is the worker's loop), with fixed threads and pinned cores (:func:`limit_threads`) and its
  own peak memory (:func:`peak_rss_mb`); :func:`measure_workers` times them round-robin with
  :func:`helpers.bench.measure_interleaved`, the timing code chapter 2 uses;
* where the time goes — :func:`layer_times` times every layer on its own, :func:`share_by` sums the shares;
* :func:`markdown_table` for ``BENCHMARKS.md`` and :func:`reference_cnn`, a stand-in small CNN.

Imports no TensorFlow at module level: a worker must set its threads before TensorFlow starts.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from helpers.bench import Measurement, measure_interleaved
from helpers.pipeline import validate_image_size

if TYPE_CHECKING:
    import pandas as pd


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
            raise WorkerError(f"{self.name}: no answer within {self.timeout:.0f} s; "
                              f"log {self.log.name}:\n{self._tail()}")
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

    def __enter__(self) -> Worker:
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

            def call(*a, layer=layer, kw=kwargs):
                return layer(*a, **kw)

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
# Tables and a stand-in model
# --------------------------------------------------------------------------------------------
def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
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



def reference_cnn(image_size: int = 64, n_classes: int = 8):
    """A tiny CNN (two 3×3 conv/pool stages) used when :mod:`helpers.models` is unavailable."""
    import keras

    L = keras.layers
    h, w = validate_image_size(image_size)
    return keras.Sequential([keras.Input((h, w, 3)), L.Rescaling(1 / 255), L.Conv2D(16, 3, activation="relu"),
                             L.MaxPooling2D(), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                             L.GlobalAveragePooling2D(), L.Dense(n_classes, activation="softmax")],
                            name="reference_cnn")

