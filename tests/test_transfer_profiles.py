"""The PROFILE parameter of chapters 4-6: both profiles' recipes, and the gpu path at tiny size on the CPU."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.literature import literature_table
from helpers.profiles import CPU_RECIPES, GPU_RECIPES, Recipe, distribution_strategy, recipe, resolve_profile
from helpers.weights import resolve_weights


def test_auto_is_cpu_without_a_gpu_and_bad_names_fail(monkeypatch):
    import helpers.profiles as t

    monkeypatch.setattr(t, "gpus", lambda: [])
    assert resolve_profile("auto") == "cpu"
    monkeypatch.setattr(t, "gpus", lambda: ["GPU:0"])
    assert resolve_profile("auto") == "gpu"
    with pytest.raises(ValueError, match="PROFILE"):
        resolve_profile("tpu")


@pytest.mark.parametrize("family", sorted(CPU_RECIPES))
@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("mode", ["book", "smoke"])
def test_every_recipe_is_valid(family, profile, mode):
    r = recipe(family, profile, mode)
    assert isinstance(r, Recipe) and r.profile == profile and r.family == family
    assert 32 <= r.image_size <= 224 and r.batch_size >= 1 and r.head_epochs >= 1
    assert r.ft_epochs >= 0 and r.e2e_epochs >= 0 and r.ft_epochs + r.e2e_epochs >= 1
    if profile == "gpu" and mode == "book":
        assert r.image_size == 224 and 10 <= r.e2e_epochs <= 15
    if mode == "smoke":
        assert r.image_size == 64 and r.max_per_class == 8 and r.e2e_epochs <= 1 and r.ft_epochs <= 1
    assert r.as_dict()["profile"] == profile


def test_the_cpu_profile_is_the_books_recipe():
    """VGG19 and ResNet50 fine-tune on augmented images (phase 3, from a middle layer), not on caches."""
    vgg, res = recipe("vgg19", "cpu"), recipe("resnet50", "cpu")
    assert (vgg.image_size, vgg.ft_epochs, vgg.e2e_epochs, vgg.e2e_first_layer) == (64, 0, 4, "block4_conv1")
    assert (res.image_size, res.ft_epochs, res.e2e_epochs, res.e2e_first_layer) == (64, 0, 5, "conv3_block1_1_conv")
    mnv2 = recipe("mobilenetv2", "cpu")
    assert (mnv2.image_size, mnv2.ft_epochs, mnv2.e2e_epochs, mnv2.e2e_time_budget_min) == (96, 4, 12, None)
    assert all(r.e2e_time_budget_min is None for r in (vgg, res, mnv2))  # same model on any CPU
    assert set(GPU_RECIPES) == set(CPU_RECIPES)


@pytest.mark.slow  # builds the bases
@pytest.mark.parametrize("family", sorted(CPU_RECIPES))
def test_the_cpu_profiles_first_layers_exist(family):
    """Phase 3's first layer names a layer of the family's base (a typo would fail only in book mode)."""
    from helpers.bench import _random_base

    r = recipe(family, "cpu")
    names = {layer.name for layer in _random_base(family, 64).layers}
    assert r.e2e_first_layer is None or r.e2e_first_layer in names
    assert r.split_layer in names


def test_overrides_win_and_none_means_the_profiles():
    assert recipe("vgg19", "cpu", image_size=None).image_size == 64
    assert recipe("vgg19", "cpu", image_size=96).image_size == 96
    with pytest.raises(TypeError, match="unknown"):
        recipe("vgg19", "cpu", epochs=3)


def test_default_strategy_without_gpus():
    import tensorflow as tf

    assert distribution_strategy("cpu").num_replicas_in_sync == 1
    assert not isinstance(distribution_strategy("cpu"), tf.distribute.MirroredStrategy)


def test_gpu_path_at_tiny_size_under_mirrored_strategy_on_the_cpu(tmp_path, monkeypatch):
    """The gpu profile's phases (1 then 3, no phase 2) run end to end under MirroredStrategy."""
    from helpers.data import load_split
    from helpers.transfer_run import evaluate, extract, phase1, phase3, save, start_run

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    data = load_split(max_per_class=2, progress=False)
    r = recipe("mobilenetv2", "gpu", "smoke", image_size=32, batch_size=8)
    strategy = distribution_strategy(r.profile, devices=["/cpu:0"])
    assert strategy.num_replicas_in_sync == 1
    prov = resolve_weights(r.family, "random", allow_random=True)
    tl = start_run(r.family, r.image_size, prov, r.split_layer, batch_size=r.batch_size,
                   profile=r.profile, strategy=strategy)
    extract(tl, data, cache=False)
    assert tl.pooled_only and all(X is None for X, _ in tl.features.values())  # pooled features only
    phase1(tl, epochs=r.head_epochs)
    res = phase3(tl, data, epochs=r.e2e_epochs, lr=r.e2e_lr, patience=None)
    assert res["epochs_run"] == 1 and "phase2" not in tl.histories
    preds = evaluate(tl, data)
    assert np.isfinite(preds["test"].probs).all()
    rec = save(tl, "transfer_gpu_test", data, preds, mode="smoke", save_model=False,
               results_directory=tmp_path / "results").record
    assert rec["profile"] == "gpu" and rec["replicas"] == 1 and rec["pooled_only"] is True
    assert rec["precision"] == "float32"  # no GPU here: mixed_float16 only when TensorFlow sees one


