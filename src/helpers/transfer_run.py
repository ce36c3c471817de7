"""One transfer-learning run, cell by cell: the chapters carry the Keras parts of :mod:`helpers.transfer` between
cells in a :class:`TransferRun` (plain fields) and call one step per cell (:func:`start_run`, :func:`extract`,
:func:`tune`, :func:`phase1`, :func:`phase2`, :func:`phase3`, :func:`evaluate`, :func:`save`); saving goes
through :func:`helpers.runs.save_run`. Also the seed spread of a recipe (:func:`seed_spread`) and the
frozen-feature resolution probe (:func:`resolution_probe`).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import CLASSES
from .config import output_dir
from .predictions import Predictions, predict_split
from .profiles import Recipe, build_scope, recipe
from .runs import SavedRun
from .transfer import (
    INPUT_CONTRACT,
    PREPROCESSING,
    SPLIT_LAYERS,
    _predict,
    _quiet,
    assemble,
    best_hyperparameters,
    fine_tune_end_to_end,
    fine_tune_top,
    freeze,
    head_probs,
    pool,
    preprocessing_layer,
    split_model,
    train_head,
    tune_head,
)
from .weights import check_family, describe, is_pretrained, load_base

log = logging.getLogger("helpers.transfer")

@dataclass
class TransferRun:
    """The parts and results of one transfer-learning run (one family, one image size), carried between cells.

    Plain fields only: :func:`start_run` makes it, :func:`extract`, :func:`tune`, :func:`phase1`,
    :func:`phase2`, :func:`phase3` and :func:`evaluate` call the functions of :mod:`helpers.transfer` and note what they
    return (``times`` in seconds, ``speeds`` in images/s), :func:`save` writes the record and bundle.
    """

    family: str
    image_size: int
    provenance: Mapping[str, Any]
    split_layer: str
    seed: int
    batch_size: int
    base: Any
    lower: Any
    top: Any
    preprocess: Any
    # split → (activations, y); activations None in a pooled-only run (it keeps only ``pooled``)
    features: dict[str, tuple[np.ndarray | None, np.ndarray]] = field(default_factory=dict)
    pooled: dict[str, np.ndarray] = field(default_factory=dict)
    used_paths: dict[str, list[str]] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    speeds: dict[str, float] = field(default_factory=dict)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    phase_val: dict[str, float] = field(default_factory=dict)
    tuner_table: pd.DataFrame | None = None
    best_hp: dict[str, Any] = field(default_factory=dict)
    head: Any = None
    model: Any = None
    finetuned_weights: list[str] = field(default_factory=list)
    end_to_end: dict[str, Any] = field(default_factory=dict)
    profile: str = "cpu"
    strategy: Any = None  # a tf.distribute strategy (gpu profile); None: TensorFlow's default
    classes: tuple[str, ...] = CLASSES  # the data's classes (set by :func:`extract`); the head has one output each
    pooled_only: bool = False  # extract keeps only the pooled features (no phase 2)
    precision: str = "float32"  # the Keras dtype policy every model of the run is built under


def start_run(family: str, image_size: int, provenance: Mapping[str, Any], split_layer: str | None = None, *,
              seed: int = 42, batch_size: int = 32, profile: str = "cpu", strategy=None,
              pooled_only: bool | None = None, precision: str | None = None) -> TransferRun:
    """Seed Keras, load the frozen base (:func:`helpers.weights.load_base`) and cut it at ``split_layer``.

    ``strategy`` (:func:`distribution_strategy`): the base, and later phase 3's model, are built and
    compiled inside its scope, so that Keras trains them on every replica. ``pooled_only`` and ``precision``
    (a Keras dtype policy, e.g. ``"mixed_float16"`` to force it on a CPU): ``None`` takes the profile's
    (:attr:`Recipe.pooled_only`, :attr:`Recipe.precision`); every model of the run is built under ``precision``."""
    import keras

    family = check_family(family)
    image_size = int(image_size)
    split_layer = split_layer or SPLIT_LAYERS[family]
    r = recipe(family, profile)
    pooled_only = r.pooled_only if pooled_only is None else bool(pooled_only)
    precision = precision or r.precision
    keras.utils.set_random_seed(seed)
    with build_scope(strategy, precision):
        base = load_base(family, image_size, dict(provenance))
        freeze(base)
        lower, top = split_model(base, split_layer)
        preprocess = preprocessing_layer(family)
    return TransferRun(family, image_size, provenance, split_layer, seed, batch_size, base, lower, top,
                       preprocess, profile=r.profile, strategy=strategy, pooled_only=pooled_only,
                       precision=precision)


def parts_table(run: TransferRun) -> pd.DataFrame:
    """Parameter counts of the frozen lower part, the fine-tunable top and the cached tensor shape."""
    def n(ws):
        return int(sum(np.prod(w.shape) for w in ws))

    top_layers = [layer for layer in run.top.layers if layer.weights]
    return pd.DataFrame([
        {"part": f"lower (input … {run.split_layer}), frozen, run once", "layers": len(run.lower.layers),
         "params": n(run.lower.weights), "output": str(tuple(run.lower.output.shape[1:]))},
        {"part": f"top ({top_layers[0].name} … {top_layers[-1].name}), fine-tuned in phase 2 (if run)",
         "layers": len(run.top.layers), "params": n(run.top.weights), "output": str(tuple(run.top.output.shape[1:]))},
    ]).set_index("part")


def extract(run: TransferRun, data, splits: Sequence[str] = ("train", "val"), *, cache: bool = True,
            max_train_per_class: int | None = None, max_val_per_class: int | None = None) -> pd.DataFrame:
    """Run the frozen lower part once over each split (:func:`helpers.features.activations`), then pool.

    A pooled-only run (``run.pooled_only``) runs the whole frozen base instead, batch by batch, and keeps (and
    caches) only its pooled output: the activations at the split layer are never held for a whole split.

    ``max_train_per_class`` trains on a stratified random subset of the training split when a base
    is too slow to run over all of it (``max_val_per_class`` likewise for val; the test split always
    stays complete). ``cache``: reuse / write ``outputs/features``. Returns a timing table.
    """
    from .features import activations

    run.classes = tuple(getattr(data, "classes", CLASSES))
    rows = []
    for split in splits:
        paths, labels = data.paths(split), data.labels(split)
        cap = {"train": max_train_per_class, "val": max_val_per_class}.get(split)
        if cap:
            keep = stratified_subset(labels, cap, run.seed)
            paths, labels = [paths[i] for i in keep], labels[keep]
            run.caps[split] = int(cap)
        run.used_paths[split] = list(paths)
        act = activations(run.preprocess, run.base if run.pooled_only else run.lower, paths, labels,
                          family=run.family, image_size=run.image_size, split_layer=_cached_output(run),
                          weights_sha256=run.provenance.get("sha256"), split=split, cache=cache)
        X, secs = act.X, act.seconds
        run.features[split] = (None if run.pooled_only else X, labels)
        if run.pooled_only:
            run.pooled[split] = X.astype("float32")
        run.times[f"extract_{split}"] = round(secs, 1)
        run.speeds[f"lower_{split}"] = len(paths) / secs
        rows.append({"split": split, "images": len(paths), "activation shape": str(X.shape[1:]),
                     "MB (float16)": round(X.nbytes / 2**20, 1), "seconds to compute": round(secs, 1),
                     "img/s": round(len(paths) / secs, 1), "how": act.how})
        log.info("%s features of %s: %s, %s, which took %.1f s", run.family, split, X.shape, act.how, secs)
    if not run.pooled_only:
        t0 = time.perf_counter()
        for split, (X, _) in run.features.items():
            run.pooled[split] = pool(run.top, X)
        run.times["pool_frozen_top"] = round(time.perf_counter() - t0, 1)
    return pd.DataFrame(rows).set_index("split")


def _cached_output(run: TransferRun) -> str:
    """The cache key's name of what :func:`extract` caches: the split layer, or ``"pooled"`` in a pooled-only
    run; the precision is added unless it is float32 (float16 computations give other numbers)."""
    name = "pooled" if run.pooled_only else run.split_layer
    return name if run.precision == "float32" else f"{name} {run.precision}"


def _xy(run: TransferRun, split: str, *, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    if split not in run.features:
        raise RuntimeError(f"no {split} features yet: call extract(run, data) first")
    X, y = run.features[split]
    if not pooled and X is None:
        raise RuntimeError(f"phase 2 needs the cached activations at {run.split_layer}, and this run kept only the "
                           "pooled features (start_run's pooled_only, the default of the gpu profile, whose recipe "
                           "skips phase 2): start_run(..., pooled_only=False), then extract(run, data)")
    return (run.pooled[split] if pooled else X), y


def labels(run: TransferRun, split: str) -> np.ndarray:
    """Labels of the images whose features were extracted for ``split`` (after any cap)."""
    return _xy(run, split, pooled=True)[1]


def tune(run: TransferRun, *, max_trials: int = 8, epochs: int = 15, directory: str | os.PathLike | None = None,
         **space: Sequence[float]) -> pd.DataFrame:
    """:func:`tune_head` on the run's pooled features (``space``: ``lrs``, ``units``, ``dropouts``)."""
    Xtr, ytr = _xy(run, "train", pooled=True)
    Xva, yva = _xy(run, "val", pooled=True)
    table, seconds = tune_head(Xtr, ytr, Xva, yva, directory=Path(directory) if directory else output_dir() / "tuner",
                               project_name=f"{run.family}_{run.image_size}", seed=run.seed, max_trials=max_trials,
                               epochs=epochs, n_classes=len(run.classes), **space)
    run.times["tune_head"] = round(seconds, 1)
    run.tuner_table = table
    run.best_hp = best_hyperparameters(table)
    log.info("best head: %s (val accuracy %.4f)", run.best_hp, table.iloc[0]["val_accuracy"])
    return table


