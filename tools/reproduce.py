"""Re-execute chapters into a scratch folder and compare their numbers with a reference.

    python tools/reproduce.py --mode smoke --out /tmp/run-a                 # every chapter, tiny mode
    python tools/reproduce.py --mode smoke --out /tmp/run-b --against /tmp/run-a
    python tools/reproduce.py --mode smoke --out /tmp/run 03 04              # only chapters 03 and 04
    python tools/reproduce.py --mode book --out /tmp/re03 03 --records results  # make reproduce CHAPTER=03
    python tools/reproduce.py --no-run --out /tmp/re03 --records results --collect benchmarks/REPRODUCE.md

Each chapter runs with papermill from a copy (the committed notebooks, records and models are never
written): records go to ``OUT/results``, models and caches to ``OUT/outputs``, executed notebooks to
``OUT/notebooks``. ``--deterministic`` (default on) seeds Python, NumPy and Keras at kernel start and
turns on TensorFlow's op determinism, so two runs of the same code give the same numbers; that is how a
change of the helpers is shown to keep behaviour. ``OUT/snapshot.json`` holds, per chapter, every
record's metrics and every glued value; ``--against`` prints the differences to another snapshot, and
``--records`` prints every new record's accuracy and macro-F1 beside the committed record of the same
name, with the spread the committed record states (its ``spread`` block: the values of one metric from
several seeds), and whether the difference lies within the 95 % retrain tolerance that spread gives
(:func:`helpers.results.retrain_tolerance`: how far two runs of the same recipe land apart by the seed
alone, 19 times in 20). The committed records are only read. ``--collect benchmarks/REPRODUCE.md`` also
puts each chapter's comparison into the collected report (one section per chapter, replaced when that
chapter is re-run, under a summary of every headline number) and its data, ``REPRODUCE.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the helpers of this checkout, as tools/run_notebooks.py does

STARTUP = """\
# Seed right before the first cell runs (seeding at kernel start-up is not enough: the kernel draws
# random numbers of its own between start-up and the first cell).
_seeded = []


def _seed_before_first_cell(*_args):
    if _seeded:
        return
    _seeded.append(True)
    import random

    import keras
    import numpy as np
    import tensorflow as tf

    random.seed(0)
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()


