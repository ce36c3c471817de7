"""How much does the seed move a transfer chapter's recipe? Measured once, read by chapters 4–6.

    python tools/transfer_spread.py [--families vgg19 resnet50 mobilenetv2]
    make transfer-spread                                    # resumable, one record per family

Each family's cpu recipe (``helpers.transfer.recipe``) is run from its spread seeds on a capped copy of the
split (``spread_per_class`` images per class of each split: minutes, not the chapter's hour), the head's
hyper-parameters fixed to those its chapter tuned (read from ``results/transfer_<family>.json``; the profile's
defaults before the chapter has run). Scored on the validation split only.

Records go to ``<results>/spread/transfer_<family>.json``; a family whose record exists is skipped
(``--again`` measures it anew).
"""
from __future__ import annotations

import argparse
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
    from helpers.results import spread_record, tuned_head
    from helpers.transfer import recipe, seed_spread
    from helpers.weights import resolve_weights

    r = recipe(family, "cpu", mode, **({"spread_per_class": per_class} if per_class else {}))
    head = tuned_head(family, directory.parent) or None
    provenance = resolve_weights(family, None, allow_download=False, allow_random=mode == "smoke")
    data = load_split(max_per_class=r.spread_per_class, seed=42, progress=False)
    t0 = time.perf_counter()
    block = seed_spread(family, provenance, data, r, head=head)
    return spread_record(family, block, directory, classes=data.classes, image_size=r.image_size,
                         head=head, weights=provenance, minutes=(time.perf_counter() - t0) / 60, mode=mode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--results", help="results folder (default: the registry, results/)")
    ap.add_argument("--smoke", action="store_true", help="the smoke recipe (tests: tiny sizes, random weights)")
    ap.add_argument("--again", action="store_true", help="measure a family whose record exists anew")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from helpers.config import results_dir
    from helpers.results import SPREAD_FOLDER

    directory = results_dir(args.results) / SPREAD_FOLDER
    for family in args.families:
        path = directory / f"transfer_{family}.json"
        if path.exists() and not args.again:
            log.info("%s: done before", path.stem)
            continue
        t0 = time.perf_counter()
        measure(family, directory, mode="smoke" if args.smoke else "book")
        log.info("%s: %.1f min", path.stem, (time.perf_counter() - t0) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
