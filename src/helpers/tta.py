"""Test-time augmentation (TTA) over the eight symmetries of a square image.

A blood cell on a slide has no "up": turning the image by a quarter turn or mirroring it gives an
equally valid picture of the same cell. These eight transformations (four rotations, each with or
without a mirror) form the dihedral group D4 of the square. A model trained with flips and rotations
is *almost* invariant to them; averaging its probabilities over the eight views removes what is left
of its orientation noise, for eight times the inference cost.

:func:`tta_model` wraps a trained model into a deployable Keras model that does exactly that
(stacked into one batch, so the wrapped model runs once per call); :func:`view_probs` scores every
view separately, which is what the chapters use to *decide* — on the validation split — whether
TTA is worth its cost. The two layers of the wrapper and :func:`dihedral` live in :mod:`helpers.layers`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from .layers import (  # noqa: F401 (re-exported)
    VIEW_COUNTS,
    VIEW_NAMES,
    DihedralViews,
    MeanOverViews,
    dihedral,
    is_tta,
    tta_core,
    tta_views,
)


def tta_model(model, views: int = 8, name: str | None = None):
    """A Keras model that averages ``model``'s probabilities over ``views`` symmetries of its input.

    Same input contract as ``model`` (square images, float32 in [0, 255]); ``views=8`` is the whole
    group D4, ``views=4`` the quarter turns, ``views=2`` the half turn. The wrapped model is shared, not copied.
    """
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or shape[0] != shape[1]:
        raise ValueError(f"TTA needs square image inputs (S, S, C); {model.name!r} takes {shape}")
    inp = keras.Input(shape, dtype="float32", name="image")
    stacked = DihedralViews(views, name="dihedral_views")(inp)
    out = MeanOverViews(views, name="mean_over_views")(model(stacked))
    return keras.Model(inp, out, name=name or f"{model.name}_tta{views}")


def view_probs(model, dataset, views: int = 8, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,), probabilities (views, N, C))``: ``model`` scored on every view of every image.

    ``dataset`` yields ``(images, labels)`` batches (e.g. :func:`helpers.pipeline.make_dataset`). One
    forward pass per batch, all views stacked, ``training=False``.
    """
    from tqdm import tqdm  # plain text bar: works in notebooks without ipywidgets

    stack = DihedralViews(views)
    ys, ps = [], []
    n = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    for x, y in tqdm(dataset, desc=f"scoring {views} views", unit="batch", total=n if n >= 0 else None,
                     mininterval=10, disable=not progress):
        if len(x.shape) != 4 or x.shape[1] != x.shape[2]:
            raise ValueError(f"TTA needs batches of square images (B, S, S, C); got shape {tuple(x.shape)}")
        p = np.asarray(model.predict_on_batch(stack(x)))
        ps.append(p.reshape(views, -1, p.shape[-1]))
        ys.append(np.asarray(y))
    if not ps:
        raise ValueError("the dataset is empty: nothing to score")
    return np.concatenate(ys), np.concatenate(ps, axis=1)


