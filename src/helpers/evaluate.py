"""Metrics for one model on one split (scikit-learn does the arithmetic)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from . import CLASSES

if TYPE_CHECKING:
    import pandas as pd


def metrics_block(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:  # probabilities
        y_pred = y_pred.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


# --------------------------------------------------------------------------------------------
# Uncertainty of a metric, ROC curves, paired model comparison, errors by sub-type (chapter 7)
# --------------------------------------------------------------------------------------------
def as_classes(y_pred) -> np.ndarray:
    """Class indices from class indices or from (N, C) probabilities."""
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred.astype(int)


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=float), where=denom > 0)


def resample_scores(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and weighted-F1 of every resample ``idx[b]`` (indices into the items), vectorised.

    Each resample is scored from its per-class counts at once (a matrix product), which equals scoring
    ``y_true[idx[b]]`` against ``y_pred[idx[b]]`` with scikit-learn (``labels=range(n_classes)``).
    """
    n_boot, n = idx.shape
    # counts[b, k] = how often item k is drawn in resample b  → weighted per-class counts via matmul
    counts = np.zeros((n_boot, len(y_true)), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    onehot_t = np.eye(n_classes)[y_true]                 # (N, C)
    onehot_p = np.eye(n_classes)[y_pred]
    correct = (y_true == y_pred).astype(float)
    tp = counts @ (onehot_t * correct[:, None])          # (B, C)
    support = counts @ onehot_t
    predicted = counts @ onehot_p
    f1 = _f1_from_counts(tp, predicted - tp, support - tp)
    return {"accuracy": tp.sum(axis=1) / n, "macro_f1": f1.mean(axis=1), "weighted_f1": (f1 * support).sum(axis=1) / n}


def bootstrap_ci(y_true: Sequence[int], y_pred, n_classes: int = len(CLASSES), *, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 42) -> dict[str, dict[str, float]]:
    """Percentile bootstrap confidence intervals for accuracy, macro-F1 and weighted-F1.

    The test items are resampled with replacement ``n_boot`` times (seeded, so the interval is
    reproducible); all resamples are scored at once from per-class counts (vectorised).
    Returns ``{"accuracy": {"value", "low", "high"}, "macro_f1": {...}, "weighted_f1": {...}}``.
    Macro-F1 follows scikit-learn's convention for ``labels=range(n_classes)``: a class absent from a
    resample and never predicted counts as F1 = 0.
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = as_classes(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"need equally many true and predicted labels (got {y_true.shape} and {y_pred.shape})")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"n_boot must be >= 1 and alpha in (0, 1), got {n_boot}, {alpha}")
    n = len(y_true)
    rng = np.random.default_rng(seed)
    boot = resample_scores(y_true, y_pred, rng.integers(0, n, size=(n_boot, n)), n_classes)
    point = metrics_block(y_true, y_pred, classes=[str(i) for i in range(n_classes)])
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    return {k: {"value": float(point[k]), "low": float(np.percentile(v, lo)), "high": float(np.percentile(v, hi))}
            for k, v in boot.items()}


def roc_per_class(y_true: Sequence[int], probs, classes: Sequence[str] = CLASSES) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curve and AUC for every class: ``{class: {"fpr", "tpr", "auc"}}``.

    A class with no positive (or no negative) item has no ROC curve; it gets ``auc = nan``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(classes)):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(y_true)} items × "
                         f"{len(classes)} classes")
    out: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(classes):
        pos = y_true == i
        if pos.all() or not pos.any():
            out[c] = {"fpr": np.array([]), "tpr": np.array([]), "auc": float("nan")}
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, i])
        out[c] = {"fpr": fpr, "tpr": tpr, "auc": float(roc_auc_score(pos, probs[:, i]))}
    return out


def mcnemar(y_true: Sequence[int], pred_a, pred_b) -> dict[str, float]:
    """McNemar's test: do two models, scored on the same items, differ?

    Only discordant items count: ``b`` = A right & B wrong, ``c`` = A wrong &
    B right. If the models were equally accurate each would be a fair coin, so
    the exact p-value is a two-sided binomial test of ``b`` successes in
    ``b + c`` trials; the chi² statistic with continuity correction,
    ``(|b − c| − 1)² / (b + c)``, is given too.
    """
    from scipy.stats import binomtest, chi2

    y_true = np.asarray(y_true).astype(int)
    a, b_ = as_classes(pred_a), as_classes(pred_b)
    if not (y_true.shape == a.shape == b_.shape):
        raise ValueError(f"McNemar needs predictions on the same items: "
                         f"shapes {y_true.shape}, {a.shape}, {b_.shape}")
    ra, rb = a == y_true, b_ == y_true
    b = int(np.sum(ra & ~rb))
    c = int(np.sum(~ra & rb))
    diff = paired_difference(b, c, len(y_true))
    if b + c == 0:
        return {"b": 0, "c": 0, "p_exact": 1.0, "chi2": 0.0, "p_chi2": 1.0,
                **diff}
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "p_exact": float(binomtest(b, b + c, 0.5).pvalue),
            "chi2": float(stat), "p_chi2": float(chi2.sf(stat, df=1)), **diff}


def paired_difference(b: int, c: int, n: int,
                      z: float = 1.959964) -> dict[str, float]:
    """Accuracy of A minus that of B on the same ``n`` items, ``(b − c) / n``,
    with its 95 % Wald interval for paired proportions (variance
    ``((b + c) − (b − c)² / n) / n²``): the size of a difference, which a
    p-value alone does not give."""
    d = (b - c) / n if n else 0.0
    half = z * np.sqrt(max((b + c) - (b - c) ** 2 / n, 0.0)) / n if n else 0.0
    return {"diff": float(d), "diff_low": float(d - half),
            "diff_high": float(d + half)}


ONE_RUN = "one training run"
"""What :func:`mcnemar_table` says of a pair that is one trained network scored two ways (with and without
test-time augmentation): retraining cannot separate them, so no seed tolerance applies."""


def _tta_of(record: Mapping | None) -> str | None:
    """The model a test-time-augmentation record wraps (``tta.of``), else None."""
    tta = (record or {}).get("tta")
    return tta.get("of") if isinstance(tta, Mapping) else None


def mcnemar_table(y_true: Sequence[int], probs: dict, pairs: Sequence[tuple[str, str]],
                  records: Mapping[str, Mapping | None] | None = None):
    """McNemar's test for each ``(a, b)`` of ``pairs`` (names of ``probs``): a DataFrame with the
    accuracies, the discordant counts b and c, the difference A − B in points with its 95 % interval
    (:func:`paired_difference`), and the exact and chi² p-values.

    ``records`` (name → the model's record, ``None`` where there is none) adds whether the accuracy difference
    is more than retraining alone would make: the 95 % retrain tolerance of the two records' seed spreads at
    the models' own budgets (:func:`helpers.results.retrain_tolerance`), and ``"yes"`` when the difference
    exceeds it, ``"no"`` when not, ``"not measured"`` when a record states no spread, ``"no spread at this
    budget"`` when a spread was measured only on a smaller one, and :data:`ONE_RUN` when one model is the other
    scored with test-time augmentation (one training run: no retraining separates them).
    """
    import pandas as pd

    from .results import NO_SPREAD, retrain_tolerance

    y = np.asarray(y_true).astype(int)
    rows = []
    for a, b in pairs:
        m = mcnemar(y, probs[a], probs[b])
        row = {"model A": a, "model B": b, "accuracy A": float(np.mean(as_classes(probs[a]) == y)),
               "accuracy B": float(np.mean(as_classes(probs[b]) == y)), "b (A right, B wrong)": m["b"],
               "c (A wrong, B right)": m["c"], "A − B (points)": 100 * m["diff"],
               "95 % CI (points)": f"{100 * m['diff_low']:+.1f} to {100 * m['diff_high']:+.1f}",
               "p exact": m["p_exact"], "p chi²": m["p_chi2"]}
        if records is not None:
            measured = retrain_tolerance(records.get(a), records.get(b))
            tol = retrain_tolerance(records.get(a), records.get(b), own_budget=True)
            gap = abs(row["accuracy A"] - row["accuracy B"])
            one_run = _tta_of(records.get(a)) == b or _tta_of(records.get(b)) == a
            row["seed tolerance (95 %)"] = np.nan if tol is None or one_run else tol
            row["beyond seed noise"] = (ONE_RUN if one_run else "not measured" if measured is None else NO_SPREAD
                                        if tol is None else "yes" if gap > tol else "no")
        rows.append(row)
    return pd.DataFrame(rows)


def errors_by_subtype(paths: Sequence[str], y_true: Sequence[int], y_pred, classes: Sequence[str] = CLASSES,
                      only: Sequence[str] | None = ("neutrophil", "ig")) -> pd.DataFrame:
    """Error rate per sub-type (file-name prefix: SNE/BNE neutrophils; MY/MMY/PMY/IG immature granulocytes).

    One row per (class, sub-type): items, errors, error rate and the most common wrong prediction.
    ``only`` restricts the table to classes whose sub-types mean something (None: all classes).
    """
    import pandas as pd

    from .data import subtype_of

    y_true = np.asarray(y_true).astype(int)
    y_pred = as_classes(y_pred)
    if not (len(paths) == len(y_true) == len(y_pred)):
        raise ValueError(f"{len(paths)} paths, {len(y_true)} labels and {len(y_pred)} predictions differ in length")
    df = pd.DataFrame({"cls": [classes[i] for i in y_true], "subtype": [subtype_of(str(p)) for p in paths],
                       "pred": [classes[i] for i in y_pred]})
    if only is not None:
        df = df[df["cls"].isin(list(only))]
    rows = []
    for (cls, sub), g in df.groupby(["cls", "subtype"], sort=True):
        wrong = g[g["pred"] != cls]
        rows.append({"class": cls, "subtype": sub, "n": len(g), "errors": len(wrong),
                     "error_rate": len(wrong) / len(g),
                     "most_confused_with": wrong["pred"].value_counts().index[0] if len(wrong) else ""})
    return pd.DataFrame(rows, columns=["class", "subtype", "n", "errors", "error_rate", "most_confused_with"])


def coverage_curve(y_true: Sequence[int], probs, shares: Sequence[float] | None = None):
    """Refer the least confident cells to a person: for each share handed over (0 = none), the accuracy on
    the cells the model keeps and the confidence (maximum probability) below which a cell is handed over.

    The cells are ranked by the model's confidence; ties at the cut are kept. Returns a DataFrame with
    ``referred`` (share), ``kept`` (cells), ``accuracy_kept`` and ``threshold``.
    """
    import pandas as pd

    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=float)
    conf, right = p.max(axis=1), p.argmax(axis=1) == y
    order = np.argsort(conf, kind="stable")  # least confident first
    shares = np.round(np.linspace(0, 0.3, 31), 3) if shares is None else np.asarray(shares, dtype=float)
    rows = []
    for share in shares:
        k = int(round(share * len(y)))
        keep = order[k:]
        rows.append({"referred": float(share), "kept": int(len(keep)),
                     "accuracy_kept": float(right[keep].mean()) if len(keep) else float("nan"),
                     "threshold": float(conf[order[k]]) if k < len(y) else float("nan")})
    return pd.DataFrame(rows)
