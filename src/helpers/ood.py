"""A warning for images unlike the training cells, used by the command line and the app.

Two kinds of check, each with its reason:

* **The image itself** (before the model sees it). PBC cells are 360×363 px crops centred on one cell;
  an image smaller than :data:`MIN_SIDE` px on a side holds too little of a cell for the network's
  first layers to see texture, and one whose sides differ by more than :data:`MAX_ASPECT`× is not a
  single-cell crop (resizing it to a square would distort the cell beyond anything seen in training).
* **The model's confidence** (after). The maximum softmax probability (MSP, Hendrycks & Gimpel 2017)
  is lower, on average, for inputs unlike the training data; chapter 7 measures how well it separates
  BCCD crops from PBC cells. The threshold is chosen on the *validation* split so that a stated share of
  ordinary cells (the false-alarm rate, default 5 %) is flagged, and it is stored in the model's bundle.

A flag is a warning beside the answer, never a silent refusal: the classes are still reported.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

MIN_SIDE = 32
"""Smaller images are flagged: at 32 px a PBC cell's granules are already below one pixel."""
MAX_ASPECT = 2.0
"""Images whose long side exceeds twice the short side are flagged: not a single-cell crop."""
FALSE_ALARM_RATE = 0.05
"""Share of validation cells that the confidence threshold flags."""


def max_softmax(probs) -> np.ndarray:
    """Maximum softmax probability (MSP; Hendrycks & Gimpel 2017): high = looks in-distribution."""
    return np.asarray(probs, dtype=float).max(axis=1)


def fit_threshold(val_probs, rate: float = FALSE_ALARM_RATE) -> dict[str, Any]:
    """The MSP threshold that flags a share ``rate`` of the validation images (an empirical quantile)."""
    if not 0 < rate < 1:
        raise ValueError(f"the false-alarm rate must be between 0 and 1, got {rate!r}")
    scores = max_softmax(val_probs)
    if len(scores) == 0:
        raise ValueError("no validation predictions to choose a threshold on")
    t = float(np.quantile(scores, rate, method="lower"))
    return {"score": "max_softmax", "threshold": t, "false_alarm_rate": float(rate),
            "flagged_val": float(np.mean(scores < t)), "n_val": int(len(scores)),
            "min_side": MIN_SIDE, "max_aspect": MAX_ASPECT}


def image_warnings(width: int, height: int, min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT) -> list[str]:
    """Reasons why an image of ``width``×``height`` px is unlike the training crops (empty list if none)."""
    out = []
    if min(width, height) < min_side:
        out.append(f"tiny image ({width}×{height} px; the training cells are about 360 px, "
                   f"below {min_side} px a cell's detail is lost)")
    if max(width, height) > max_aspect * max(1, min(width, height)):
        out.append(f"extreme aspect ratio ({width}×{height} px; a single-cell crop is roughly square)")
    return out


def confidence_warnings(probs, ood: Mapping[str, Any] | None) -> list[list[str]]:
    """Per row of ``probs``: a warning when its MSP falls below the bundle's threshold (none without one)."""
    scores = max_softmax(probs)
    if not ood or ood.get("threshold") is None:
        return [[] for _ in scores]
    t = float(ood["threshold"])
    rate = float(ood.get("false_alarm_rate", FALSE_ALARM_RATE))
    return [[f"unlike the training cells (confidence {s:.2f} below {t:.2f}, a level that "
             f"{rate:.0%} of ordinary validation cells fall under)"] if s < t else [] for s in scores]


def flag_rate(probs, ood: Mapping[str, Any] | None) -> float:
    """Share of the rows of ``probs`` whose MSP falls below the bundle's threshold (NaN without one or
    without rows): how often the confidence warning of the command line and the app would fire."""
    scores = max_softmax(probs)
    if not ood or ood.get("threshold") is None or len(scores) == 0:
        return float("nan")
    return float(np.mean(scores < float(ood["threshold"])))
