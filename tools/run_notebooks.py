"""Execute the book's notebooks with papermill, in order, writing each result atomically.

    python tools/run_notebooks.py --mode book            # all notebooks, full data
    python tools/run_notebooks.py --mode book 03         # only notebooks whose name starts with 03
    python tools/run_notebooks.py --mode smoke --out /tmp/nbs 01 02   # tiny run; sources untouched

Each executed notebook replaces its source only when the run succeeded (or is written to ``--out``);
wall times of book runs are recorded in results/notebook_timings.json.

After papermill, the executed notebook is tidied for the book (:func:`tidy`): papermill's injected
``# Parameters`` cell gets the tag ``remove-cell`` (the chapter's own ``parameters`` cell stays: it is
the lesson), and text that a progress bar overwrote with carriage returns keeps only its last state.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

# Before any kernel starts: TensorFlow's C++ start-up lines (oneDNN, cpu_feature_guard) stay out of outputs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import nbformat  # noqa: E402
import papermill as pm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from helpers.bench import cpu_model  # noqa: E402
from helpers.io import atomic_write_json  # noqa: E402

HIDDEN_TAG = "remove-cell"
_CR_LINE = re.compile(r"[^\n]*\r(?!\n)")  # everything up to a bare carriage return on one line


def strip_carriage_returns(text: str) -> str:
    """What a terminal would show: on each line, only the text after its last bare ``\\r``."""
    text = text.replace("\r\n", "\n")
    return _CR_LINE.sub("", text)


def tidy(nb: nbformat.NotebookNode, name: str | None = None) -> nbformat.NotebookNode:
    """Hide papermill's injected-parameters cell, collapse ``\\r``-overwritten stream output, and put the
    notebook's place in the repository (``notebooks/<name>``) where papermill's metadata had this machine's paths."""
    pm_meta = nb.metadata.get("papermill") or {}
    for key in ("input_path", "output_path"):
        if key in pm_meta:
            pm_meta[key] = f"notebooks/{name or Path(pm_meta[key]).name.lstrip('.').replace('.running', '')}"
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and HIDDEN_TAG not in tags:
            tags.append(HIDDEN_TAG)
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream" and "\r" in out.get("text", ""):
                out["text"] = strip_carriage_returns(out["text"])
    return nb


def run_one(nb: Path, dest: Path, mode: str, params: dict | None = None) -> None:
    """Execute ``nb`` into ``dest`` (atomically: a hidden temporary file beside ``dest``), then tidy it."""
    tmp = dest.with_name(f".{nb.stem}.running.ipynb")
    try:
        pm.execute_notebook(str(nb), str(tmp), parameters={"MODE": mode, **(params or {})}, kernel_name="python3",
                            cwd=str(nb.parent), progress_bar=True, log_output=False)
    except Exception:
        print(f"!!! {nb.name} failed; the executed copy with the error is {tmp}", file=sys.stderr)
        raise
    executed = tidy(nbformat.read(tmp, as_version=4), nb.name)
    nbformat.write(executed, tmp)
    os.replace(tmp, dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["book", "smoke"], default="book")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the executed notebooks into this folder instead of replacing the sources")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a notebook parameter (VALUE is read as YAML: 4, 0.5, null, text)")
    ap.add_argument("prefixes", nargs="*", help="only notebooks whose file name starts with one of these")
    args = ap.parse_args(argv)
    import yaml

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            ap.error(f"--param needs NAME=VALUE, got {item!r}")
        params[name] = yaml.safe_load(value)
    nbs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        nbs = [n for n in nbs if n.name.startswith(tuple(args.prefixes))]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    timings_path = ROOT / "results" / "notebook_timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for nb in nbs:
        print(f"=== {nb.name} ({args.mode} mode)", flush=True)
        t0 = time.perf_counter()
        run_one(nb, nb if args.out is None else args.out / nb.name, args.mode, params)
        secs = time.perf_counter() - t0
        print(f"=== {nb.name} done in {secs / 60:.1f} min", flush=True)
        if args.mode == "book" and args.out is None:
            timings[nb.name] = {"seconds": round(secs, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "cpu": cpu_model(), "cores": os.cpu_count(),
                                "load_avg_1min_end": round(os.getloadavg()[0], 2),
                                **({"parameters": params} if params else {})}
            atomic_write_json(timings_path, timings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
