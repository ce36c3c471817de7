"""fit / evaluate_and_record on the synthetic (or capped real) dataset: records, resume, atomicity."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trains small models

keras = pytest.importorskip("keras")

from helpers.data import load_split  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.pipeline import make_dataset  # noqa: E402
from helpers.results import load_records, validate_record, write_record  # noqa: E402
from helpers.train import HISTORY_KEYS, evaluate_and_record, fit  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def data():
    return load_split(max_per_class=8, progress=False)


@pytest.fixture(scope="module")
def datasets(data):
    tr = make_dataset(data.paths("train"), data.labels("train"), SIZE, 16, shuffle=True)
    va = make_dataset(data.paths("val"), data.labels("val"), SIZE, 16)
    return tr, va


def _small():
    return build_model("improved_cnn", SIZE, widths=(8, 16))


def test_one_epoch_fit_writes_a_valid_record(data, datasets, tmp_path):
    model = _small()
    res = fit(model, *datasets, epochs=1, run_name="t_one", checkpoint_dir=tmp_path / "ck", verbose=0)
    assert res["epochs_run"] == 1 and res["train_seconds"] > 0
    for k in ("loss", "accuracy", "macro_f1", "val_loss", "val_accuracy", "val_macro_f1", "epoch_seconds"):
        assert len(res["history"][k]) == 1, k
    assert set(res["history"]) <= set(HISTORY_KEYS)
    if hasattr(os, "getloadavg"):
        assert len(res["history"]["load_avg"]) == 1 and res["history"]["load_avg"][0] >= 0
    rec = evaluate_and_record(model, "t_one", data, res, image_size=SIZE, mode="smoke", directory=tmp_path / "res",
                              augmentation={"flip": True}, ablation={"batch_norm": True})
    path = Path(rec["_path"])
    saved = json.loads(path.read_text())
    validate_record(saved)
    assert saved["val"]["n"] == len(data.paths("val")) and saved["test"]["n"] == len(data.paths("test"))
    assert saved["params"]["total"] == model.count_params()
    assert saved["weights_source"] == {"kind": "none (trained from scratch)"}
    assert saved["augmentation"] == {"flip": True} and saved["ablation"] == {"batch_norm": True}
    assert len(saved["epoch_seconds"]) == 1 and "val_macro_f1" in saved["history"]
    assert "load_avg" not in saved["history"] and "epoch_seconds" not in saved["history"]
    assert "_predictions" not in saved and "_bundle" not in saved and rec["_bundle"] is None
    assert rec["_predictions"]["test"].paths == tuple(map(str, data.paths("test")))
    assert rec["_predictions"]["val"].metrics() == saved["val"]


def test_without_test_the_test_split_is_untouched(data, datasets, tmp_path):
    model = _small()
    res = fit(model, *datasets, epochs=1, checkpoint_dir=tmp_path / "ck", verbose=0)
    rec = evaluate_and_record(model, "t_val_only", data, res, image_size=SIZE, test=False, directory=tmp_path)
    assert rec["test"] is None and "test" not in rec["_predictions"]


def test_evaluate_and_record_saves_the_bundle_when_asked(data, tmp_path):
    from helpers.export import load_predictions, read_sidecar

    model = _small()
    res = {"history": {"loss": [1.0]}, "epochs_run": 1, "train_seconds": 1.0}
    rec = evaluate_and_record(model, "t_saved", data, res, image_size=SIZE, directory=tmp_path / "res",
                              save_model=True, models_directory=tmp_path / "models")
    assert rec["_bundle"] == tmp_path / "models" / "t_saved"
    side = read_sidecar(rec["_bundle"])
    assert side["metrics"] == {"val": rec["val"], "test": rec["test"]} and side["data"] == rec["data"]
    assert side["weights_source"] == rec["weights_source"]
    saved = load_predictions(rec["_bundle"], "test")
    np.testing.assert_array_equal(saved.probs, rec["_predictions"]["test"].probs)


def test_resume_continues_the_epoch_count(datasets, tmp_path):
    ck = tmp_path / "ck"
    first = fit(_small(), *datasets, epochs=2, checkpoint_dir=ck, verbose=0, patience=None)
    state = json.loads((ck / "state.json").read_text())
    assert state["epoch"] == 2 and (ck / "backup" / "latest.weights.h5").is_file()
    model = _small()
    again = fit(model, *datasets, epochs=3, checkpoint_dir=ck, resume=True, verbose=0, patience=None)
    assert again["resumed_from_epoch"] == 2
    assert again["epochs_run"] == 3
    assert again["history"]["val_accuracy"][:2] == first["history"]["val_accuracy"]
    assert json.loads((ck / "state.json").read_text())["epoch"] == 3
    assert again["train_seconds"] >= first["train_seconds"]
    assert not list(ck.glob(".*tmp*")), "temporary checkpoint files were left behind"


def test_resume_restores_the_weights(datasets, tmp_path):
    ck = tmp_path / "ck"
    trained = _small()
    fit(trained, *datasets, epochs=1, checkpoint_dir=ck, verbose=0, patience=None)
    fresh = _small()
    fit(fresh, *datasets, epochs=1, checkpoint_dir=ck, resume=True, verbose=0)  # nothing left to train
    x = next(iter(datasets[1]))[0]
    np.testing.assert_allclose(np.asarray(fresh(x, training=False)), np.asarray(trained(x, training=False)),
                               rtol=1e-5, atol=1e-6)


def test_without_resume_an_old_checkpoint_is_discarded(datasets, tmp_path):
    ck = tmp_path / "ck"
    fit(_small(), *datasets, epochs=1, checkpoint_dir=ck, verbose=0)
    res = fit(_small(), *datasets, epochs=1, checkpoint_dir=ck, verbose=0)
    assert res["resumed_from_epoch"] == 0 and res["epochs_run"] == 1


def test_resume_into_another_architecture_is_a_clear_error(datasets, tmp_path):
    ck = tmp_path / "ck"
    fit(_small(), *datasets, epochs=1, checkpoint_dir=ck, verbose=0)
    with pytest.raises(ValueError, match="another architecture"):
        fit(build_model("devnithw_cnn", SIZE), *datasets, epochs=2, checkpoint_dir=ck, resume=True, verbose=0)


def test_time_budget_stops_after_the_epoch_that_uses_it(datasets, tmp_path):
    res = fit(_small(), *datasets, epochs=5, time_budget=0.0, checkpoint_dir=tmp_path / "ck", verbose=0)
    assert res["epochs_run"] == 1 and res["stopped"] == "time_budget"


@pytest.mark.parametrize("kw, match", [({"schedule": "warp"}, "schedule"), ({"epochs": 0}, "EPOCHS")])
def test_bad_arguments_are_clear_errors(datasets, kw, match, tmp_path):
    args = {"epochs": 1, **kw}
    with pytest.raises(ValueError, match=match):
        fit(_small(), *datasets, checkpoint_dir=tmp_path, verbose=0, **args)


def test_weight_decay_is_passed_to_adam_and_recorded(datasets, tmp_path):
    model = _small()
    res = fit(model, *datasets, epochs=1, weight_decay=0.01, checkpoint_dir=tmp_path / "ck", verbose=0)
    assert res["weight_decay"] == 0.01 and float(model.optimizer.weight_decay) == pytest.approx(0.01)


def test_schedules_change_the_learning_rate(datasets, tmp_path):
    res = fit(_small(), *datasets, epochs=2, schedule="cosine", checkpoint_dir=tmp_path / "ck", verbose=0,
              patience=None)
    lr = res["history"]["lr"]
    assert lr[0] < 1e-3 and lr[1] < lr[0]


def test_a_record_write_never_damages_earlier_records(tmp_path, monkeypatch):
    def rec(model, acc):
        block = {"accuracy": acc, "macro_f1": acc, "per_class": {}}
        return {"model": model, "image_size": 32, "epochs": 1, "train_seconds": 1.0, "weights_source": "none",
                "data": {}, "seed": 0, "git_commit": None, "val": block, "test": block}

    write_record(rec("a", 0.5), tmp_path)
    write_record(rec("b", 0.6), tmp_path)
    before = (tmp_path / "a.json").read_text()

    import helpers.io as hio

    def crash(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(hio.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_record(rec("a", 0.9), tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "a.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temporary file left
    assert [r["model"] for r in load_records(tmp_path)] == ["a", "b"]
    with pytest.raises(ValueError, match="lacks 'test'"):
        write_record({k: v for k, v in rec("c", 0.1).items() if k != "test"}, tmp_path)
    assert not (tmp_path / "c.json").exists()


def test_per_epoch_plots_draw_one_line_per_run():
    from helpers.plots import epoch_times_plot, per_epoch_plot

    fig = epoch_times_plot({"a": [3.0, 1.0, 1.1], "b": [2.0, 0.5], "empty": []})
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_ylim()[0] == 0
    fig = per_epoch_plot({"x": [0.5, 0.7]}, ylabel="val accuracy", ylim=(0, 1))
    assert fig.axes[0].get_ylabel() == "val accuracy"
    with pytest.raises(ValueError, match="nothing to plot"):
        per_epoch_plot({"a": []})


def test_a_finished_run_is_reused_not_trained_further(datasets, tmp_path):
    ck = tmp_path / "ck"
    first = fit(_small(), *datasets, epochs=4, time_budget=0.0, checkpoint_dir=ck, verbose=0)
    assert json.loads((ck / "state.json").read_text())["stopped"] == "time_budget"
    again = fit(_small(), *datasets, epochs=4, time_budget=0.0, checkpoint_dir=ck, resume=True, verbose=0)
    assert again["epochs_run"] == first["epochs_run"] == 1
    assert again["stopped"] == "time_budget" and again["history"] == first["history"]


def test_best_epoch_is_the_epoch_whose_weights_were_restored(datasets, tmp_path):
    # with a huge min_delta no later epoch counts as an improvement: the first epoch's weights are restored
    res = fit(_small(), *datasets, epochs=3, patience=None, min_delta=2.0, checkpoint_dir=tmp_path / "ck", verbose=0)
    assert res["best_epoch"] == 1
    again = fit(_small(), *datasets, epochs=3, patience=None, min_delta=2.0, checkpoint_dir=tmp_path / "ck",
                resume=True, verbose=1)
    assert again["best_epoch"] == 1 and again["epochs_run"] == 3


def test_comparison_table_shows_total_params_and_skips_timings(tmp_path):
    block = {"accuracy": 0.9, "macro_f1": 0.8, "per_class": {}}
    rec = {"model": "m", "image_size": 32, "epochs": 1, "train_seconds": 60.0, "weights_source": "none",
           "data": {}, "seed": 0, "git_commit": None, "val": block, "test": block,
           "params": {"trainable": 10, "non_trainable": 2, "total": 12}}
    write_record(rec, tmp_path)
    (tmp_path / "notebook_timings.json").write_text('{"03_x.ipynb": {"seconds": 1.0}}')
    from helpers.results import comparison_table

    recs = load_records(tmp_path)
    assert [r["model"] for r in recs] == ["m"]
    assert comparison_table(recs).loc["m", "params"] == 12


def test_what_the_stock_callbacks_cannot_keep():
    """Why train.RunState keeps early stopping's state next to the stock BackupAndRestore (see its docstring)."""
    import inspect

    stock = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", restore_best_weights=True)
    stock.best, stock.wait, stock.best_epoch = 0.9, 3, 4
    stock.on_train_begin()  # a resumed fit: the stock callback forgets where it was
    assert stock.best is None and stock.wait == 0 and stock.best_epoch == 0
    assert "min_delta" not in inspect.signature(keras.callbacks.ModelCheckpoint).parameters
    backup_state = inspect.getsource(keras.callbacks.BackupAndRestore._save_model)
    assert "training_metadata" in backup_state and "best" not in backup_state


