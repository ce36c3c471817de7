"""Calibration: ECE, reliability bins and temperature scaling fitted on validation predictions."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.calibrate import apply_temperature, ece, fit_temperature, nll, reliability


def _overconfident(n=2000, seed=0, t_true=2.5):
    """Labels drawn from softmax(z), reported probabilities softmax(z * t_true): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 8))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(8, p=p) for p in p_true])
    zo = z * t_true
    return y, np.exp(zo) / np.exp(zo).sum(1, keepdims=True)


def test_ece_zero_for_perfectly_calibrated_bins():
    y = np.array([0, 0, 0, 0])
    probs = np.array([[1.0, 0.0]] * 4)
    assert ece(y, probs) == 0.0
    probs = np.array([[0.75, 0.25]] * 4)   # confidence 0.75, accuracy 1.0
    assert ece(y, probs) == pytest.approx(0.25)


def test_reliability_table():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45], [0.4, 0.6]])
    t = reliability(y, probs, n_bins=10)
    assert t["n"].sum() == 4 and len(t) == 10
    top = t.iloc[9]
    assert top["n"] == 1 and top["accuracy"] == 1.0
    assert np.isnan(t.iloc[0]["accuracy"])


def test_temperature_recovers_and_improves():
    y, p = _overconfident()
    t = fit_temperature(y[:1000], p[:1000])
    assert 2.0 < t < 3.1
    cal = apply_temperature(p[1000:], t)
    assert np.allclose(cal.sum(1), 1.0)
    assert ece(y[1000:], cal) < ece(y[1000:], p[1000:])
    assert nll(y[1000:], cal) < nll(y[1000:], p[1000:])
    assert (cal.argmax(1) == p[1000:].argmax(1)).all()   # temperature never changes the prediction


def test_temperature_from_logits_equals_from_probs():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (300, 8))
    y = rng.integers(0, 8, 300)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert fit_temperature(y, z, are_logits=True) == pytest.approx(fit_temperature(y, p), rel=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(np.ones((2, 3)) / 3, 0.0)
    with pytest.raises(ValueError, match="labels"):
        ece([5], np.ones((1, 3)) / 3)