get_ipython().events.register("pre_run_cell", _seed_before_first_cell)
"""


def _record_numbers(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        block = rec.get(split) or {}
        for k in ("accuracy", "macro_f1"):
            if k in block:
                out[f"{split}.{k}"] = block[k]
        for cls, m in (block.get("per_class") or {}).items():
            if isinstance(m, dict) and "f1" in m:
                out[f"{split}.f1.{cls}"] = m["f1"]
    for k, v in (rec.get("history") or {}).items():
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            out[f"history.{k}"] = v
    for k in ("epochs", "image_size", "views"):
        if k in rec:
            out[k] = rec[k]
    return out


def _glued(nb_path: Path) -> dict[str, Any]:
    from helpers.book import glued_values

    out: dict[str, Any] = {}
    for name, text in glued_values(nb_path).items():
        try:
            out[name] = float(text)
        except ValueError:
            out[name] = text
    return out


def run(chapters: list[str], mode: str, out: Path, deterministic: bool) -> dict[str, Any]:
    import papermill as pm

    out.mkdir(parents=True, exist_ok=True)
    env_keep = {k: os.environ.get(k) for k in ("BLOODCELLS_MODE", "BLOODCELLS_RESULTS_DIR",
                                               "BLOODCELLS_OUTPUT_DIR", "IPYTHONDIR", "PYTHONHASHSEED")}
    os.environ["BLOODCELLS_MODE"] = mode
    os.environ["BLOODCELLS_RESULTS_DIR"] = str(out / "results")
    os.environ["BLOODCELLS_OUTPUT_DIR"] = str(out / "outputs")
    os.environ["PYTHONHASHSEED"] = "0"
    if deterministic:
        ipy = Path(tempfile.mkdtemp(prefix="ipython-"))
        (ipy / "profile_default" / "startup").mkdir(parents=True)
        (ipy / "profile_default" / "startup" / "00-seed.py").write_text(STARTUP)
        os.environ["IPYTHONDIR"] = str(ipy)
    (out / "results").mkdir(exist_ok=True)
    (out / "notebooks").mkdir(exist_ok=True)
    from helpers.bench import cpu_model
    from helpers.io import git_commit

    snap: dict[str, Any] = {"mode": mode, "deterministic": deterministic, "commit": git_commit(ROOT),
                            "cpu": cpu_model(), "cores": os.cpu_count(),
                            "date": time.strftime("%Y-%m-%d", time.gmtime()), "chapters": {}}
    try:
        for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            if chapters and not nb.name.startswith(tuple(chapters)):
                continue
            started = time.time()
            dest = out / "notebooks" / nb.name
            t0 = time.perf_counter()
            print(f"=== {nb.name} ({mode})", flush=True)
            pm.execute_notebook(str(nb), str(dest), parameters={"MODE": mode}, kernel_name="python3",
                                cwd=str(nb.parent), progress_bar=False)
            recs = {}
            for p in sorted((out / "results").rglob("*.json")):
                if p.stat().st_mtime < started or p.name == "notebook_timings.json":
                    continue  # written by an earlier chapter or an earlier run into the same folder
                recs[str(p.relative_to(out / "results"))] = _record_numbers(json.loads(p.read_text()))
            snap["chapters"][nb.stem] = {"seconds": round(time.perf_counter() - t0, 1), "records": recs,
                                         "glue": _glued(dest)}
            print(f"    {len(recs)} records, {len(snap['chapters'][nb.stem]['glue'])} glued values, "
                  f"{snap['chapters'][nb.stem]['seconds']:.0f} s", flush=True)
    finally:
        for k, v in env_keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        (out / "snapshot.json").write_text(json.dumps(snap, indent=1, sort_keys=True))
    return snap


# Glued values that measure time, load or speed differ between any two runs; they are not behaviour.
VOLATILE = ("second", "_s", "_min", "minute", "time", "load", "img_s", "per_s", "speed", "ms", "latency",
            "throughput", "speedup", "faster", "fps", "cpu", "date", "when", "mb", "budget_left", "epochs_left")


def _volatile(key: str) -> bool:
    k = key.lower()
    return any(v in k for v in VOLATILE) or "epoch_seconds" in k


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol
    return a == b


def compare(new: dict[str, Any], ref: dict[str, Any], tol: float = 1e-6) -> list[str]:
    """Lines naming every value that differs (volatile timing values are skipped)."""
    diffs = []
    for ch, ref_ch in ref["chapters"].items():
        new_ch = new["chapters"].get(ch)
        if new_ch is None:
            diffs.append(f"{ch}: not run")
            continue
        for kind in ("records", "glue"):
            a_all, b_all = new_ch[kind], ref_ch[kind]
            for key in sorted(set(a_all) | set(b_all)):
                if kind == "records":
                    a, b = a_all.get(key, {}), b_all.get(key, {})
                    for k in sorted(set(a) | set(b)):
                        if not _volatile(k) and not _close(a.get(k), b.get(k), tol):
                            diffs.append(f"{ch}: record {key} {k}: {b.get(k)!r} -> {a.get(k)!r}")
                elif not _volatile(key) and not _close(a_all.get(key), b_all.get(key), tol):
                    diffs.append(f"{ch}: glue {key}: {b_all.get(key)!r} -> {a_all.get(key)!r}")
    return diffs


def records_table(out_results: Path, committed: Path, names: set[str]) -> tuple[list[dict[str, Any]], int]:
    """Rows ``record`` (its path in the results folder), ``model, metric, committed, new, difference, spread``
    (the seed half-range), ``seeds``, ``tolerance``
    (the 95 % retrain tolerance), ``within`` (the difference within the tolerance) and ``within_half_range``
    (the old rule, for comparison) for the records ``names`` written by this run (paths relative to
    ``out_results``), and how many lie outside their tolerance."""
    from helpers.results import retrain_tolerance, seed_sd, stated_spread

    rows, outside = [], 0
    for name in sorted(names):
        p = out_results / name
        new = json.loads(p.read_text())
        ref_path = committed / name
        ref = json.loads(ref_path.read_text()) if ref_path.is_file() else None
        for split in ("val", "test"):
            for metric in ("accuracy", "macro_f1"):
                a = (new.get(split) or {}).get(metric)
                b = ((ref or {}).get(split) or {}).get(metric)
                half, source = stated_spread(ref, split, metric)
                tol = retrain_tolerance(ref) if half is not None else None
                within = None if a is None or b is None or tol is None else abs(a - b) <= tol
                outside += within is False
                rows.append({"record": name, "model": new.get("model", p.stem), "metric": f"{split} {metric}",
                             "committed": b,
                             "new": a, "difference": None if a is None or b is None else a - b,
                             "spread": half, "seeds": seed_sd(ref)[1] if half is not None else None,
                             "tolerance": tol, "spread_of": source, "within": within,
                             "within_half_range": None if within is None else abs(a - b) <= half})
    return rows, outside


def records_report(rows: list[dict[str, Any]]) -> list[str]:
    """The rows of :func:`records_table` as a Markdown table (it reads as well in a terminal), with a note per
    spread saying what it was measured on."""
    def yes_no(v):
        return "—" if v is None else "yes" if v else "no"

    def f(v):
        return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| model | metric | committed | new | difference | seed half-range | within half-range | seeds | "
             "95 % tolerance | within |", "|---|---|---|---|---|---|---|---|---|---|"]
    sources: list[str] = []
    for r in rows:
        if r["within"] is not None:
            w = "yes" if r["within"] else "NO"
        else:
            w = "no value to compare" if r["committed"] is None or r["new"] is None else "no spread stated"
        if r.get("spread_of") and r["within"] is not None:
            if r["spread_of"] not in sources:
                sources.append(r["spread_of"])
            w += f" [{sources.index(r['spread_of']) + 1}]"
        diff = "—" if r["difference"] is None else f"{r['difference']:+.4f}"
        lines.append(f"| {r['model']} | {r['metric']} | {f(r['committed'])} | {f(r['new'])} | {diff} | "
                     f"{f(r['spread'])} | {yes_no(r.get('within_half_range'))} | {f(r.get('seeds'))} | "
                     f"{f(r.get('tolerance'))} | {w} |")
    lines += ["", "Within half-range: the difference is at most half the seeds' range, shown for comparison only: "
              "too narrow a rule, since even a fourth run of one recipe falls outside the range of the first "
              "three half the time (each of four runs is as likely as the others to be the highest or the lowest).",
              "Within: the difference is at most the 95 % retrain tolerance, Student's t (seeds − 1 degrees of "
              "freedom) × √2 × the seeds' standard deviation: how far two runs of one recipe land apart by the "
              "seed alone, 19 times in 20.", ""]
    lines += [f"[{i}] spread: the seeds' {src}" for i, src in enumerate(sources, 1)]
    return lines


def _run_line(meta: dict[str, Any]) -> str:
    """One sentence saying where and how a re-run ran (its chapters with their minutes)."""
    chapters = ", ".join(f"{k} ({v:.1f} min)" for k, v in meta["minutes"].items())
    sha = meta.get("commit") or ""
    commit = f" of commit {sha[:7]}{'+dirty' if sha.endswith('+dirty') else ''}" if sha else ""
    return (f"`tools/reproduce.py --mode {meta['mode']}`{commit} on {meta['cpu']} ({meta['cores']} cores), "
            f"{meta['date']}: {chapters}; op determinism {'on' if meta.get('deterministic') else 'off'}.")


def _run_meta(snap: dict[str, Any], chapters: list[str] | None = None) -> dict[str, Any]:
    """Where, when and how a snapshot's run ran (a snapshot from before these were recorded: this machine, today)."""
    from helpers.bench import cpu_model

    return {"mode": snap["mode"], "deterministic": bool(snap.get("deterministic")), "commit": snap.get("commit"),
            "cpu": snap.get("cpu") or cpu_model(), "cores": snap.get("cores") or os.cpu_count(),
            "date": snap.get("date") or time.strftime("%Y-%m-%d", time.gmtime()),
            "minutes": {k: round(v["seconds"] / 60, 1) for k, v in snap["chapters"].items()
                        if chapters is None or k in chapters}}


