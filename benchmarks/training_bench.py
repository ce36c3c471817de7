"""Benchmark section "training": training images/s and seconds per epoch of every model in the book.

Settings come from the chapters themselves (their ``parameters`` cells, and chapter 3's ``IMPROVED``
cell): the three CNNs of chapter 3 at its image size and batch size, and for each transfer
family (chapters 4–6) what the chapter trains — the head on cached pooled features (phase 1),
the top stage + head on cached activations (phase 2) — plus the frozen lower base's forward pass
(what caching the features costs, once per image), and — where a chapter runs it — phase 3, every
layer fine-tuned on augmented images. Every set-up runs in its own process
(``bench_worker.py``: own memory high-water mark), a fixed number of steps on random tensors, with
warm-up and interleaved repetitions (:func:`harness.measure_workers`). Seconds per epoch are
*extrapolated* from images/s and the number of training images.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import harness

from helpers.bench import Measurement

TITLE = "Training speed of every model in the book"
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "bench_worker.py"
TRAIN_SPLIT = 9843  # images in the committed split's training part (overwritten from the manifest when present)
IMPROVED_FALLBACK = dict(widths=(32, 64, 128), convs_per_stage=2, stem_stride=2, batch_norm=True, bn_momentum=0.9,
                         global_pool=True, dropout=0.3, augment=True, colour_augment=0.1)
FAMILIES = {"vgg19": "04_transfer_vgg19", "resnet50": "05_transfer_resnet50", "mobilenetv2": "06_transfer_mobilenetv2"}


def notebook_assignments(path: Path, names: set[str] | None = None, tag: str | None = "parameters") -> dict[str, Any]:
    """Literal assignments in a notebook's cell tagged ``tag`` (or, with ``names``, in any code cell),
    read with :mod:`ast` — nothing is executed. ``dict(...)`` calls with literal arguments count too."""
    nb = json.loads(Path(path).read_text())
    out: dict[str, Any] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        if tag and not names and tag not in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            tree = ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in tree.body:
            if not isinstance(node, ast.Assign):
                continue
            value = node.value
            try:
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "dict" and not value.args:
                    val: Any = {k.arg: ast.literal_eval(k.value) for k in value.keywords}
                else:
                    val = ast.literal_eval(value)
            except ValueError:
                continue
            for t in node.targets:
                targets = t.elts if isinstance(t, ast.Tuple) else [t]
                vals = val if isinstance(t, ast.Tuple) and isinstance(val, tuple) else [val] * len(targets)
                for tt, v in zip(targets, vals):
                    if isinstance(tt, ast.Name) and (names is None or tt.id in names):
                        out.setdefault(tt.id, v)
        if tag and not names:
            break
    return out


def train_counts() -> dict[str, int]:
    """Training images per class of the committed split manifest (empty when it is not found)."""
    import csv

    for p in (ROOT / "src" / "helpers" / "splits" / "pbc_split.csv", ROOT / "splits" / "pbc_split.csv"):
        if p.is_file():
            counts: dict[str, int] = {}
            with open(p, newline="") as fh:
                for r in csv.DictReader(fh):
                    if r.get("split") == "train":
                        counts[r["label"]] = counts.get(r["label"], 0) + 1
            return counts
    return {}


def head_hyperparameters(family: str) -> dict[str, Any]:
    """The head the chapter's tuner chose (results/transfer_<family>.json), else the library default."""
    p = ROOT / "results" / f"transfer_{family}.json"
    try:
        hp = json.loads(p.read_text()).get("head_hyperparameters") or {}
        return {"units": int(hp["units"]), "dropout": float(hp["dropout"]), "lr": float(hp["lr"]), "source": p.name}
    except (OSError, KeyError, ValueError, TypeError):
        return {"units": 256, "dropout": 0.3, "lr": 1e-3, "source": "default (no results record yet)"}


def chapter_epoch_seconds(spec: dict[str, Any]) -> float | None:
    """Seconds per epoch the chapter itself measured (book-mode record in results/, incl. the validation
    pass and the input pipeline), for comparison with the extrapolation; None without a record."""
    import statistics

    name = spec.get("model") or f"transfer_{spec.get('family')}"
    try:
        rec = json.loads((ROOT / "results" / f"{name}.json").read_text())
        if rec.get("mode") != "book":
            return None
        if spec["kind"] == "train_cnn":
            return float(statistics.median(rec["epoch_seconds"]))
        ph = rec["phase_seconds"]
        if spec["kind"] == "frozen_lower":
            return float(ph["extract_train"])
        phase, key = {"transfer_head": ("phase1", "phase1_head"), "transfer_finetune": ("phase2", "phase2_finetune"),
                      "transfer_end_to_end": ("phase3", "phase3_end_to_end")}[spec["kind"]]
        return float(ph[key]) / len(rec["history"][phase]["loss"])
    except (OSError, KeyError, ValueError, TypeError, ZeroDivisionError, statistics.StatisticsError):
        return None