def phase1(run: TransferRun, *, epochs: int = 30, units: int | None = None, dropout: float | None = None,
           lr: float | None = None, patience: int = 5) -> dict[str, list[float]]:
    """Phase 1, :func:`train_head`: the base frozen (its output is the cached pooled features).

    The head's hyperparameters: the tuner's best (:func:`tune`), else 256 units, dropout 0.3, lr 1e-3;
    any given here wins. Returns the history.
    """
    hp = {"units": 256, "dropout": 0.3, "lr": 1e-3, **run.best_hp}
    hp.update({k: v for k, v in {"units": units, "dropout": dropout, "lr": lr}.items() if v is not None})
    run.best_hp = hp
    Xtr, ytr = _xy(run, "train", pooled=True)
    Xva, yva = _xy(run, "val", pooled=True)
    with build_scope(run.strategy, run.precision):  # the head's variables must live in the strategy that trains it
        res = train_head(Xtr, ytr, Xva, yva, units=hp["units"], dropout=hp["dropout"], lr=hp["lr"],
                         epochs=epochs, batch_size=4 * run.batch_size, patience=patience, seed=run.seed,
                         n_classes=len(run.classes))
    run.head = res.model
    run.times["phase1_head"] = round(res.seconds, 1)
    run.histories["phase1"] = res.history
    run.phase_val["phase 1: frozen base + head"] = float(max(res.history["val_accuracy"]))
    log.info("phase 1: val accuracy %.4f after %d epochs (%.0f s)", run.phase_val["phase 1: frozen base + head"],
             len(res.history["loss"]), run.times["phase1_head"])
    return res.history


