"""An ensemble of saved bundles: members and weights chosen on validation, served as one Keras model.

:func:`greedy_select` is Caruana et al.'s forward selection *with replacement* on the validation
predictions: start empty, repeatedly add the bundle whose addition gives the best validation score,
stop when no addition improves it; a bundle chosen twice gets twice the weight. The test split plays
no part. :func:`ensemble_model` builds one functional Keras model that takes images at the largest
member size (float32 RGB in [0, 255], like every bundle), resizes them for each member (antialiased,
as :func:`helpers.pipeline.to_model_input` resizes files) and averages the members' probabilities with
those weights, so that the command line and the app serve it like any other bundle.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .evaluate import metrics_block


def _score(y_true, probs, metric: str) -> float:
    return float(metrics_block(y_true, probs)[metric])


def average(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted mean of the members' probabilities (weights need not sum to 1)."""
    total = sum(weights.values())
    return sum(np.asarray(probs[n], dtype="float64") * (w / total) for n, w in weights.items())


def greedy_select(y_true, probs: Mapping[str, np.ndarray], metric: str = "macro_f1", max_steps: int = 10,
                  max_members: int | None = None) -> dict:
    """Forward selection with replacement on *validation* predictions; returns the weights, the
    validation score of the ensemble and the score after each step."""
    names = list(probs)
    if not names:
        raise ValueError("no candidate models for the ensemble")
    counts: dict[str, int] = {}
    best, steps = -np.inf, []
    for _ in range(max_steps):
        trial = {}
        for n in names:
            if max_members and n not in counts and len(counts) >= max_members:
                continue
            c = dict(counts)
            c[n] = c.get(n, 0) + 1
            trial[n] = _score(y_true, average(probs, c), metric)
        if not trial:
            break
        n_best = max(trial, key=lambda n: (trial[n], -names.index(n)))
        if trial[n_best] <= best:
            break
        best = trial[n_best]
        counts[n_best] = counts.get(n_best, 0) + 1
        steps.append({"added": n_best, f"val {metric}": best})
    total = sum(counts.values())
    return {"weights": {n: c / total for n, c in counts.items()}, "metric": metric, "val_score": best,
            "steps": steps}


def ensemble_model(models: Mapping[str, object], sizes: Mapping[str, int], weights: Mapping[str, float],
                   name: str = "ensemble"):
    """One Keras model averaging ``models`` (name → loaded bundle model) with ``weights``.

    Input: square images at the largest member size; each member gets them resized to its own size.
    Only stock Keras layers are added (Resizing, Rescaling, Add), so the saved file loads anywhere the
    members load.
    """
    import keras

    members = [n for n in weights if weights[n] > 0]
    size = max(int(sizes[n]) for n in members)
    inp = keras.Input((size, size, 3), dtype="float32", name="image")
    total = float(sum(weights[n] for n in members))
    outs = []
    for i, n in enumerate(members):
        s = int(sizes[n])
        x = inp if s == size else keras.layers.Resizing(s, s, antialias=True, name=f"resize_{i}_{s}")(inp)
        p = models[n](x)
        outs.append(keras.layers.Rescaling(float(weights[n]) / total, name=f"weight_{i}")(p))
    out = outs[0] if len(outs) == 1 else keras.layers.Add(name="weighted_mean")(outs)
    return keras.Model(inp, out, name=name)


def predict(model, images, batch_size: int = 32) -> np.ndarray:
    """The model's probabilities, one call per batch (:func:`helpers.predictions.predict_array`)."""
    from .predictions import predict_array

    return predict_array(model, images, batch_size)