def test_a_resume_keeps_the_early_stopping_state(datasets, tmp_path):
    ck = tmp_path / "ck"
    fit(_small(), *datasets, epochs=2, patience=None, min_delta=2.0, checkpoint_dir=ck, verbose=0)
    state = json.loads((ck / "state.json").read_text())["early_stopping"]
    assert state["best_epoch"] == 0 and state["wait"] == 1 and (ck / "best.weights.h5").is_file()
    again = fit(_small(), *datasets, epochs=3, patience=None, min_delta=2.0, checkpoint_dir=ck, resume=True,
                verbose=0)
    assert again["resumed_from_epoch"] == 2 and again["best_epoch"] == 1
    assert json.loads((ck / "state.json").read_text())["early_stopping"]["wait"] == 2


def test_a_cosine_run_trains_to_the_end_of_its_schedule(datasets, tmp_path):
    # no epoch improves by min_delta=2: the default patience would stop a constant-rate run; a cosine one goes on
    res = fit(_small(), *datasets, epochs=3, schedule="cosine", min_delta=2.0, checkpoint_dir=tmp_path / "ck",
              verbose=0)
    assert res["epochs_run"] == 3 and res["stopped"] == "max_epochs" and res["patience"] is None
    assert res["best_epoch"] == 1 and not res["budget_fired"]
    # an explicit patience is honoured with any schedule (the transfer chapters pass one)
    res = fit(_small(), *datasets, epochs=4, schedule="cosine", patience=1, min_delta=2.0,
              checkpoint_dir=tmp_path / "ck2", verbose=0)
    assert res["stopped"] == "early_stopping" and res["patience"] == 1
    # patience running out on the last planned epoch stops nothing: the run went its full length
    res = fit(_small(), *datasets, epochs=2, patience=1, min_delta=2.0, checkpoint_dir=tmp_path / "ck3",
              verbose=0)
    assert res["epochs_run"] == 2 and res["stopped"] == "max_epochs" and res["best_epoch"] == 1


