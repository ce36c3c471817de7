"""Why the improved CNN's validation accuracy swings from epoch to epoch, measured (chapter 3 reads the result).

    python benchmarks/ch03_swings.py [--train 150] [--val 100] [--epochs 8] [--seeds 1 2]
        [--out src/helpers/tables/ch03_swings.json]                        # make bench-ch03-swings

Trains chapter 3's improved CNN (64 px, cosine schedule from 1e-3, as in the chapter) on a training set
capped per class and scores the capped validation set after every epoch, in four recipes: the chapter's
earlier recipe (cosine from the first step, batch-norm momentum 0.9), a one-epoch linear warm-up, batch-norm
momentum 0.99, and both. Per run it keeps the validation accuracy of every epoch; per recipe it reports the
mean absolute change from one epoch to the next, the deepest drop below the previous epoch, and the final
validation accuracy (mean over the seeds). The test split is not used.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

IMPROVED = dict(widths=(32, 64, 128), convs_per_stage=2, stem_stride=2, batch_norm=True, bn_zero_init=True,
                global_pool=True, dropout=0.3, augment=True, colour_augment=0.1)
RECIPES = {
    "cosine, BN momentum 0.9": dict(warmup_epochs=0, bn_momentum=0.9),
    "1-epoch warm-up + cosine, BN momentum 0.9": dict(warmup_epochs=1, bn_momentum=0.9),
    "cosine, BN momentum 0.99": dict(warmup_epochs=0, bn_momentum=0.99),
    "1-epoch warm-up + cosine, BN momentum 0.99": dict(warmup_epochs=1, bn_momentum=0.99),
}


def swing_stats(val_acc) -> dict[str, float]:
    """Mean |change| between consecutive epochs, the deepest drop below the previous epoch, the final value."""
    v = np.asarray(val_acc, dtype=float)
    d = np.diff(v)
    return {"mean_abs_change": float(np.abs(d).mean()) if d.size else 0.0,
            "max_drop": float(max(0.0, -d.min())) if d.size else 0.0, "final": float(v[-1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "src" / "helpers" / "tables" / "ch03_swings.json"))
    a = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from helpers.data import load_split
    from helpers.models import build_model
    from helpers.pipeline import make_dataset
    from helpers.split import cap_per_class
    from helpers.train import fit

    data = load_split(progress=False)
    caps = {"train": a.train, "val": a.val}
    parts = [cap_per_class(data.files[data.files["split"] == s], caps.get(s), 42) for s in ("train", "val")]
    small = dataclasses.replace(data, files=pd.concat(parts, ignore_index=True))
    tr = make_dataset(small.paths("train"), small.labels("train"), a.size, 64, shuffle=True, seed=42)
    va = make_dataset(small.paths("val"), small.labels("val"), a.size, 64)
    runs, t0 = [], time.time()
    for seed in a.seeds:
        for label, r in RECIPES.items():
            m = build_model("improved_cnn", a.size, seed=seed, **IMPROVED, bn_momentum=r["bn_momentum"])
            fr = fit(m, tr, va, a.epochs, schedule="cosine", warmup_epochs=r["warmup_epochs"], seed=seed,
                     run_name=f"swings_{seed}_{len(runs)}", verbose=0)
            acc = [round(x, 4) for x in fr["history"]["val_accuracy"]]
            runs.append({"recipe": label, "seed": seed, **r, "val_accuracy": acc, **swing_stats(acc)})
            print(f"{label:45} seed {seed}: {acc}", flush=True)
    df = pd.DataFrame(runs)
    summary = (df.groupby("recipe", sort=False)[["mean_abs_change", "max_drop", "final"]].mean()
               .round(4).reset_index().to_dict("records"))
    out = {"what": "improved CNN, capped PBC subset: per-epoch validation accuracy by recipe",
           "train_per_class": a.train, "val_per_class": a.val, "n_train": len(small.paths("train")),
           "n_val": len(small.paths("val")), "image_size": a.size, "epochs": a.epochs, "learning_rate": 1e-3,
           "seeds": a.seeds, "minutes": round((time.time() - t0) / 60, 1), "runs": runs, "summary": summary}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(pd.DataFrame(summary).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