def phase2(run: TransferRun, *, epochs: int = 5, lr: float = 1e-4, patience: int = 2) -> dict[str, list[float]]:
    """Phase 2, :func:`fine_tune_top`: top + head on the cached activations, at a low learning rate
    (a pooled-only run has none: a clear error)."""
    Xtr, ytr = _xy(run, "train", pooled=False)
    Xva, yva = _xy(run, "val", pooled=False)
    if run.head is None:
        raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the top")
    with build_scope(run.strategy, run.precision):
        res = fine_tune_top(run.top, run.head, Xtr, ytr, Xva, yva, lr=lr, epochs=epochs,
                            batch_size=run.batch_size, patience=patience, name=f"{run.family}_finetune")
    run.finetuned_weights = list(res.trained)
    run.times["phase2_finetune"] = round(res.seconds, 1)
    run.histories["phase2"] = res.history
    best = float(max(res.history["val_accuracy"]))
    run.phase_val[f"phase 2: fine-tuned top ({run.split_layer} …)"] = best
    log.info("phase 2: val accuracy %.4f → %.4f (%.0f s)", res.history["val_accuracy_before"][0], best,
             run.times["phase2_finetune"])
    return res.history


def deployable(run: TransferRun):
    """The run's deployable model (:func:`assemble`, made once the head exists)."""
    if run.head is None:
        raise RuntimeError("no head yet: run phase1 first")
    if run.model is None:
        with build_scope(run.strategy, run.precision):
            run.model = assemble(run.preprocess, run.base, run.head, run.image_size, name=f"transfer_{run.family}")
    return run.model