def test_warm_up_rises_then_the_cosine_decays(datasets, tmp_path):
    res = fit(_small(), *datasets, epochs=3, schedule="cosine", warmup_epochs=1, checkpoint_dir=tmp_path / "ck",
              verbose=0)
    lr = res["history"]["lr"]  # the rate after each epoch: the peak after the warm-up, then lower
    assert lr[0] == pytest.approx(1e-3, rel=1e-3) and lr[2] < lr[1] < lr[0]
    assert res["warmup_epochs"] == 1
    with pytest.raises(ValueError, match="warmup_epochs"):
        fit(_small(), *datasets, epochs=2, warmup_epochs=1, checkpoint_dir=tmp_path / "ck2", verbose=0)


def test_seeded_runs_are_bit_identical(data, tmp_path):
    def run(i):  # fresh datasets: a tf.data shuffle's generator advances with every pass over the same object;
        keras.utils.set_random_seed(7)  # and tf.data derives the shuffle's seed from the global seed too
        tr = make_dataset(data.paths("train"), data.labels("train"), SIZE, 16, shuffle=True, seed=7)
        va = make_dataset(data.paths("val"), data.labels("val"), SIZE, 16)
        model = build_model("improved_cnn", SIZE, widths=(8, 16), seed=7)
        res = fit(model, tr, va, epochs=2, schedule="cosine", seed=7, checkpoint_dir=tmp_path / f"ck{i}",
                  verbose=0)
        return res["history"], [w.copy() for w in model.get_weights()]

    (h1, w1), (h2, w2) = run(1), run(2)
    assert h1["loss"] == h2["loss"] and h1["val_accuracy"] == h2["val_accuracy"]
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2, strict=True))


