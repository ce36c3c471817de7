"""When does transfer learning pay? The from-scratch CNN against fine-tuned MobileNetV2, by labelled images.

    python tools/label_efficiency.py [--per-class 10 50 250 500] [--seeds 42 43 44] [--arms scratch transfer]
    make label-efficiency                                          # the grid; resumable, one record per point

Both arms train on the same nested subsets of the training split (per seed, the 10 cells of a class are the
first 10 of the 50, which are the first 50 of the 250 …), for the same number of optimizer steps at each budget
(:func:`helpers.budgets.steps_for`: scaled with the subset, between a floor and a cap), each schedule run to its end, no
validation pass while training and no tuner, and each is scored once on the whole test split (and once on val).

* ``scratch``: chapter 3's improved CNN at 64 px with its in-model augmentation (flips, quarter turns, mild
  brightness and contrast), Adam 1e-3 with a linear warm-up over the first 1/15 of the steps, then cosine decay.
* ``transfer``: chapter 6's recipe for MobileNetV2 at 96 px: the head chapter 6 tuned (128 units, dropout 0.2,
  Adam 1e-3, 30 epochs) on the frozen base's pooled features, then every layer fine-tuned end to end with
  batch norm frozen (:func:`helpers.transfer.unfreeze_from`) on augmented images (flips, quarter turns, stain
  jitter), Adam 3e-4 with cosine decay.

Records go to ``<results>/label_efficiency/<arm>_<n>pc_s<seed>.json``; a point whose record exists is skipped.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

log = logging.getLogger("label_efficiency")

FOLDER = "label_efficiency"
PER_CLASS = (10, 50, 250, 500)
SEEDS = (42, 43, 44)
ARMS = ("scratch", "transfer")
SCRATCH = {"image_size": 64, "batch_size": 64, "lr": 1e-3, "warmup_share": 1 / 15}
"""Chapter 3's improved CNN (``helpers.models.RECIPE``, its switches) as trained on a subset."""
TRANSFER = {"family": "mobilenetv2", "image_size": 96, "batch_size": 32, "head_units": 128, "head_dropout": 0.2,
            "head_lr": 1e-3, "head_epochs": 30, "lr": 3e-4}


def _schedule(lr: float, steps: int, warmup: int = 0):
    import keras

    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, steps - warmup, warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(lr, steps)


def _fit_steps(model, paths, labels, image_size: int, batch_size: int, steps: int, lr, seed: int) -> float:
    """``steps`` optimizer steps of Adam on shuffled, repeated batches (no validation); returns seconds."""
    import keras

    from helpers.pipeline import make_dataset

    ds = make_dataset(paths, labels, image_size, batch_size, shuffle=True, seed=seed).repeat()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)  # ds is shuffled
    return time.perf_counter() - t0


def train_scratch(paths, labels, steps: int, seed: int, n_classes: int):
    """Chapter 3's improved CNN trained for ``steps`` steps; returns ``(model, seconds, fields)``."""
    from helpers.models import RECIPE, build_model

    s = SCRATCH
    model = build_model("improved_cnn", s["image_size"], seed=seed, n_classes=n_classes)  # the recipe
    lr = _schedule(s["lr"], steps, warmup=max(1, round(steps * s["warmup_share"])))
    secs = _fit_steps(model, paths, labels, s["image_size"], s["batch_size"], steps, lr, seed)
    return model, secs, {"recipe": {**s, "flags": {k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in RECIPE.items()}}}