def _report_head(meta: dict[str, Any], outside: int) -> str:
    """The sentence that opens a re-run's report: where it ran, what the table compares, how many lie outside."""
    return (f"{_run_line(meta)} Each new record's accuracy and macro-F1 beside the committed record of the same "
            "name, and whether the difference lies within the 95 % retrain tolerance of the seed spread the "
            f"committed record states: {outside} outside.")


def _write_report(path: Path, snap: dict[str, Any], lines: list[str], outside: int) -> None:
    from helpers.io import atomic_write_text

    head = ["# A re-run beside the committed records", "", _report_head(_run_meta(snap), outside), ""]
    atomic_write_text(path, "\n".join(head + lines) + "\n")


COLLECTED_INTRO = (
    "One section per chapter, each the report of `tools/reproduce.py --mode book --records results` for that "
    "chapter (`make reproduce CHAPTER=NN REPRO_COLLECT=benchmarks/REPRODUCE.md` replaces its section and this "
    "summary; the numbers are kept in `REPRODUCE.json` beside it). Each chapter ran from a clean checkout of "
    "the committed book. The committed records come from `make book` (op determinism off); the re-runs seed "
    "every kernel and turn op determinism on, so they are independent runs of the same recipes, not copies.")


def headline_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, the row a chapter quotes: its test accuracy, or its val accuracy when it has no test number
    (an ablation variant)."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["metric"]] = r
    out = []
    for metrics in by_model.values():
        test = metrics.get("test accuracy")
        pick = test if test and test["committed"] is not None else metrics.get("val accuracy")
        if pick and pick["committed"] is not None and pick["new"] is not None:
            out.append(pick)
    return out