def view_table(y_true, probs_by_view: np.ndarray) -> Any:
    """Accuracy and macro-F1 of each view alone (``kind="one view"``) and of the average over the first
    1, 2, 4, 8 views (``kind="TTA"``, column ``views``)."""
    import pandas as pd

    from .evaluate import metrics_block

    p = np.asarray(probs_by_view)
    rows = [(VIEW_NAMES[k], "one view", 1, p[k]) for k in range(len(p))]
    rows += [(f"TTA over {n} view{'s' if n > 1 else ''}", "TTA", n, p[:n].mean(axis=0))
             for n in VIEW_COUNTS if n <= len(p)]
    out = []
    for name, kind, n, q in rows:
        m = metrics_block(y_true, q)
        out.append({"view": name, "kind": kind, "views": n, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
    return pd.DataFrame(out).set_index("view")


def choose_views(table, tolerance: float = 0.001) -> int:
    """The fewest TTA views whose validation macro-F1 is within ``tolerance`` of the best TTA row of
    :func:`view_table` — more views cost proportionally more inference time."""
    tta = table[table["kind"] == "TTA"]
    if tta.empty:
        raise ValueError("the table has no TTA rows")
    ok = tta[tta["macro_f1"] >= tta["macro_f1"].max() - tolerance]
    return int(ok["views"].min())


def tta_fields(base: Mapping[str, Any], *, views: int, seconds: Mapping[str, float]) -> dict[str, Any]:
    """The record fields of the TTA version of a trained model besides the common ones: what the base
    record says about the model (family, params, augmentation, training …) and a ``tta`` block."""
    keep = ("family", "pretrained", "weights_summary", "params", "preprocessing", "split_layer", "architecture",
            "augmentation", "training")
    tta = {"of": base["model"], "views": int(views), "view_names": list(VIEW_NAMES[:views]),
           "combine": "mean of the probabilities", "seconds": {k: round(float(v), 1) for k, v in seconds.items()},
           "base_val": {k: base["val"][k] for k in ("accuracy", "macro_f1")},
           "base_test": ({k: base["test"][k] for k in ("accuracy", "macro_f1")} if base.get("test") else None)}
    return {**{k: base[k] for k in keep if k in base}, "tta": tta}


def evaluate_tta(model, data, image_size: int, views: int | None = None, tolerance: float = 0.001,
                 batch_size: int = 64, progress: bool = True) -> dict[str, Any]:
    """TTA for a trained model, decided on validation, tested once.

    All eight views are scored on the validation split; the number of views is ``views`` or, when
    ``None``, :func:`choose_views` on that table. Only then is the wrapped model (:func:`tta_model`)
    run on the test split — once. Returns ``{"model", "views", "val_table", "val": Predictions,
    "test": Predictions, "seconds"}`` (:class:`helpers.predictions.Predictions` of the wrapped model).
    """
    import time

    from .pipeline import make_dataset
    from .predictions import Predictions, predict_split

    t0 = time.perf_counter()
    val_ds = make_dataset(data.paths("val"), data.labels("val"), image_size, batch_size=batch_size, cache=False)
    y_val, pv = view_probs(model, val_ds, 8, progress=progress)
    table = view_table(y_val, pv)
    n = choose_views(table, tolerance) if views is None else int(views)
    t1 = time.perf_counter()
    wrapper = tta_model(model, n)
    test = predict_split(wrapper, data, "test", image_size, batch_size=batch_size)
    t2 = time.perf_counter()
    return {"model": wrapper, "views": n, "val_table": table,
            "val": Predictions(data.paths("val"), y_val, pv[:n].mean(axis=0), getattr(data, "classes", None)),
            "test": test,
            "seconds": {"val_all_views": t1 - t0, "test": t2 - t1}}


def save_tta(result: Mapping[str, Any], name: str, base_record: Mapping[str, Any], data,
             like: str | os.PathLike | None = None, *, results_directory: str | os.PathLike | None = None,
             models_directory: str | os.PathLike | None = None) -> tuple[Any, dict[str, Any]]:
    """Save the TTA model of :func:`evaluate_tta` with :func:`helpers.runs.save_run`: its results record and
    its bundle (with its val/test predictions); returns ``(bundle folder, record)``, the record with its file's
    path under ``"_path"`` (as :func:`helpers.train.evaluate_and_record` returns it).

    The record repeats the base record's provenance (data, weights, seed, training time — TTA trains nothing)
    with its own metrics and a ``tta`` block (:func:`tta_fields`). ``like``: the single-view model's bundle,
    whose sidecar fields (preprocessing, family, weights) the TTA bundle repeats.
    """
    from .export import read_sidecar
    from .runs import save_run

    skip = {"classes", "image_size", "weights_source", "metrics", "data", "model_name"}
    side = {k: v for k, v in read_sidecar(like).items() if k not in skip} if like else {}
    preprocessing = side.pop("preprocessing", None)
    fields = tta_fields(base_record, views=result["views"], seconds=result["seconds"])
    run = save_run(result["model"], name, data, {"val": result["val"], "test": result["test"]},
                   image_size=base_record["image_size"], epochs=base_record["epochs"],
                   train_seconds=base_record["train_seconds"], weights_source=base_record["weights_source"],
                   seed=base_record["seed"], mode=base_record.get("mode", "book"), record=fields,
                   bundle={"tta": fields["tta"], **side}, preprocessing=preprocessing,
                   results_directory=results_directory, models_directory=models_directory)
    return run.bundle, {**run.record, "_path": str(run.record_path)}
