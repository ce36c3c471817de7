"""The gpu profile on two replicas (Kaggle's "GPU T4 x2"), played by two logical CPU devices.

Under ``tf.distribute.MirroredStrategy`` Keras fails on batches that do not split evenly across the replicas
(keras-team/keras#19246): ``fit`` and ``evaluate`` average the first batch over the replicas to learn its shapes
(``AddN must have the same size and shape`` when the shards differ), and a replica handed an empty shard of a
last batch fails in the convolutions. The counts are chosen so that every phase meets both: 17 val images (one
uneven batch for the head's batches of 32 and for ``evaluate``'s 128; 17 = 2 * 8 + 1 for batches of 8) and 25
training images (25 < 32; 25 = 3 * 8 + 1). The script runs in a fresh interpreter because the logical devices
must be configured before TensorFlow initialises its devices.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from PIL import Image

from helpers import CLASSES
from helpers.profiles import distribution_strategy, recipe
from helpers.transfer import train_head
from helpers.transfer_run import evaluate, extract, phase1, phase2, phase3, record_fields, start_run
from helpers.weights import resolve_weights

tmp = os.environ["BLOODCELLS_OUTPUT_DIR"]
rng = np.random.default_rng(0)


class Data:  # the part of helpers.data.SplitData that the phases use
    classes, dataset = CLASSES, "pbc"

    def __init__(self, counts):
        self._paths, self._labels = {}, {}
        for split, n in counts.items():
            y = np.arange(n) % len(CLASSES)
            self._paths[split] = []
            for i, k in enumerate(y):
                img = np.clip(30 * k + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype("uint8")
                Image.fromarray(img).save(p := os.path.join(tmp, f"{split}_{i}.png"))
                self._paths[split].append(p)
            self._labels[split] = y

    def paths(self, split):
        return self._paths[split]

    def labels(self, split):
        return self._labels[split]


def scores(h, probs, y):  # [Keras' val accuracy, val loss; both recomputed on all 17 val images]
    p = np.asarray(probs, "float64")
    loss = -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)).mean()
    return [h["val_accuracy"][-1], float((p.argmax(1) == y).mean()), h["val_loss"][-1], float(loss)]


def error(e):
    lines = [line.strip() for line in str(e).splitlines() if "INVALID_ARGUMENT" in line or "AddN" in line]
    return f"{type(e).__name__}: {(lines or str(e).strip().splitlines() or [''])[0][:300]}"


data = Data({"train": 25, "val": 17, "test": 5})
yva = data.labels("val")
r = recipe("mobilenetv2", "gpu", "smoke", image_size=32, batch_size=8)
strategy = distribution_strategy(r.profile, devices=["/cpu:0", "/cpu:1"])
run = start_run(r.family, r.image_size, resolve_weights(r.family, "random", allow_random=True), r.split_layer,
                batch_size=r.batch_size, profile=r.profile, strategy=strategy, pooled_only=False)  # for phase 2
extract(run, data, cache=False)
out = {"replicas": strategy.num_replicas_in_sync, "errors": {}}
try:  # phase 1: the head (Dense layers) on the pooled features, in batches of 32
    h = phase1(run, epochs=1)
    out["p1"] = scores(h, run.head(run.pooled["val"], training=False), yva)
except Exception as e:
    out["errors"]["phase 1"] = error(e)
Xva = run.features["val"][0].astype("float32")
try:  # phase 2: the convolutional top + head on the cached activations, in batches of 8
    h = phase2(run, epochs=1)
    out["p2"] = scores(h, run.head(run.top(Xva, training=False), training=False), yva)
except Exception as e:
    out["errors"]["phase 2"] = error(e)
try:  # phase 3: the whole network on the images, in batches of 8
    phase3(run, data, epochs=1, lr=1e-4, patience=None)
    out["p3"] = scores(run.histories["phase3"], evaluate(run, data)["val"].probs, yva)
    out["record_replicas"] = record_fields(run)["replicas"]
except Exception as e:
    out["errors"]["phase 3"] = error(e)
try:  # the head alone on features that tell the classes apart (a random base's do not): the scores vary by image
    centres = rng.normal(size=(len(CLASSES), 16))
    ytr, Xtr = data.labels("train"), (centres[data.labels("train")] + rng.normal(0, 1, (25, 16))).astype("float32")
    Xv = (centres[yva] + rng.normal(0, 1, (17, 16))).astype("float32")
    with strategy.scope():
        res = train_head(Xtr, ytr, Xv, yva, units=0, dropout=0.0, lr=0.1, epochs=6, batch_size=32, patience=6)
    best = int(np.argmax(res.history["val_accuracy"]))  # the epoch whose weights early stopping restored
    out["head"] = scores({k: v[: best + 1] for k, v in res.history.items()}, res.model(Xv, training=False), yva)
except Exception as e:
    out["errors"]["head"] = error(e)
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow  # builds MobileNetV2 and runs phases 1-3 on two replicas: 20-40 s on 2 cores
def test_every_phase_runs_on_two_replicas_with_uneven_last_batches(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "BLOODCELLS_OUTPUT_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["replicas"] == 2
    assert out["errors"] == {}
    for phase in ("p1", "p2", "p3", "head"):  # the val accuracy and loss of the history are those of all 17 val images
        accuracy, accuracy_17, loss, loss_17 = out[phase]
        assert accuracy == pytest.approx(accuracy_17, abs=1e-6), phase
        assert loss == pytest.approx(loss_17, abs=1e-5), phase
    assert out["record_replicas"] == 2