def setups(quick: bool) -> list[dict[str, Any]]:
    """Worker specs for every model at its chapter's settings (tiny sizes with ``quick``)."""
    nb = ROOT / "notebooks"
    counts = train_counts()
    n_train = sum(counts.values()) or TRAIN_SPLIT
    ch3 = notebook_assignments(nb / "03_baseline_cnn.ipynb") if (nb / "03_baseline_cnn.ipynb").is_file() else {}
    improved = notebook_assignments(nb / "03_baseline_cnn.ipynb", {"IMPROVED"}).get("IMPROVED") \
        if (nb / "03_baseline_cnn.ipynb").is_file() else None
    improved = dict(improved or IMPROVED_FALLBACK)
    size3, bs3 = int(ch3.get("IMAGE_SIZE", 64)), int(ch3.get("BATCH_SIZE", 64))
    out = []
    for name, kw in (("devnithw_cnn", {}), ("bloodcells_cnn", {"seed": 42}),
                     ("improved_cnn", {"seed": 42, **improved})):
        out.append({"group": "chapter 3 CNNs", "name": name, "kind": "train_cnn", "model": name,
                    "image_size": 32 if quick else size3, "batch_size": bs3, "steps": 1 if quick else 4,
                    "kwargs": kw, "epoch_images": n_train, "epoch_note": f"{n_train:,} (whole training split)"})
    for family, stem in FAMILIES.items():
        f = nb / f"{stem}.ipynb"
        p = notebook_assignments(f) if f.is_file() else {}
        # a chapter parameter left at None takes the cpu profile's value (helpers.profiles.recipe)
        r = __import__("helpers.profiles", fromlist=["recipe"]).recipe(family, "cpu").as_dict()
        p = {**{k.upper(): v for k, v in r.items()}, **{k: v for k, v in p.items() if v is not None}}
        size = 32 if quick else int(p.get("IMAGE_SIZE", 96))
        split = p.get("SPLIT_LAYER") or __import__("helpers.transfer", fromlist=["SPLIT_LAYERS"]).SPLIT_LAYERS[family]
        cap = p.get("MAX_TRAIN_PER_CLASS")
        used = sum(min(c, cap) for c in counts.values()) if (cap and counts) else (8 * cap if cap else n_train)
        note = f"{used:,} (chapter's cap of {cap}/class)" if cap else f"{used:,} (whole training split)"
        common = {"group": f"{family} (chapter {stem[:2].lstrip('0')})", "family": family, "image_size": size,
                  "split_layer": split, "head": head_hyperparameters(family), "epoch_images": used,
                  "epoch_note": note}
        out += [
            {**common, "name": f"{family} frozen lower (feature caching, forward only)", "kind": "frozen_lower",
             "batch_size": 64, "steps": 1 if quick else 2},
            {**common, "name": f"{family} phase 1: head on pooled features", "kind": "transfer_head",
             "batch_size": 128, "steps": 2 if quick else 20},
        ]
        if p.get("FT_EPOCHS"):  # the chapter fine-tunes its top block on the cache
            out.append({**common, "name": f"{family} phase 2: top stage + head on cached activations",
                        "kind": "transfer_finetune", "batch_size": 32, "steps": 1 if quick else 4,
                        "lr": float(p.get("FT_LR", 1e-4))})
        if p.get("E2E_EPOCHS"):  # the chapter fine-tunes the base (from E2E_FIRST_LAYER) on augmented images
            out.append({**common, "name": f"{family} phase 3: end-to-end on augmented images",
                        "kind": "transfer_end_to_end", "batch_size": 32, "steps": 1 if quick else 4,
                        "lr": float(p.get("E2E_LR", 3e-4)), "first_layer": p.get("E2E_FIRST_LAYER"),
                        "epoch_note": f"{n_train:,} (whole training split)", "epoch_images": n_train})
    return out


