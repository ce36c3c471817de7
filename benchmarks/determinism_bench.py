"""What TensorFlow's op determinism costs on this CPU, and what it buys (issue: reproducible training).

    python benchmarks/determinism_bench.py [--images 1024] [--epochs 2] [--out benchmarks/DETERMINISM.md]

Each setting trains the book's improved CNN (64 px) twice, from the same seeds, in fresh processes
(op determinism cannot be switched off once on): ``keras.utils.set_random_seed`` alone, and with
``tf.config.experimental.enable_op_determinism()``; each with TensorFlow's own CPU kernels and with oneDNN's
(``TF_ENABLE_ONEDNN_OPTS``, which the helpers switch on by default). It reports the seconds per epoch, whether
the two runs of a setting ended with bit-identical weights, and whether the two kernel libraries did — what
a reader on another CPU meets, since TensorFlow picks its kernels by the CPU's instruction set. Random images
stand in for cells: only speed and repeatability are measured.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import hashlib, json, sys, time
import numpy as np
import helpers  # noqa: F401  (the book's start-up: quiet TensorFlow import)
import keras, tensorflow as tf
n, epochs, det = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
keras.utils.set_random_seed(0)
if det:
    tf.config.experimental.enable_op_determinism()
from helpers.models import build_model
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (n, 64, 64, 3)).astype("float32")
y = (np.arange(n) % 8).astype("int32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0).batch(32)
m = build_model("improved_cnn", 64)
m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
times = []
for _ in range(epochs):
    t0 = time.perf_counter(); m.fit(ds, epochs=1, verbose=0); times.append(time.perf_counter() - t0)
h = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in m.get_weights())).hexdigest()[:16]
print(json.dumps({"epoch_seconds": times, "weights": h}))
"""


def run(n: int, epochs: int, det: bool, onednn: bool) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {"PYTHONPATH": src, "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin",
           "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    out = subprocess.run([sys.executable, "-c", WORKER, str(n), str(epochs), "1" if det else "0"], capture_output=True,
                         text=True, env=env, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the report (markdown) to this file")
    args = ap.parse_args(argv)
    rows = []
    for onednn in (False, True):
        for det in (False, True):
            a, b = run(args.images, args.epochs, det, onednn), run(args.images, args.epochs, det, onednn)
            # the first epoch includes tracing; the later ones are the steady cost
            steady = ([s for r in (a, b) for s in r["epoch_seconds"][1:]]
                      or [s for r in (a, b) for s in r["epoch_seconds"]])
            rows.append({"kernels": "oneDNN" if onednn else "TensorFlow's", "op determinism": "on" if det else "off",
                         "s/epoch": sum(steady) / len(steady), "weights": a["weights"],
                         "identical weights after two runs": a["weights"] == b["weights"]})
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from helpers.bench import cpu_model
    from helpers.io import atomic_write_text

    lines = ["# Op determinism on the CPU: cost and effect", "",
             f"`python benchmarks/determinism_bench.py --images {args.images} --epochs {args.epochs}` on "
             f"{cpu_model()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the improved CNN (64 px), "
             f"{args.images} random images, batch 32, two runs per setting from the same seeds.", "",
             "| CPU kernels | op determinism | s/epoch | identical weights after two runs |", "|---|---|---|---|"]
    for r in rows:
        same = "yes" if r["identical weights after two runs"] else "no"
        lines.append(f"| {r['kernels']} | {r['op determinism']} | {r['s/epoch']:.2f} | {same} |")
    tf_det, dnn_det = rows[1], rows[3]
    across = "the same" if tf_det["weights"] == dnn_det["weights"] else "different"
    lines += ["", "Cost of op determinism: "
              f"{rows[1]['s/epoch'] / rows[0]['s/epoch']:.2f}× the time per epoch with TensorFlow's kernels, "
              f"{rows[3]['s/epoch'] / rows[2]['s/epoch']:.2f}× with oneDNN's.", "",
              f"Same seeds, op determinism on, the two kernel libraries: {across} weights after training. "
              + ("" if across == "the same" else "Other kernels sum in other orders and round differently. ")
              + "What stays non-deterministic across machines is the arithmetic itself: another CPU (another "
              "instruction set, so other kernels, other orders of summation) rounds differently, and a "
              "network trained for thousands of steps amplifies those differences into another model. A "
              "re-run on another machine is therefore compared with the seed-to-seed spread the records "
              "state (`make reproduce`), not bit for bit."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
