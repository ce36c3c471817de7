"""helpers.transfer: preprocessing, cutting the base, cached features, two-phase training, saving."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CLASSES
from helpers.transfer import make_head, preprocessing_layer, split_model, unfreeze_from
from helpers.transfer_run import (
    deployable,
    evaluate,
    extract,
    phase1,
    phase2,
    phase3,
    phase_table,
    save,
    start_run,
    stratified_subset,
    train_seconds,
    tune,
    val_predictions,
)
from helpers.weights import resolve_weights

pytestmark = pytest.mark.slow  # trains heads and fine-tunes MobileNetV2

SIZE = 32  # the smallest input the three bases accept: keeps the tests fast


@pytest.mark.parametrize("family,module", [("mobilenetv2", "mobilenet_v2"), ("resnet50", "resnet50"),
                                           ("vgg19", "vgg19")])
def test_preprocessing_layer_equals_keras_preprocess_input(family, module):
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    got = np.asarray(preprocessing_layer(family)(x))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_lower_and_top_compose_to_the_base():
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    lower, top = split_model(base, "block_15_add")
    x = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(top(lower(x))), np.asarray(base(x)), atol=1e-5)
    assert top.layers[1].name.startswith("block_16")  # shared layers, not copies
    assert top.get_layer("Conv_1") is base.get_layer("Conv_1")
    with pytest.raises(ValueError, match="no layer 'block_99_add'"):
        split_model(base, "block_99_add")


def test_batch_norm_stays_frozen_when_the_top_is_unfrozen():
    import keras

    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    _, top = split_model(base, "conv5_block2_out")
    unfreeze_from(top)
    assert all(not layer.trainable for layer in top.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert top.get_layer("conv5_block3_2_conv").trainable


def test_stratified_subset_caps_every_class():
    y = np.repeat(np.arange(3), [5, 2, 9])
    keep = stratified_subset(y, 3, seed=0)
    assert np.bincount(y[keep]).tolist() == [3, 2, 3]
    assert np.all(np.diff(keep) > 0)
    with pytest.raises(ValueError, match="positive integer"):
        stratified_subset(y, 0)


def test_head_shapes():
    head = make_head(16, units=0, dropout=0.1)
    assert head.output.shape[-1] == len(CLASSES) and len(head.layers) == 4  # input, dropout, logits, softmax


@pytest.fixture(scope="module")
def small_data():
    from helpers.data import load_split

    return load_split(max_per_class=3, progress=False)


@pytest.fixture(scope="module")
def random_provenance():
    return resolve_weights("mobilenetv2", "random", allow_random=True)


def test_fine_tuning_needs_a_trained_head(small_data, random_provenance):
    tl = start_run("mobilenetv2", SIZE, random_provenance, "block_15_add")
    with pytest.raises(RuntimeError, match="extract"):
        phase1(tl, epochs=1)
    extract(tl, small_data, cache=False)
    with pytest.raises(RuntimeError, match="train the head first"):
        phase2(tl, epochs=1)


def test_two_phases_record_and_saved_model(small_data, random_provenance, tmp_path):
    from helpers.export import load_bundle, read_sidecar
    from helpers.results import load_records

    tl = start_run("mobilenetv2", SIZE, random_provenance, "block_15_add", batch_size=8)
    table = extract(tl, small_data)
    n_train = len(small_data.paths("train"))
    assert tl.features["train"][0].shape == (n_train, 1, 1, 160)  # 32 px → 1×1 at block 15
    assert tl.features["train"][0].dtype == np.float16
    assert tl.pooled["val"].shape == (len(small_data.paths("val")), 1280)
    assert list(table["how"]) == ["computed", "computed"]
    again = extract(start_run("mobilenetv2", SIZE, random_provenance, "block_15_add"), small_data)
    assert all(h.startswith("read from the cache") for h in again["how"])
    np.testing.assert_array_equal(again["seconds to compute"], table["seconds to compute"])

    tuning = tune(tl, max_trials=2, epochs=1, directory=tmp_path / "tuner")
    assert len(tuning) == 2 and {"lr", "units", "dropout", "val_accuracy"} <= set(tuning.columns)
    kernel_before = tl.top.get_layer("Conv_1").get_weights()[0].copy()
    phase1(tl, epochs=1)
    np.testing.assert_array_equal(tl.top.get_layer("Conv_1").get_weights()[0], kernel_before)  # frozen in phase 1
    phase2(tl, epochs=1, lr=1e-2)
    trained = set(tl.finetuned_weights)
    assert {"Conv_1/kernel", "block_16_project/kernel", "logits/kernel"} <= trained  # the top is trained in phase 2
    assert not any("_bn/" in p or "BN/" in p for p in trained)  # … but never its batch-norm layers
    assert len(phase_table(tl)) == 3

    model = deployable(tl)
    predictions = evaluate(tl, small_data)
    test_metrics, p, y = predictions["test"].metrics(), predictions["test"].probs, predictions["test"].y_true
    assert p.shape == (len(y), len(CLASSES)) and 0 <= test_metrics["accuracy"] <= 1
    run = save(tl, "transfer_test", small_data, predictions, mode="smoke", models_directory=tmp_path / "models")
    saved = {r["model"]: r for r in load_records()}["transfer_test"]
    assert saved["weights_source"]["kind"] == "none (trained from scratch)"
    assert {"extract_train", "phase1_head", "phase2_finetune", "evaluate_test"} <= set(saved["phase_seconds"])
    assert saved["tuner"] and saved["pretrained"] is False

    d = run.bundle
    side = read_sidecar(d)
    assert side["classes"] == list(CLASSES) and side["image_size"] == SIZE
    assert side["weights_source"]["kind"] == "none (trained from scratch)" and "127.5" in side["preprocessing"]
    assert side["data"]["data_fingerprint"] == small_data.data_fingerprint
    assert not list(d.parent.glob(".transfer_test.*"))  # no temporary folder left behind
    reloaded, _ = load_bundle(d)
    x = np.random.default_rng(2).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), np.asarray(model(x, training=False)),
                               atol=1e-5)


def test_resolution_probe_reports_accuracy_per_size(small_data, random_provenance):
    from helpers.transfer_run import resolution_probe

    table = resolution_probe("mobilenetv2", random_provenance, small_data, sizes=(32,), per_class=2)
    assert list(table.index) == [32]
    assert 0.0 <= table.loc[32, "probe val accuracy"] <= 1.0


# ---------------------------------------------------------------------------------------------
# Phase 3: end-to-end fine-tuning with augmentation
# ---------------------------------------------------------------------------------------------
def _bn_base():
    import keras

    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x), name="base")


def _fit_through(base, x, y):
    import keras

    inp = keras.Input((4, 4, 3))
    out = keras.layers.Dense(2, activation="softmax")(base(inp, training=False))  # the keras-io recipe
    m = keras.Model(inp, out)
    m.compile(keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)


def test_keras3_training_flag_reaches_a_nested_base_despite_training_false():
    """Why unfreeze_from keeps BN frozen: with the base trainable, ``base(x, training=False)`` does
    not keep its BN layers in inference mode during ``fit`` (Keras 3; keras-team/keras#20285). If this
    test starts failing, Keras changed and chapter 6's explanation must be revisited."""
    x = np.random.default_rng(0).normal(50, 1, (16, 4, 4, 3)).astype("float32")
    y = np.zeros(16, "int32")
    base = _bn_base()
    base.trainable = True
    _fit_through(base, x, y)
    assert np.abs(base.get_layer("bn").moving_mean.numpy()).max() > 0  # BN updated its statistics: training mode

    base = _bn_base()
    from helpers.transfer import unfreeze_from

    unfreeze_from(base)
    _fit_through(base, x, y)
    np.testing.assert_array_equal(base.get_layer("bn").moving_mean.numpy(), 0)  # inference mode: untouched
    assert base.get_layer("conv").trainable and not base.get_layer("bn").trainable


def test_unfreeze_from_a_layer():
    import keras

    from helpers.transfer import unfreeze_from

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    n = unfreeze_from(base, "block_16_expand")
    assert not base.get_layer("Conv1").trainable and base.get_layer("block_16_expand").trainable
    assert base.get_layer("Conv_1").trainable and not base.get_layer("Conv_1_bn").trainable
    assert n == len(base.trainable_weights) > 0
    with pytest.raises(ValueError, match="no layer 'block_99'"):
        unfreeze_from(base, "block_99")


def test_end_to_end_phase_trains_the_base_and_records_it(small_data, random_provenance, tmp_path, monkeypatch):
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    tl = start_run("mobilenetv2", SIZE, random_provenance, "block_15_add", batch_size=8)
    with pytest.raises(RuntimeError, match="train the head first"):
        phase3(tl, small_data, epochs=1)
    extract(tl, small_data, cache=False)
    phase1(tl, epochs=1)
    bn = [w.numpy().copy() for w in tl.base.get_layer("bn_Conv1").weights]
    res = phase3(tl, small_data, epochs=1, lr=1e-2, patience=None)
    assert res["epochs_run"] == 1
    for before, w in zip(bn, tl.base.get_layer("bn_Conv1").weights):               # batch-norm did not
        np.testing.assert_array_equal(w.numpy(), before)
    assert not tl.base.trainable                                                    # frozen again for inference
    assert "phase3_end_to_end" in tl.times and any(k.startswith("phase 3") for k in tl.phase_val)
    val = val_predictions(tl, small_data)
    p, y = val.probs, val.y_true
    assert p.shape == (len(small_data.paths("val")), len(CLASSES)) and len(y) == len(p)
    with pytest.raises(ValueError, match="val images"):
        val_predictions(tl)
    model = deployable(tl)
    names = [layer.name for layer in model.layers]
    assert not any("augmentation" in n for n in names)                             # nothing random is saved
    rec = save(tl, "transfer_test", small_data, {"val": val}, mode="smoke", save_model=False,
               results_directory=tmp_path / "results").record
    assert rec["end_to_end"]["augmentation"] and rec["end_to_end"]["epochs_run"] == 1
    assert rec["train_seconds"] >= tl.times["phase3_end_to_end"]
    assert rec["train_seconds"] == pytest.approx(train_seconds(tl), abs=0.05)


MNV2_FILE = "mobilenet_v2_1.00_224_notop.weights.h5"


def _real_mnv2():
    import os
    from pathlib import Path

    d = os.environ.get("KERAS_WEIGHTS_DIR")
    return Path(d) / MNV2_FILE if d and (Path(d) / MNV2_FILE).is_file() else None


@pytest.mark.skipif(_real_mnv2() is None, reason=f"$KERAS_WEIGHTS_DIR unset or without {MNV2_FILE}")
def test_end_to_end_phase_trains_the_lowest_pretrained_layer(small_data, tmp_path, monkeypatch):
    """With real ImageNet weights every layer gets a gradient (a random base with inference-mode BN
    saturates its ReLU6 units and passes none down), and BN-folded weights stay intact below BN."""
    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    prov = resolve_weights("mobilenetv2", str(_real_mnv2()))
    tl = start_run("mobilenetv2", SIZE, prov, "block_15_add", batch_size=8)
    extract(tl, small_data, cache=False)
    phase1(tl, epochs=1)
    conv1 = tl.base.get_layer("Conv1").get_weights()[0].copy()
    top_only = tl.base.get_layer("block_1_expand").get_weights()[0].copy()
    phase3(tl, small_data, epochs=1, lr=1e-4, patience=None)
    assert not np.allclose(tl.base.get_layer("Conv1").get_weights()[0], conv1)      # the lowest layer learned
    tl2 = start_run("mobilenetv2", SIZE, prov, "block_15_add", batch_size=8)
    extract(tl2, small_data, cache=False)
    phase1(tl2, epochs=1)
    phase3(tl2, small_data, epochs=1, lr=1e-4, patience=None, first_layer="block_16_expand")
    np.testing.assert_array_equal(tl2.base.get_layer("block_1_expand").get_weights()[0], top_only)  # below: frozen


def test_phase_functions_work_on_plain_arrays_without_a_run(tmp_path):
    """The maths of each phase needs only Keras parts and arrays: no TransferRun."""
    import keras

    from helpers.features import activations
    from helpers.transfer import assemble, fine_tune_top, freeze, train_head

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                          pooling="avg")
    freeze(base)
    lower, top = split_model(base, "block_15_add")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(16, 1, 1, 160)).astype("float16")
    y = np.arange(16) % len(CLASSES)
    pooled = np.asarray(top.predict(X.astype("float32"), verbose=0))
    head = train_head(pooled, y, pooled, y, units=0, epochs=1, batch_size=8, seed=0)
    assert head.seconds > 0 and len(head.history["loss"]) == 1 and "logits/kernel" in head.trained
    phase2 = fine_tune_top(top, head.model, X, y, X, y, epochs=1, batch_size=8)
    assert "Conv_1/kernel" in phase2.trained and "val_accuracy_before" in phase2.history
    assert not top.trainable                                                       # frozen again
    model = assemble(preprocessing_layer("mobilenetv2"), base, head.model, SIZE)
    assert model.output.shape[-1] == len(CLASSES) and not base.trainable

    from helpers.data import load_split

    data = load_split(max_per_class=1, progress=False)
    paths, labels = data.paths("val"), data.labels("val")
    pre = preprocessing_layer("mobilenetv2")
    kw = dict(family="mobilenetv2", image_size=SIZE, split_layer="block_15_add", weights_sha256=None, split="val",
              folder=tmp_path)
    first = activations(pre, lower, paths, labels, **kw)
    again = activations(pre, lower, paths, labels, **kw)
    assert first.how == "computed" and again.how.startswith("read from the cache") and again.seconds == round(
        first.seconds, 1)
    np.testing.assert_array_equal(again.X, first.X)
    assert first.X.dtype == np.float16 and len(list(tmp_path.glob("*.npy"))) == 1
