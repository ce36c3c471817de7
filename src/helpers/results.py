"""The results registry: one JSON record per training run in ``results/`` (the "lab book").

The schema is documented in ``results/README.md``. Records are written atomically, so an
interrupted run never leaves a half-written file and never damages earlier records.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import results_dir as _results_dir
from .io import atomic_write_json, cpu_model, git_commit

log = logging.getLogger("helpers.results")

SCHEMA_VERSION = 1
REQUIRED = ("model", "image_size", "epochs", "train_seconds", "weights_source", "data", "seed",
            "git_commit", "val", "test")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("tensorflow", "keras", "numpy", "sklearn"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed or broken: the record just omits it
            pass
    return out


def record_provenance() -> dict[str, Any]:
    """Where and when a record was written: commit, UTC time, machine and library versions."""
    return {"git_commit": git_commit(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_model()},
            "versions": _versions()}


def tuned_head(family: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The head hyper-parameters chapter ``family``'s run tuned (``<results>/transfer_<family>.json``); empty when
    the chapter has not run."""
    path = _results_dir(directory) / f"transfer_{family}.json"
    return dict(json.loads(path.read_text()).get("head_hyperparameters") or {}) if path.exists() else {}


def make_record(model: str, *, image_size: int, epochs: int, train_seconds: float, weights_source: Any,
                data: Mapping[str, Any], seed: int, val: Mapping[str, Any], test: Mapping[str, Any] | None,
                mode: str = "book", **extra: Any) -> dict[str, Any]:
    """Assemble a record; ``data`` is :meth:`helpers.data.SplitData.provenance`."""
    rec: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "model": model,
        "mode": mode,
        "image_size": int(image_size),
        "epochs": int(epochs),
        "train_seconds": round(float(train_seconds), 2),
        "weights_source": weights_source,
        "data": dict(data),
        "seed": int(seed),
        **record_provenance(),
        "val": dict(val),
        "test": dict(test) if test is not None else None,
    }
    rec.update(extra)
    return rec