def collected_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The collected report: a summary of every headline number, then each chapter's section."""
    from helpers.results import smaller_budget

    if not runs:
        return ("# Re-runs beside the committed records\n\n" + COLLECTED_INTRO + "\n\nNo chapter has been re-run "
                "against the records committed now (a re-run whose records have since changed is dropped).\n")
    lines = ["# Re-runs beside the committed records", "", COLLECTED_INTRO, "",
             "## Every headline number", "",
             "The number each chapter quotes for a model: its test accuracy (an ablation variant's validation "
             "accuracy, its only number), committed and re-run, and whether the difference lies within the 95 % "
             "retrain tolerance of the seed spread the committed record states. *Spread at*: the budget that "
             "spread was measured at — the run's own, or a smaller one for the models too costly to train "
             "several times (labelled so in the chapter and the record).", "",
             "| chapter | model | metric | committed | re-run | difference | 95 % tolerance | within | spread at |",
             "|---|---|---|---|---|---|---|---|---|"]
    n = within = unstated = 0
    diffs: list[tuple[float, str]] = []
    for chapter in sorted(runs):
        for r in headline_rows(runs[chapter]["rows"]):
            n += r["within"] is not None
            within += bool(r["within"])
            unstated += r["within"] is None
            diffs.append((abs(r["difference"]), r["model"]))
            w = "—" if r["within"] is None else "yes" if r["within"] else "NO"
            tol = "—" if r.get("tolerance") is None else f"{r['tolerance']:.4f}"
            src = r.get("spread_of") or ""
            at = "—" if not src else "a smaller budget" if smaller_budget(src) else "the run's own budget"
            lines.append(f"| {chapter[:2]} | {r['model']} | {r['metric']} | {r['committed']:.4f} | {r['new']:.4f} | "
                         f"{r['difference']:+.4f} | {tol} | {w} | {at} |")
    lines += ["", f"{within} of {n} headline numbers lie within their tolerance"
              + (f" ({unstated} more state no spread)." if unstated else ".")]
    if diffs:
        largest, model = max(diffs)
        median = statistics.median(d for d, _ in diffs)
        lines[-1] += (f" The largest difference is {100 * largest:.2f} points ({model}), the median "
                      f"{100 * median:.2f} points: a tolerance from a smaller budget is most likely wider than the "
                      "full run's, so these differences say more about how well the book reproduces than the "
                      "tolerances do.")
    lines.append("")
    for chapter in sorted(runs):
        run = runs[chapter]
        lines += [f"## Chapter {chapter[:2]}", "", _report_head(run, run["outside"]), ""]
        lines += records_report(run["rows"]) + [""]
    return "\n".join(lines).rstrip() + "\n"


