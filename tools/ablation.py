"""What does each change of chapter 3's improved CNN buy, at the recipe's own budget?

    python tools/ablation.py [--variants recipe no_dropout no_augmentation] [--seeds 42 43 44]
    make ablation                                                   # resumable, one record per run

Every run is the recipe of chapter 3 on the whole training split: 64 px, batch 64, Adam 1e-3 with one epoch of
linear warm-up and cosine decay to epoch 15, the best epoch on val restored (no early stopping). A variant
changes one ingredient and keeps the rest. Runs are scored on the validation split only (the test split belongs
to the headline model). The recipe's own seeds give the seed-to-seed spread that a variant's difference is set
against; each run's per-epoch validation accuracy also shows how far it swings while the learning rate is large.

Records go to ``<results>/ablation/<variant>_s<seed>.json``; a run whose record exists is skipped, and an
interrupted run resumes from its last epoch (``outputs/checkpoints/ablation_<variant>_s<seed>``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

log = logging.getLogger("ablation")

FOLDER = "ablation"
SEEDS = (42, 43, 44)
IMAGE_SIZE, BATCH_SIZE, EPOCHS, WARMUP = 64, 64, 15, 1
VARIANTS = {  # name → (label on the page, changed switches of helpers.models.improved_cnn)
    "recipe": ("the recipe", {}),
    "no_dropout": ("− dropout", {"dropout": 0.0}),
    "no_augmentation": ("− augmentation", {"augment": False}),
    "no_batch_norm": ("− batch norm", {"batch_norm": False}),
    "flatten": ("− global pooling (Flatten)", {"global_pool": False}),
}
DEFAULT = ("recipe", "no_dropout", "no_augmentation")


def run_one(data, variant: str, seed: int, directory: Path, *, epochs: int = EPOCHS, resume: bool = True) -> Path:
    """Train one variant from one seed on the whole training split; write its record (val only)."""
    from helpers.models import RECIPE, build_model
    from helpers.pipeline import make_dataset
    from helpers.train import evaluate_and_record, fit

    label, change = VARIANTS[variant]
    flags = {**RECIPE, **change}
    n_classes = len(data.classes)
    train_ds = make_dataset(data.paths("train"), data.labels("train"), IMAGE_SIZE, BATCH_SIZE, shuffle=True,
                            seed=seed)
    val_ds = make_dataset(data.paths("val"), data.labels("val"), IMAGE_SIZE, BATCH_SIZE)
    model = build_model("improved_cnn", IMAGE_SIZE, seed=seed, n_classes=n_classes, **flags)
    fr = fit(model, train_ds, val_ds, epochs, schedule="cosine", warmup_epochs=WARMUP if epochs > WARMUP else 0,
             seed=seed, min_delta=0.0, run_name=f"ablation_{variant}_s{seed}", resume=resume, verbose=0)
    rec = evaluate_and_record(model, f"{variant}_s{seed}", data, fr, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                              seed=seed, test=False, directory=directory, val_ds=val_ds,
                              ablation={"variant": variant, "label": label,
                                        "flags": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in flags.items()}})
    return Path(rec["_path"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(DEFAULT))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="the recipe's 15 (fewer: tests only)")
    ap.add_argument("--max-per-class", type=int, help="cap every split (tests); the book's runs use all data")
    ap.add_argument("--results", help="results folder (default: the registry, results/)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from helpers.config import results_dir
    from helpers.data import load_split

    directory = results_dir(args.results) / FOLDER
    data = load_split(max_per_class=args.max_per_class, progress=False)
    for seed in args.seeds:  # every variant from one seed before the next seed: a stopped run stays balanced
        for variant in args.variants:
            path = directory / f"{variant}_s{seed}.json"
            if path.exists():
                log.info("%s: done before", path.stem)
                continue
            t0 = time.perf_counter()
            run_one(data, variant, seed, directory, epochs=args.epochs)
            log.info("%s: %.1f min", path.stem, (time.perf_counter() - t0) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