def validate_record(rec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first missing field or metric."""
    if not isinstance(rec, Mapping):
        raise ValueError(f"a result record must be a JSON object, got {type(rec).__name__}")
    for k in REQUIRED:
        if k not in rec:
            raise ValueError(f"result record lacks {k!r}")
    for block in ("val", "test"):
        if rec[block] is not None:
            for k in ("accuracy", "macro_f1", "per_class"):
                if not isinstance(rec[block], Mapping) or k not in rec[block]:
                    raise ValueError(f"result record's {block!r} block lacks {k!r}")
    if not isinstance(rec["model"], str) or not rec["model"].strip():
        raise ValueError(f"result record's 'model' must be a non-empty name, got {rec['model']!r}")


def write_record(rec: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Path:
    """Validate and atomically write ``<results>/<model>.json``; returns the path."""
    validate_record(rec)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(rec["model"]))
    path = _results_dir(directory) / f"{safe}.json"
    atomic_write_json(path, rec)
    log.debug("wrote %s/%s", path.parent.name, path.name)  # record-keeping: not on the page
    return path


NOT_RECORDS = frozenset({"notebook_timings.json"})
"""JSON files in ``results/`` that are not result records (skipped silently by :func:`load_records`)."""


def load_records(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every record in the registry, sorted by model name (unreadable files are logged, not fatal)."""
    out = []
    for p in sorted(_results_dir(directory).glob("*.json")):
        if p.name in NOT_RECORDS:
            continue
        try:
            rec = json.loads(p.read_text())
            validate_record(rec)
            out.append(rec)
        except (ValueError, OSError) as e:
            log.warning("ignored result file %s: %s", p.name, e)
    return out


def stated_spread(rec: Mapping[str, Any] | None, split: str = "test",
                  metric: str = "accuracy") -> tuple[float | None, str | None]:
    """The seed-to-seed half-range a record's ``spread`` block states for ``split``'s ``metric``, and what it was
    measured on (``"val accuracy, <budget>"``); ``(None, None)`` when the record states none.

    Where only the other split was measured, its half-range of the same metric stands in: a seed spread is a
    property of the recipe, and the second value says where it came from.
    """
    block = (rec or {}).get("spread") or {}
    for s in (split, "val" if split == "test" else "test"):
        half = (block.get(s) or {}).get(metric)
        if half is not None:
            return float(half), f"{s} {metric}, {block.get('budget') or 'budget not stated'}"
    return None, None


def seed_sd(rec: Mapping[str, Any] | None) -> tuple[float | None, int]:
    """The seed-to-seed standard deviation (``ddof=1``) of a record's ``spread`` block and its number of seeds;
    ``(None, 0)`` when the record states fewer than two seeds."""
    block = (rec or {}).get("spread") or {}
    values = [float(v) for v in block.get("values") or []]
    if len(values) < 2:
        return None, len(values)
    return statistics.stdev(values), len(values)


SMALLER_BUDGET = "not the full data"
"""What a spread block's ``budget`` says when its seeds ran on a capped copy of the split, not the model's own."""


def smaller_budget(budget: str | None) -> bool:
    """True when a spread's ``budget`` text says it was measured on less than the full data."""
    return SMALLER_BUDGET in str(budget or "")


def spread_words(spread: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a chapter says about its recipe's seed spread (glued as ``<family>_<key>``): ``spread_text``, the
    validation accuracy's range across the seeds in words and on which data; ``spread_half_pt``, half that
    range in points; ``spread_range``, the range itself."""
    if spread is None:
        return {"spread_text": "no seed spread was measured for these classes",
                "spread_half_pt": float("nan"), "spread_range": "not measured"}
    lo, hi = float(spread["min"]), float(spread["max"])
    half_pt = 100 * (hi - lo) / 2
    where = "on that capped set" if smaller_budget(spread.get("budget")) else "on the full data"
    return {"spread_text": (f"{where} the validation accuracy runs from {lo:.3f} to {hi:.3f} across the "
                            f"{len(spread['seeds'])} seeds: ±{half_pt:.1f} points (half the range)"),
            "spread_half_pt": half_pt, "spread_range": f"{lo:.2f}–{hi:.2f}"}


NO_SPREAD = "no spread at this budget"
"""What a table says where a seed spread exists only for a smaller budget than the model's."""


def retrain_tolerance(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None = None,
                      level: float = 0.95, *, own_budget: bool = False) -> float | None:
    """How far apart two single training runs may land by the seed alone, ``level`` of the time.

    ``b=None`` asks about a second run of ``a``'s recipe (a reproduction); otherwise about one run each of two
    recipes (is their difference more than seeds make?). The difference of two independent runs has the sum
    of their variances, and a standard deviation estimated from n seeds is uncertain itself, so the bound is
    Student's t with n − 1 degrees of freedom (the smaller n of the two) times ``sqrt(s_a² + s_b²)``. With
    three seeds t is 4.3 for 95 %: three seeds show that a spread is small only when it is very small.
    ``None`` when a record states no spread. The spread is the one the record's block measured (its
    ``budget`` says on what), standing in for the metric it is applied to; ``own_budget=True`` refuses a
    spread measured on a smaller budget (:func:`smaller_budget`: a capped set scatters more, so its
    tolerance is a stand-in many times too wide) and gives ``None`` instead.
    """
    from scipy.stats import t as student_t

    if own_budget and any(smaller_budget((r or {}).get("spread", {}).get("budget")) for r in (a, b)):
        return None
    sa, na = seed_sd(a)
    sb, nb = seed_sd(a if b is None else b)
    if sa is None or sb is None:
        return None
    return float(student_t.ppf((1 + level) / 2, min(na, nb) - 1) * (sa * sa + sb * sb) ** 0.5)


def _short_budget(block: Mapping[str, Any]) -> str:
    """``"<metric>, <budget>"`` without the budget's details (in brackets, after a colon or a semicolon)."""
    if not block:
        return "not measured"
    budget = re.split(r" \(|;|:", str(block.get("budget") or "budget not stated"))[0]
    return f"{block.get('metric', '')}, {budget}"


def retrain_table(records: Mapping[str, Mapping[str, Any] | None], names: list[str], split: str = "test",
                  level: float = 0.95, *, own_budget: bool = False) -> pd.DataFrame:
    """One row per model of ``names``: its accuracy on ``split``, the seeds its record's spread was measured
    from, their standard deviation and on what budget, and the :func:`retrain_tolerance` — how far a second
    run of the same recipe may land from this one, ``level`` of the time (NaN where no spread was measured).
    ``own_budget=True`` gives no tolerance for a spread measured on a smaller budget than the model's but the
    words ``"no spread at this budget"`` (a capped set's scatter would stand in many times too wide)."""
    rows = []
    for n in names:
        rec = records.get(n) or {}
        block = rec.get("spread") or {}
        sd, seeds = seed_sd(rec)
        tol = retrain_tolerance(rec, level=level)
        if own_budget and tol is not None and smaller_budget(block.get("budget")):
            tol = NO_SPREAD
        rows.append({"model": n, "accuracy": (rec.get(split) or {}).get("accuracy"), "seeds": seeds,
                     "seed sd": sd, "spread measured on": _short_budget(block),
                     f"retrain tolerance ({level:.0%})": tol})
    return pd.DataFrame(rows).set_index("model")


def _total_params(p: Any) -> Any:
    """``params`` may be a number or ``{"trainable", "non_trainable", "total"}`` (helpers.models.count_params)."""
    return p.get("total") if isinstance(p, Mapping) else p


def comparison_table(records: list[Mapping[str, Any]], split: str = "test") -> pd.DataFrame:
    """One row per model: accuracy, macro-F1, image size, epochs, training time, weights."""
    rows = []
    for r in records:
        block = r.get(split) or {}
        ws = r.get("weights_source")
        rows.append({
            "model": r["model"],
            "accuracy": block.get("accuracy"),
            "macro_f1": block.get("macro_f1"),
            "image_size": r["image_size"],
            "epochs": r["epochs"],
            "train_min": round(r["train_seconds"] / 60, 1),
            "params": _total_params(r.get("params")),
            "weights": ws.get("kind") if isinstance(ws, Mapping) else ws,
        })
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def label_efficiency_records(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per point of the label-efficiency grid (``<results>/label_efficiency/``, written by
    ``tools/label_efficiency.py``): arm, images per class, seed, test accuracy and macro-F1, the recall of
    every class, steps, batch size and minutes."""
    rows = []
    for f in sorted((_results_dir(directory) / "label_efficiency").glob("*.json")):
        rec = json.loads(f.read_text())
        le, test = rec["label_efficiency"], rec["test"]
        rows.append({"arm": le["arm"], "per_class": le["per_class"], "seed": rec["seed"],
                     "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
                     **{f"recall {c}": v["recall"] for c, v in test["per_class"].items()},
                     "n_train": le.get("n_train"), "steps": le["steps"], "batch_size": le.get("batch_size"),
                     "minutes": rec["train_seconds"] / 60})
    return pd.DataFrame(rows)


def label_efficiency_table(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max test accuracy over the seeds, per images per class (rows) and arm (columns)."""
    g = points.groupby(["per_class", "arm"])["accuracy"]
    return g.agg(["mean", "min", "max", "count"]).unstack("arm")


def ablation_runs(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run of chapter 3's ablation (``<results>/ablation/``, written by ``tools/ablation.py``):
    variant, its label, seed, the restored epoch's val accuracy, and the per-epoch val accuracy."""
    rows = []
    for f in sorted((_results_dir(directory) / "ablation").glob("*.json")):
        rec = json.loads(f.read_text())
        ab = rec["ablation"]
        rows.append({"variant": ab["variant"], "label": ab["label"], "seed": rec["seed"],
                     "val_accuracy": rec["val"]["accuracy"], "val_curve": rec["history"]["val_accuracy"],
                     "minutes": rec["train_seconds"] / 60})
    return pd.DataFrame(rows)


def ablation_table(runs: pd.DataFrame, reference: str = "recipe") -> pd.DataFrame:
    """Per variant: seeds, mean/min/max val accuracy, the difference of means from ``reference`` in points, and
    whether the variant's seed range lies wholly outside the reference's."""
    t = runs.groupby("label", sort=False)["val_accuracy"].agg(["count", "mean", "min", "max"])
    ref = t.loc[runs.loc[runs["variant"] == reference, "label"].iloc[0]]
    t["Δ vs recipe (points)"] = 100 * (t["mean"] - ref["mean"])
    outside = (t["max"] < ref["min"]) | (t["min"] > ref["max"])
    t["outside the recipe's range"] = outside.map({True: "yes", False: "no"})
    return t.rename(columns={"count": "seeds"})


def largest_drop(curve) -> tuple[float, int]:
    """The largest fall of a per-epoch curve from one epoch to the next and the (1-based) epoch it fell to."""
    d = np.diff(np.asarray(curve, dtype=float))
    if not d.size or d.min() >= 0:
        return 0.0, 0
    return float(-d.min()), int(d.argmin()) + 2


SPREAD_FOLDER = "spread"


def spread_name(family: str, full: bool = False) -> str:
    """The file name of ``family``'s transfer spread in ``<results>/spread/``: measured on a capped set, or
    (``full``) on the whole split."""
    return f"transfer_{family}{'_full' if full else ''}.json"


def full_seed_name(family: str, e2e_epochs: int, seed: int | str) -> str:
    """The file of one full-data seed run of ``family``'s recipe in ``<results>/spread/full/``, named by the
    schedule it ran (phase-3 epochs): a schedule that grows is measured anew, and the earlier one's runs stay."""
    return f"transfer_{family}_e{e2e_epochs}_s{seed}.json"


def full_seed_path(family: str, e2e_epochs: int | str, seed: int | str,
                   directory: str | os.PathLike | None = None) -> Path:
    """Where :func:`full_seed_name`'s file lives in the results folder ``directory`` ("*" for a glob pattern)."""
    return _results_dir(directory) / SPREAD_FOLDER / "full" / full_seed_name(family, e2e_epochs, seed)


def spread_record(family: str, block: Mapping[str, Any], directory: str | os.PathLike, *, classes,
                  image_size: int, head: Mapping[str, Any] | None, weights: Mapping[str, Any], minutes: float,
                  mode: str = "book", full: bool = False, **extra: Any) -> Path:
    """Write a transfer recipe's seed spread (a :func:`helpers.train.spread_block`) with its provenance to
    ``<directory>/transfer_<family>.json`` (``full``: ``transfer_<family>_full.json``, measured on the full
    data), atomically; return the path."""
    rec = {"schema": SCHEMA_VERSION, "family": family, "mode": mode, "classes": list(classes),
           "image_size": int(image_size), "head_hyperparameters": dict(head or {}),
           "weights_source": {k: v for k, v in dict(weights).items() if k != "path"},
           "minutes": round(float(minutes), 2), **record_provenance(), "spread": dict(block), **extra}
    return atomic_write_json(Path(directory) / spread_name(family, full), rec)


def transfer_spread(family: str, classes, directory: str | os.PathLike | None = None, *,
                    full: bool = False, e2e_epochs: int | None = None) -> dict[str, Any] | None:
    """The seed spread of ``family``'s transfer recipe measured by ``tools/transfer_spread.py``
    (``<results>/spread/transfer_<family>.json``; ``full``: the one on the full data, ``…_full.json``): its
    spread block, with ``created`` and ``git_commit`` of the measurement added; None (logged) when it was not
    measured, or measured on other classes than ``classes``, or (``e2e_epochs`` given) with another number of
    phase-3 epochs than the run it stands beside."""
    path = _results_dir(directory) / SPREAD_FOLDER / spread_name(family, full)
    if not path.exists():
        log.info("no seed spread of %s was measured (%s)", family, path.name)
        return None
    rec = json.loads(path.read_text())
    if list(rec.get("classes", [])) != list(classes):
        log.info("the seed spread of %s was measured on other classes; not used", family)
        return None
    ran = re.search(r"(\d+) epochs? of phase 3", str(rec["spread"].get("budget", "")))
    if e2e_epochs is not None and int(ran.group(1) if ran else 0) != e2e_epochs:
        log.info("the seed spread of %s was measured with another schedule (%s); not used", family,
                 f"{ran.group(1)} epochs of phase 3" if ran else "no phase 3")
        return None
    return {**rec["spread"], "created": rec["created"], "git_commit": rec["git_commit"]}


def seed_table(spread: Mapping[str, Any] | None, width: int = 78) -> pd.DataFrame | None:
    """A seed spread as a page shows it: its budget line printed (wrapped to ``width``), its validation
    accuracies by seed returned as a table; None for no spread."""
    import textwrap

    if spread is None:
        return None
    print(textwrap.fill(str(spread["budget"]), width))
    return pd.DataFrame({"val accuracy": spread["values"]}, index=pd.Index(spread["seeds"], name="seed"))


SERVED = "served"
"""The record the benchmark writes for the served configuration of the final model (a copy, not a model)."""


def scored_models(records: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records of the trained models whose scores were saved, by name: the models chapter 8 compares (the
    served configuration, a copy of one of them, left out)."""
    return {r["model"]: dict(r) for r in records if r.get("scores") and r["model"] != SERVED}


def final_model(records: list[Mapping[str, Any]]) -> str | None:
    """The book's final model: of :func:`scored_models`, the one with the highest validation macro-F1, chosen on
    validation only (as chapter 8 orders the models); the model the command line and the app serve. None when
    no record has scores."""
    scored = [r for r in scored_models(records).values() if (r.get("val") or {}).get("macro_f1") is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: float(r["val"]["macro_f1"]))["model"]


def served_record(directory: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The record of the configuration the command line and the app serve (``<results>/served.json``, written by
    the benchmark), or None when it was never measured."""
    path = _results_dir(directory) / "served.json"
    return json.loads(path.read_text()) if path.exists() else None


def phase_path(rec: Mapping[str, Any]) -> pd.DataFrame:
    """A transfer record's phases as a path: one row per phase with the validation accuracy after it and the
    minutes spent up to its end (the frozen features first, then tuning and each phase), from the record's
    ``phase_val_accuracy`` and ``phase_seconds``."""
    secs = rec.get("phase_seconds") or {}
    spent = sum(secs.get(k, 0.0) for k in ("extract_train", "extract_val", "pool_frozen_top", "tune_head"))
    keys = {"phase 1": "phase1_head", "phase 2": "phase2_finetune", "phase 3": "phase3_end_to_end"}
    rows = []
    for label, acc in (rec.get("phase_val_accuracy") or {}).items():
        phase = label.split(":")[0]
        spent += secs.get(keys.get(phase, ""), 0.0)
        rows.append({"phase": phase, "minutes": spent / 60, "val accuracy": float(acc)})
    return pd.DataFrame(rows, columns=["phase", "minutes", "val accuracy"])


PILOTS = "pilots/transfer_recipes.json"
"""Longer or larger trials of the transfer recipes (``benchmarks/transfer_recipes.py``), in ``results/``."""


def recipe_trials(family: str, directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """``family``'s chapter run (its record) beside the trials of ``benchmarks/transfer_recipes.py``: per row
    the image size, phase-3 epochs, the best validation accuracy of phase 3, the minutes to its end (the
    features included) and the validation images, with the day it was measured and the CPU that timed it
    (blank where the record does not say). The chapter's run comes
    first; then, where its schedule grew after a trial, the earlier schedule's full-data run from the same seed
    (``spread/full/``); then the trials. No trials, one row."""
    folder = _results_dir(directory)
    rows = []
    rec_path = folder / f"transfer_{family}.json"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        path = phase_path(rec)
        epochs = int((rec.get("end_to_end") or {}).get("max_epochs", 0))
        rows.append({"trial": "the chapter's run", "image px": int(rec["image_size"]), "phase-3 epochs": epochs,
                     "best val accuracy": float(path["val accuracy"].iloc[-1]),
                     "minutes": float(path["minutes"].iloc[-1]), "val images": int(rec["n_used"]["val"]),
                     "measured": str(rec["created"])[:10], "CPU": _cpu(rec)})
        runs = schedule_seeds(family, folder, mode=rec.get("mode", "book"))
        for _, e in runs[(runs["seed"] == rec.get("seed")) & (runs["phase-3 epochs"] < epochs)].iterrows():
            rows.append({"trial": f"earlier schedule, {e['phase-3 epochs']} epochs", "image px": rows[0]["image px"],
                         "phase-3 epochs": int(e["phase-3 epochs"]), "best val accuracy": e["val accuracy"],
                         "minutes": e["minutes"], "val images": rows[0]["val images"], "measured": e["measured"],
                         "CPU": e["CPU"]})
    trials = json.loads((folder / PILOTS).read_text()) if (folder / PILOTS).exists() else {}
    for e in trials.values():
        if e.get("family") != family:
            continue
        label = (f"pilot, phase 3 for {e['epochs']} epochs" if "recipe" in e
                 else f"{e['image_size']} px, no phase 2, untuned head")
        rows.append({"trial": label, "image px": int(e["image_size"]), "phase-3 epochs": int(e["epochs"]),
                     "best val accuracy": max(e["e2e_val_accuracy"]),
                     "minutes": float(e["minutes_after_epoch"][-1]), "val images": int(e["val_images"]),
                     "measured": str(e["created"])[:10], "CPU": str(e.get("cpu", ""))})
    return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def _cpu(rec: Mapping[str, Any]) -> str:
    """The CPU a record was timed on (``machine.cpu``), blank where it does not say."""
    return str((rec.get("machine") or {}).get("cpu", ""))


def schedule_seeds(family: str, directory: str | os.PathLike | None = None, mode: str = "book") -> pd.DataFrame:
    """``family``'s full-data seed runs (``spread/full/``), every schedule: one row per run with its phase-3
    epochs, seed, validation accuracy, minutes, the day it was measured (blank where the run kept none), the
    test accuracy of the chapter's run of that schedule and seed (:func:`keep_chapter_test`; NaN elsewhere),
    the CPU that timed the seed run and the one that ran that chapter run (blank where a record does not say);
    empty when none was run."""
    rows = []
    pattern = full_seed_path(family, "*", "*", directory)
    for p in sorted(pattern.parent.glob(pattern.name)):
        r = json.loads(p.read_text())
        if r.get("mode", "book") == mode:
            rows.append({"phase-3 epochs": int(r["e2e_epochs"]), "seed": int(r["seed"]),
                         "val accuracy": float(r["val_accuracy"]), "minutes": float(r["minutes"]),
                         "measured": str(r.get("created", ""))[:10],
                         "test accuracy": float((r.get("chapter_test") or {}).get("accuracy", np.nan)),
                         "CPU": _cpu(r), "test CPU": str((r.get("chapter_test") or {}).get("cpu", ""))})
    return pd.DataFrame(rows, columns=["phase-3 epochs", "seed", "val accuracy", "minutes", "measured",
                                       "test accuracy", "CPU", "test CPU"])


def keep_chapter_test(record_path: str | os.PathLike) -> Path | None:
    """Leave the test accuracy of a chapter's run (its record at ``record_path``) on the full-data seed record of
    its own schedule and seed beside it, so that when the schedule grows, the earlier schedule's test accuracy
    stays on record (the test split was read once, by that run). Only where the seed record is the same model
    trained twice (the same mode and validation accuracy); otherwise a logged skip. Returns the seed record's
    path, or None."""
    record = json.loads(Path(record_path).read_text())
    e2e, seed = (record.get("end_to_end") or {}).get("max_epochs"), record.get("seed")
    if e2e is None or seed is None or "family" not in record or "test" not in record:
        return None  # not a transfer run with a test read: nothing to keep
    path = full_seed_path(record["family"], e2e, seed, Path(record_path).parent)
    if not path.is_file():
        return None
    val, test, seeded = record["val"]["accuracy"], record["test"], json.loads(path.read_text())
    if seeded.get("mode", "book") != record.get("mode") or abs(seeded["val_accuracy"] - val) > 1e-9:
        log.warning("%s is not the chapter's run (another mode or validation accuracy): its test accuracy is "
                    "not kept there", path.name)
        return None
    update_record(path, chapter_test={"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "n": test["n"],
                                      "val_accuracy": val, "created": record.get("created"),
                                      "git_commit": record.get("git_commit"), "cpu": _cpu(record)})
    return path


def schedule_test(runs: pd.DataFrame, shorter: int, longer: int, test_accuracy: float, n_test: int,
                  cpu: str | None = None) -> str | None:
    """In words: the test accuracy of the chapter's run of the ``shorter`` schedule (kept by
    :func:`keep_chapter_test`) against this run's of the ``longer``, with two standard errors of a test accuracy
    on ``n_test`` cells, and whether the two runs ran on different CPUs (``cpu``: this run's, by default the
    machine's). None where the shorter schedule's chapter run left no test accuracy."""
    shorter_runs = runs[(runs["phase-3 epochs"] == shorter) & runs["test accuracy"].notna()]
    if shorter_runs.empty:
        return None
    before = float(shorter_runs["test accuracy"].iloc[0])
    noise = two_standard_errors(test_accuracy, n_test)
    side = "beyond" if abs(test_accuracy - before) > noise else "within"
    shown = round(100 * test_accuracy, 2) - round(100 * before, 2)  # the difference of the numbers the reader sees
    words = (f"On the test split, read once by this chapter's run of each schedule: {before:.2%} after {shorter} "
             f"epochs of phase 3, {test_accuracy:.2%} after {longer}, {shown:+.2f} points, "
             f"{side} two standard errors of a test accuracy on {n_test:,} cells (±{100 * noise:.1f} points)")
    then = str(shorter_runs["test CPU"].iloc[0]) if "test CPU" in shorter_runs else ""
    now = cpu_model() if cpu is None else cpu
    if then and now and then != now:
        words += ("; the two runs ran on different CPUs, whose arithmetic moves a run as a seed does, so part of "
                  "the difference may be the machine's")
    return words


def schedules_compared(runs: pd.DataFrame, shorter: int, longer: int) -> str | None:
    """In words, :func:`schedule_seeds`' runs of two schedules set against each other: each one's mean and range,
    the difference of the means, whether every run of the longer ended above every run of the shorter, and
    Welch's t-test of the means (a p-value below 0.05 says the difference is beyond what the seeds move).
    None unless both schedules have two runs or more."""
    from scipy.stats import ttest_ind

    a, b = (runs.loc[runs["phase-3 epochs"] == e, "val accuracy"].to_numpy() for e in (shorter, longer))
    if len(a) < 2 or len(b) < 2:
        return None
    p = float(ttest_ind(b, a, equal_var=False).pvalue)

    def one(x: np.ndarray, e: int) -> str:
        return f"{e} epochs of phase 3 end at {x.mean():.4f} on average ({x.min():.4f} to {x.max():.4f})"

    order = ("every run of the longer schedule ended above every run of the shorter" if b.min() > a.max()
             else "the runs of the two schedules overlap")
    side = "beyond" if p < 0.05 else "within"
    return (f"{one(b, longer)}, {one(a, shorter)}: {100 * (b.mean() - a.mean()):+.2f} points, {order}; "
            f"{side} what {min(len(a), len(b))} seeds can tell from noise (Welch's t-test, p = {p:.2f})")


def schedule_words(trials: pd.DataFrame, runs: pd.DataFrame, spread: Mapping[str, Any] | None, e2e_epochs: int,
                   test_accuracy: float, n_test: int) -> dict[str, str]:
    """What a chapter says about its schedule (glued as ``<family>_<key>``): the trials' verdicts
    (``trials_longer``, ``trials_larger``, ``trials_lesson``: :func:`trial_verdicts`) against the seed tolerance
    of the schedule they were tried against (the first schedule's full-data seeds in ``runs`` where the chapter's
    grew, else ``spread``); and where it grew, the two schedules' seeds and test accuracies set against each other
    (``schedules``: :func:`schedules_compared`; ``schedules_test``: :func:`schedule_test`)."""
    earlier = trials[trials.index.str.startswith("earlier schedule")]
    first = int(earlier["phase-3 epochs"].iloc[0]) if len(earlier) else int(e2e_epochs)
    values = runs.loc[runs["phase-3 epochs"] == first, "val accuracy"].tolist()
    base = {"spread": {"values": values}} if len(values) > 1 else {"spread": spread}
    tolerance = retrain_tolerance(base) if spread or len(values) > 1 else None
    out = {f"trials_{kind}": text for kind, text in trial_verdicts(trials, tolerance).items()}
    grew = first != e2e_epochs
    out["schedules"] = ((schedules_compared(runs, first, e2e_epochs) if grew else None)
                        or "only one schedule has several seeds")
    out["schedules_test"] = ((schedule_test(runs, first, e2e_epochs, test_accuracy, n_test) if grew else None)
                             or "The earlier schedule's run left no test accuracy to compare")
    return out


def two_standard_errors(accuracy: float, n: int) -> float:
    """Two standard errors of an accuracy near ``accuracy`` measured on ``n`` images (a fraction)."""
    return 2 * (accuracy * (1 - accuracy) / n) ** 0.5


def beyond_noise(gain: float, n_val: int, accuracy: float, seed_tolerance: float | None = None
                 ) -> tuple[bool, str]:
    """Whether a validation gain (a fraction) exceeds the noise of one run, and the comparison in words: two
    standard errors of an accuracy near ``accuracy`` on ``n_val`` images, and the recipe's seed tolerance (how
    far a second run may land by the seed alone: :func:`retrain_tolerance`) where one was measured; the gain
    must exceed both."""
    two_se = two_standard_errors(accuracy, n_val)

    def side(noise: float) -> str:
        return "beyond" if abs(gain) > noise else "within"

    words = (f"{100 * gain:+.2f} points, {side(two_se)} two standard errors of a validation accuracy on "
             f"{n_val:,} cells (±{100 * two_se:.1f} points)")
    if seed_tolerance is not None:
        words += f", {side(seed_tolerance)} the seed tolerance (±{100 * seed_tolerance:.1f})"
    beyond = abs(gain) > two_se and (seed_tolerance is None or abs(gain) > seed_tolerance)
    return beyond, words


def update_record(record_path: str | os.PathLike, **blocks: Any) -> dict[str, Any]:
    """Set each of ``blocks`` in the record at ``record_path`` under its name, atomically; returns the record."""
    path = Path(record_path)
    rec = {**json.loads(path.read_text()), **blocks}
    atomic_write_json(path, rec)
    return rec


def add_tables(record_path: str | os.PathLike, **tables: pd.DataFrame) -> dict[str, Any]:
    """Write each of ``tables`` (indexed by image size, e.g. :func:`helpers.transfer_run.resolution_probe`'s and
    :func:`helpers.bench.speed_table`'s) into the record at ``record_path`` under its name, as columns of
    lists; atomically. Returns the record. :func:`record_table` reads one back."""
    blocks = {}
    for name, table in tables.items():
        flat = table.reset_index()
        blocks[name] = {str(col): [v.item() if hasattr(v, "item") else v for v in flat[col]] for col in flat}
    return update_record(record_path, **blocks)


def record_table(rec: Mapping[str, Any], name: str) -> pd.DataFrame | None:
    """A table :func:`add_tables` wrote into ``rec``, indexed by ``image_size``; None when it holds none."""
    block = rec.get(name)
    return pd.DataFrame(block).set_index("image_size") if block else None


def trial_verdicts(trials: pd.DataFrame, seed_tolerance: float | None = None) -> dict[str, str]:
    """In words, for :func:`recipe_trials`' table: each trial's gain with its extra minutes where both were timed
    on one CPU (``"longer"``: the
    pilot with a longer phase 3; ``"larger"``: another image size; ``"not measured"`` without one) over the
    schedule it was tried against (the earlier schedule where the chapter's grew, else the chapter's run),
    judged by :func:`beyond_noise`; and ``"lesson"``: what the chapter does about them."""
    run = trials.iloc[0]
    earlier = trials[trials.index.str.startswith("earlier schedule")]
    base = earlier.iloc[0] if len(earlier) else run
    out, lessons, rest = {}, [], []
    for kind, key, same, taken in (
            ("longer", "pilot, phase 3", "phase-3 epochs", f"phase 3 now runs {int(run['phase-3 epochs'])} epochs"),
            ("larger", "px, no phase 2", "image px", f"it now runs at {int(run['image px'])} px")):
        rows = trials[trials.index.str.contains(key, regex=False)]
        out[kind] = "not measured"
        if not len(rows):
            continue
        row = rows.iloc[-1]
        paid, words = beyond_noise(row["best val accuracy"] - base["best val accuracy"], int(base["val images"]),
                                   base["best val accuracy"], seed_tolerance)
        same_cpu = bool(row.get("CPU")) and row.get("CPU") == base.get("CPU")
        out[kind] = (f"{words}, for {row['minutes'] - base['minutes']:+.0f} min" if same_cpu else
                     f"{words}; the two runs were timed on different CPUs, so their minutes do not compare")
        if not paid:
            rest.append(kind)
        elif row[same] == run[same]:
            lessons.append(f"The {kind} trial pays beyond the noise, so the chapter took it: {taken}")
        else:
            lessons.append(f"The {kind} trial pays beyond the noise, so a chapter with more time should take it")
    keeps = {"longer": "its schedule", "larger": "its image size"}
    if rest:
        which = "Neither trial moves" if len(rest) > 1 else f"The {rest[0]} trial does not move"
        lessons.append(f"{which} the result by more than one run can tell from noise, so the chapter keeps "
                       + " and ".join(keeps[k] for k in rest))
    out["lesson"] = ". ".join(lessons) if lessons else "No trial was run"
    return out
