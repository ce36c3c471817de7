"""Fair training budgets for comparing two recipes at several data sizes (chapter 7).

Both recipes see the same nested subsets of the training split (:func:`nested_subset`) and take the same number
of optimiser steps at each size (:func:`steps_for`).
"""
from __future__ import annotations

import math

import numpy as np


def nested_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` images of each class (or all it has).

    Each class is shuffled once per seed, whatever ``per_class`` is, and
    its first ``per_class`` are taken: for one seed the 10 are inside the
    50, the 50 inside the 250.
    """
    keep = [np.random.default_rng([seed, int(c)])
            .permutation(np.flatnonzero(labels == c))[:per_class]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def steps_for(n_images: int, batch_size: int = 64, passes: int = 40,
              floor: int = 600, cap: int = 1600) -> int:
    """Steps for ``n_images``: ``passes`` over them, within [floor, cap]."""
    steps = math.ceil(passes * n_images / batch_size)
    return int(min(cap, max(floor, steps)))