def measure_group(specs: list[dict[str, Any]], repeats: int, say) -> list[Measurement]:
    """Start one worker per spec (in parallel), time them interleaved, collect their peak memory."""
    workers = [harness.Worker([sys.executable, WORKER, json.dumps(s)], name=s["name"]) for s in specs]
    try:
        rows = [(s["name"], w, {"cmd": "run"}, s["batch_size"] * s["steps"],
                 {"image_size": s["image_size"], "batch_size": s["batch_size"], "kind": s["kind"]})
                for s, w in zip(specs, workers)]
        say(f"{specs[0]['group']}: starting {len(workers)} workers")
        ms = harness.measure_workers(rows, repeats=repeats, warmup=1,
                                     progress=lambda t: say(f"{specs[0]['group']} {t}"))
        for m, w in zip(ms, workers):
            m.params.update(params_count=w.ready_info.get("params_count"),
                            activation_shape=w.ready_info.get("activation_shape"))
            m.params["peak_rss_mb"] = w.close().get("peak_rss_mb")
        return ms
    finally:
        for w in workers:
            w.kill()


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    quick = bool(ctx.get("quick"))
    repeats = int(ctx.get("repeats", 3))
    say = ctx.get("progress", print)
    specs = setups(quick)
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in specs:
        groups.setdefault(s["group"], []).append(s)
    results, md_rows = [], []
    for group, gs in groups.items():
        ms = measure_group(gs, repeats, say)
        for s, m in zip(gs, ms):
            sec_epoch = s["epoch_images"] / m.median
            row = {"group": group, "setup": s["name"], "image_size": s["image_size"], "batch": s["batch_size"],
                   "img/s (median)": m.median, "spread": m.spread,
                   "s/epoch (extrapolated)": sec_epoch, "epoch images": s["epoch_note"],
                   "chapter's s/epoch": (chapter_epoch_seconds(s) if not quick else None) or float("nan"),
                   "params": m.params.get("params_count"), "peak RSS MB": m.params.get("peak_rss_mb")}
            md_rows.append(row)
            results.append({**m.as_dict(), "seconds_per_epoch": sec_epoch, "epoch_images": s["epoch_images"],
                            "group": group, "head": s.get("head")})
    import pandas as pd

    df = pd.DataFrame(md_rows)
    # ratios inside each group (measured interleaved in the same run), to the group's first set-up: devnithw_cnn
    # for the CNNs, the frozen lower base for a transfer family (how much cheaper per image training on the
    # cached tensors is than running the base once)
    df["× group's first"] = df["img/s (median)"] / df.groupby("group")["img/s (median)"].transform("first")
    key = {r["setup"]: {"img_per_s": r["img/s (median)"], "s_per_epoch": r["s/epoch (extrapolated)"],
                        "peak_rss_mb": r["peak RSS MB"]} for r in md_rows}
    heads = {s["family"]: s["head"] for s in specs if "family" in s}
    steps = {s["kind"]: s["steps"] for s in specs}
    md = [
        "Each set-up runs in its own process (peak RSS = that process's own high-water mark, `VmHWM` — "
        "`ru_maxrss` would include the parent's memory, as it survives `exec`: TensorFlow + model + "
        "data of that set-up), on **random weights and random tensors** (speed does not depend on their values), "
        f"a fixed number of steps per timed run (CNNs {steps.get('train_cnn')}, head {steps.get('transfer_head')}, "
        f"fine-tuning {steps.get('transfer_finetune')}, "
        + (f"end-to-end {steps['transfer_end_to_end']}, " if "transfer_end_to_end" in steps else "")
        + f"frozen forward {steps.get('frozen_lower')} batches), one "
        f"warm-up run, then {repeats} rounds in which the set-ups of a group take turns (ratios are within a group). "
        "Image sizes, batch sizes, cut layers and head sizes are read from the chapters' parameter cells "
        "(and `results/transfer_*.json` for the tuned heads). **Seconds per epoch are extrapolated** "
        "(images per epoch ÷ images/s), not measured over full epochs; they exclude the validation pass and "
        "the input pipeline (see the pipeline section). For the transfer models the 'images' of phases 1 and 2 "
        "are cached feature tensors; the frozen lower base runs once per image when the cache is built; phase 3 "
        "trains on augmented images through the whole base. "
        "*× group's first*: images/s relative to the first row of the group (devnithw_cnn; for a transfer family "
        "its frozen lower base, i.e. how much cheaper per image training on the cache is than running the base), "
        "measured interleaved in the same run. *chapter's s/epoch*: what the chapter's own book-mode run measured "
        "(results/<model>.json: median epoch incl. validation pass and input pipeline; for the frozen lower, its "
        "pass over the training images; phases: phase time ÷ epochs run), at another time and load — a sanity "
        "check of the extrapolation, not a ratio.",
        "",
        harness.markdown_table(df.drop(columns=["group"]).assign(**{"params": df["params"].map(
            lambda v: f"{v:,}" if v is not None else "–")})),
        "",
        "Heads: " + "; ".join(f"{f}: {h['units']} units, dropout {h['dropout']}, lr {h['lr']} ({h['source']})"
                              for f, h in heads.items()) + ".",
    ]
    return {"title": TITLE, "markdown": "\n".join(md), "key": key, "results": {"training": results}}
