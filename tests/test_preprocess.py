"""Tests of helpers.preprocess (resizing views and losses, normalisation families) and of the
chapter-2 figures in helpers.plots (image_table, throughput_bars)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import plots, preprocess


@pytest.fixture
def cell_file(tmp_path) -> str:
    """A 90×100 image with fine stripes (detail that small sizes lose) and a smooth disc."""
    yy, xx = np.mgrid[0:90, 0:100]
    img = np.full((90, 100, 3), 220.0)
    img[((yy - 45) ** 2 + (xx - 50) ** 2) < 900] = [120, 60, 150]
    img[:, ::2] -= 40  # one-pixel stripes
    p = tmp_path / "cell.png"
    Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(p)
    return str(p)


def test_resize_views(cell_file):
    views = preprocess.resize_views(cell_file, [16, 32])
    assert [v.shape for v in views] == [(16, 16, 3), (32, 32, 3), (90, 100, 3)]
    assert all(v.dtype == np.uint8 for v in views)


def test_resize_loss_shrinks_with_size(cell_file):
    t = preprocess.resize_loss([cell_file], [16, 32, 64])
    mae = t["MAE to native (grey levels)"].to_numpy()
    assert (np.diff(mae) < 0).all(), "larger sizes must lose less"
    assert (np.diff(t["PSNR (dB)"].to_numpy()) > 0).all()
    assert list(t["kB per image"]) == pytest.approx([16 * 16 * 3 / 1000, 32 * 32 * 3 / 1000, 64 * 64 * 3 / 1000])
    with pytest.raises(ValueError, match="at least one"):
        preprocess.resize_loss([], [16])


def test_normalisation_table_ranges():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    x[0, 0, 0] = 0.0
    x[0, 0, 1] = 255.0
    t = preprocess.normalisation_table(x).set_index("normalisation")
    r01 = t.loc[[k for k in t.index if k.startswith("Rescaling(1/255)")][0]]
    assert r01["min"] == pytest.approx(0) and r01["max"] == pytest.approx(1)
    mob = t.loc[[k for k in t.index if "MobileNetV2" in k][0]]
    assert mob["min"] == pytest.approx(-1) and mob["max"] == pytest.approx(1)
    ada = t.loc[[k for k in t.index if "adapt" in k][0]]
    assert abs(ada[["mean ch0", "mean ch1", "mean ch2"]]).max() < 1e-3
    with pytest.raises(ValueError, match="Unknown normalisation"):
        preprocess.normalise(x, "zscore")


def test_image_table_figure():
    rows = [[np.zeros((8, 8, 3), "uint8"), np.ones((16, 16, 3), "float32") * 300], [np.zeros((4, 4, 3), "uint8")]]
    fig = plots.image_table(rows, row_titles=["a", "b"], col_titles=["8", "16"], title="t")
    assert len(fig.axes) == 4 and fig.dpi <= plots.DPI
    assert len(fig.axes[1].images) == 1 and len(fig.axes[3].images) == 0
    with pytest.raises(ValueError, match="col_titles"):
        plots.image_table(rows, col_titles=["only one"])
    with pytest.raises(ValueError, match="non-empty"):
        plots.image_table([])


def test_throughput_bars_figure():
    t = pd.DataFrame({"setup": ["naive", "tuned"], "images/s (median)": [100.0, 1000.0], "min": [90.0, 800.0],
                      "max": [110.0, 1100.0]})
    fig = plots.throughput_bars(t, references={"model trains": 500.0})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.patches) == 2 and len(ax.lines) >= 1
    with pytest.raises(ValueError, match="no column 'speed'"):
        plots.throughput_bars(t, value="speed")
