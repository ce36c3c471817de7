"""Training: chapter 3's ``compile`` and callbacks, one :func:`fit` for every chapter, :func:`evaluate_and_record`.

Chapter 3 shows :func:`compile_classifier`, :func:`cosine_schedule` and :func:`chapter_callbacks` (validation
scores, the stock ``EarlyStopping`` and ``BackupAndRestore``) and calls Keras' ``model.fit`` with them. :func:`fit`
is that same call plus what a record and a resumed run need: it seeds Keras first, adds :class:`RunState`
(early stopping's state and the history kept beside the backup, a time budget) and returns a summary.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import f1_score

from .config import output_dir
from .io import atomic_write_json
from .predictions import Predictions, predict_dataset, predict_split

log = logging.getLogger("helpers.train")

SCHEDULES = (None, "cosine", "plateau")
BACKUP = "backup"  # keras.callbacks.BackupAndRestore's folder: weights and optimizer of the last epoch, epoch count
BEST_WEIGHTS = "best.weights.h5"  # the weights early stopping would restore
HISTORY_KEYS = ("loss", "accuracy", "macro_f1", "val_loss", "val_accuracy", "val_macro_f1", "lr",
                "epoch_seconds", "load_avg")


def _steps(ds) -> int | None:
    try:
        n = int(ds.cardinality())
    except Exception:  # not a tf.data dataset
        return None
    return n if n > 0 else None


def _macro_f1(y: np.ndarray, p: np.ndarray, n_classes: int) -> float:
    return float(f1_score(y, p.argmax(1), labels=list(range(n_classes)), average="macro", zero_division=0))


class ValidationScores(keras.callbacks.Callback):
    """After every epoch: validation loss, accuracy and macro-F1 from one pass over ``val_ds`` (macro-F1
    needs every prediction at once, which Keras' batch-wise metrics do not keep), training macro-F1 on a
    few batches, the learning rate and the epoch's seconds. They go into the epoch's ``logs``, where the
    callbacks after this one (early stopping) and the ``History`` that ``fit`` returns find them."""

    def __init__(self, val_ds, train_ds=None, *, train_f1_batches: int = 10, epochs: int = 0, verbose: int = 0,
                 history: dict[str, list] | None = None):
        super().__init__()
        self.val_ds, self.train_ds, self.train_f1_batches = val_ds, train_ds, train_f1_batches
        self.epochs, self.verbose = epochs, verbose
        self.history = history if history is not None else {}
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        n_classes = int(self.model.output_shape[-1])
        y, p = predict_dataset(self.model, self.val_ds)
        logs["val_loss"] = float(keras.ops.convert_to_numpy(
            keras.losses.sparse_categorical_crossentropy(y, np.clip(p, 1e-7, 1.0))).mean())
        logs["val_accuracy"] = float((p.argmax(1) == y).mean())
        logs["val_macro_f1"] = _macro_f1(y, p, n_classes)
        if self.train_f1_batches and self.train_ds is not None:
            yt, pt = predict_dataset(self.model, self.train_ds, self.train_f1_batches)
            logs["macro_f1"] = _macro_f1(yt, pt, n_classes)
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["epoch_seconds"] = time.perf_counter() - self._t0
        if hasattr(os, "getloadavg"):  # 1-minute load average: explains slow epochs on a shared machine
            logs["load_avg"] = os.getloadavg()[0]
        for k in HISTORY_KEYS:
            if k in logs:
                self.history.setdefault(k, []).append(float(logs[k]))
        if self.verbose:
            print(epoch_line(epoch, self.epochs, logs), flush=True)


def chapter_callbacks(val_ds, backup_dir, *, patience=5, min_delta=0.005,
                      train_ds=None, verbose=0):
    """Validation scores, early stopping on val accuracy, a backup per epoch."""
    return [
        ValidationScores(val_ds, train_ds, verbose=verbose),  # → logs
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=patience,
            min_delta=min_delta, restore_best_weights=True),
        keras.callbacks.BackupAndRestore(  # a crashed run resumes here
            backup_dir, double_checkpoint=True),
    ]


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, float], note: str = "") -> str:
    """The one-line summary printed after every epoch (within a page's 80 columns; the training macro-F1
    stays in the history)."""
    return (f"epoch {epoch + 1:>2}/{epochs}  loss {logs.get('loss', float('nan')):.3f} "
            f"acc {logs.get('accuracy', float('nan')):.3f} | val loss {logs['val_loss']:.3f} "
            f"acc {logs['val_accuracy']:.3f} F1 {logs['val_macro_f1']:.3f} | {logs['epoch_seconds']:.0f} s{note}")


class RunState(keras.callbacks.Callback):
    """What a resumed run needs besides the stock ``BackupAndRestore`` (weights, optimizer, epoch counter),
    listed after it: the state of the stock ``EarlyStopping`` (best value, wait, best epoch and its weights,
    which a resumed stock callback would forget) and the history, in ``state.json`` and ``best.weights.h5``,
    each written atomically after every epoch; and the time budget.

    Nor could a stock ``ModelCheckpoint(save_best_only=True)`` keep early stopping's best weights: it has no
    ``min_delta`` and saves every strict improvement (tests/test_train.py shows both)."""

    def __init__(self, directory: Path, history: dict[str, list], early, time_budget: float | None,
                 started: float, prior_seconds: float, resumed: Mapping[str, Any] | None = None,
                 best_weights=None):
        super().__init__()
        self.dir, self.history, self.early = directory, history, early
        self.time_budget, self.started, self.prior_seconds = time_budget, started, prior_seconds
        self.resumed, self.best_weights = dict(resumed or {}), best_weights
        self.stopped_by_budget = False

    def on_train_begin(self, logs=None):  # after the early stopping's own on_train_begin, which resets it
        if self.resumed:
            self.early.wait = int(self.resumed.get("wait", 0))
            self.early.best = self.resumed.get("best")
            self.early.best_epoch = int(self.resumed.get("best_epoch", 0))
            self.early.best_weights = self.best_weights

    def on_epoch_end(self, epoch, logs=None):
        if self.early.best_epoch == epoch:  # written aside, flushed to disk, then renamed: never a torn file
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".tmp.{BEST_WEIGHTS}"
            self.model.save_weights(tmp, overwrite=True)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / BEST_WEIGHTS)
        elapsed = self.prior_seconds + time.perf_counter() - self.started
        atomic_write_json(self.dir / "state.json", {"epoch": epoch + 1, "history": self.history,
                                                    "early_stopping": early_state(self.early),
                                                    "train_seconds": elapsed, "weights": _shapes(self.model)})
        if self.time_budget is not None and elapsed >= self.time_budget and not self.model.stop_training:
            log.info("time budget of %.0f s used up after epoch %d: stopping", self.time_budget, epoch + 1)
            self.stopped_by_budget = True
            self.model.stop_training = True


def early_state(early) -> dict[str, Any]:
    """A stock ``EarlyStopping``'s state: best value, epochs waited, best epoch (0-based)."""
    best = None if early.best is None else float(early.best)
    return {"wait": int(early.wait), "best": best, "best_epoch": int(early.best_epoch)}


def stopped_by(early, epochs_run: int, epochs: int) -> str:
    """``"early_stopping"`` when early stopping cut the run short, else ``"max_epochs"``. (Keras also sets
    ``stopped_epoch`` when patience runs out on the last planned epoch, where it stops nothing.)"""
    return "early_stopping" if early.stopped_epoch > 0 and epochs_run < epochs else "max_epochs"


def _shapes(model) -> list[list[int]]:
    return [list(map(int, w.shape)) for w in model.weights]


def _read_checkpoint(model, directory: Path) -> tuple[dict, list | None]:
    """The saved run state, checked against ``model``, and the best weights so far (or ``None``)."""
    state = json.loads((directory / "state.json").read_text())
    if "weights" not in state or not (directory / BACKUP / "latest.weights.h5").is_file():
        raise ValueError(f"the checkpoint in {directory} was written by an older version of the helpers; "
                         "delete it or pass resume=False")
    if state["weights"] != _shapes(model):
        raise ValueError(f"the checkpoint in {directory} is of another architecture than {model.name!r}; "
                         "delete it or pass resume=False")
    meta = directory / BACKUP / "training_metadata.json"
    backed_up = json.loads(meta.read_text())["epoch"] if meta.is_file() else None
    if backed_up != state["epoch"]:
        raise ValueError(f"the checkpoint in {directory} is incomplete (weights of epoch {backed_up}, state of "
                         f"epoch {state['epoch']}): the run was interrupted while saving; pass resume=False")
    model.optimizer.build(model.trainable_variables)
    best = None
    if (directory / BEST_WEIGHTS).is_file():
        model.load_weights(directory / BEST_WEIGHTS)
        best = model.get_weights()
    model.load_weights(directory / BACKUP / "latest.weights.h5")  # BackupAndRestore does this again in fit
    return state, best


def cosine_schedule(learning_rate: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0):
    """Linear warm-up from 0 over the first epochs, then cosine decay to 0."""
    decay_steps = (epochs - warmup_epochs) * steps_per_epoch
    cosine = keras.optimizers.schedules.CosineDecay
    if not warmup_epochs:
        return cosine(learning_rate, decay_steps)
    return cosine(0.0, decay_steps, warmup_target=learning_rate,
                  warmup_steps=warmup_epochs * steps_per_epoch)


def compile_classifier(model, learning_rate, weight_decay=None):
    """Adam on the cross-entropy of integer labels; accuracy is reported."""
    optimizer = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def fit(model, train_ds, val_ds, epochs: int = 20, *, learning_rate: float = 1e-3,
        schedule: str | None = None, warmup_epochs: int = 0, weight_decay: float | None = None,
        patience: int | str | None = "auto", min_delta: float = 0.005, seed: int | None = 42,
        run_name: str | None = None, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
        time_budget: float | None = None, train_f1_batches: int = 10, verbose: int = 1) -> dict[str, Any]:
    """Train ``model`` on ``train_ds``, monitoring ``val_ds``; returns a summary with the history.

    * ``schedule``: ``None`` (constant learning rate), ``"cosine"`` (cosine decay to 0 over
      ``epochs``) or ``"plateau"`` (halve the rate when val accuracy stalls for 2 epochs).
      With the default ``patience="auto"`` a cosine run trains to the schedule's end (stopping early would
      cut off the low-learning-rate epochs the schedule exists for); the best epoch on val is still restored.
    * ``warmup_epochs`` (cosine only): the learning rate first rises linearly from 0 to ``learning_rate``
      over this many epochs, then decays over the remaining ones.
    * ``seed``: ``keras.utils.set_random_seed(seed)`` before training (Python, NumPy and TensorFlow's global
      generators: shuffling, dropout, unseeded layers), so that a seeded run on a CPU repeats bit for bit
      (benchmarks/DETERMINISM.md); ``None`` leaves the generators as they are.
    * ``weight_decay``: decoupled weight decay (AdamW-style) per step, ``None`` for plain Adam as in the
      seeds. It keeps the weights in front of batch norm from growing without bound, which otherwise
      makes batch norm's running statistics lag behind and inference-mode predictions erratic.
    * Early stopping as in the source write-ups: ``val_accuracy``, ``patience``, ``min_delta``, best weights
      restored at the end. ``patience=None`` trains all ``epochs``; ``"auto"`` (default) means 5, or
      ``None`` with the cosine schedule; an explicit number is honoured with any schedule.
    * ``time_budget`` (seconds): a safety cap: stop after the epoch that uses it up. Size ``epochs`` so the
      schedule fits the budget; if the cap fires anyway, ``stopped`` is ``"time_budget"`` and
      ``budget_fired`` is true (both go into the record).
    * Checkpoints go to ``checkpoint_dir`` (default ``<output dir>/checkpoints/<run_name>``);
      ``resume=True`` continues an interrupted run from its last completed epoch; a run that had
      finished (early stopping, time budget, all epochs) is reused as it is.

    Returns ``{"history": {key: per-epoch list}, "train_seconds", "epochs_run", "best_epoch",
    "stopped": "early_stopping" | "time_budget" | "max_epochs", "checkpoint_dir", ...}``.
    ``history`` has ``loss, accuracy`` (Keras' running training values), ``macro_f1`` (train,
    inference mode, first ``train_f1_batches`` batches), ``val_loss, val_accuracy, val_macro_f1``,
    ``lr``, ``epoch_seconds`` and ``load_avg`` (the machine's 1-minute load average at the epoch's end).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not known; use one of {SCHEDULES}")
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"EPOCHS must be at least 1, got {epochs}")
    warmup_epochs = int(warmup_epochs)
    if warmup_epochs and (schedule != "cosine" or not 0 < warmup_epochs < epochs):
        raise ValueError(f"warmup_epochs={warmup_epochs} needs schedule='cosine' and fewer epochs than {epochs}")
    if patience == "auto":  # a cosine schedule runs to its end; restore-best-on-val stays
        patience = None if schedule == "cosine" else 5
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    run_name = run_name or model.name
    ckdir = Path(checkpoint_dir) if checkpoint_dir else output_dir() / "checkpoints" / run_name
    lr: Any = float(learning_rate)
    steps = _steps(train_ds)
    if schedule == "cosine":
        if steps is None:
            raise ValueError("the cosine schedule needs a dataset of known length (a batched tf.data dataset)")
        lr = cosine_schedule(float(learning_rate), epochs, steps, warmup_epochs)
    compile_classifier(model, lr, weight_decay)

    history: dict[str, list] = {}
    initial_epoch, prior_seconds, es_state, best_weights, finished = 0, 0.0, None, None, None
    if resume and (ckdir / "state.json").is_file():
        state, best_weights = _read_checkpoint(model, ckdir)
        initial_epoch = int(state["epoch"])
        history = {k: list(v) for k, v in state["history"].items()}
        prior_seconds = float(state.get("train_seconds", 0.0))
        es_state = state.get("early_stopping")
        finished = state.get("stopped") if state.get("stopped") != "max_epochs" else None  # more epochs may follow
        if finished is None and time_budget is not None and prior_seconds >= time_budget:
            finished = "time_budget"
        if finished:  # a completed run is reused as it is, not trained further
            log.info("%s already finished (%s) after %d epochs: reusing checkpoint %s", run_name, finished,
                     initial_epoch, ckdir)
        else:
            log.info("resuming %s from epoch %d (checkpoint %s)", run_name, initial_epoch, Path(ckdir).name)
    elif not resume and ckdir.exists():
        shutil.rmtree(ckdir)

    callbacks = chapter_callbacks(val_ds, ckdir / BACKUP, patience=patience if patience is not None else 10 ** 9,
                                  min_delta=min_delta, train_ds=train_ds, verbose=verbose)
    scores, early, backup = callbacks
    backup.delete_checkpoint = False  # kept after the run: a finished run is reused, not trained again
    scores.history, scores.epochs, scores.train_f1_batches = history, epochs, train_f1_batches
    started = time.perf_counter()
    ckpt = RunState(ckdir, history, early, time_budget, started, prior_seconds, es_state, best_weights)
    if schedule == "plateau":  # halve the rate when val accuracy stalls: after the scores, before early stopping
        callbacks.insert(1, keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.5,
                                                              patience=2, min_delta=min_delta / 5, verbose=0))
    callbacks.append(ckpt)
    if verbose and initial_epoch:  # show the epochs that the checkpoint already holds
        for e in range(initial_epoch):
            print(epoch_line(e, epochs, {k: v[e] for k, v in history.items() if len(v) > e}, " (from checkpoint)"))
    ran = initial_epoch < epochs and not finished
    if ran:
        model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  shuffle=False, verbose=0 if verbose < 2 else 2)
        model._initial_epoch = None  # BackupAndRestore leaves its epoch on the model (Keras 3): a later fit starts at 0
    elif best_weights is not None:
        model.set_weights(best_weights)
    train_seconds = prior_seconds + time.perf_counter() - started
    stopped = finished or ("time_budget" if ckpt.stopped_by_budget else
                           stopped_by(early, len(history.get("val_accuracy", [])), epochs))
    if (ckdir / "state.json").is_file():  # mark the run finished, so a resume does not train it further
        state = json.loads((ckdir / "state.json").read_text())
        atomic_write_json(ckdir / "state.json", {**state, "stopped": stopped})
    es = early_state(early) if ran else (es_state or {})
    out = _summary(history, es, float(train_seconds), epochs, stopped, resumed_from_epoch=initial_epoch,
                   schedule=schedule, learning_rate=float(learning_rate), warmup_epochs=warmup_epochs,
                   weight_decay=weight_decay, seed=seed, patience=patience, min_delta=min_delta,
                   time_budget=time_budget, steps_per_epoch=steps, checkpoint_dir=str(ckdir))
    if verbose:
        va, best_epoch = history.get("val_accuracy", []), out["best_epoch"]
        best_va = va[best_epoch - 1] if va and best_epoch else math.nan
        why = {"early_stopping": ", stopped early", "time_budget": ", stopped by the time budget"}.get(stopped, "")
        print(f"{out['epochs_run']} epochs in {train_seconds / 60:.1f} min{why}; weights of epoch {best_epoch} "
              f"restored (val accuracy {best_va:.4f})", flush=True)
    return out


def _summary(history: dict[str, list], es: Mapping[str, Any], train_seconds: float, epochs: int, stopped: str,
             **settings: Any) -> dict[str, Any]:
    va = history.get("val_accuracy", [])
    # the epoch whose weights early stopping restored: the last one that beat the best by min_delta
    if es.get("best") is not None:
        best_epoch = int(es["best_epoch"]) + 1
    else:
        best_epoch = int(np.argmax(va)) + 1 if va else 0
    defaults = {"resumed_from_epoch": 0, "schedule": None, "warmup_epochs": 0, "weight_decay": None,
                "time_budget": None, "checkpoint_dir": None}
    return {"history": history, "train_seconds": train_seconds, "epochs_run": len(va), "max_epochs": epochs,
            "best_epoch": best_epoch, "stopped": stopped, "budget_fired": stopped == "time_budget",
            **defaults, **settings}


def fit_summary(history, callbacks, *, learning_rate: float, seed: int | None) -> dict[str, Any]:
    """The summary :func:`fit` returns, for a run of Keras' ``model.fit`` with :func:`chapter_callbacks`
    (``history``: the ``History`` it returned), as :func:`evaluate_and_record` takes it."""
    early = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    h = {k: [float(v) for v in history.history[k]] for k in HISTORY_KEYS if k in history.history}
    stopped = stopped_by(early, len(h.get("val_accuracy", [])), int(history.params["epochs"]))
    return _summary(h, early_state(early), float(sum(h.get("epoch_seconds", []))), int(history.params["epochs"]),
                    stopped, learning_rate=float(learning_rate), seed=seed, patience=int(early.patience),
                    min_delta=float(early.min_delta), steps_per_epoch=history.params.get("steps"))


def split_predictions(model, data, image_size: int, *, batch_size: int = 64, test: bool = True, val_ds=None,
                      test_ds=None) -> dict[str, Predictions]:
    """The model's :class:`~helpers.predictions.Predictions` on val and (``test``) test.

    ``val_ds``/``test_ds``: ready datasets of those splits (in the order of ``data.paths``) to use instead
    of building them from ``data``.
    """
    splits = ("val", "test") if test else ("val",)
    given = {"val": val_ds, "test": test_ds}
    out = {}
    for split in splits:
        if given[split] is None:
            out[split] = predict_split(model, data, split, image_size, batch_size=batch_size)
        else:
            out[split] = Predictions(data.paths(split), *predict_dataset(model, given[split]),
                                     getattr(data, "classes", None))
    return out


def run_fields(model, fit_result: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """What a from-scratch model's record says about its training (besides the common fields)."""
    from .models import count_params

    h = fit_result["history"]
    keys = ("max_epochs", "best_epoch", "stopped", "schedule", "learning_rate", "warmup_epochs", "weight_decay",
            "patience", "min_delta", "time_budget", "budget_fired", "seed", "steps_per_epoch", "resumed_from_epoch")
    return {"architecture": model.name, "params": count_params(model),
            "history": {k: v for k, v in h.items() if k not in ("epoch_seconds", "load_avg")},
            "load_avg": [round(x, 2) for x in h.get("load_avg", [])],
            "epoch_seconds": [round(s, 2) for s in h.get("epoch_seconds", [])],
            "training": {k: fit_result.get(k) for k in keys} | {"batch_size": batch_size, "optimizer": "adam"}}


def evaluate_and_record(model, name: str, data, fit_result: Mapping[str, Any], *, image_size: int,
                        batch_size: int = 64, seed: int = 42, mode: str = "book", test: bool = True,
                        directory: str | os.PathLike | None = None, val_ds=None, test_ds=None,
                        save_model: bool = False, models_directory: str | os.PathLike | None = None,
                        **extra: Any) -> dict[str, Any]:
    """Evaluate on val (and, once, on test) and save the run with :func:`helpers.runs.save_run`; return the record.

    ``data`` is a :class:`helpers.data.SplitData`; datasets are built from it unless given.
    ``test=False`` (model selection, ablations) leaves the test split untouched (``"test": null``).
    ``save_model``: also save the model's bundle (``<models_directory>/<name>``, default ``outputs/models``).
    ``extra`` goes into the record (e.g. ``augmentation=…``, ``ablation=…``, ``reference=…``).
    The returned record also carries the predictions (``"_predictions"``: split → Predictions), the
    record's path (``"_path"``) and the bundle folder (``"_bundle"``, ``None`` without ``save_model``).
    """
    from .runs import FROM_SCRATCH, save_run

    preds = split_predictions(model, data, image_size, batch_size=batch_size, test=test, val_ds=val_ds,
                              test_ds=test_ds)
    run = save_run(model, name, data, preds, image_size=image_size, epochs=fit_result["epochs_run"],
                   train_seconds=fit_result["train_seconds"], weights_source=dict(FROM_SCRATCH), seed=seed,
                   mode=mode, record=run_fields(model, fit_result, batch_size) | extra, save_model=save_model,
                   results_directory=directory, models_directory=models_directory)
    return {**run.record, "_path": str(run.record_path), "_predictions": preds, "_bundle": run.bundle}


def spread_block(values, seeds, *, metric: str = "test accuracy", budget: str = "") -> dict[str, Any]:
    """A record's ``spread`` block: one metric of the same recipe trained from several seeds.

    ``metric`` is ``"<split> <name>"`` (``"test accuracy"``, ``"val macro_f1"``); besides the values and their
    mean, standard deviation (``ddof=1``), min and max, the block holds ``{split: {name: half-width}}``, the
    half of the seed-to-seed range that ``tools/reproduce.py`` compares a re-run with. ``budget`` says at
    which budget the spread was measured (full data, or a smaller one).
    """
    v = np.asarray(values, dtype=float)
    if v.size != len(seeds) or v.size < 2:
        raise ValueError(f"spread_block needs one value per seed and at least two seeds, got {v.size} values "
                         f"for seeds {list(seeds)}")
    split, name = metric.split(" ", 1)
    lo, hi = float(v.min()), float(v.max())
    return {"seeds": [int(s) for s in seeds], "metric": metric, "values": [float(x) for x in v],
            "mean": float(v.mean()), "std": float(v.std(ddof=1)), "min": lo, "max": hi, "budget": budget,
            split: {name.replace("-", "_").replace(" ", "_"): (hi - lo) / 2}}


def add_spread(record_path: str | os.PathLike, block: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``block`` (from :func:`spread_block`) into the record at ``record_path`` as its ``spread``."""
    from .results import update_record

    return update_record(record_path, spread=dict(block))