def _tag(data) -> str:
    """``""`` for PBC, else ``_<dataset>``: runs on other data keep checkpoints and records of their own."""
    dataset = getattr(data, "dataset", "pbc")
    return "" if dataset == "pbc" else f"_{dataset}"


def phase3(run: TransferRun, data, *, epochs: int = 6, lr: float = 3e-4, first_layer: str | None = None,
           augment: bool = True, patience: int | None = None, time_budget: float | None = None,
           schedule: str | None = "cosine", resume: bool = False, run_name: str | None = None) -> dict[str, Any]:
    """Phase 3, :func:`fine_tune_end_to_end` of the deployable model, from the phase-1 head (and the
    phase-2 top, if it ran). ``run_name`` names its checkpoints (default: family, size and dataset).
    Returns ``fit``'s summary."""
    if run.head is None:
        raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the base")
    model = deployable(run)
    run.used_paths["val"] = data.paths("val")
    with build_scope(run.strategy, run.precision):
        res = fine_tune_end_to_end(model, run.base, data, image_size=run.image_size, epochs=epochs, lr=lr,
                                   first_layer=first_layer, augment=augment, seed=run.seed,
                                   batch_size=run.batch_size, patience=patience, time_budget=time_budget,
                                   schedule=schedule, resume=resume,
                                   run_name=run_name or f"transfer_{run.family}_{run.image_size}{_tag(data)}_e2e",
                                   name=f"{run.family}_end_to_end")
    summary = dict(res.summary)
    run.times["phase3_end_to_end"] = round(summary["train_seconds"], 1)
    run.histories["phase3"] = res.history
    best = summary["best_epoch"]
    label = f"phase 3: end-to-end from {first_layer or 'the input'}" + (", augmented" if augment else "")
    run.phase_val[label] = float(res.history["val_accuracy"][best - 1]) if best else float("nan")
    run.end_to_end = {k: summary[k] for k in ("epochs_run", "max_epochs", "best_epoch", "stopped", "schedule",
                                              "learning_rate", "patience", "time_budget", "steps_per_epoch")}
    run.end_to_end.update(first_layer=first_layer,
                          augmentation="flip + quarter turns + stain jitter" if augment else None,
                          trainable_weight_tensors=len(res.trained))
    run.speeds["end_to_end_train"] = (summary["epochs_run"] * len(data.paths("train"))
                                      / max(summary["train_seconds"], 1e-9))
    return summary


def val_predictions(run: TransferRun, data=None) -> Predictions:
    """Val predictions of the current model: from the cached activations (top → head; a pooled-only run:
    the head on the pooled features), or — after phase 3, which changed the lower layers too — end-to-end
    from the val images of ``data``."""
    if "phase3" in run.histories:
        if data is None:
            raise ValueError("after end-to-end fine-tuning the val images are needed: val_predictions(run, data)")
        return predict_split(deployable(run), data, "val", run.image_size)
    X, y = _xy(run, "val", pooled=run.pooled_only)
    probs = _predict(run.head, X, 256) if run.pooled_only else head_probs(run.top, run.head, X)
    return Predictions(tuple(run.used_paths["val"]), y, probs, run.classes)


