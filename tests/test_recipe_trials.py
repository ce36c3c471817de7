"""helpers.results.recipe_trials and beyond_noise: a transfer chapter's run beside the trials of
benchmarks/transfer_recipes.py, and whether a trial's gain can be told from noise."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.results import PILOTS, beyond_noise, recipe_trials, two_standard_errors


def _record(tmp_path, family="mobilenetv2"):
    rec = {"model": f"transfer_{family}", "image_size": 96, "created": "2026-12-06T10:00:00",
           "end_to_end": {"max_epochs": 6}, "n_used": {"train": 900, "val": 2430},
           "phase_val_accuracy": {"phase 1: head": 0.86, "phase 3: end-to-end": 0.9774},
           "phase_seconds": {"extract_train": 60.0, "phase1_head": 30.0, "phase3_end_to_end": 600.0}}
    (tmp_path / f"transfer_{family}.json").write_text(json.dumps(rec))


def _trials(tmp_path, entries):
    (tmp_path / PILOTS).parent.mkdir(parents=True)
    (tmp_path / PILOTS).write_text(json.dumps(entries))


def test_the_chapters_run_comes_first_then_its_families_trials(tmp_path):
    _record(tmp_path)
    _trials(tmp_path, {
        "mobilenetv2_recipe_x2": {"family": "mobilenetv2", "recipe": {"e2e_epochs": 12}, "image_size": 96,
                                  "epochs": 12, "e2e_val_accuracy": [0.95, 0.979, 0.978],
                                  "minutes_after_epoch": [5.0, 20.0, 25.5], "val_images": 2430,
                                  "created": "2026-12-06 14:00:00"},
        "mobilenetv2_128_e2e": {"family": "mobilenetv2", "image_size": 128, "epochs": 6,
                                "e2e_val_accuracy": [0.94, 0.9819], "minutes_after_epoch": [9.6, 35.5],
                                "val_images": 2430, "created": "2026-12-02 00:17:00"},
        "vgg19_recipe_x2": {"family": "vgg19", "recipe": {}, "image_size": 64, "epochs": 8,
                            "e2e_val_accuracy": [0.9], "minutes_after_epoch": [1.0], "val_images": 2430,
                            "created": "2026-12-06 15:00:00"}})
    t = recipe_trials("mobilenetv2", tmp_path)
    assert list(t.index) == ["the chapter's run", "pilot, phase 3 for 12 epochs", "128 px, no phase 2, untuned head"]
    assert t.loc["the chapter's run", "best val accuracy"] == pytest.approx(0.9774)
    assert t.loc["the chapter's run", "minutes"] == pytest.approx(11.5)  # features, head, phase 3
    assert t.loc["pilot, phase 3 for 12 epochs", "best val accuracy"] == pytest.approx(0.979)  # best epoch
    assert t.loc["pilot, phase 3 for 12 epochs", "minutes"] == pytest.approx(25.5)  # to the end of the schedule
    assert t["val images"].tolist() == [2430, 2430, 2430]


def test_without_trials_only_the_chapters_run(tmp_path):
    _record(tmp_path)
    assert list(recipe_trials("mobilenetv2", tmp_path).index) == ["the chapter's run"]
    assert recipe_trials("resnet50", tmp_path).empty


@pytest.mark.parametrize("gain, paid, words", [
    (0.0045, False, "within two standard errors"),
    (0.010, False, "beyond two standard errors of a validation accuracy on 2,430 cells (±0.6 points), within"),
    (0.0245, True, "beyond the seed tolerance (±1.8)"),
    (-0.0245, True, "-2.45 points"),
])
def test_a_gain_must_exceed_both_noises(gain, paid, words):
    beyond, text = beyond_noise(gain, 2430, 0.977, 0.0175)
    assert beyond is paid and words in text


def test_without_a_seed_spread_two_standard_errors_decide():
    assert beyond_noise(0.010, 2430, 0.977) == (
        True, "+1.00 points, beyond two standard errors of a validation accuracy on 2,430 cells (±0.6 points)")


def test_two_standard_errors_of_an_accuracy():
    # 0.977 on 2,430 cells: sqrt(0.977 * 0.023 / 2430) = 0.00304 → ±0.61 points
    assert two_standard_errors(0.977, 2430) == pytest.approx(0.00608, abs=1e-5)
    assert two_standard_errors(0.5, 100) == pytest.approx(0.1)
    assert two_standard_errors(1.0, 50) == 0.0


def test_a_size_table_goes_into_the_record_and_comes_back(tmp_path):
    import numpy as np
    import pandas as pd

    from helpers.results import add_tables, record_table

    path = tmp_path / "transfer_x.json"
    path.write_text(json.dumps({"model": "transfer_x", "val": {"accuracy": 0.9}}))
    probe = pd.DataFrame({"probe val accuracy": np.array([0.45, 0.48]), "img/s (incl. start-up)": [66.3, 36.0]},
                         index=pd.Index(np.array([48, 64]), name="image_size"))
    rec = add_tables(path, probe=probe)
    assert rec["val"] == {"accuracy": 0.9}  # the rest of the record kept
    back = record_table(json.loads(path.read_text()), "probe")
    pd.testing.assert_frame_equal(back[probe.columns], probe, check_dtype=False)
    assert record_table(rec, "speed") is None


def test_trial_verdicts_say_each_gain_and_what_the_chapter_does(tmp_path):
    import pandas as pd

    from helpers.results import trial_verdicts

    t = pd.DataFrame({"best val accuracy": [0.9774, 0.9852, 0.9819], "minutes": [14.6, 24.0, 35.5],
                      "val images": [2430] * 3, "phase-3 epochs": [6, 12, 6], "image px": [96, 96, 128],
                      "CPU": ["AMD EPYC"] * 3},
                     index=["the chapter's run", "pilot, phase 3 for 12 epochs", "128 px, no phase 2, untuned head"])
    v = trial_verdicts(t, 0.0175)
    assert v["longer"].startswith("+0.78 points, beyond two standard errors") and v["longer"].endswith("+9 min")
    assert "within the seed tolerance (±1.8)" in v["longer"] and v["larger"].endswith("+21 min")
    assert v["lesson"].startswith("Neither trial")
    v = trial_verdicts(t, None)  # no seed spread: two standard errors decide, and the longer schedule pays
    assert v["lesson"].startswith("The longer trial pays")
    assert trial_verdicts(t.iloc[:1])["longer"] == "not measured"
    # minutes timed on different CPUs (or on a CPU the record does not name) are not set against each other
    for other in ("Intel(R) Xeon(R) Processor", ""):
        v = trial_verdicts(t.assign(CPU=[other, "AMD EPYC", "AMD EPYC"]), 0.0175)
        assert v["longer"].startswith("+0.78 points") and "+9 min" not in v["longer"]
        assert v["longer"].endswith("timed on different CPUs, so their minutes do not compare")
    assert trial_verdicts(t.iloc[:2], 0.0175)["lesson"] == (
        "The longer trial does not move the result by more than one run can tell from noise, so the chapter "
        "keeps its schedule")


def _seed_run(tmp_path, epochs, acc, seed=42):
    from helpers.results import SPREAD_FOLDER, full_seed_name

    folder = tmp_path / SPREAD_FOLDER / "full"
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"mode": "book", "seed": seed, "e2e_epochs": epochs, "val_accuracy": acc, "minutes": 10.0,
           "machine": {"cpu": "AMD EPYC"}}
    if seed != 42:  # the first full-data runs kept no time of their own
        rec["created"] = "2026-12-05T10:00:00"
    (folder / full_seed_name("mobilenetv2", epochs, seed)).write_text(json.dumps(rec))


def test_a_schedule_grown_after_its_trial_is_judged_against_the_earlier_one(tmp_path):
    from helpers.results import trial_verdicts

    _record(tmp_path)
    rec = json.loads((tmp_path / "transfer_mobilenetv2.json").read_text())
    rec.update(seed=42, end_to_end={"max_epochs": 12}, mode="book")
    rec["phase_val_accuracy"]["phase 3: end-to-end"] = 0.985
    (tmp_path / "transfer_mobilenetv2.json").write_text(json.dumps(rec))
    _seed_run(tmp_path, 6, 0.9774)
    _seed_run(tmp_path, 12, 0.9851)  # the grown schedule's own seed run: not an earlier schedule
    _seed_run(tmp_path, 6, 0.9778, seed=43)  # another seed: not the chapter's
    _trials(tmp_path, {"mobilenetv2_recipe_x2": {
        "family": "mobilenetv2", "recipe": {"e2e_epochs": 12}, "image_size": 96, "epochs": 12,
        "e2e_val_accuracy": [0.95, 0.9852], "minutes_after_epoch": [5.0, 24.0], "val_images": 2430,
        "created": "2026-12-06 14:00:00", "cpu": "AMD EPYC"}})
    t = recipe_trials("mobilenetv2", tmp_path)
    assert list(t.index) == ["the chapter's run", "earlier schedule, 6 epochs", "pilot, phase 3 for 12 epochs"]
    assert t["phase-3 epochs"].tolist() == [12, 6, 12] and t["best val accuracy"].iloc[1] == 0.9774
    assert t["measured"].iloc[1] == ""  # a run that kept no time says none
    assert t["CPU"].tolist() == ["", "AMD EPYC", "AMD EPYC"]  # the chapter's record names none here
    v = trial_verdicts(t, 0.0015)
    assert v["longer"].startswith("+0.78 points, beyond") and v["longer"].endswith("for +14 min")
    assert v["lesson"] == "The longer trial pays beyond the noise, so the chapter took it: phase 3 now runs 12 epochs"
    assert trial_verdicts(t, 0.02)["lesson"].startswith("The longer trial does not move")


def test_two_schedules_compared_across_their_seeds(tmp_path):
    from helpers.results import schedule_seeds, schedules_compared

    for seed, (short, long) in zip((42, 43, 44), ((0.9774, 0.9848), (0.9778, 0.9794), (0.9778, 0.9805))):
        _seed_run(tmp_path, 6, short, seed)
        _seed_run(tmp_path, 12, long, seed)
    runs = schedule_seeds("mobilenetv2", tmp_path)
    assert len(runs) == 6 and sorted(runs["phase-3 epochs"].unique()) == [6, 12]
    words = schedules_compared(runs, 6, 12)
    # means 0.98157 and 0.97767: +0.39 points; Welch's t with the 6-epoch runs almost constant: p ~ 0.14
    assert words.startswith("12 epochs of phase 3 end at 0.9816 on average (0.9794 to 0.9848), 6 epochs")
    assert "+0.39 points, every run of the longer schedule ended above every run of the shorter" in words
    assert "within what 3 seeds can tell from noise (Welch's t-test, p = 0.1" in words
    far = runs.assign(**{"val accuracy": runs["val accuracy"] + 0.01 * (runs["phase-3 epochs"] == 12)})
    assert "beyond what 3 seeds" in schedules_compared(far, 6, 12)
    assert schedules_compared(runs[runs["seed"] == 42], 6, 12) is None  # one run each: no comparison
    assert schedule_seeds("vgg19", tmp_path).empty


def test_the_chapter_run_leaves_its_test_accuracy_on_its_schedules_seed_record(tmp_path, caplog):
    """When a schedule grows, the earlier schedule's test accuracy (read once, by the chapter's run of it) stays
    on record: on the seed record of that schedule and seed, and only if that record is the same model."""
    from helpers.results import keep_chapter_test, schedule_seeds, schedule_test

    _seed_run(tmp_path, 6, 0.9774)
    _seed_run(tmp_path, 12, 0.9848)
    chapter = {"family": "mobilenetv2", "mode": "book", "seed": 42, "end_to_end": {"max_epochs": 6},
               "created": "2026-12-06", "git_commit": "abc", "val": {"accuracy": 0.9774},
               "test": {"accuracy": 0.9795, "macro_f1": 0.978, "n": 3067}}

    def kept(rec):
        (tmp_path / "transfer_mobilenetv2.json").write_text(json.dumps(rec))
        return keep_chapter_test(tmp_path / "transfer_mobilenetv2.json")

    other = {**chapter, "end_to_end": {"max_epochs": 12}}
    with caplog.at_level("WARNING"):  # not the seed record's model: nothing is written
        assert kept({**other, "val": {"accuracy": 0.9700}}) is None
        assert kept({**other, "val": {"accuracy": 0.9848}, "mode": "smoke"}) is None
    assert caplog.text.count("is not the chapter's run") == 2
    assert kept({**chapter, "seed": 7}) is None  # no seed record of that seed
    assert kept({k: v for k, v in chapter.items() if k != "test"}) is None  # no test read: nothing to keep
    assert kept(chapter).name == "transfer_mobilenetv2_e6_s42.json"
    runs = schedule_seeds("mobilenetv2", tmp_path)
    assert runs.set_index("phase-3 epochs")["test accuracy"].loc[6] == 0.9795
    assert np.isnan(runs.set_index("phase-3 epochs")["test accuracy"].loc[12])
    words = schedule_test(runs, 6, 12, 0.9801, 3067)
    assert words == ("On the test split, read once by this chapter's run of each schedule: 97.95% after 6 epochs "
                     "of phase 3, 98.01% after 12, +0.06 points, within two standard errors of a test accuracy on "
                     "3,067 cells (±0.5 points)")
    assert "beyond two standard errors" in schedule_test(runs, 6, 12, 0.9895, 3067)
    # the difference is that of the two accuracies as shown: 97.95 % and 98.01 % differ by 0.06, not 0.07
    assert "98.01% after 12, +0.06 points" in schedule_test(runs.replace(0.9795, 0.979459), 6, 12, 0.980111, 3067)
    assert schedule_test(runs, 12, 6, 0.9801, 3067) is None  # the longer schedule kept none
    # the chapter run that left the shorter schedule's accuracy names its CPU: another CPU now is said
    assert kept({**chapter, "machine": {"cpu": "AMD EPYC"}}).name == "transfer_mobilenetv2_e6_s42.json"
    runs = schedule_seeds("mobilenetv2", tmp_path)
    assert runs.set_index("phase-3 epochs")["test CPU"].loc[6] == "AMD EPYC"
    assert schedule_test(runs, 6, 12, 0.9801, 3067, cpu="AMD EPYC") == words
    assert schedule_test(runs, 6, 12, 0.9801, 3067, cpu="Intel(R) Xeon(R) Processor") == (
        words + "; the two runs ran on different CPUs, whose arithmetic moves a run as a seed does, so part of "
        "the difference may be the machine's")