def test_literature_table_holds_the_sources_rows():
    t = literature_table()
    assert {"Acevedo et al. 2019", "MedMNIST+ 2025"} <= set(t["work"])
    assert t["test accuracy"].between(0.8, 1.0).all()


def test_run_phases_and_seed_spread_at_tiny_size(tmp_path, monkeypatch):
    """Chapters 5 and 6 train with run_phases; seed_spread repeats it per seed with checkpoints of its own."""
    from helpers.data import load_split
    from helpers.transfer_run import extract, phase_numbers, run_phases, seed_spread, start_run

    monkeypatch.setenv("BLOODCELLS_OUTPUT_DIR", str(tmp_path))
    data = load_split(max_per_class=3, progress=False)
    r = recipe("mobilenetv2", "cpu", "smoke", image_size=32, batch_size=8, tuner_trials=0)
    assert (r.ft_epochs, r.e2e_epochs, r.spread_seeds) == (1, 1, (42, 43))
    prov = resolve_weights(r.family, "random", allow_random=True)
    tl = start_run(r.family, r.image_size, prov, r.split_layer, batch_size=r.batch_size, profile=r.profile)
    extract(tl, data, cache=False)
    run_phases(tl, data, r)
    assert {"phase1", "phase2", "phase3"} <= set(tl.histories) and tl.tuner_table is None  # trials = 0: no tuner
    nums = phase_numbers(tl)
    assert all(np.isfinite(nums[k]) for k in ("p1_val", "p2_val", "p3_val", "e2e_minutes", "e2e_img_s"))
    assert nums["e2e_epochs"] == 1
    chapter_ckpt = tmp_path / "checkpoints" / "transfer_mobilenetv2_32_e2e"
    assert chapter_ckpt.is_dir()
    block = seed_spread(r.family, prov, data, r, head=tl.best_hp)
    assert block["seeds"] == [42, 43] and len(block["values"]) == 2 and block["metric"] == "val accuracy"
    assert all(0.0 <= v <= 1.0 for v in block["values"])
    assert block["val"]["accuracy"] == pytest.approx((block["max"] - block["min"]) / 2)
    assert "capped set" in block["budget"] and "1 epoch" in block["budget"]
    # every seed trains under its own checkpoint name; the chapter's own run is left as it was
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} >= {
        "transfer_mobilenetv2_32_spread_s42", "transfer_mobilenetv2_32_spread_s43", chapter_ckpt.name}


def test_phase_numbers_say_nan_for_a_phase_that_did_not_run():
    from helpers.transfer_run import TransferRun, phase_numbers

    run = TransferRun.__new__(TransferRun)
    run.phase_val, run.times, run.speeds, run.end_to_end = {"phase 1: frozen base + head": 0.8}, {}, {}, {}
    nums = phase_numbers(run)
    assert nums["p1_val"] == 0.8 and np.isnan(nums["p2_val"]) and np.isnan(nums["p3_val"])
    assert nums["e2e_epochs"] == 0 and np.isnan(nums["e2e_minutes"])