def collect(path: Path, snap: dict[str, Any], tables: dict[str, tuple[list[dict[str, Any]], int]]) -> None:
    """Put each chapter's comparison (``tables``: chapter → rows and count outside) into the collected report
    ``path`` and its data ``path.with_suffix('.json')``, replacing that chapter's earlier re-run; both written
    atomically."""
    from helpers.io import atomic_write_json, atomic_write_text

    data_path = path.with_suffix(".json")
    runs = json.loads(data_path.read_text())["runs"] if data_path.is_file() else {}
    for chapter, (rows, outside) in tables.items():
        runs[chapter] = {**_run_meta(snap, [chapter]), "rows": rows, "outside": outside}
    atomic_write_json(data_path, {"runs": runs})
    atomic_write_text(path, collected_markdown(runs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter prefixes (e.g. 03); default: all")
    ap.add_argument("--mode", choices=["smoke", "book"], default="smoke")
    ap.add_argument("--out", type=Path, required=True, help="scratch folder for records, models and notebooks")
    ap.add_argument("--against", type=Path, help="a folder with an earlier snapshot.json to compare with")
    ap.add_argument("--records", type=Path, help="committed results folder to compare the new records with")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    ap.add_argument("--no-run", action="store_true",
                    help="compare the run already in --out (its snapshot.json) instead of running again")
    ap.add_argument("--report", type=Path, help="also write the --records comparison (Markdown) to this file")
    ap.add_argument("--collect", type=Path,
                    help="also put each chapter's comparison into this collected report (Markdown, with its data "
                         "as .json beside it), replacing that chapter's earlier re-run")
    args = ap.parse_args(argv)
    if (args.report or args.collect) and not args.records:
        ap.error("--report and --collect compare with the committed records: give --records too")
    if args.no_run:
        snap = json.loads((args.out / "snapshot.json").read_text())
    else:
        snap = run(args.chapters, args.mode, args.out.resolve(), args.deterministic)
    status = 0
    if args.records:
        tables = {ch: records_table(args.out.resolve() / "results", args.records.resolve(), set(v["records"]))
                  for ch, v in snap["chapters"].items()}
        rows = [r for rs, _ in tables.values() for r in rs]
        outside = sum(o for _, o in tables.values())
        lines = records_report(rows)
        print("\n".join(lines))
        status = 1 if outside else 0
        if args.report:
            _write_report(args.report, snap, lines, outside)
        if args.collect:
            collect(args.collect, snap, tables)
    if args.against:
        ref = json.loads((args.against / "snapshot.json").read_text())
        ref["chapters"] = {k: v for k, v in ref["chapters"].items() if k in snap["chapters"]}
        diffs = compare(snap, ref, args.tolerance)
        for line in diffs:
            print(line)
        print(f"{len(diffs)} differences against {args.against}")
        return 1 if diffs else status
    return status


if __name__ == "__main__":
    sys.exit(main())
