"""benchmarks/transfer_recipes.py: its candidates name real layers, its report reads its entries, and it
refuses to run without the data configured (the measurement itself is `make bench-transfer-recipes`)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import transfer_recipes as tr  # noqa: E402


@pytest.mark.parametrize("name", sorted(tr.CANDIDATES))
def test_each_candidate_names_a_layer_of_its_base(name):
    import keras

    c = tr.CANDIDATES[name]
    if "recipe" in c:  # a chapter's own recipe, phase 3 twice as long as the schedule it was tried against
        from helpers.profiles import recipe

        r, chapter = recipe(c["family"], "cpu", "book", **c["recipe"]), recipe(c["family"], "cpu", "book")
        assert r.e2e_epochs == 2 * c["tried_against"] and r.e2e_lr == chapter.e2e_lr
        assert chapter.e2e_epochs in (c["tried_against"], r.e2e_epochs)  # kept, or grown to the trial's
        c = {"family": r.family, "image_size": r.image_size, "first_layer": r.e2e_first_layer,
             "epochs": r.e2e_epochs, "lr": r.e2e_lr}
    build = {"vgg19": keras.applications.VGG19, "resnet50": keras.applications.ResNet50,
             "mobilenetv2": keras.applications.MobileNetV2}[c["family"]]
    base = build(weights=None, include_top=False, input_shape=(c["image_size"], c["image_size"], 3))
    if c["first_layer"]:
        base.get_layer(c["first_layer"])  # raises ValueError if the layer does not exist
    assert c["epochs"] >= 1 and 0 < c["lr"] < 1e-2


def test_the_report_has_a_row_per_candidate_with_minutes_per_epoch():
    entry = {**tr.CANDIDATES["resnet50_64_e2e"], "head_val_accuracy": 0.91, "minutes_head": 2.4,
             "e2e_val_accuracy": [0.95, 0.97], "minutes_after_epoch": [5.1, 7.9], "cpu": "Some CPU", "cores": 2,
             "load_avg_end": [1.2, 1.0, 1.0]}
    text = tr.report({"resnet50_64_e2e": entry})
    row = text.splitlines()[-1]
    assert row.startswith("| resnet50_64_e2e: resnet50 64 px") and "0.9100 (2 min)" in row
    assert "0.9500 (5 min) | 0.9700 (8 min) |" in row and "Some CPU (2, 1.2)" in row


def test_it_needs_the_data_configured(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("BLOODCELLS_DATA_DIR", raising=False)
    assert tr.main(["--out", str(tmp_path / "r.json")]) == 2
    assert "BLOODCELLS_DATA_DIR" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_minutes_accumulate_from_the_head_over_the_epochs():
    assert tr.minutes_after_epochs(4.0, [60.0, 120.0, 30.0]) == [5.0, 7.0, 7.5]
    assert tr.minutes_after_epochs(1.0, []) == []


def test_the_training_benchmark_reads_each_chapters_settings():
    """``make bench``'s training section builds one spec per model from the chapters' parameters and the cpu
    recipes (a renamed recipe module once broke it only there)."""
    import training_bench

    specs = training_bench.setups(quick=True)
    assert len(specs) >= 6 and all(isinstance(s, dict) for s in specs)
