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
