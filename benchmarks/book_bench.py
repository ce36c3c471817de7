"""Benchmark section "book": wall time of every notebook in a full book run.

Nothing is executed here: the times are those recorded by ``tools/run_notebooks.py --mode book``
in ``results/notebook_timings.json`` (one entry per notebook, written when it finished). A
notebook without an entry has not been run in book mode yet; the total is then a lower bound.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TITLE = "The whole book: wall time per notebook (book mode), and the models' accuracy targets"
TARGET_MIN = 90.0           # the whole book in book mode
TRANSFER_TARGET_MIN = 60.0  # chapters 4-6 together
TRANSFER_NOTEBOOKS = ("04_", "05_", "06_")
# Test accuracy each transfer family should reach (the chapter's record chosen on validation: with TTA when
# that scored the higher validation macro-F1), and the book's best model by validation macro-F1.
ACCURACY_TARGETS = {"vgg19": 0.975, "resnet50": 0.980, "mobilenetv2": 0.988}
BEST_TARGET = {"accuracy": 0.990, "macro_f1": 0.990}
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


def time_breakdown(results_dir: Path, top: int = 8) -> list[dict[str, Any]]:
    """Where the book's time goes, from the training records: every transfer phase
    (``phase_seconds``) and every from-scratch training run (``train_seconds``, ablations included),
    largest first (at most ``top``)."""
    rows = []
    for f in sorted(Path(results_dir).rglob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or "model" not in rec or rec.get("mode") != "book":
            continue
        where = f.parent.name if f.parent != Path(results_dir) else ""
        name = f"{where}/{rec['model']}" if where else rec["model"]
        phases = rec.get("phase_seconds")
        if isinstance(phases, dict):
            rows += [{"record": name, "part": k, "seconds": float(v)} for k, v in phases.items()]
        elif rec.get("train_seconds") is not None:
            rows.append({"record": name, "part": "training", "seconds": float(rec["train_seconds"])})
    return sorted(rows, key=lambda r: -r["seconds"])[:top]


def accuracy_targets(results_dir: Path) -> list[dict[str, Any]]:
    """#14's accuracy targets against the book-mode records: each transfer family (its record chosen on val
    macro-F1, TTA or not) against its target and against the best from-scratch record's test accuracy, and
    the best model of all by val macro-F1 (the served/published copies excluded)."""
    from helpers.results import load_records

    recs = {r["model"]: r for r in load_records(results_dir)
            if r.get("mode") == "book" and r["model"] != "served" and r["val"] and r["test"]}
    scratch = {k: r for k, r in recs.items()
               if str((r.get("weights_source") or {}).get("kind", "")).startswith("none")}
    best_scratch = max(scratch, key=lambda k: scratch[k]["test"]["accuracy"], default=None)
    rows = []
    for family, target in ACCURACY_TARGETS.items():
        cands = [k for k in recs if k in (f"transfer_{family}", f"transfer_{family}_tta")]
        if not cands:
            rows.append({"target": f"{family} test accuracy ≥ {target:.1%}", "value": None, "met": None,
                         "margin": "no book-mode record"})
            continue
        k = max(cands, key=lambda c: recs[c]["val"]["macro_f1"])
        acc = recs[k]["test"]["accuracy"]
        rows.append({"target": f"{family} test accuracy ≥ {target:.1%}", "value": acc, "met": acc >= target,
                     "margin": f"{(acc - target) * 100:+.2f} pt ({k})"})
        if best_scratch:
            ref = scratch[best_scratch]["test"]["accuracy"]
            rows.append({"target": f"{family} above the best from-scratch model", "value": acc, "met": acc > ref,
                         "margin": f"{(acc - ref) * 100:+.2f} pt vs {best_scratch} ({ref:.2%})"})
    if recs:
        best = max(recs, key=lambda k: recs[k]["val"]["macro_f1"])
        t = recs[best]["test"]
        ok = t["accuracy"] >= BEST_TARGET["accuracy"] and t["macro_f1"] >= BEST_TARGET["macro_f1"]
        rows.append({"target": f"best model (by val macro-F1) test accuracy ≥ {BEST_TARGET['accuracy']:.1%} and "
                               f"macro-F1 ≥ {BEST_TARGET['macro_f1']:.3f}", "value": t["accuracy"], "met": ok,
                     "margin": f"{best}: {t['accuracy']:.2%}, macro-F1 {t['macro_f1']:.3f}"})
    return rows


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    import harness
    import pandas as pd

    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    path = ROOT / "results" / "notebook_timings.json"
    t = book_times(path, notebooks)
    df = pd.DataFrame([{"notebook": r["notebook"],
                        "minutes": r["seconds"] / 60 if r["seconds"] is not None else float("nan"),
                        "finished": r["finished"] or "**not run in book mode yet**", "note": r.get("note", "")}
                       for r in t["rows"]])
    total_min = t["total_seconds"] / 60
    met = total_min <= TARGET_MIN
    if t["complete"]:
        verdict = (f"**Total {total_min:.1f} min for all {len(notebooks)} notebooks: target ≤ {TARGET_MIN:.0f} min "
                   f"{'met' if met else 'MISSED'}** (margin {total_min - TARGET_MIN:+.1f} min).")
    else:
        verdict = (f"**Incomplete: {len(t['missing'])} of {len(notebooks)} notebooks have no book-mode timing** "
                   f"({', '.join(t['missing'])}). The {len(notebooks) - len(t['missing'])} timed ones total "
                   f"{total_min:.1f} min — a lower bound for the book, "
                   + (f"already over the {TARGET_MIN:.0f}-min target by {total_min - TARGET_MIN:.1f} min."
                      if not met else f"{TARGET_MIN - total_min:.1f} min under the {TARGET_MIN:.0f}-min target so far."))  # noqa: E501
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
    transfer = [r for r in t["rows"] if r["notebook"].startswith(TRANSFER_NOTEBOOKS) and r["notebook"] in notebooks]
    transfer_min = sum(r["seconds"] or 0 for r in transfer) / 60
    transfer_complete = bool(transfer) and all(r["seconds"] is not None for r in transfer)
    cpus = sorted({f"{r['cpu']} ({r.get('cores')} cores)" for r in t["rows"] if r.get("cpu")})
    if cpus:
        md += ["", "CPU of the timed runs (where recorded): " + "; ".join(cpus) + "."]
    targets = [{"target": f"whole book ≤ {TARGET_MIN:.0f} min", "value_min": total_min,
                "met": met if t["complete"] else (False if not met else None),
                "margin": f"{total_min - TARGET_MIN:+.1f} min" if t["complete"] else
                f"incomplete: {total_min:.1f} min timed so far, {len(t['missing'])} notebook(s) untimed"},
               {"target": f"transfer chapters 4-6 ≤ {TRANSFER_TARGET_MIN:.0f} min", "value_min": transfer_min,
                "met": transfer_min <= TRANSFER_TARGET_MIN if transfer_complete else None,
                "margin": f"{transfer_min - TRANSFER_TARGET_MIN:+.1f} min"}]
    acc = accuracy_targets(ROOT / "results")
    targets += acc
    return {"title": TITLE, "markdown": "\n".join(md), "targets": targets,
            "key": {"total_minutes": total_min, "complete": t["complete"], "missing": t["missing"]},
            "results": {**t, "breakdown": parts, "accuracy_targets": acc}}
