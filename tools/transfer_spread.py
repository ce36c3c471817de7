"""How much does the seed move a transfer chapter's recipe? Measured once, read by chapters 4–6.

    python tools/transfer_spread.py [--families vgg19 resnet50 mobilenetv2]
    make transfer-spread                                    # resumable, one record per family

Each family's cpu recipe (``helpers.profiles.recipe``) is run from its spread seeds on a capped copy of the
split (``spread_per_class`` images per class of each split: minutes, not the chapter's hour), the head's
hyper-parameters fixed to those its chapter tuned (read from ``results/transfer_<family>.json``; the profile's
defaults before the chapter has run). Scored on the validation split only.

Records go to ``<results>/spread/transfer_<family>.json``; a family whose record exists is skipped
(``--again`` measures it anew).

``--full`` runs the recipe on the whole split instead, at the chapter's own budget (MobileNetV2: about twenty
minutes a seed on two cores): one record per seed and schedule in ``<results>/spread/full/``
(``transfer_<family>_e<phase-3 epochs>_s<seed>.json``; resumable: a seed whose record exists is not run again),
and, once two seeds or more of the recipe's schedule have one, their spread in
``<results>/spread/transfer_<family>_full.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

log = logging.getLogger("transfer_spread")

FAMILIES = ("vgg19", "resnet50", "mobilenetv2")


def measure(family: str, directory: Path, *, mode: str = "book", per_class: int | None = None) -> Path:
    """Run ``seed_spread`` for ``family`` and write its record (atomically) to ``directory``."""
    from helpers.data import load_split
    from helpers.profiles import recipe
    from helpers.results import spread_record, tuned_head
    from helpers.transfer_run import seed_spread
    from helpers.weights import resolve_weights

    r = recipe(family, "cpu", mode, **({"spread_per_class": per_class} if per_class else {}))
    head = tuned_head(family, directory.parent) or None
    provenance = resolve_weights(family, None, allow_download=False, allow_random=mode == "smoke")
    data = load_split(max_per_class=r.spread_per_class, seed=42, progress=False)
    t0 = time.perf_counter()
    block = seed_spread(family, provenance, data, r, head=head)
    return spread_record(family, block, directory, classes=data.classes, image_size=r.image_size,
                         head=head, weights=provenance, minutes=(time.perf_counter() - t0) / 60, mode=mode)


def measure_full(family: str, directory: Path, seeds, *, mode: str = "book") -> Path | None:
    """``--full``: each of ``seeds`` on the whole split, one record each (skipped when it exists); then the
    spread of every seed measured so far. Returns the spread record's path; None (logged) with fewer than two seeds."""
    from helpers.data import load_split
    from helpers.io import atomic_write_json
    from helpers.profiles import recipe
    from helpers.results import SCHEMA_VERSION, full_seed_path, record_provenance, spread_record, tuned_head
    from helpers.train import spread_block
    from helpers.transfer_run import seed_run, spread_budget
    from helpers.weights import resolve_weights

    r = recipe(family, "cpu", mode)
    seeds = list(seeds or r.spread_seeds)
    head = tuned_head(family, directory.parent) or None
    provenance = resolve_weights(family, None, allow_download=False, allow_random=mode == "smoke")
    data = load_split(max_per_class=r.max_per_class, seed=42, progress=False)
    runs = {}
    for seed in seeds:
        path = full_seed_path(family, r.e2e_epochs, seed, directory.parent)
        if not path.exists():
            t0 = time.perf_counter()
            acc, e2e = seed_run(family, provenance, data, r, seed, head=head, tag="spreadfull")
            atomic_write_json(path, {"schema": SCHEMA_VERSION, "family": family, "mode": mode, "seed": int(seed),
                                     "classes": list(data.classes), "val_accuracy": acc, "e2e_epochs": int(e2e),
                                     "minutes": round((time.perf_counter() - t0) / 60, 2),
                                     "budget": spread_budget(data, r, e2e, full=True),
                                     "weights_source": {k: v for k, v in provenance.items() if k != "path"},
                                     **record_provenance()})
        log.info("%s, seed %d: val accuracy %.4f", family, seed, json.loads(path.read_text())["val_accuracy"])
    every = full_seed_path(family, r.e2e_epochs, "*", directory.parent)
    for path in sorted(every.parent.glob(every.name)):  # every seed so far
        rec = json.loads(path.read_text())
        if rec["mode"] == mode and rec["classes"] == list(data.classes) and rec["e2e_epochs"] == r.e2e_epochs:
            runs[int(rec["seed"])] = rec
    if len(runs) < 2:
        log.error("%s: a spread needs two seeds or more; %s kept, no spread written", family,
                  ", ".join(f"seed {s}" for s in runs))
        return None
    seeds = sorted(runs)
    block = spread_block([runs[s]["val_accuracy"] for s in seeds], seeds, metric="val accuracy",
                         budget=spread_budget(data, r, max(x["e2e_epochs"] for x in runs.values()), full=True))
    return spread_record(family, block, directory, classes=data.classes, image_size=r.image_size, head=head,
                         weights=provenance, minutes=sum(x["minutes"] for x in runs.values()), mode=mode,
                         full=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--results", help="results folder (default: the registry, results/)")
    ap.add_argument("--smoke", action="store_true", help="the smoke recipe (tests: tiny sizes, random weights)")
    ap.add_argument("--again", action="store_true", help="measure a family whose record exists anew")
    ap.add_argument("--full", action="store_true", help="on the whole split, one record per seed (resumable)")
    ap.add_argument("--seeds", nargs="+", type=int, help="--full: these seeds (default: the recipe's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from helpers.config import results_dir
    from helpers.results import SPREAD_FOLDER, spread_name

    directory = results_dir(args.results) / SPREAD_FOLDER
    if args.full:
        mode = "smoke" if args.smoke else "book"
        paths = [measure_full(family, directory, args.seeds, mode=mode) for family in args.families]
        return 0 if all(paths) else 1
    for family in args.families:
        path = directory / spread_name(family)
        if path.exists() and not args.again:
            log.info("%s: done before", path.stem)
            continue
        t0 = time.perf_counter()
        measure(family, directory, mode="smoke" if args.smoke else "book")
        log.info("%s: %.1f min", path.stem, (time.perf_counter() - t0) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
