"""Calibration: does a predicted probability of 0.9 come true 90 % of the time?

* :func:`ece` — expected calibration error over equal-width confidence bins;
* :func:`reliability` — the per-bin table a reliability diagram draws;
* :func:`fit_temperature` / :func:`apply_temperature` — temperature scaling
  (Guo et al. 2017): one scalar ``T`` divides the logits. It is fitted on the **validation**
  split only (minimum negative log-likelihood) and then applied, unchanged, to the test split.

The bundles store probabilities, not logits. ``log p`` differs from the logits only by a
constant per item, and softmax ignores such a constant, so ``softmax(log p / T)`` is exactly
temperature scaling of the original logits.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import softmax

EPS = 1e-12


def _check(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"need an (N, C) probability array for N labels, got {p.shape} for {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in 0..{p.shape[1] - 1}")
    return y, p


def reliability(y_true: Sequence[int], probs, n_bins: int = 15) -> pd.DataFrame:
    """Per confidence bin (equal width on [0, 1]): items, mean confidence, accuracy, gap."""
    y, p = _check(y_true, probs)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin k holds (edges[k], edges[k+1]]; confidence 0 goes to the first bin
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    sconf = np.bincount(b, weights=conf, minlength=n_bins)
    sacc = np.bincount(b, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.where(n > 0, sconf / np.maximum(n, 1), np.nan)
        acc = np.where(n > 0, sacc / np.maximum(n, 1), np.nan)
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "n": n, "confidence": mconf, "accuracy": acc,
                         "gap": acc - mconf})


def ece(y_true: Sequence[int], probs, n_bins: int = 15) -> float:
    """Expected calibration error: the item-weighted mean of |accuracy − confidence| over the bins."""
    t = reliability(y_true, probs, n_bins)
    used = t["n"] > 0
    return float((t.loc[used, "n"] * t.loc[used, "gap"].abs()).sum() / t["n"].sum())


def nll(y_true: Sequence[int], probs) -> float:
    """Mean negative log-likelihood of the true class."""
    y, p = _check(y_true, probs)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))


def logits_from_probs(probs) -> np.ndarray:
    """``log p``: the logits up to a per-item constant (which softmax and temperature scaling ignore)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def apply_temperature(probs_or_logits, temperature: float, *, are_logits: bool = False) -> np.ndarray:
    """Probabilities ``softmax(z / T)``; ``z`` are logits, or ``log p`` when given probabilities."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.asarray(probs_or_logits, dtype=np.float64) if are_logits else logits_from_probs(probs_or_logits)
    return softmax(z / float(temperature), axis=1)


def fit_temperature(y_val: Sequence[int], val_probs_or_logits, *, are_logits: bool = False,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` that minimises the validation NLL (searched over ``log T``, scipy).

    Fit on validation predictions only; then :func:`apply_temperature` the same ``T`` to the test split.
    ``T > 1`` softens over-confident predictions, ``T < 1`` sharpens under-confident ones.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_val).astype(int)
    z = np.asarray(val_probs_or_logits, dtype=np.float64) if are_logits else logits_from_probs(val_probs_or_logits)
    _check(y, z if not are_logits else softmax(z, axis=1))

    def loss(log_t: float) -> float:
        zt = z / np.exp(log_t)
        zt = zt - zt.max(axis=1, keepdims=True)
        lse = np.log(np.exp(zt).sum(axis=1))
        return float(np.mean(lse - zt[np.arange(len(y)), y]))

    res = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))