def test_a_fired_time_budget_is_recorded(data, datasets, tmp_path):
    model = _small()
    res = fit(model, *datasets, epochs=3, schedule="cosine", time_budget=0.0, checkpoint_dir=tmp_path / "ck",
              verbose=0)
    assert res["budget_fired"] and res["stopped"] == "time_budget"
    rec = evaluate_and_record(model, "t_budget", data, res, image_size=SIZE, mode="smoke", test=False,
                              directory=tmp_path / "res")
    assert rec["training"]["budget_fired"] is True and rec["training"]["seed"] == 42


def test_spread_block_matches_what_reproduce_reads():
    from helpers.train import spread_block

    b = spread_block([0.90, 0.92, 0.95], [1, 2, 3], metric="test accuracy", budget="full data")
    assert b["seeds"] == [1, 2, 3] and b["min"] == 0.90 and b["max"] == 0.95
    assert b["mean"] == pytest.approx(0.92333, abs=1e-4) and b["std"] == pytest.approx(0.02517, abs=1e-4)
    assert b["test"]["accuracy"] == pytest.approx(0.025)  # tools/reproduce.py: spread[split][metric]
    with pytest.raises(ValueError, match="at least two seeds"):
        spread_block([0.9], [1])


def test_the_pages_stock_fit_and_the_books_fit_train_the_same_model(data, tmp_path):
    """Chapter 3 trains its first CNN with Keras' own ``model.fit`` and :func:`chapter_callbacks`; the book's
    :func:`fit` must make the same calls: same weights, same history, same summary (timings aside)."""
    from helpers.train import chapter_callbacks, compile_classifier, fit_summary

    def datasets():  # tf.data derives the shuffle's seed from the global seed too
        keras.utils.set_random_seed(5)
        tr = make_dataset(data.paths("train"), data.labels("train"), SIZE, 16, shuffle=True, seed=5)
        return tr, make_dataset(data.paths("val"), data.labels("val"), SIZE, 16)

    tr, va = datasets()
    page = build_model("devnithw_cnn", SIZE, seed=5)
    keras.utils.set_random_seed(5)
    compile_classifier(page, learning_rate=1e-3)
    callbacks = chapter_callbacks(va, tmp_path / "page", train_ds=tr)
    history = page.fit(tr, epochs=2, callbacks=callbacks, shuffle=False, verbose=0)
    by_page = fit_summary(history, callbacks, learning_rate=1e-3, seed=5)
    assert not (tmp_path / "page").exists()  # a run that ended deletes its backup

    tr, va = datasets()
    book = build_model("devnithw_cnn", SIZE, seed=5)
    by_book = fit(book, tr, va, epochs=2, seed=5, checkpoint_dir=tmp_path / "book", verbose=0)
    timing = ("train_seconds", "checkpoint_dir")
    assert {k: v for k, v in by_page.items() if k not in timing} == {
        k: v for k, v in by_book.items() if k not in timing} | {"history": by_page["history"]}
    keep = ("epoch_seconds", "load_avg")
    assert {k: v for k, v in by_page["history"].items() if k not in keep} == {
        k: v for k, v in by_book["history"].items() if k not in keep}
    assert all(np.array_equal(a, b) for a, b in zip(page.get_weights(), book.get_weights(), strict=True))
