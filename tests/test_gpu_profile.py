"""The gpu profile on a free Colab: pooled caches only (no split-layer activations in RAM) and mixed precision."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.profiles import build_scope, recipe
from helpers.transfer_run import extract, phase1, phase2, phase3, record_fields, start_run, val_predictions
from helpers.weights import resolve_weights

# ResNet50 at 32 px: the cut (conv5_block2_out) gives 1×1×2048 activations. A random ResNet50's features are of
# the order of 1 (a random MobileNetV2's, 1e-13, vanish in float16 and would make every comparison trivial).
FAMILY, SIZE = "resnet50", 32


@pytest.fixture(scope="module")
def data():
    from helpers.data import load_split

    return load_split(max_per_class=2, progress=False)


@pytest.fixture(scope="module")
def prov():
    return resolve_weights(FAMILY, "random", allow_random=True)


def _start(prov, profile: str, **kw):
    r = recipe(FAMILY, profile, "smoke", image_size=SIZE, batch_size=8)
    return start_run(r.family, r.image_size, prov, r.split_layer, batch_size=r.batch_size, profile=r.profile, **kw)


def test_the_gpu_recipe_keeps_pooled_features_and_asks_for_float16_on_a_gpu(monkeypatch):
    import keras

    import helpers.profiles as t

    monkeypatch.setattr(t, "gpus", lambda: [])
    gpu, cpu = recipe("vgg19", "gpu"), recipe("mobilenetv2", "cpu")
    assert gpu.pooled_only and gpu.precision == "float32"  # on a CPU float16 is slow: float32
    assert not cpu.pooled_only and cpu.precision == "float32" and cpu.ft_epochs > 0
    assert not recipe("vgg19", "cpu").pooled_only  # the cpu profile keeps its activations, phase 2 or not
    assert not recipe("vgg19", "gpu", ft_epochs=2).pooled_only  # asked for phase 2: the activations are kept
    monkeypatch.setattr(t, "gpus", lambda: ["GPU:0"])
    assert recipe("resnet50", "gpu").precision == "mixed_float16" and recipe("resnet50", "gpu").pooled_only
    assert recipe("resnet50", "cpu").precision == "float32"
    with pytest.raises(KeyError), build_scope(None, "mixed_float16"):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        raise KeyError("an error while a model is built")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored, even after an error


def test_pooled_only_extraction_matches_full_extraction_then_pooling(data, prov, tmp_path, monkeypatch):
    import helpers.features as features

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    full = _start(prov, "cpu", pooled_only=False)
    extract(full, data)
    outputs = []  # the shape of every array the lower part's runs return
    run_lower = features.run_lower

    def spy(*args, **kwargs):
        out = run_lower(*args, **kwargs)
        outputs.append(out.shape)
        return out

    monkeypatch.setattr(features, "run_lower", spy)
    run = _start(prov, "gpu")
    assert run.pooled_only and run.precision == "float32"
    run.base.set_weights(full.base.get_weights())
    table = extract(run, data)
    assert [len(s) for s in outputs] == [2, 2] and all(s[1] == 2048 for s in outputs)  # pooled, batch by batch
    assert all(X is None for X, _ in run.features.values())  # no activation arrays kept on the run
    assert {k: a.shape for k, a in run.pooled.items()} == {k: a.shape for k, a in full.pooled.items()}
    for split, ref in full.pooled.items():
        assert ref.std(0).max() > 0  # the features vary between images: the comparison means something
        np.testing.assert_allclose(run.pooled[split], ref, rtol=2e-2, atol=2e-3 * np.abs(ref).max())
    assert list(table["activation shape"]) == ["(2048,)", "(2048,)"] and "pool_frozen_top" not in run.times
    # the cache holds the pooled features under keys of their own, beside the full activations
    assert len(list((tmp_path / "features").glob("*.npy"))) == 4
    pooled = dict(run.pooled)
    assert all(h.startswith("read from the cache") for h in extract(run, data)["how"])
    assert all(np.array_equal(run.pooled[k], pooled[k]) for k in pooled)

    with pytest.raises(RuntimeError, match=r"pooled features.*pooled_only=False"):
        phase2(run, epochs=1)
    phase1(run, epochs=1)
    with pytest.raises(RuntimeError, match=r"phase 2 needs the cached activations at conv5_block2_out"):
        phase2(run, epochs=1)
    probs = val_predictions(run).probs  # after phase 1 only: the head on the pooled features
    assert probs.shape == (len(data.paths("val")), len(data.classes))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert record_fields(run)["pooled_only"] is True and record_fields(full)["pooled_only"] is False


@pytest.mark.slow  # float16 on a CPU, phases 1 and 3: about 20 s on 2 cores
def test_mixed_precision_forced_on_the_cpu_at_tiny_size(data, prov, tmp_path, monkeypatch):
    """mixed_float16: the layers compute in float16, the softmax in float32, the loss is scaled; restored after."""
    import keras

    from helpers.transfer_run import evaluate

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    run = _start(prov, "gpu", precision="mixed_float16")
    assert keras.mixed_precision.global_policy().name == "float32"  # set only while the run builds models
    assert run.base.get_layer("conv1_conv").compute_dtype == "float16"
    assert run.base.get_layer("conv1_conv").kernel.dtype == "float32"
    extract(run, data, cache=False)
    assert all(np.isfinite(a).all() and a.std() > 0 for a in run.pooled.values())
    h1 = phase1(run, epochs=2, units=16)
    assert run.head.get_layer("head_dense").compute_dtype == "float16"
    assert run.head.output.dtype == "float32" and run.head.get_layer("probs").compute_dtype == "float32"
    assert isinstance(run.head.optimizer, keras.optimizers.LossScaleOptimizer)  # compile wraps it by itself
    phase3(run, data, epochs=1, lr=1e-4, patience=None)
    assert run.model.output.dtype == "float32"
    for h in (h1, run.histories["phase3"]):
        assert np.isfinite(h["loss"]).all() and np.isfinite(h["val_loss"]).all()
    preds = evaluate(run, data)
    for p in preds.values():
        assert p.probs.dtype == np.float32 and np.isfinite(p.probs).all()
        np.testing.assert_allclose(p.probs.sum(1), 1.0, atol=1e-5)
    assert record_fields(run)["precision"] == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"
    cpu = _start(prov, "cpu")  # a cpu run in the same process builds float32 models again
    assert cpu.precision == "float32" and cpu.base.get_layer("conv1_conv").compute_dtype == "float32"