def train_transfer(paths, labels, steps: int, seed: int, n_classes: int, provenance: dict):
    """Chapter 6's recipe on a subset: the head on pooled features, then end to end with batch norm frozen."""
    import keras

    from helpers.augment import finetune_augmentation
    from helpers.pipeline import load_images
    from helpers.transfer import assemble, make_head, preprocessing_layer, unfreeze_from
    from helpers.weights import load_base

    t = TRANSFER
    size = t["image_size"]
    keras.utils.set_random_seed(seed)
    base = load_base(t["family"], size, provenance, pooling="avg")
    base.trainable = False
    preprocess = preprocessing_layer(t["family"])
    t0 = time.perf_counter()
    x = preprocess(load_images(paths, size).astype("float32"))
    feats = np.asarray(base.predict(x, batch_size=64, verbose=0))
    head = make_head(feats.shape[1], t["head_units"], t["head_dropout"], n_classes)
    head.compile(optimizer=keras.optimizers.Adam(t["head_lr"]), loss="sparse_categorical_crossentropy")
    head.fit(feats, labels, epochs=t["head_epochs"], batch_size=t["batch_size"], verbose=0)
    head_secs = time.perf_counter() - t0
    model = assemble(preprocess, base, head, size)
    unfreeze_from(base)  # every layer but batch norm
    inp = keras.Input((size, size, 3), dtype="float32")
    wrapper = keras.Model(inp, model(finetune_augmentation(seed)(inp)))
    secs = _fit_steps(wrapper, paths, labels, size, t["batch_size"], steps, _schedule(t["lr"], steps), seed)
    base.trainable = False
    return model, head_secs + secs, {"recipe": t, "phase_seconds": {"head": round(head_secs, 1),
                                                                    "end_to_end": round(secs, 1)}}


def run_point(data, arm: str, per_class: int, seed: int, provenance: dict | None, directory: Path,
              steps: int | None = None) -> Path:
    """Train one arm on one subset, score it once on val and test, write its record; returns the record."""
    from helpers.budgets import nested_subset, steps_for
    from helpers.predictions import predict_split
    from helpers.results import make_record, write_record
    from helpers.runs import FROM_SCRATCH

    name = f"{arm}_{per_class}pc_s{seed}"
    idx = nested_subset(data.labels("train"), per_class, seed)
    paths = [data.paths("train")[i] for i in idx]
    labels = data.labels("train")[idx]
    n_steps = steps or steps_for(len(idx))
    n_classes = len(data.classes)
    if arm == "scratch":
        model, secs, extra = train_scratch(paths, labels, n_steps, seed, n_classes)
        size, weights = SCRATCH["image_size"], dict(FROM_SCRATCH)
    else:
        model, secs, extra = train_transfer(paths, labels, n_steps, seed, n_classes, provenance)
        size, weights = TRANSFER["image_size"], provenance
    batch = (SCRATCH if arm == "scratch" else TRANSFER)["batch_size"]
    preds = {s: predict_split(model, data, s, size) for s in ("val", "test")}
    subset = hashlib.sha256("\n".join(sorted(Path(p).name for p in paths)).encode()).hexdigest()[:16]
    rec = make_record(name, image_size=size, epochs=round(n_steps * batch / len(idx)), train_seconds=secs,
                      weights_source=weights, data=data.provenance(), seed=seed,
                      val=preds["val"].metrics(data.classes), test=preds["test"].metrics(data.classes),
                      mode="book", label_efficiency={"arm": arm, "per_class": per_class, "n_train": len(idx),
                                                      "steps": n_steps, "batch_size": batch,
                                                      "subset_fingerprint": subset},
                      load_avg=round(os.getloadavg()[0], 2), **extra)
    return write_record(rec, directory)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", nargs="+", type=int, default=list(PER_CLASS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--steps", type=int, help="override the step count (tests)")
    ap.add_argument("--max-per-class", type=int, help="cap every split (tests); the book's grid uses all data")
    ap.add_argument("--results", help="results folder (default: the registry, results/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from helpers.config import results_dir
    from helpers.data import load_split
    from helpers.weights import resolve_weights

    directory = results_dir(args.results) / FOLDER
    data = load_split(max_per_class=args.max_per_class, progress=False)
    provenance = resolve_weights(TRANSFER["family"]) if "transfer" in args.arms else None
    for per_class in sorted(args.per_class):
        for seed in args.seeds:
            for arm in args.arms:
                path = directory / f"{arm}_{per_class}pc_s{seed}.json"
                if path.exists():
                    log.info("%s: done before", path.stem)
                    continue
                t0 = time.perf_counter()
                run_point(data, arm, per_class, seed, provenance, directory, args.steps)
                log.info("%s: %.1f min", path.stem, (time.perf_counter() - t0) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