def evaluate(run: TransferRun, data) -> dict[str, Predictions]:
    """``{"val": …, "test": …}``: :func:`val_predictions`, and the deployable model end-to-end on the
    test images (once; its time and speed are noted as ``evaluate_test`` and ``full_model_test``)."""
    model = deployable(run)
    val = val_predictions(run, data)
    t0 = time.perf_counter()
    test = predict_split(model, data, "test", run.image_size)
    seconds = time.perf_counter() - t0
    run.times["evaluate_test"] = round(seconds, 1)
    run.speeds["full_model_test"] = len(test) / seconds
    return {"val": val, "test": test}


def phase_table(run: TransferRun) -> pd.DataFrame:
    """Val accuracy after each phase (and the tuner's best head)."""
    rows = []
    if run.tuner_table is not None and len(run.tuner_table):
        rows.append({"phase": "tuning: best head found by keras-tuner",
                     "val_accuracy": float(run.tuner_table.iloc[0]["val_accuracy"])})
    rows += [{"phase": k, "val_accuracy": v} for k, v in run.phase_val.items()]
    return pd.DataFrame(rows).set_index("phase")


def train_seconds(run: TransferRun) -> float:
    """Feature extraction (train+val) + tuning + every training phase that ran."""
    keys = ("extract_train", "extract_val", "pool_frozen_top", "tune_head", "phase1_head", "phase2_finetune",
            "phase3_end_to_end")
    return float(sum(run.times.get(k, 0.0) for k in keys))


def time_table(run: TransferRun) -> pd.DataFrame:
    """Seconds of every step, and each one's share of :func:`train_seconds`."""
    times = pd.Series(run.times, name="seconds").to_frame()
    times["share of training"] = (times["seconds"] / train_seconds(run)).round(2)
    return times


def record_fields(run: TransferRun) -> dict[str, Any]:
    """The transfer chapters' fields of a results record (``results/README.md``)."""
    tuner = run.tuner_table.to_dict(orient="records") if run.tuner_table is not None else None
    return dict(family=run.family, split_layer=run.split_layer, pretrained=is_pretrained(run.provenance),
                weights_summary=describe(run.provenance), phase_seconds=dict(run.times),
                phase_val_accuracy=dict(run.phase_val),
                throughput_img_per_s={k: round(v, 1) for k, v in run.speeds.items()},
                head_hyperparameters=dict(run.best_hp), tuner=tuner, history=run.histories,
                params=int(run.model.count_params()) if run.model is not None else None,
                preprocessing=PREPROCESSING[run.family], per_class_caps=dict(run.caps),
                n_used={k: int(len(v[1])) for k, v in run.features.items()},
                end_to_end=dict(run.end_to_end) or None, profile=run.profile,
                replicas=int(getattr(run.strategy, "num_replicas_in_sync", 1)), precision=run.precision,
                pooled_only=run.pooled_only)


def save(run: TransferRun, name: str, data, predictions: Mapping[str, Predictions], *, mode: str,
         save_model: bool = True, results_directory: str | os.PathLike | None = None,
         models_directory: str | os.PathLike | None = None) -> SavedRun:
    """The run's record and bundle through :func:`helpers.runs.save_run` (``predictions``: at least ``val``)."""
    from .runs import save_run

    model = deployable(run)
    epochs = sum(len(h.get("loss", [])) for h in run.histories.values())
    return save_run(model, name, data, predictions, image_size=run.image_size, epochs=epochs,
                    train_seconds=train_seconds(run), weights_source=dict(run.provenance), seed=run.seed, mode=mode,
                    record=record_fields(run),
                    bundle={"family": run.family, "split_layer": run.split_layer,
                            "pretrained": is_pretrained(run.provenance), "head_hyperparameters": dict(run.best_hp)},
                    preprocessing=f"{INPUT_CONTRACT}; {PREPROCESSING[run.family]}", save_model=save_model,
                    results_directory=results_directory, models_directory=models_directory)


