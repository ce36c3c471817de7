"""helpers.transfer: preprocessing, cutting the base, cached features, two-phase training, saving."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CLASSES
from helpers.transfer import (TransferLearner, make_head, preprocessing_layer, set_top_trainable, split_model,
                              stratified_subset)
from helpers.weights import resolve_weights

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
    set_top_trainable(top, True)
    assert all(not l.trainable for l in top.layers if isinstance(l, keras.layers.BatchNormalization))
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
    assert head.output.shape[-1] == len(CLASSES) and len(head.layers) == 3


@pytest.fixture(scope="module")
def small_data():
    from helpers.data import load_split

    return load_split(max_per_class=3, progress=False)


@pytest.fixture(scope="module")
def random_provenance():
    return resolve_weights("mobilenetv2", "random", allow_random=True)


def test_fine_tuning_needs_a_trained_head(small_data, random_provenance):
    tl = TransferLearner("mobilenetv2", SIZE, random_provenance, "block_15_add")
    with pytest.raises(RuntimeError, match="extract"):
        tl.train_head(epochs=1)
    tl.extract(small_data, cache=False)
    with pytest.raises(RuntimeError, match="train the head first"):
        tl.fine_tune(epochs=1)


def test_two_phases_record_and_saved_model(small_data, random_provenance, tmp_path):
    from helpers.export import load_bundle, read_sidecar
    from helpers.results import load_records, write_record

    tl = TransferLearner("mobilenetv2", SIZE, random_provenance, "block_15_add", batch_size=8)
    table = tl.extract(small_data)
    n_train = len(small_data.paths("train"))
    assert tl.features["train"][0].shape == (n_train, 1, 1, 160)  # 32 px → 1×1 at block 15
    assert tl.features["train"][0].dtype == np.float16
    assert tl.pooled["val"].shape == (len(small_data.paths("val")), 1280)
    assert list(table["how"]) == ["computed", "computed"]
    again = TransferLearner("mobilenetv2", SIZE, random_provenance, "block_15_add").extract(small_data)
    assert all(h.startswith("loaded from cache") for h in again["how"])
    np.testing.assert_array_equal(again["seconds to compute"], table["seconds to compute"])

    tuning = tl.tune_head(max_trials=2, epochs=1, directory=tmp_path / "tuner")
    assert len(tuning) == 2 and {"lr", "units", "dropout", "val_accuracy"} <= set(tuning.columns)
    kernel_before = tl.top.get_layer("Conv_1").get_weights()[0].copy()
    tl.train_head(epochs=1)
    np.testing.assert_array_equal(tl.top.get_layer("Conv_1").get_weights()[0], kernel_before)  # frozen in phase 1
    tl.fine_tune(epochs=1, lr=1e-2)
    trained = set(tl.finetuned_weights)
    assert {"Conv_1/kernel", "block_16_project/kernel", "probs/kernel"} <= trained  # the top is trained in phase 2
    assert not any("_bn/" in p or "BN/" in p for p in trained)  # … but never its batch-norm layers
    assert len(tl.phase_table()) == 3

    model = tl.assemble()
    test_metrics, y, p = tl.evaluate_split(small_data, "test")
    assert p.shape == (len(y), len(CLASSES)) and 0 <= test_metrics["accuracy"] <= 1
    rec = tl.record("transfer_test", small_data, test_metrics, test_metrics, mode="smoke")
    write_record(rec)
    saved = {r["model"]: r for r in load_records()}["transfer_test"]
    assert saved["weights_source"]["kind"] == "none (trained from scratch)"
    assert {"extract_train", "phase1_head", "phase2_finetune", "evaluate_test"} <= set(saved["phase_seconds"])
    assert saved["tuner"] and saved["pretrained"] is False

    d = tl.save("transfer_test", small_data, {"test": test_metrics}, directory=tmp_path / "models" / "t")
    side = read_sidecar(d)
    assert side["classes"] == list(CLASSES) and side["image_size"] == SIZE
    assert side["weights_source"]["kind"] == "none (trained from scratch)" and "127.5" in side["preprocessing"]
    assert side["data"]["data_fingerprint"] == small_data.data_fingerprint
    assert not list(d.parent.glob(".t.*"))  # no temporary folder left behind
    reloaded, _ = load_bundle(d)
    x = np.random.default_rng(2).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), np.asarray(model(x, training=False)),
                               atol=1e-5)


def test_resolution_probe_reports_accuracy_per_size(small_data, random_provenance):
    from helpers.transfer import resolution_probe

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
    tl = TransferLearner("mobilenetv2", SIZE, random_provenance, "block_15_add", batch_size=8)
    with pytest.raises(RuntimeError, match="train the head first"):
        tl.fine_tune_end_to_end(small_data, epochs=1)
    tl.extract(small_data, cache=False)
    tl.train_head(epochs=1)
    bn = [w.numpy().copy() for w in tl.base.get_layer("bn_Conv1").weights]
    res = tl.fine_tune_end_to_end(small_data, epochs=1, lr=1e-2, patience=None)
    assert res["epochs_run"] == 1
    for before, w in zip(bn, tl.base.get_layer("bn_Conv1").weights):               # batch-norm did not
        np.testing.assert_array_equal(w.numpy(), before)
    assert not tl.base.trainable                                                    # frozen again for inference
    assert "phase3_end_to_end" in tl.times and any(k.startswith("phase 3") for k in tl.phase_val)
    p, y = tl.val_probs(small_data)
    assert p.shape == (len(small_data.paths("val")), len(CLASSES)) and len(y) == len(p)
    with pytest.raises(ValueError, match="val images"):
        tl.val_probs()
    model = tl.assemble()
    names = [l.name for l in model.layers]
    assert not any("augmentation" in n for n in names)                             # nothing random is saved
    rec = tl.record("transfer_test", small_data, {}, None, mode="smoke")
    assert rec["end_to_end"]["augmentation"] and rec["end_to_end"]["epochs_run"] == 1
    assert rec["train_seconds"] >= tl.times["phase3_end_to_end"]


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
    tl = TransferLearner("mobilenetv2", SIZE, prov, "block_15_add", batch_size=8)
    tl.extract(small_data, cache=False)
    tl.train_head(epochs=1)
    conv1 = tl.base.get_layer("Conv1").get_weights()[0].copy()
    top_only = tl.base.get_layer("block_1_expand").get_weights()[0].copy()
    tl.fine_tune_end_to_end(small_data, epochs=1, lr=1e-4, patience=None)
    assert not np.allclose(tl.base.get_layer("Conv1").get_weights()[0], conv1)      # the lowest layer learned
    tl2 = TransferLearner("mobilenetv2", SIZE, prov, "block_15_add", batch_size=8)
    tl2.extract(small_data, cache=False)
    tl2.train_head(epochs=1)
    tl2.fine_tune_end_to_end(small_data, epochs=1, lr=1e-4, patience=None, first_layer="block_16_expand")
    np.testing.assert_array_equal(tl2.base.get_layer("block_1_expand").get_weights()[0], top_only)  # below: frozen
