"""Benchmark section "book": wall time of every notebook in a full book run.

Nothing is executed here: the times are those recorded by ``tools/run_notebooks.py --mode book``
in ``results/notebook_timings.json`` (one entry per notebook, written when it finished). A
notebook without an entry has not been run in book mode yet; the total is then a lower bound.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TITLE = "The whole book: wall time per notebook (book mode), and where transfer learning pays"
CHAPTER_TARGET_MIN = 45.0   # each chapter in book mode, on the machine that runs it (with its tests, one session)
NOT_THE_BOOK = ("label_efficiency", "ablation")  # result folders of experiments run outside the chapters
ROOT = Path(__file__).resolve().parents[1]


def book_times(timings_path: Path, notebooks: list[str]) -> dict[str, Any]:
    """Per notebook ``{"seconds", "finished"}`` or None when missing; total; whether complete."""
    try:
        timings = json.loads(Path(timings_path).read_text())
    except FileNotFoundError:
        timings = {}
    rows = [{"notebook": nb, **(timings.get(nb) or {"seconds": None, "finished": None})} for nb in notebooks]
    rows += [{"notebook": nb, **t, "note": "not in notebooks/ any more"} for nb, t in timings.items()
             if nb not in notebooks]
    current = [r for r in rows if r["notebook"] in notebooks]
    total = sum(r["seconds"] for r in current if r["seconds"] is not None)
    missing = [r["notebook"] for r in current if r["seconds"] is None]
    return {"rows": rows, "total_seconds": total, "missing": missing, "complete": not missing and bool(current)}


RUNNING_PAGE = ROOT / "book" / "running.md"
TIMES_START = "<!-- chapter-times: written by make bench (benchmarks/book_bench.py); do not edit -->"
TIMES_END = "<!-- /chapter-times -->"


def chapter_title(nb: Path) -> str:
    """``"3. Title"`` from a chapter's first heading."""
    first = json.loads(nb.read_text())["cells"][0]["source"]
    line = ("".join(first) if isinstance(first, list) else first).splitlines()[0]
    return line.lstrip("# ").strip()


def chapter_times_block(notebooks_dir: Path, timings_path: Path, results_dir: Path) -> str:
    """The reader's table of how long each chapter takes in book mode (from the notebook timings), with the
    training the label-efficiency chapter draws on (its records' minutes), for ``book/running.md``."""
    nbs = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    t = book_times(timings_path, [p.name for p in nbs])
    minutes = {r["notebook"]: r["seconds"] / 60 for r in t["rows"] if r["seconds"] is not None}
    rows = ["| chapter | minutes on two CPU cores |", "|---|---|"]
    rows += [f"| {chapter_title(p)} | {minutes[p.name]:.1f} |" if p.name in minutes
             else f"| {chapter_title(p)} | not timed yet |" for p in nbs]
    grid = [json.loads(f.read_text()).get("train_seconds", 0.0)
            for f in sorted((Path(results_dir) / "label_efficiency").glob("*.json"))]
    lines = [TIMES_START, "", *rows, ""]
    if grid:
        lines += [f"The label-efficiency chapter draws the records of its grid of {len(grid)} training runs, "
                  f"which took {sum(grid) / 60:.0f} minutes of training on two CPU cores when they were run "
                  "(`make label-efficiency`); the chapter itself trains nothing.", ""]
    lines += ["On a GPU runtime the transfer chapters switch to their *gpu* profile (224-px images, every layer "
              "fine-tuned); this version of the book has not timed them there.", "", TIMES_END]
    return "\n".join(lines)


def write_running_times(block: str, page: Path = RUNNING_PAGE) -> bool:
    """Replace the chapter-times block of the running page with ``block`` (atomically); False where the page
    has no such block."""
    text = page.read_text(encoding="utf-8")
    if TIMES_START not in text or TIMES_END not in text:
        return False
    head, rest = text.split(TIMES_START, 1)
    tail = rest.split(TIMES_END, 1)[1]
    from helpers.io import atomic_write_text

    atomic_write_text(page, head + block + tail)
    return True


