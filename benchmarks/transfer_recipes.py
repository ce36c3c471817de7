"""Transfer recipes on this CPU: minutes spent against validation accuracy gained (the test split is never read).

    python benchmarks/transfer_recipes.py [--candidates NAME ...] [--out benchmarks/transfer_recipes.json]
                                                                     # make bench-transfer-recipes

Each candidate runs in its own process on the real training and validation splits: the ImageNet base is
loaded, its pooled features are cached (phase 1 trains the head on them, 256 units, dropout 0.3), then phase 3
fine-tunes the base from ``first_layer`` up on augmented images (batch norm frozen, cosine schedule, Adam),
epoch by epoch, until its schedule ends or ``--max-minutes`` of end-to-end training are used up (then the
record says ``stopped: time_budget``: the schedule did not finish). Per candidate the report keeps the
validation accuracy after the head and after every
end-to-end epoch, with the minutes spent so far (feature caching, head, each epoch incl. its validation pass)
and the machine's CPU and load. The results are merged into ``--out`` (``results/pilots/``, where chapters 4-6
read them through ``helpers.results.recipe_trials``; a candidate re-run replaces its entry) and the Markdown
report (``benchmarks/``) is rewritten from all entries. A ``*_recipe_x2`` candidate is a chapter's own cpu
recipe (phases 1-3 of ``run_phases``, the chapter's tuned head) with phase 3 twice as long: a fair trial of
whether the chapter's schedule has converged; its "head val" is the accuracy before phase 3.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# name: family, image size, end-to-end epochs, peak learning rate, first fine-tuned layer (None: every layer)
CANDIDATES: dict[str, dict] = {
    "resnet50_64_e2e": dict(family="resnet50", image_size=64, epochs=5, lr=3e-4, first_layer=None),
    "resnet50_96_e2e": dict(family="resnet50", image_size=96, epochs=4, lr=3e-4, first_layer=None),
    "vgg19_64_e2e_block3": dict(family="vgg19", image_size=64, epochs=3, lr=1e-4, first_layer="block3_conv1"),
    "mobilenetv2_128_e2e": dict(family="mobilenetv2", image_size=128, epochs=6, lr=3e-4, first_layer=None),
    "mobilenetv2_96_e2e_10": dict(family="mobilenetv2", image_size=96, epochs=10, lr=3e-4, first_layer=None),
    # a fair trial of the chapters' own recipes: the cpu profile with phase 3 twice as long as the schedule
    # tried against (VGG19: 4 epochs; MobileNetV2: 6, which the chapter then grew to these 12)
    "vgg19_recipe_x2": dict(family="vgg19", recipe={"e2e_epochs": 8}, tried_against=4),
    "mobilenetv2_recipe_x2": dict(family="mobilenetv2", recipe={"e2e_epochs": 12}, tried_against=6),
}
DEFAULT = ("mobilenetv2_128_e2e",)


def minutes_after_epochs(start_minutes: float, epoch_seconds) -> list[float]:
    """Minutes since the candidate started at the end of each end-to-end epoch."""
    return [round(start_minutes + sum(epoch_seconds[:i + 1]) / 60, 2) for i in range(len(epoch_seconds))]


def run_one(name: str, max_minutes: float | None = None) -> dict:
    """One candidate, in this process: returns its entry for the report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from helpers.bench import cpu_model
    from helpers.data import load_split
    from helpers.transfer_run import extract, phase1, phase3, start_run
    from helpers.weights import resolve_weights

    c = CANDIDATES[name]
    if "recipe" in c:
        return run_recipe(c, max_minutes)
    max_minutes = max_minutes or 40.0
    t0 = time.perf_counter()
    data = load_split(None, seed=42, progress=False)  # $BLOODCELLS_DATA_DIR; only train and val are used
    provenance = resolve_weights(c["family"], None, allow_download=False, allow_random=False)
    tl = start_run(c["family"], c["image_size"], provenance, seed=42)
    extract(tl, data)
    t_features = time.perf_counter() - t0
    phase1(tl, epochs=30, units=256, dropout=0.3, lr=1e-3)
    head_val = tl.phase_val["phase 1: frozen base + head"]
    t_head = time.perf_counter() - t0
    summary = phase3(tl, data, epochs=c["epochs"], lr=c["lr"], first_layer=c["first_layer"], patience=None,
                     time_budget=60 * max_minutes if max_minutes else None)
    h = tl.histories["phase3"]
    minutes = minutes_after_epochs(t_head / 60, h.get("epoch_seconds", []))
    return {**c, "head_val_accuracy": round(head_val, 4), "minutes_features": round(t_features / 60, 2),
            "minutes_head": round(t_head / 60, 2), "e2e_val_accuracy": [round(v, 4) for v in h["val_accuracy"]],
            "e2e_val_macro_f1": [round(v, 4) for v in h.get("val_macro_f1", [])], "minutes_after_epoch": minutes,
            "stopped": summary["stopped"], "max_minutes": max_minutes,
            "train_images": len(data.paths("train")), "val_images": len(data.paths("val")),
            "cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_end": list(os.getloadavg()),
            "weights": {k: provenance.get(k) for k in ("file", "kind", "sha256")},
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_recipe(c: dict, max_minutes: float | None = None) -> dict:
    """A chapter's own cpu recipe (``helpers.profiles.recipe`` with ``c["recipe"]``'s changes) through
    ``run_phases``, the head's hyper-parameters those its chapter tuned (``results/transfer_<family>.json``)."""
    from helpers.bench import cpu_model
    from helpers.data import load_split
    from helpers.profiles import recipe
    from helpers.results import tuned_head
    from helpers.transfer_run import extract, run_phases, start_run
    from helpers.weights import resolve_weights

    family = c["family"]
    r = recipe(family, "cpu", "book", **c["recipe"], e2e_time_budget_min=max_minutes)
    t0 = time.perf_counter()
    data = load_split(None, seed=42, progress=False)
    provenance = resolve_weights(family, None, allow_download=False, allow_random=False)
    tl = start_run(family, r.image_size, provenance, r.split_layer, seed=42, batch_size=r.batch_size,
                   profile=r.profile)
    extract(tl, data)
    t_features = time.perf_counter() - t0
    tl.best_hp = tuned_head(family, ROOT / "results")
    run_phases(tl, data, r)
    h = tl.histories["phase3"]
    before = [v for k, v in tl.phase_val.items() if not k.startswith("phase 3")]
    t_before = t_features + sum(tl.times.get(k, 0.0) for k in ("tune_head", "phase1_head", "phase2_finetune"))
    return {"family": family, "image_size": r.image_size, "epochs": r.e2e_epochs, "lr": r.e2e_lr,
            "first_layer": r.e2e_first_layer, "recipe": dict(c["recipe"]), "head": dict(tl.best_hp),
            "head_val_accuracy": round(before[-1], 4), "minutes_features": round(t_features / 60, 2),
            "minutes_head": round(t_before / 60, 2),
            "e2e_val_accuracy": [round(v, 4) for v in h["val_accuracy"]],
            "e2e_val_macro_f1": [round(v, 4) for v in h.get("val_macro_f1", [])],
            "minutes_after_epoch": minutes_after_epochs(t_before / 60, h.get("epoch_seconds", [])),
            "stopped": (tl.end_to_end or {}).get("stopped"), "max_minutes": max_minutes,
            "train_images": len(data.paths("train")), "val_images": len(data.paths("val")),
            "cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_end": list(os.getloadavg()),
            "weights": {k: provenance.get(k) for k in ("file", "kind", "sha256")},
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def report(entries: dict[str, dict]) -> str:
    n = max([6] + [len(e["e2e_val_accuracy"]) for e in entries.values()])
    lines = ["# Transfer recipes on the CPU: minutes against validation accuracy", "",
             "Written by `make bench-transfer-recipes` (`benchmarks/transfer_recipes.py`); validation split only "
             "(the test split is never read). Phase 1: head on the cached pooled features; phase 3: the base "
             "fine-tuned on augmented images from the named layer up, batch norm frozen, cosine schedule. "
             "*min* = minutes since the candidate started (feature caching included), on the CPU named. "
             "Compare candidates measured on the same CPU.", "",
             "| candidate | CPU (cores, load at end) | head val | " + " | ".join(f"epoch {i}" for i in range(1, n + 1))
             + " |", "|---|---|---|" + "---|" * n]
    for name, e in entries.items():
        cells = [f"{v:.4f} ({m:.0f} min)" for v, m in zip(e["e2e_val_accuracy"], e["minutes_after_epoch"])]
        if e.get("stopped") == "time_budget":
            cells[-1] += f" — budget of {e['max_minutes']:g} min used up, schedule of {e['epochs']} epochs unfinished"
        cells += [""] * (n - len(cells))
        lines.append(f"| {name}: {e['family']} {e['image_size']} px, lr {e['lr']:g}, from "
                     f"{e['first_layer'] or 'the input'} | {e['cpu']} ({e['cores']}, {e['load_avg_end'][0]:.1f}) | "
                     f"{e['head_val_accuracy']:.4f} ({e['minutes_head']:.0f} min) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", nargs="+", default=list(DEFAULT), choices=sorted(CANDIDATES))
    ap.add_argument("--out", default=str(ROOT / "results" / "pilots" / "transfer_recipes.json"),
                    help="the entries (results/, where the transfer chapters read them)")
    ap.add_argument("--report", default=str(ROOT / "benchmarks" / "transfer_recipes.md"),
                    help="the Markdown report of all entries")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="end-to-end training budget per candidate (default: 40 min; none for a chapter's recipe)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one candidate, print its JSON entry
    a = ap.parse_args(argv)
    if a.one:
        print("ENTRY " + json.dumps(run_one(a.one, a.max_minutes)))
        return 0
    if not os.environ.get("BLOODCELLS_DATA_DIR"):
        print("transfer_recipes: set BLOODCELLS_DATA_DIR to the PBC class folders (make sets it on the "
              "development machines)", file=sys.stderr)
        return 2
    from helpers.io import atomic_write_text

    out = Path(a.out)
    entries = json.loads(out.read_text()) if out.exists() else {}
    failed = []
    for name in a.candidates:
        print(f"== {name}", flush=True)
        budget = ["--max-minutes", str(a.max_minutes)] if a.max_minutes else []
        proc = subprocess.run([sys.executable, __file__, "--one", name, *budget], capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("ENTRY ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            failed.append(name)
            continue
        entries[name] = json.loads(line[len("ENTRY "):])
        atomic_write_text(out, json.dumps(entries, indent=1) + "\n")
        atomic_write_text(Path(a.report), report(entries))
        print(report({name: entries[name]}).splitlines()[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
