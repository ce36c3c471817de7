"""Execute the book's notebooks with papermill, in order, writing each result atomically.

    python tools/run_notebooks.py --mode book            # all notebooks, full data
    python tools/run_notebooks.py --mode book 03         # only notebooks whose name starts with 03

Each executed notebook replaces its source only when the run succeeded; wall times are
recorded in results/notebook_timings.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from helpers.io import atomic_write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["book", "smoke"], default="book")
    ap.add_argument("prefixes", nargs="*", help="only notebooks whose file name starts with one of these")
    args = ap.parse_args(argv)
    nbs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        nbs = [n for n in nbs if n.name.startswith(tuple(args.prefixes))]
    timings_path = ROOT / "results" / "notebook_timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for nb in nbs:
        tmp = nb.with_name(f".{nb.stem}.running.ipynb")
        print(f"=== {nb.name} ({args.mode} mode)", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(tmp), parameters={"MODE": args.mode}, kernel_name="python3",
                                cwd=str(nb.parent), progress_bar=True)
        except Exception:
            print(f"!!! {nb.name} failed; the executed copy with the error is {tmp}", file=sys.stderr)
            raise
        os.replace(tmp, nb)
        secs = time.perf_counter() - t0
        print(f"=== {nb.name} done in {secs / 60:.1f} min", flush=True)
        if args.mode == "book":
            timings[nb.name] = {"seconds": round(secs, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write_json(timings_path, timings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