def time_breakdown(results_dir: Path, top: int = 8) -> list[dict[str, Any]]:
    """Where the book's time goes, from the training records: every transfer phase
    (``phase_seconds``) and every from-scratch training run (``train_seconds``) of the chapters, largest first
    (at most ``top``); the experiments run outside the chapters (:data:`NOT_THE_BOOK`: ablation, label
    efficiency) are not the book's time. A test-time-augmentation record trains nothing: the training it
    carries is its base model's, counted once, there."""
    rows = []
    for f in sorted(Path(results_dir).rglob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or "model" not in rec or rec.get("mode") != "book":
            continue
        if any(part in NOT_THE_BOOK for part in f.relative_to(results_dir).parts[:-1]):
            continue
        if isinstance(rec.get("tta"), dict):  # wraps a trained model: its training is that model's, counted there
            continue
        where = f.parent.name if f.parent != Path(results_dir) else ""
        name = f"{where}/{rec['model']}" if where else rec["model"]
        phases = rec.get("phase_seconds")
        if isinstance(phases, dict):
            rows += [{"record": name, "part": k, "seconds": float(v)} for k, v in phases.items()]
        elif rec.get("train_seconds") is not None:
            rows.append({"record": name, "part": "training", "seconds": float(rec["train_seconds"])})
    return sorted(rows, key=lambda r: -r["seconds"])[:top]


def _kind(rec: dict[str, Any]) -> str:
    return "from scratch" if str((rec.get("weights_source") or {}).get("kind", "")).startswith("none") else "ImageNet"


def scratch_vs_transfer(results_dir: Path) -> list[dict[str, Any]]:
    """Every ImageNet model's test accuracy against the best from-scratch model's, like with like (single view
    against single view, TTA against TTA), from the book-mode records; positive: transfer ahead."""
    from helpers.results import load_records

    recs = {r["model"]: r for r in load_records(results_dir)
            if r.get("mode") == "book" and r["model"] not in ("served", "ensemble") and r["val"] and r["test"]}
    rows = []
    for tta in (False, True):
        same = {k: r for k, r in recs.items() if k.endswith("_tta") == tta}
        scratch = {k: r for k, r in same.items() if _kind(r) == "from scratch"}
        if not scratch:
            continue
        ref = max(scratch, key=lambda k: scratch[k]["val"]["macro_f1"])  # chosen on validation
        for k, r in sorted(same.items()):
            if _kind(r) == "ImageNet":
                acc, base = r["test"]["accuracy"], scratch[ref]["test"]["accuracy"]
                rows.append({"transfer model": k, "test accuracy (%)": round(100 * acc, 2), "from-scratch model": ref,
                             "its test accuracy (%)": round(100 * base, 2),
                             "difference (points)": round(100 * (acc - base), 2),
                             "image size (px)": r.get("image_size"),
                             "training (min)": round(r["train_seconds"] / 60, 1)})
    return rows


def label_efficiency(results_dir: Path) -> list[dict[str, Any]]:
    """Test accuracy by labelled images per class for each arm of ``tools/label_efficiency.py``: mean, min and
    max over the seeds whose records exist (``results/label_efficiency/``)."""
    from helpers.results import label_efficiency_records, label_efficiency_table

    points = label_efficiency_records(results_dir)
    if points.empty:
        return []
    t = label_efficiency_table(points).stack("arm", future_stack=True).dropna()
    return [{"images per class": int(n), "arm": arm, "seeds": int(r["count"]),
             "mean test accuracy (%)": round(100 * r["mean"], 2), "min (%)": round(100 * r["min"], 2),
             "max (%)": round(100 * r["max"], 2)} for (n, arm), r in t.iterrows()]


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    import harness
    import pandas as pd

    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    path = ROOT / "results" / "notebook_timings.json"
    t = book_times(path, notebooks)
    df = pd.DataFrame([{"notebook": r["notebook"],
                        "minutes": r["seconds"] / 60 if r["seconds"] is not None else float("nan"),
                        "finished": r["finished"] or "**not run in book mode yet**", "CPU": r.get("cpu") or "",
                        "note": r.get("note", "")}
                       for r in t["rows"]])
    total_min = t["total_seconds"] / 60
    over = [r["notebook"] for r in t["rows"] if r["notebook"] in notebooks and r["seconds"] is not None
            and r["seconds"] / 60 > CHAPTER_TARGET_MIN]
    verdict = (f"**Total {total_min:.1f} min for the {len(notebooks) - len(t['missing'])} timed notebooks"
               + (f" ({len(t['missing'])} not timed in book mode yet: {', '.join(t['missing'])})" if t["missing"]
                  else "") + f"; each chapter ≤ {CHAPTER_TARGET_MIN:.0f} min: "
               + (f"missed by {', '.join(over)}**." if over else "met by every timed chapter**."))
    md = [f"From `{path.relative_to(ROOT)}` (written by `tools/run_notebooks.py --mode book` as each notebook "
          "finishes; not re-measured here). Notebooks run at different times, on a machine shared with other work, "
          "and each run's time includes training: a notebook re-run with cached features or checkpoints is faster.",
          "", harness.markdown_table(df), "", verdict]
    parts = time_breakdown(ROOT / "results")
    if parts:
        bd = pd.DataFrame(parts)
        bd["minutes"] = bd.pop("seconds") / 60
        if t["total_seconds"]:
            bd["share of the book"] = bd["minutes"] * 60 / t["total_seconds"]
        md += ["", "**Where the time goes** — the largest parts, from the book-mode records in `results/` "
               "(`phase_seconds` of the transfer chapters, `train_seconds` of the from-scratch runs; a phase "
               "that reused a cache shows the time it cost when the cache was computed):", "",
               harness.markdown_table(bd)]
    cpus = sorted({f"{r['cpu']} ({r.get('cores')} cores)" for r in t["rows"] if r.get("cpu")})
    if cpus:
        md += ["", "CPU of the timed runs (where recorded): " + "; ".join(cpus) + "."]
    targets = [{"target": f"{r['notebook']} ≤ {CHAPTER_TARGET_MIN:.0f} min", "value_min": r["seconds"] / 60,
                "met": r["seconds"] / 60 <= CHAPTER_TARGET_MIN,
                "margin": f"{r['seconds'] / 60 - CHAPTER_TARGET_MIN:+.1f} min"}
               for r in t["rows"] if r["notebook"] in notebooks and r["seconds"] is not None]
    vs = scratch_vs_transfer(ROOT / "results")
    if vs:
        md += ["", "**Transfer against training from scratch** — each ImageNet model's test accuracy against "
               "the from-scratch model chosen on validation, like with like (one view against one view, "
               "test-time augmentation against test-time augmentation), from the book-mode records:", "",
               harness.markdown_table(pd.DataFrame(vs))]
    le = label_efficiency(ROOT / "results")
    if le:
        md += ["", "**By labelled images per class** (`make label-efficiency`: the improved CNN from scratch "
               "against MobileNetV2 fine-tuned, the same nested subsets and optimizer steps, the whole test "
               "split):", "", harness.markdown_table(pd.DataFrame(le))]
    if not ctx.get("quick"):
        write_running_times(chapter_times_block(ROOT / "notebooks", path, ROOT / "results"))
    return {"title": TITLE, "markdown": "\n".join(md), "targets": targets,
            "key": {"total_minutes": total_min, "complete": t["complete"], "missing": t["missing"]},
            "results": {**t, "breakdown": parts, "scratch_vs_transfer": vs, "label_efficiency": le}}
