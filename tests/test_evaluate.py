"""Chapter-7 evaluation helpers: bootstrap intervals, ROC, McNemar, errors by sub-type."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from helpers import CLASSES
from helpers.evaluate import bootstrap_ci, errors_by_subtype, mcnemar, metrics_block, roc_per_class


def _noisy(n=400, acc=0.8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, 8, n))
    return y, pred


def test_bootstrap_ci_brackets_point_estimate_and_is_seeded():
    y, pred = _noisy()
    ci = bootstrap_ci(y, pred, n_boot=300, seed=1)
    m = metrics_block(y, pred)
    for k in ("accuracy", "macro_f1", "weighted_f1"):
        assert ci[k]["value"] == pytest.approx(m[k])
        assert ci[k]["low"] < ci[k]["value"] < ci[k]["high"]
        assert ci[k]["high"] - ci[k]["low"] < 0.2
    assert bootstrap_ci(y, pred, n_boot=300, seed=1) == ci
    assert bootstrap_ci(y, pred, n_boot=300, seed=2) != ci


def test_bootstrap_vectorised_f1_matches_sklearn_on_a_resample():
    # with one resample that is the identity, the vectorised F1 equals sklearn's
    y, pred = _noisy(60)
    ci = bootstrap_ci(y, pred, n_boot=2000, seed=0)
    ref = f1_score(y, pred, labels=range(8), average="macro", zero_division=0)
    assert ci["macro_f1"]["low"] <= ref <= ci["macro_f1"]["high"]


def test_vectorised_resample_scores_equal_sklearn_exactly():
    """Every resample's accuracy / macro-F1 / weighted-F1 equals scikit-learn's on the same resample."""
    from sklearn.metrics import accuracy_score

    from helpers.evaluate import resample_scores

    y, pred = _noisy(60)
    idx = np.random.default_rng(5).integers(0, len(y), size=(25, len(y)))
    got = resample_scores(np.asarray(y), np.asarray(pred), idx, 8)
    for b in range(len(idx)):
        yt, yp = np.asarray(y)[idx[b]], np.asarray(pred)[idx[b]]
        assert got["accuracy"][b] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
        assert got["macro_f1"][b] == pytest.approx(
            f1_score(yt, yp, labels=range(8), average="macro", zero_division=0), abs=1e-12)
        assert got["weighted_f1"][b] == pytest.approx(
            f1_score(yt, yp, labels=range(8), average="weighted", zero_division=0), abs=1e-12)


def test_bootstrap_perfect_predictions_and_probabilities():
    y = np.repeat(np.arange(8), 5)
    probs = np.eye(8)[y]
    ci = bootstrap_ci(y, probs, n_boot=50)
    assert ci["accuracy"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="equally many"):
        bootstrap_ci([0, 1], [0])


def test_roc_per_class():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(8)[y] * 0.9 + 0.1 / 8
    roc = roc_per_class(y, probs)
    assert roc["basophil"]["auc"] == 1.0 and np.isnan(roc["platelet"]["auc"])
    assert roc["eosinophil"]["fpr"][0] == 0.0
    with pytest.raises(ValueError, match="do not match"):
        roc_per_class(y, probs[:, :3])


def test_mcnemar_counts_and_pvalues():
    y = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:20] = 1          # B wrong on 20 items where A is right
    a[90:93] = 1        # A wrong on 3 items where B is right
    r = mcnemar(y, a, b)
    assert (r["b"], r["c"]) == (20, 3)
    assert r["p_exact"] < 0.001 and r["chi2"] == pytest.approx((17 - 1) ** 2 / 23)
    same = mcnemar(y, a, a)
    assert same["p_exact"] == 1.0 and same["b"] == same["c"] == 0
    sym = mcnemar(y, a, np.where(np.arange(100) < 3, 1, 0))  # A wrong on 90-92, B wrong on 0-2
    assert sym["p_exact"] == pytest.approx(1.0)


def test_errors_by_subtype():
    paths = ["neutrophil/SNE_1.jpg", "neutrophil/SNE_2.jpg", "neutrophil/BNE_1.jpg", "ig/MY_1.jpg",
             "ig/PMY_2.jpg", "basophil/BA_1.jpg"]
    ci = {c: i for i, c in enumerate(CLASSES)}
    y = [ci["neutrophil"]] * 3 + [ci["ig"]] * 2 + [ci["basophil"]]
    p = [ci["neutrophil"], ci["neutrophil"], ci["ig"], ci["monocyte"], ci["ig"], ci["lymphocyte"]]
    t = errors_by_subtype(paths, y, p).set_index("subtype")
    assert set(t.index) == {"SNE", "BNE", "MY", "PMY"}
    assert t.loc["BNE", "error_rate"] == 1.0 and t.loc["BNE", "most_confused_with"] == "ig"
    assert t.loc["SNE", "errors"] == 0 and t.loc["MY", "most_confused_with"] == "monocyte"
    assert len(errors_by_subtype(paths, y, p, only=None)) == 5


# ------------------------------------------------------------------------------------------------
# metrics_block on inputs with known answers (issue 2)
# ------------------------------------------------------------------------------------------------
def test_metrics_block_perfect_predictions():
    y = [0, 1, 2, 3, 4, 5, 6, 7, 0]
    m = metrics_block(y, y)
    assert m["n"] == 9 and m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["weighted_f1"] == 1.0
    assert m["per_class"]["basophil"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert np.array_equal(m["confusion"], np.diag([2, 1, 1, 1, 1, 1, 1, 1]))


def test_metrics_block_known_two_class_mistakes():
    # true: 4 basophils, 4 eosinophils; one basophil called eosinophil
    y_true = [0, 0, 0, 0, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 1]
    m = metrics_block(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(7 / 8)
    ba, eo = m["per_class"]["basophil"], m["per_class"]["eosinophil"]
    assert ba["precision"] == 1.0 and ba["recall"] == pytest.approx(0.75) and ba["support"] == 4
    assert eo["precision"] == pytest.approx(0.8) and eo["recall"] == 1.0
    f_ba, f_eo = 2 * 0.75 / 1.75, 2 * 0.8 / 1.8
    # macro F1 averages over all 8 classes; absent classes score 0 (zero_division=0)
    assert m["macro_f1"] == pytest.approx((f_ba + f_eo) / 8)
    assert m["weighted_f1"] == pytest.approx((f_ba + f_eo) / 2)
    assert m["confusion"][0][1] == 1 and m["confusion"][0][0] == 3 and m["confusion"][1][1] == 4
    assert len(m["confusion"]) == len(CLASSES) and all(len(r) == len(CLASSES) for r in m["confusion"])


def test_metrics_block_argmaxes_probabilities():
    y_true = [0, 1, 2]
    proba = np.eye(8)[[0, 1, 3]] * 0.9 + 0.0125
    m = metrics_block(y_true, proba)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["ig"]["support"] == 0 and m["per_class"]["ig"]["precision"] == 0.0


def test_metrics_block_custom_classes_and_json_types():
    m = metrics_block(np.array([0, 1]), np.array([1, 1]), classes=["a", "b"])
    assert set(m["per_class"]) == {"a", "b"}
    assert isinstance(m["accuracy"], float) and isinstance(m["n"], int)
    assert isinstance(m["per_class"]["a"]["support"], int)


def test_mcnemar_table_one_row_per_pair():
    from helpers.evaluate import mcnemar_table

    y = np.arange(20) % 4
    a = y.copy()
    b = y.copy()
    b[:6] = (b[:6] + 1) % 4
    t = mcnemar_table(y, {"a": a, "b": b, "c": y}, [("a", "b"), ("a", "c")])
    assert list(t["b (A right, B wrong)"]) == [6, 0]
    assert t.loc[0, "p exact"] < 0.05 and t.loc[1, "p exact"] == 1.0


def test_mcnemar_table_sets_each_difference_against_the_retrain_tolerance():
    from helpers.evaluate import mcnemar_table
    from helpers.results import retrain_tolerance

    y = np.arange(100) % 4
    a = y.copy()
    b = y.copy()
    b[:6] = (b[:6] + 1) % 4  # accuracy 0.94 against a's 1.00: a gap of 0.06
    probs = {"a": a, "b": b, "c": a, "d": b}
    tight = {"spread": {"values": [0.995, 1.0, 1.005]}}  # sd 0.005: two runs within ±0.030, 95 %
    loose = {"spread": {"values": [0.90, 0.95, 1.00]}}  # sd 0.05
    records = {"a": tight, "b": tight, "c": loose, "d": {"model": "d"}}
    pairs = [("a", "b"), ("c", "d"), ("a", "d"), ("c", "b")]
    t = mcnemar_table(y, probs, pairs, records=records)
    assert list(t["beyond seed noise"]) == ["yes", "not measured", "not measured", "no"]
    assert t.loc[3, "seed tolerance (95 %)"] == pytest.approx(retrain_tolerance(loose, tight))
    assert np.isnan(t.loc[1, "seed tolerance (95 %)"])
    assert "beyond seed noise" not in mcnemar_table(y, probs, pairs).columns
    # one network scored with and without test-time augmentation: one training run, no seed tolerance
    from helpers.evaluate import ONE_RUN

    records_tta = {"a": tight, "b": {**tight, "tta": {"of": "a", "views": 2}}}
    t = mcnemar_table(y, probs, [("b", "a"), ("a", "b")], records=records_tta)
    assert list(t["beyond seed noise"]) == [ONE_RUN, ONE_RUN] and t["seed tolerance (95 %)"].isna().all()


def test_stated_spread_says_where_it_was_measured():
    from helpers.results import stated_spread

    rec = {"spread": {"budget": "capped set", "val": {"accuracy": 0.011}}}
    assert stated_spread(rec, "val") == (0.011, "val accuracy, capped set")
    assert stated_spread(rec, "test") == (0.011, "val accuracy, capped set")  # the val spread stands in
    assert stated_spread(rec, "test", "macro_f1") == (None, None)
    assert stated_spread({"model": "x"}) == (None, None) and stated_spread(None) == (None, None)


def test_retrain_tolerance_is_students_t_times_the_spread_of_a_difference():
    from scipy.stats import t

    from helpers.results import retrain_tolerance, seed_sd

    a = {"spread": {"values": [0.90, 0.92, 0.94]}}  # sd 0.02, 3 seeds
    b = {"spread": {"values": [0.95, 0.96, 0.97, 0.98, 0.99]}}  # sd 0.0158, 5 seeds
    assert seed_sd(a) == (pytest.approx(0.02), 3)
    # a second run of a: both runs have a's variance; t with 2 degrees of freedom (4.30)
    assert retrain_tolerance(a) == pytest.approx(4.3027 * (2 * 0.02**2) ** 0.5, rel=1e-4)
    # one run each of a and b: the variances add, the smaller number of seeds sets the degrees of freedom
    sb = seed_sd(b)[0]
    assert retrain_tolerance(a, b) == pytest.approx(t.ppf(0.975, 2) * (0.02**2 + sb**2) ** 0.5)
    assert retrain_tolerance(b, level=0.5) < retrain_tolerance(b) < retrain_tolerance(a)
    # fewer than two seeds, or no spread at all: nothing can be said
    assert retrain_tolerance({"spread": {"values": [0.9]}}) is None
    assert retrain_tolerance(a, {"model": "x"}) is None and seed_sd(None) == (None, 0)


def test_retrain_table_one_row_per_model_nan_where_no_spread():
    from helpers.results import retrain_table, retrain_tolerance

    a = {"test": {"accuracy": 0.97}, "spread": {"values": [0.90, 0.92, 0.94], "metric": "val accuracy",
                                                 "budget": "capped set (head, 4 epochs); of the single-view model"}}
    t = retrain_table({"a": a, "b": {"test": {"accuracy": 0.98}}}, ["a", "b", "c"])
    assert list(t.index) == ["a", "b", "c"]
    assert t.loc["a", "seeds"] == 3 and t.loc["a", "spread measured on"] == "val accuracy, capped set"
    assert t.loc["a", "retrain tolerance (95%)"] == pytest.approx(retrain_tolerance(a))
    assert t.loc["b", "accuracy"] == 0.98 and t.loc["b", "spread measured on"] == "not measured"
    assert np.isnan(t.loc["b", "retrain tolerance (95%)"]) and t.loc["c", "seeds"] == 0


def test_paired_difference_gives_direction_and_size():
    from helpers.evaluate import paired_difference

    d = paired_difference(27, 115, 3067)  # A right where B is wrong on 27 cells, the reverse on 115
    assert d["diff"] == pytest.approx(-88 / 3067)
    half = 1.959964 * np.sqrt(142 - 88**2 / 3067) / 3067
    assert (d["diff_low"], d["diff_high"]) == pytest.approx((-88 / 3067 - half, -88 / 3067 + half))
    assert d["diff_high"] < 0  # B is better, and the interval says by how much
    assert paired_difference(0, 0, 100) == {"diff": 0.0, "diff_low": 0.0, "diff_high": 0.0}
    # the interval covers the true difference about 95 % of the time (simulated paired correctness)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        u = rng.random(500)
        b, c = int((u < 0.06).sum()), int(((u >= 0.06) & (u < 0.10)).sum())
        r = paired_difference(b, c, 500)
        hits += r["diff_low"] <= 0.02 <= r["diff_high"]
    assert 0.92 <= hits / 400 <= 0.98


def test_coverage_curve_hands_the_least_confident_cells_to_a_person():
    from helpers.evaluate import coverage_curve

    y = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.48, 0.52], [0.45, 0.55], [0.2, 0.8], [0.3, 0.7]])  # cell 1: wrong, unsure
    c = coverage_curve(y, probs, shares=[0.0, 0.2, 0.4])
    assert c["accuracy_kept"].tolist() == pytest.approx([0.8, 1.0, 1.0])
    assert c["kept"].tolist() == [5, 4, 3] and c["threshold"].iloc[1] == pytest.approx(0.55)
    rng = np.random.default_rng(0)
    y2 = rng.integers(0, 8, 2000)
    p2 = rng.dirichlet(np.ones(8), 2000)
    assert coverage_curve(y2, p2)["accuracy_kept"].iloc[0] == pytest.approx(np.mean(p2.argmax(1) == y2))


def test_mcnemar_table_refuses_a_spread_from_a_smaller_budget():
    """A spread measured on a capped copy of the split is no tolerance for the full run: the table says so."""
    from helpers.evaluate import mcnemar_table

    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    probs = {"a": np.eye(2)[y], "b": np.eye(2)[[0, 1, 0, 1, 0, 1, 1, 0]]}

    def rec(budget):
        return {"spread": {"values": [0.90, 0.91, 0.92], "budget": budget}}

    full = mcnemar_table(y, probs, [("a", "b")], records={"a": rec("full data"), "b": rec("full data")})
    capped = mcnemar_table(y, probs, [("a", "b")], records={"a": rec("full data"),
                                                            "b": rec("capped set, not the full data")})
    none = mcnemar_table(y, probs, [("a", "b")], records={"a": {}, "b": rec("full data")})
    assert full["beyond seed noise"][0] in ("yes", "no") and full["seed tolerance (95 %)"][0] > 0
    assert capped["beyond seed noise"][0] == "no spread at this budget"
    assert np.isnan(capped["seed tolerance (95 %)"][0])
    assert none["beyond seed noise"][0] == "not measured"


def test_retrain_table_at_the_models_own_budget_says_so_instead_of_a_capped_stand_in():
    from helpers.results import NO_SPREAD, retrain_table, retrain_tolerance

    capped = {"test": {"accuracy": 0.95}, "spread": {"values": [0.80, 0.90, 0.95], "metric": "val accuracy",
                                                     "budget": "capped set: 800 training images, not the full data"}}
    full = {"test": {"accuracy": 0.98}, "spread": {"values": [0.975, 0.978, 0.980], "metric": "val accuracy",
                                                   "budget": "full data, the chapter's recipe"}}
    recs = {"capped": capped, "full": full}
    t = retrain_table(recs, ["capped", "full"], own_budget=True)
    assert t.loc["capped", "retrain tolerance (95%)"] == NO_SPREAD
    assert t.loc["full", "retrain tolerance (95%)"] == pytest.approx(retrain_tolerance(full))
    loose = retrain_table(recs, ["capped"])  # the default keeps the stand-in, as the reproduction tool wants
    assert loose.loc["capped", "retrain tolerance (95%)"] == pytest.approx(retrain_tolerance(capped))
