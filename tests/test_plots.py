"""Tests of helpers.plots: each figure has the expected axes and marks, and bad input fails clearly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from helpers import CLASSES, plots


@pytest.fixture
def counts() -> pd.Series:
    return pd.Series([10, 20, 5, 7, 30, 3, 40, 12], index=list(CLASSES))


@pytest.fixture
def images(tmp_path) -> tuple[list[str], list[str]]:
    paths, labels = [], []
    rng = np.random.default_rng(0)
    for k, cls in enumerate(CLASSES[:3]):
        for i in range(3 + k):  # 3, 4, 5 images
            p = tmp_path / f"{cls}_{i}.png"
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(p)
            paths.append(str(p))
            labels.append(cls)
    return paths, labels


def _bars(ax) -> int:
    from matplotlib.patches import Rectangle

    return sum(isinstance(p, Rectangle) for p in ax.patches)


def test_dpi_is_capped(counts):
    fig = plots.class_counts_bar(counts)
    assert isinstance(fig, Figure) and fig.dpi <= 100
    with pytest.raises(ValueError, match="dpi"):
        plots._figure(3, 3, dpi=300)


@pytest.mark.parametrize("horizontal", [True, False])
def test_class_counts_bar_one_bar_per_class(counts, horizontal):
    fig = plots.class_counts_bar(counts, horizontal=horizontal)
    (ax,) = fig.axes
    assert _bars(ax) == len(CLASSES)
    widths = sorted(p.get_width() if horizontal else p.get_height() for p in ax.patches)
    assert widths == sorted(counts.astype(float))
    labels = [t.get_text() for t in ax.texts]
    assert "40" in labels and "3" in labels


def test_class_counts_bar_accepts_dict_and_rejects_bad():
    fig = plots.class_counts_bar({"basophil": 2, "platelet": 4})
    assert _bars(fig.axes[0]) == 2
    with pytest.raises(ValueError, match="empty"):
        plots.class_counts_bar(pd.Series(dtype=int))
    with pytest.raises(ValueError, match="negative"):
        plots.class_counts_bar({"basophil": -1})


def test_sample_grid_rows_and_columns(images):
    paths, labels = images
    fig = plots.sample_grid(paths, labels, n_per_class=4, seed=1)
    assert len(fig.axes) == 3 * 4
    shown = [len(ax.images) for ax in fig.axes]
    # row 1 has 3 images (4th cell empty), rows 2 and 3 are full
    assert shown == [1, 1, 1, 0] + [1] * 8
    assert fig.axes[0].get_ylabel() == "Basophil"


def test_sample_grid_is_seeded(images):
    paths, labels = images
    a = plots.sample_grid(paths, labels, n_per_class=2, seed=3)
    b = plots.sample_grid(paths, labels, n_per_class=2, seed=3)
    for x, y in zip(a.axes, b.axes):
        np.testing.assert_array_equal(x.images[0].get_array(), y.images[0].get_array())


def test_sample_grid_bad_input(images):
    paths, labels = images
    with pytest.raises(ValueError, match="labels"):
        plots.sample_grid(paths, labels[:-1])
    with pytest.raises(ValueError, match="n_per_class"):
        plots.sample_grid(paths, labels, n_per_class=0)


def test_image_row(images):
    paths, _ = images
    fig = plots.image_row(paths[:2], titles=["a", "b"])
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError):
        plots.image_row([])


def test_image_size_hist():
    fig = plots.image_size_hist([360, 360, 366], [363, 363, 369])
    assert len(fig.axes) == 2
    assert sum(p.get_height() for p in fig.axes[0].patches) == 3
    with pytest.raises(ValueError, match="widths and heights"):
        plots.image_size_hist([1, 2], [3])


def test_colour_stats_plot():
    stats = pd.DataFrame({c: np.linspace(0.1, 0.9, 3) * (255 if c in "RGB" else 1) for c in "RGBHSV"},
                         index=list(CLASSES[:3]))
    fig = plots.colour_stats_plot(stats)
    assert len(fig.axes) == 2
    rgb, hsv = fig.axes
    assert _bars(rgb) == 3 * 3 + 3  # R, G, B bars per class + one colour swatch per class
    assert _bars(hsv) == 3 * 3
    assert [t.get_text() for t in rgb.get_yticklabels()] == ["Basophil", "Eosinophil", "Erythroblast"]
    with pytest.raises(ValueError, match="lack columns"):
        plots.colour_stats_plot(stats.drop(columns="H"))


def test_split_table_plot(counts):
    table = pd.DataFrame({"test": counts // 5, "train": counts - counts // 5 * 2, "val": counts // 5})
    fig = plots.split_table_plot(table)
    (ax,) = fig.axes
    assert _bars(ax) == 3 * len(CLASSES)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val", "test"]


def test_confusion_matrix_plot_normalised():
    cm = np.array([[8, 2], [0, 5]])
    fig = plots.confusion_matrix_plot(cm, ["basophil", "platelet"])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["80%", "20%", "0%", "100%"]
    assert len(fig.axes) == 2  # heat map + colour bar


def test_confusion_matrix_plot_counts_and_empty_row():
    cm = np.array([[3, 1], [0, 0]])
    fig = plots.confusion_matrix_plot(cm, ["a", "b"], normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "0"]
    fig = plots.confusion_matrix_plot(cm, ["a", "b"])  # a class with no examples: a zero row, no NaN
    assert [t.get_text() for t in fig.axes[0].texts] == ["75%", "25%", "0%", "0%"]
    with pytest.raises(ValueError, match="does not match"):
        plots.confusion_matrix_plot(cm, ["a", "b", "c"])


def test_training_curves():
    hist = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6], "accuracy": [0.5, 0.7, 0.8],
            "val_accuracy": [0.4, 0.6, 0.7], "macro_f1": [0.3, 0.5, 0.6], "val_macro_f1": [0.3, 0.4, 0.5],
            "learning_rate": [1e-3] * 3}
    fig = plots.training_curves(hist)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "macro f1"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1, 2, 3])


def test_training_curves_partial_and_empty():
    fig = plots.training_curves({"loss": [1.0, 0.5], "val_loss": []})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    with pytest.raises(ValueError, match="no metric"):
        plots.training_curves({"loss": []})


def test_class_palette_is_stable():
    a = plots.class_palette()
    b = plots.class_palette(["platelet", "basophil"])
    assert a["platelet"] == b["platelet"] and a["basophil"] == b["basophil"]


# ---------------------------------------------------------------- evaluation figures (chapter 7)
def test_reliability_diagram_and_roc():
    from helpers.calibrate import reliability
    from helpers.evaluate import roc_per_class

    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 200)
    p = rng.dirichlet(np.ones(8), 200)
    p[np.arange(200), y] += 1
    p /= p.sum(1, keepdims=True)
    fig = plots.reliability_diagram({"before": reliability(y, p), "after": reliability(y, p ** 0.5)})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    fig = plots.roc_curves(roc_per_class(y, p))
    assert len(fig.axes[0].get_legend().get_texts()) == 8
    with pytest.raises(ValueError, match="no reliability"):
        plots.reliability_diagram({})


def test_prediction_grids():
    imgs = np.zeros((5, 12, 12, 3), "uint8")
    fig = plots.prediction_grid(imgs, [0, 1, 2, 3, 4], [0, 1, 5, 3, 4], [0.9] * 5, ncols=3)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert len(titles) == 5 and titles[2] == "erythroblast\n→ monocyte (0.90)"
    reds = [a for a in fig.axes if a.get_title() and a.title.get_color() == "#d62728"]
    assert len(reds) == 1
    fig = plots.misclassification_gallery(imgs[:1], [2], [5], [0.8])
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="correctly classified"):
        plots.misclassification_gallery(imgs[:1], [2], [2], [0.8])


def test_gradcam_grid():
    imgs = np.full((3, 10, 10, 3), 100, "uint8")
    heat = np.random.default_rng(0).random((3, 10, 10))
    fig = plots.gradcam_grid(imgs, heat, ["a", "b", "c"], ncols=2)
    assert sum(1 for a in fig.axes if a.get_images()) == 6
    with pytest.raises(ValueError, match="do not match"):
        plots.gradcam_grid(imgs, heat[:, :5], ["a", "b", "c"])


def test_as_jpeg_makes_a_light_image_of_a_figure():
    import numpy as np

    from helpers import plots

    fig = plots._figure(2, 2)
    fig.subplots().imshow(np.random.default_rng(0).random((32, 32, 3)))
    img = plots.as_jpeg(fig, quality=80)
    assert img.format == "jpeg" and img.data[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="quality"):
        plots.as_jpeg(fig, quality=0)


def test_phase_curves_puts_the_phases_end_to_end():
    from helpers.plots import phase_curves

    hist = {"phase 1": {"loss": [2.0, 1.0], "val_loss": [1.5, 1.1], "accuracy": [0.3, 0.6],
                        "val_accuracy": [0.4, 0.5]},
            "phase 2": {"loss": [0.8, 0.7, 0.6], "val_loss": [1.0, 0.9, 0.9], "accuracy": [0.7, 0.8, 0.85],
                        "val_accuracy": [0.6, 0.65, 0.66]},
            "phase 3": {}}
    fig = phase_curves(hist, title="t")
    ax = fig.axes[0]
    xs = [list(line.get_xdata()) for line in ax.get_lines()]
    assert xs == [[1, 2], [1, 2], [3, 4, 5], [3, 4, 5]]  # train/val of phase 1, then phase 2 goes on
    assert [t.get_text() for t in ax.texts] == ["phase 1", "phase 2"]  # the empty phase is left out
    with pytest.raises(ValueError, match="no phase has a history"):
        phase_curves({"a": {}})


def test_phase_histories_name_the_phases_that_ran_in_training_order():
    from types import SimpleNamespace

    from helpers.transfer_run import phase_histories

    run = SimpleNamespace(histories={"phase3": {"loss": [1.0]}, "phase1": {"loss": [2.0]}, "tuner": {"x": [0]}})
    assert phase_histories(run) == {"1: head": {"loss": [2.0]}, "3: end to end": {"loss": [1.0]}}


def test_accuracy_vs_latency_one_point_per_model():
    from helpers.plots import accuracy_vs_latency

    fig = accuracy_vs_latency(["a", "b"], [0.9, 0.95], [0.88, 0.94], [0.92, 0.96], [1.0, 10.0])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.texts] == ["a", "b"]
    with pytest.raises(ValueError, match="one value per model"):
        accuracy_vs_latency(["a"], [0.9, 0.8], [0.8], [0.95], [1.0])
    # two models on one point (a TTA model that chose one view) share a label; the axis reads 2, 5, 10, 20
    fig = accuracy_vs_latency(["a", "a_tta", "b"], [0.9, 0.9, 0.95], [0.88, 0.88, 0.94], [0.92, 0.92, 0.96],
                              [2.0, 2.0, 20.0])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["a, a_tta", "b"]
    fig.canvas.draw()
    shown = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"2", "5", "10", "20"} <= shown


def test_heatmap_confusion_grid_and_coverage_plot_draw():
    import pandas as pd

    from helpers import CLASSES
    from helpers.evaluate import coverage_curve
    from helpers.plots import confusion_grid, coverage_plot, heatmap

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.random((8, 3)), index=list(CLASSES), columns=["a", "b", "c"])
    assert len(heatmap(table, "per-class F1").axes) == 1
    cms = {n: rng.integers(0, 20, (8, 8)) for n in ("a", "b", "c", "d")}
    fig = confusion_grid(cms, ncols=3)
    assert sum(ax.axison for ax in fig.axes) == 4
    y, p = rng.integers(0, 8, 200), rng.dirichlet(np.ones(8), 200)
    assert len(coverage_plot({"a": coverage_curve(y, p)}).axes[0].lines) == 1


def test_phase_paths_accumulate_minutes_phase_by_phase():
    from helpers.plots import phase_paths_plot
    from helpers.results import phase_path

    rec = {"phase_val_accuracy": {"phase 1: frozen base + head": 0.8, "phase 3: end-to-end, augmented": 0.95},
           "phase_seconds": {"extract_train": 50.0, "extract_val": 10.0, "tune_head": 60.0, "phase1_head": 60.0,
                             "phase3_end_to_end": 600.0, "evaluate_test": 99.0}}
    p = phase_path(rec)
    assert list(p["phase"]) == ["phase 1", "phase 3"] and list(p["val accuracy"]) == [0.8, 0.95]
    assert list(p["minutes"]) == [3.0, 13.0]  # features + tuning + head, then phase 3; the test pass is not a phase
    fig = phase_paths_plot({"net": p})
    assert len(fig.axes[0].lines) == 1
    with pytest.raises(ValueError):
        phase_paths_plot({"net": phase_path({})})


def test_size_tables_plot_draws_a_line_per_network_in_each_panel():
    import pandas as pd

    from helpers.plots import size_tables_plot

    idx = pd.Index([64, 96, 128], name="image_size")
    probes = {"vgg19": pd.DataFrame({"probe val accuracy": [0.45, 0.51, 0.45]}, index=idx),
              "resnet50": pd.DataFrame({"probe val accuracy": [0.6, 0.7, 0.75]}, index=idx)}
    speeds = {"vgg19": pd.DataFrame({"img/s": [38.0, 21.0, 12.0]}, index=idx)}
    fig = size_tables_plot(probes, speeds)
    left, right = fig.axes
    assert len(left.lines) == 2 and len(right.lines) == 1 and right.get_yscale() == "log"
    assert list(left.lines[1].get_ydata()) == [0.6, 0.7, 0.75]
    with pytest.raises(ValueError):
        size_tables_plot({}, {})