def run_phases(run: TransferRun, data, r: Recipe, *, run_name: str | None = None) -> TransferRun:
    """Chapter 4's recipe in one call, for the chapters that reuse it: the head tuned on the cached features
    (unless ``run.best_hp`` is already set or ``r.tuner_trials`` is 0), phase 1, phase 2 if ``r.ft_epochs``,
    phase 3 if ``r.e2e_epochs`` (with ``r``'s learning rates, first layer and time budget).
    Call :func:`extract` first; returns ``run``, its histories, times and phase accuracies filled in."""
    if r.tuner_trials and not run.best_hp:
        tune(run, max_trials=r.tuner_trials, epochs=r.tuner_epochs)
    phase1(run, epochs=r.head_epochs)
    if r.ft_epochs:
        phase2(run, epochs=r.ft_epochs, lr=r.ft_lr)
    if r.e2e_epochs:
        budget = 60 * r.e2e_time_budget_min if r.e2e_time_budget_min else None
        phase3(run, data, epochs=r.e2e_epochs, lr=r.e2e_lr, first_layer=r.e2e_first_layer, time_budget=budget,
               run_name=run_name)
    return run


PHASE_NAMES = {"phase1": "1: head", "phase2": "2: top block", "phase3": "3: end to end"}
"""How figures name the phases of the recipe."""


def phase_histories(run: TransferRun) -> dict[str, dict[str, list[float]]]:
    """The Keras history of every phase that ran, in training order, under its name (for ``plots.phase_curves``)."""
    return {name: run.histories[key] for key, name in PHASE_NAMES.items() if key in run.histories}


def phase_numbers(run: TransferRun) -> dict[str, float]:
    """The numbers a chapter quotes about its phases (glued as ``<family>_<key>``): val accuracy after
    phase 1 (``p1_val``), phase 2 (``p2_val``) and phase 3 (``p3_val``), NaN for a phase that did not run;
    phase 3's minutes, epochs and training speed in images per second."""
    def after(prefix: str) -> float:
        hits = [v for k, v in run.phase_val.items() if k.startswith(prefix)]
        return float(hits[-1]) if hits else float("nan")

    e2e = run.end_to_end or {}
    return {"p1_val": after("phase 1"), "p2_val": after("phase 2"), "p3_val": after("phase 3"),
            "e2e_minutes": run.times.get("phase3_end_to_end", float("nan")) / 60,
            "e2e_epochs": int(e2e.get("epochs_run", 0)),
            "e2e_img_s": float(run.speeds.get("end_to_end_train", float("nan")))}


def seed_run(family: str, provenance: Mapping[str, Any], data, r: Recipe, seed: int, *,
             head: Mapping[str, Any] | None = None, strategy=None, tag: str = "spread") -> tuple[float, int]:
    """One run of the recipe (:func:`run_phases`) from ``seed`` on ``data``, the head's hyper-parameters fixed to
    ``head``, without its log on the page: (the validation accuracy it ends with, phase-3 epochs run)."""
    import contextlib
    import io

    t0 = time.perf_counter()
    with _quiet("helpers"), contextlib.redirect_stdout(io.StringIO()):
        run = start_run(family, r.image_size, provenance, r.split_layer, seed=seed,
                        batch_size=r.batch_size, profile=r.profile, strategy=strategy,
                        pooled_only=r.pooled_only, precision=r.precision)
        extract(run, data)
        run.best_hp = dict(head or {})
        run_phases(run, data, r, run_name=f"transfer_{family}_{r.image_size}{_tag(data)}_{tag}_s{seed}")
    acc = float(list(run.phase_val.values())[-1])
    log.info("%s, seed %d: val accuracy %.4f (%.1f min)", family, seed, acc, (time.perf_counter() - t0) / 60)
    return acc, (run.end_to_end.get("epochs_run", 0) if run.end_to_end else 0)


def spread_budget(data, r: Recipe, e2e_epochs: int, *, full: bool = False) -> str:
    """The ``budget`` line of a transfer spread: which data and how many epochs of each phase; a capped set's
    says :data:`helpers.results.SMALLER_BUDGET`, which chapter 8 refuses as a full-data tolerance."""
    from .results import SMALLER_BUDGET

    def epochs(n: int, phase: str) -> str:
        return f", {n} epoch{'s' if n != 1 else ''} of {phase}"

    n_train, n_val = len(data.paths("train")), len(data.paths("val"))
    phases = "head" + (epochs(r.ft_epochs, "phase 2") if r.ft_epochs else "") + (
        epochs(e2e_epochs, "phase 3") if r.e2e_epochs else "")
    what = "full data" if full else "capped set"
    tail = "the chapter's budget" if full else SMALLER_BUDGET
    return (f"{what}: {n_train} training and {n_val} validation images ({phases}; the chapter's tuned head), "
            f"{tail}")


def seed_spread(family: str, provenance: Mapping[str, Any], data, r: Recipe, *,
                head: Mapping[str, Any] | None = None, strategy=None) -> dict[str, Any]:
    """How much the seed moves the recipe: :func:`seed_run` from each of ``r.spread_seeds`` on ``data``
    (a capped copy of the split, e.g. ``load_split(max_per_class=r.spread_per_class)``: minutes, not the
    chapter's budget), the head's hyper-parameters fixed to ``head`` (the chapter's tuned ones). Returns a
    :func:`helpers.train.spread_block` of the val accuracies, its ``budget`` saying how small the run was."""
    from .train import spread_block

    runs = [seed_run(family, provenance, data, r, seed, head=head, strategy=strategy) for seed in r.spread_seeds]
    budget = spread_budget(data, r, max(e for _, e in runs))
    return spread_block([a for a, _ in runs], r.spread_seeds, metric="val accuracy", budget=budget)


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 42) -> np.ndarray:
    """Sorted indices of at most ``per_class`` random items of each label."""
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"max_train_per_class must be a positive integer, got {per_class!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def resolution_probe(family: str, provenance: Mapping[str, Any], data, sizes: Sequence[int] = (64, 96, 128),
                     per_class: int = 30, seed: int = 42) -> pd.DataFrame:
    """How good are the *frozen* ImageNet features at each image size? A quick answer before paying
    for a size: a logistic-regression probe on the pooled features of ``per_class`` train and val
    images per class (val accuracy), with the measured speed on real images."""
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .features import run_lower

    picks = {}
    for split in ("train", "val"):
        keep = stratified_subset(data.labels(split), per_class, seed)
        picks[split] = ([data.paths(split)[i] for i in keep], data.labels(split)[keep])
    rows = []
    for size in sizes:
        with _quiet("helpers.weights"):  # the file was named once already: not again for every size
            base = load_base(family, int(size), dict(provenance))
        feats, secs = {}, 0.0
        for split, (paths, labels) in picks.items():
            # eager: model.predict would trace a graph for every model, split and last-batch shape
            # (and TensorFlow would warn about the retracing) to run only a few batches through each
            t0 = time.perf_counter()
            feats[split] = run_lower(preprocessing_layer(family), base, paths, labels, int(size),
                                     f"probe {size} px", graph=False).astype("float32")
            secs += time.perf_counter() - t0
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(feats["train"], picks["train"][1])
        acc = float((clf.predict(feats["val"]) == picks["val"][1]).mean())
        n = sum(len(p) for p, _ in picks.values())
        rows.append({"image_size": int(size), "probe val accuracy": round(acc, 4),
                     "img/s (incl. start-up)": round(n / secs, 1)})
        log.info("%s at %d px: frozen-feature probe val accuracy %.3f (%.0f img/s)", family, size, acc, n / secs)
        keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("image_size")
