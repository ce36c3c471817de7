"""Figures reused across the chapters.

Every function builds a :class:`matplotlib.figure.Figure` *without* pyplot and returns it,
so nothing is drawn twice and nothing stays open: in a notebook, end the cell with the
figure (``fig``) to show it, or ``fig.savefig(...)`` it. Resolution is capped at
:data:`DPI` so executed notebooks stay small.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import CLASS_NAMES, CLASSES

DPI = 100
"""Figure resolution (dots per inch); at most 100 keeps notebooks small."""

SPLIT_COLOURS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def _bare(ax):
    """An axis for showing an image: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    return ax


def class_palette(classes: Sequence[str] = CLASSES) -> dict[str, tuple]:
    """One fixed colour per class, the same in every chapter (seaborn ``tab10``)."""
    import seaborn as sns

    cols = sns.color_palette("tab10", n_colors=max(len(CLASSES), len(classes)))
    order = list(CLASSES) + [c for c in classes if c not in CLASSES]
    return {c: cols[i % len(cols)] for i, c in enumerate(order) if c in classes}


def _figure(width: float, height: float, dpi: int = DPI) -> Figure:
    if dpi > DPI:
        raise ValueError(f"dpi must be at most {DPI} (keeps the notebooks small), got {dpi}")
    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def _name(c: str) -> str:
    return CLASS_NAMES.get(c, str(c))


def _as_series(counts: Mapping[str, int] | pd.Series) -> pd.Series:
    s = pd.Series(counts, dtype="float64") if not isinstance(counts, pd.Series) else counts.astype("float64")
    if s.empty:
        raise ValueError("no classes to plot (the counts are empty)")
    if (s < 0).any():
        raise ValueError("class counts must not be negative")
    return s


# --------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------
def class_counts_bar(counts: Mapping[str, int] | pd.Series, title: str = "Images per class",
                     horizontal: bool = True) -> Figure:
    """Bar chart of images per class (one bar per class), each bar labelled with its count."""
    s = _as_series(counts)
    fig = _figure(7, 3.6)
    ax = fig.add_subplot()
    pal = class_palette(list(s.index))
    colours = [pal.get(c, "grey") for c in s.index]
    names = [_name(c) for c in s.index]
    if horizontal:
        bars = ax.barh(names[::-1], s.values[::-1], color=colours[::-1])
        ax.set_xlabel("images")
    else:
        bars = ax.bar(names, s.values, color=colours)
        ax.set_ylabel("images")
        ax.tick_params(axis="x", rotation=30)
    ax.bar_label(bars, labels=[f"{int(v):,}" for v in (s.values[::-1] if horizontal else s.values)],
                 padding=3, fontsize=8)
    ax.margins(x=0.12) if horizontal else ax.margins(y=0.12)
    ax.set_title(title)
    return fig


def _open_rgb(path: str, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        return np.asarray(im)


def sample_grid(paths: Sequence[str], labels: Sequence[str], n_per_class: int = 6,
                classes: Sequence[str] | None = None, seed: int = 42, size: int = 96,
                titles: Sequence[str] | None = None, cell_inches: float = 0.95) -> Figure:
    """A grid of example images: one row per class, ``n_per_class`` seeded random picks per row.

    ``paths`` are image files (read with Pillow, shrunk to ``size`` px); ``labels`` the class
    names. ``titles`` (same length as ``paths``) optionally captions each image, e.g. with
    its sub-type. Rows of classes with fewer images are left partly empty. ``cell_inches`` is the
    size of one image in the figure (at :data:`DPI`): photos make large PNGs, keep it small.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    df = pd.DataFrame({"path": list(map(str, paths)), "label": list(labels),
                       "title": list(titles) if titles is not None else [""] * len(paths)})
    if classes is None:
        classes = [c for c in CLASSES if c in set(df["label"])] + sorted(set(df["label"]) - set(CLASSES))
    if not len(classes):
        raise ValueError("no images to show")
    rng = np.random.default_rng(seed)
    fig = _figure(cell_inches * n_per_class + 1.6, (cell_inches + 0.2) * len(classes))
    axes = fig.subplots(len(classes), n_per_class, squeeze=False)
    for r, cls in enumerate(classes):
        rows = df[df["label"] == cls]
        pick = rows.iloc[np.sort(rng.choice(len(rows), min(n_per_class, len(rows)), replace=False))] \
            if len(rows) else rows
        for c in range(n_per_class):
            ax = _bare(axes[r, c])
            if c < len(pick):
                ax.imshow(_open_rgb(pick["path"].iloc[c], size))
                if pick["title"].iloc[c]:
                    ax.set_title(pick["title"].iloc[c], fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(_name(cls), rotation=0, ha="right", va="center", fontsize=9)
    return fig


def image_row(paths: Sequence[str], titles: Sequence[str] | None = None, size: int = 160) -> Figure:
    """Images side by side (e.g. a group of duplicates), one axis each, optionally captioned."""
    if not len(paths):
        raise ValueError("no images to show")
    fig = _figure(2.4 * len(paths), 2.7)
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for i, (ax, p) in enumerate(zip(axes, paths)):
        ax.imshow(_open_rgb(str(p), size))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def image_size_hist(widths: Sequence[int], heights: Sequence[int], title: str = "Image sizes") -> Figure:
    """Two histograms side by side: widths and heights in pixels (log count axis)."""
    w = np.asarray(widths)
    h = np.asarray(heights)
    if w.size == 0 or w.shape != h.shape:
        raise ValueError(f"need equally many widths and heights, got {w.size} and {h.size}")
    fig = _figure(8, 3)
    axes = fig.subplots(1, 2)
    for ax, v, what in zip(axes, (w, h), ("width", "height")):
        lo, hi = int(v.min()), int(v.max())
        bins = np.arange(lo, hi + 2) - 0.5 if hi - lo <= 60 else 40
        ax.hist(v, bins=bins, color="#4C72B0")
        ax.set_yscale("log")
        ax.set_xlabel(f"{what} (px)")
        ax.set_ylabel("images")
    fig.suptitle(title)
    return fig


def colour_stats_plot(stats: pd.DataFrame, title: str = "Mean colour per class") -> Figure:
    """Per-class mean colour: a panel of mean R, G, B and a panel of mean H, S, V.

    ``stats`` is indexed by class with columns ``R G B`` (0–255) and ``H S V`` (0–1), as
    returned by :func:`helpers.explore.colour_stats`; optional ``*_std`` columns become
    error bars. A swatch of each class's mean RGB colour is drawn beside its name.
    """
    need = ["R", "G", "B", "H", "S", "V"]
    missing = [c for c in need if c not in stats.columns]
    if missing:
        raise ValueError(f"colour stats lack columns {missing}")
    fig = _figure(10, 0.45 * len(stats) + 1.6)
    ax_rgb, ax_hsv = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(stats))
    hgt = 0.26
    for ax, chans, cols in ((ax_rgb, "RGB", ("#d62728", "#2ca02c", "#1f77b4")),
                            (ax_hsv, "HSV", ("#9467bd", "#8c564b", "#7f7f7f"))):
        for k, (ch, col) in enumerate(zip(chans, cols)):
            err = stats[f"{ch}_std"] if f"{ch}_std" in stats else None
            ax.barh(y + (k - 1) * hgt, stats[ch], height=hgt, color=col, label=ch, xerr=err,
                    error_kw={"elinewidth": 0.6, "ecolor": "0.3"})
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
    ax_rgb.invert_yaxis()  # shared y: the first class on top in both panels
    ax_rgb.set_xlim(0, 255)
    ax_rgb.set_xlabel("mean value (0–255)")
    ax_hsv.set_xlim(0, 1)
    ax_hsv.set_xlabel("mean value (0–1)")
    ax_rgb.set_yticks(y, [_name(c) for c in stats.index])
    ax_rgb.tick_params(axis="y", pad=16)
    for i, (_, row) in enumerate(stats.iterrows()):
        ax_rgb.add_patch(_swatch(ax_rgb, i, row))
    fig.suptitle(title)
    return fig


def _swatch(ax, i: int, row: pd.Series):
    """A small square of the class's mean colour just left of ``ax`` (between axis and label), at row ``i``."""
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    rgb = tuple(float(np.clip(row[c] / 255, 0, 1)) for c in "RGB")
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    return Rectangle((-0.045, i - 0.42), 0.035, 0.84, facecolor=rgb, edgecolor="0.2", linewidth=0.5,
                     transform=trans, clip_on=False, zorder=3)


def split_table_plot(table: pd.DataFrame, title: str = "Images per class and split") -> Figure:
    """Stacked horizontal bars of a class × split count table (e.g. ``class_counts(files, by="split")``)
    with each split's share of the class written on it."""
    if table.empty:
        raise ValueError("the split table is empty")
    splits = [s for s in ("train", "val", "test") if s in table.columns] + \
             [s for s in table.columns if s not in ("train", "val", "test")]
    t = table[splits].astype(float)
    fig = _figure(8, 0.4 * len(t) + 1.4)
    ax = fig.add_subplot()
    names = [_name(c) for c in t.index]
    left = np.zeros(len(t))
    totals = t.sum(axis=1).replace(0, np.nan).values
    for s in splits:
        bars = ax.barh(names, t[s].values, left=left, color=SPLIT_COLOURS.get(s, "grey"), label=s)
        share = t[s].values / totals
        ax.bar_label(bars, labels=[f"{p:.0%}" if np.isfinite(p) and p >= 0.08 else "" for p in share],
                     label_type="center", fontsize=7, color="white")
        left += t[s].values
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.legend(ncols=len(splits), loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def confusion_matrix_plot(cm: np.ndarray, classes: Sequence[str] = CLASSES, normalize: bool = True,
                          title: str | None = None) -> Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted).

    With ``normalize`` each row is divided by its total (the per-class recall is on the
    diagonal) and the cells show percentages; otherwise raw counts.
    """
    import seaborn as sns

    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(classes)} classes")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        fmt, vmax = ".0%", 1.0
    else:
        shown, fmt, vmax = cm, ".0f", None
    n = len(classes)
    fig = _figure(0.75 * n + 2.2, 0.65 * n + 1.4)
    ax = fig.add_subplot()
    sns.heatmap(shown, annot=True, fmt=fmt, cmap="Blues", vmin=0, vmax=vmax, square=True, ax=ax,
                cbar=True, annot_kws={"fontsize": 7}, xticklabels=[_name(c) for c in classes],
                yticklabels=[_name(c) for c in classes], linewidths=0.5, linecolor="white")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    for lab in ax.get_xticklabels():
        lab.set_ha("right")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)"))
    return fig


def training_curves(history: Mapping[str, Sequence[float]], metrics: Sequence[str] | None = None,
                    title: str | None = None) -> Figure:
    """One panel per metric (``loss``, ``accuracy``, ``macro_f1`` …) with train and validation curves.

    ``history`` is a Keras ``History.history`` dict (or the ``history`` of a result record):
    ``{"loss": [...], "val_loss": [...], ...}``. Metrics without any values are left out.
    """
    h = {k: list(v) for k, v in history.items() if v is not None and len(v)}
    if metrics is None:
        metrics = [m for m in ("loss", "accuracy", "macro_f1") if m in h or f"val_{m}" in h]
        metrics += sorted(k for k in h if not k.startswith("val_") and k not in metrics and k != "lr"
                          and k != "learning_rate")
    metrics = [m for m in metrics if m in h or f"val_{m}" in h]
    if not metrics:
        raise ValueError(f"the history has no metric to plot (keys: {sorted(history)})")
    fig = _figure(3.6 * len(metrics), 3)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        for key, lab, col in ((m, "train", SPLIT_COLOURS["train"]), (f"val_{m}", "val", SPLIT_COLOURS["val"])):
            if key in h:
                ax.plot(np.arange(1, len(h[key]) + 1), h[key], marker="o", markersize=3, label=lab, color=col)
        ax.set_xlabel("epoch")
        ax.set_title(m.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# Evaluation (chapter 7): calibration, ROC, Grad-CAM, galleries of predictions
# --------------------------------------------------------------------------------------------
def reliability_diagram(tables: Mapping[str, pd.DataFrame], title: str = "Reliability diagram") -> Figure:
    """One panel per entry (e.g. ``{"before": t0, "after temperature scaling": t1}``) of
    :func:`helpers.calibrate.reliability` tables: accuracy per confidence bin as bars, the
    diagonal of perfect calibration, and the gap to it shaded red."""
    if not tables:
        raise ValueError("no reliability tables to draw")
    fig = _figure(3.4 * len(tables), 3.4)
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, (name, t) in zip(axes, tables.items()):
        missing = {"low", "high", "n", "confidence", "accuracy"} - set(t.columns)
        if missing:
            raise ValueError(f"reliability table {name!r} lacks columns {sorted(missing)}")
        used = t[t["n"] > 0]
        width = (t["high"] - t["low"]).to_numpy()[0]
        ax.bar(used["low"], used["accuracy"], width=width, align="edge", color="#4C72B0", edgecolor="white",
               label="accuracy")
        ax.bar(used["low"], used["confidence"] - used["accuracy"], bottom=used["accuracy"], width=width,
               align="edge", color="#d62728", alpha=0.35, label="gap")
        ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(str(name), fontsize=9)
        ax.set_aspect("equal")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    return fig


def roc_curves(roc: Mapping[str, Mapping[str, np.ndarray]], title: str = "One-vs-rest ROC curves") -> Figure:
    """ROC curves per class (from :func:`helpers.evaluate.roc_per_class`) with the AUC in the legend."""
    drawn = {c: r for c, r in roc.items() if len(r.get("fpr", []))}
    if not drawn:
        raise ValueError("no class has a ROC curve (each needs positive and negative items)")
    fig = _figure(5, 4.4)
    ax = fig.add_subplot()
    pal = class_palette(list(drawn))
    for c, r in drawn.items():
        ax.plot(r["fpr"], r["tpr"], lw=1.4, color=pal.get(c, "grey"), label=f"{_name(c)} (AUC {r['auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    return fig


def _image_grid(images: np.ndarray, titles: Sequence[str], colours: Sequence[str] | None, ncols: int,
                cell: float = 1.15, title: str | None = None, dpi: int = 72) -> Figure:
    """Images in a grid with coloured captions. Photos make large PNGs: small cells, ``dpi`` 72."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or len(imgs) == 0:
        raise ValueError(f"need a non-empty (N, H, W, 3) image array, got shape {imgs.shape}")
    if len(titles) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(titles)} titles")
    ncols = max(1, min(int(ncols), len(imgs)))
    nrows = -(-len(imgs) // ncols)
    fig = _figure(cell * ncols, (cell + 0.4) * nrows + (0.3 if title else 0), dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < len(imgs):
            im = imgs[i]
            ax.imshow(im.astype("uint8") if im.dtype != np.uint8 else im)
            ax.set_title(titles[i], fontsize=7, color=(colours[i] if colours is not None else "black"), pad=2)
    if title:
        fig.suptitle(title)
    return fig


def prediction_grid(images: np.ndarray, y_true: Sequence[int], y_pred: Sequence[int],
                    confidence: Sequence[float] | None = None, classes: Sequence[str] = CLASSES, ncols: int = 6,
                    title: str | None = None) -> Figure:
    """Images captioned "true → predicted (confidence)", green when right and red when wrong."""
    if not (len(images) == len(y_true) == len(y_pred)):
        raise ValueError(f"{len(images)} images, {len(y_true)} true and {len(y_pred)} predicted labels")
    titles, colours = [], []
    for k, (t, p) in enumerate(zip(y_true, y_pred)):
        conf = f" ({confidence[k]:.2f})" if confidence is not None else ""
        titles.append(f"{classes[int(t)]}\n→ {classes[int(p)]}{conf}")
        colours.append("#2ca02c" if int(t) == int(p) else "#d62728")
    return _image_grid(images, titles, colours, ncols, title=title)


def misclassification_gallery(images: np.ndarray, y_true: Sequence[int], y_pred: Sequence[int],
                              confidence: Sequence[float], classes: Sequence[str] = CLASSES, ncols: int = 6,
                              title: str = "Misclassified test cells (true → predicted, confidence)") -> Figure:
    """Only the wrong predictions, e.g. the most confident mistakes first (the caller orders them)."""
    wrong = [int(t) != int(p) for t, p in zip(y_true, y_pred)]
    if not all(wrong):
        raise ValueError("misclassification_gallery got correctly classified images; pass only the mistakes")
    return prediction_grid(images, y_true, y_pred, confidence, classes, ncols, title)


def gradcam_grid(images: np.ndarray, heatmaps: np.ndarray, titles: Sequence[str], ncols: int = 4,
                 alpha: float = 0.45, title: str | None = None) -> Figure:
    """Each image beside its Grad-CAM overlay (:func:`helpers.explain.overlay`), ``ncols`` pairs per row."""
    from .explain import overlay

    imgs = np.asarray(images)
    heat = np.asarray(heatmaps)
    if imgs.ndim != 4 or heat.shape != imgs.shape[:3]:
        raise ValueError(f"images {imgs.shape} and heat maps {heat.shape} do not match")
    pairs = np.empty((2 * len(imgs),) + imgs.shape[1:], dtype="uint8")
    pairs[0::2] = np.clip(imgs, 0, 255).astype("uint8")
    pairs[1::2] = [overlay(i, h, alpha) for i, h in zip(imgs, heat)]
    caps = [c for t in titles for c in (t, "Grad-CAM")]
    return _image_grid(pairs, caps, None, 2 * ncols, title=title)


# --------------------------------------------------------------------------------------------
# Pre-processing, augmentation and the input pipeline (chapter 2)
# --------------------------------------------------------------------------------------------
def image_table(rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str] | None = None,
                col_titles: Sequence[str] | None = None, cell: float = 1.4, pixelated: bool = True,
                title: str | None = None) -> Figure:
    """A table of images: ``rows[r][c]`` in row ``r``, column ``c`` (images may differ in size).

    Every image fills its cell whatever its pixel size, so with ``pixelated`` (nearest-neighbour
    display) a 32-px image shows its 32 blocky pixels beside the smooth native one.
    """
    if not len(rows) or not all(len(r) for r in rows):
        raise ValueError("image_table needs at least one non-empty row of images")
    ncols = max(len(r) for r in rows)
    for name, t, n in (("row_titles", row_titles, len(rows)), ("col_titles", col_titles, ncols)):
        if t is not None and len(t) != n:
            raise ValueError(f"{name} has {len(t)} entries for {n} {name.split('_')[0]}s")
    fig = _figure(cell * ncols + (1.1 if row_titles is not None else 0),
                  cell * len(rows) + (0.3 if col_titles is not None else 0) + (0.3 if title else 0))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = _bare(axes[r, c])
            if c < len(row):
                im = np.asarray(row[c])
                im = np.clip(im, 0, 255).astype("uint8") if im.dtype != np.uint8 else im
                ax.imshow(im, interpolation="nearest" if pixelated else "antialiased")
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=8, pad=3)
            if c == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def throughput_bars(table: pd.DataFrame, value: str = "images/s (median)", low: str = "min", high: str = "max",
                    label: str = "setup", references: Mapping[str, float] | None = None,
                    title: str = "Input pipeline throughput") -> Figure:
    """Horizontal bars of images/s (log scale) with min–max whiskers, one per row of ``table``
    (e.g. :func:`helpers.bench.measurements_table`); ``references`` draws labelled vertical lines,
    e.g. how fast a model trains."""
    for col in (value, low, high, label):
        if col not in table.columns:
            raise ValueError(f"the throughput table has no column {col!r} (columns: {list(table.columns)})")
    if table.empty:
        raise ValueError("the throughput table is empty")
    v = table[value].to_numpy(float)
    err = np.vstack([v - table[low].to_numpy(float), table[high].to_numpy(float) - v])
    fig = _figure(7.5, 0.42 * len(table) + 1.3)
    ax = fig.add_subplot()
    y = np.arange(len(table))
    ax.barh(y, v, xerr=err, color="#4C72B0", error_kw={"elinewidth": 0.8, "ecolor": "0.25", "capsize": 2})
    ax.set_yticks(y, [str(s) for s in table[label]])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("images per second (log scale; median, whiskers min–max)")
    for k, (name, rate) in enumerate((references or {}).items()):
        ax.axvline(rate, color=f"C{k + 1}", ls="--", lw=1.2, label=name)
    if references:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    return fig


def per_epoch_plot(series: Mapping[str, Sequence[float]], ylabel: str = "value", title: str | None = None,
                   ylim: tuple[float, float] | None = None) -> Figure:
    """One line per run of a per-epoch quantity (``{run name: [v1, v2, …]}``), e.g. ablation curves."""
    runs = {k: list(v) for k, v in series.items() if v is not None and len(v)}
    if not runs:
        raise ValueError("nothing to plot: every series is empty")
    fig = _figure(5.5, 3)
    ax = fig.add_subplot()
    for name, vals in runs.items():
        ax.plot(np.arange(1, len(vals) + 1), vals, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def epoch_times_plot(times: Mapping[str, Sequence[float]], title: str = "Time per epoch") -> Figure:
    """Seconds per epoch of several training runs (``{run name: [s, s, …]}``), one line each.

    The first epoch is usually slower: it also decodes and caches the images and traces the graph.
    """
    fig = per_epoch_plot(times, ylabel="seconds", title=title)
    fig.axes[0].set_ylim(bottom=0)
    return fig


def as_jpeg(fig: Figure, quality: int = 85):
    """``fig`` as a JPEG image for the notebook: photo grids as PNG weigh ~1 byte per pixel, JPEG a tenth.

    Returns an :class:`IPython.display.Image` (shown like a figure; the book renders ``image/jpeg``).
    """
    import io

    from IPython.display import Image

    if not 1 <= int(quality) <= 95:
        raise ValueError(f"quality must be in 1..95, got {quality}")
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", pil_kwargs={"quality": int(quality), "optimize": True},
                facecolor="white")
    return Image(data=buf.getvalue(), format="jpeg")


def phase_curves(histories: Mapping[str, Mapping[str, Sequence[float]]],
                 metrics: Sequence[str] = ("loss", "accuracy"), title: str | None = None) -> Figure:
    """Every training phase on one epoch axis: ``{phase name: Keras history}`` in training order.

    Train and validation curves run on across the phases; a shaded band and a label mark each phase,
    so a reader sees what each phase added. Phases without any epochs are left out.
    """
    phases = [(name, {k: list(v) for k, v in h.items() if v is not None})
              for name, h in histories.items() if h]
    phases = [(n, h) for n, h in phases if any(len(v) for v in h.values())]
    if not phases:
        raise ValueError("nothing to plot: no phase has a history")
    fig = _figure(4.2 * len(metrics), 3.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        start = 0
        for j, (name, h) in enumerate(phases):
            n = max(len(h.get(m, [])), len(h.get(f"val_{m}", [])))
            if j % 2:
                ax.axvspan(start + 0.5, start + n + 0.5, color="0.93", zorder=0)
            ax.text(start + 0.5 + n / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7)
            for key, lab, col in ((m, "train", SPLIT_COLOURS["train"]),
                                  (f"val_{m}", "val", SPLIT_COLOURS["val"])):
                if h.get(key):
                    ax.plot(np.arange(start + 1, start + len(h[key]) + 1), h[key], marker="o", markersize=3,
                            color=col, label=lab if j == 0 else None)
            start += n
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel(m.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, y=1.06)
    return fig


def accuracy_vs_latency(names: Sequence[str], accuracy: Sequence[float], low: Sequence[float],
                        high: Sequence[float], ms: Sequence[float], title: str | None = None,
                        xlabel: str = "latency per image, batch 1 (ms, log scale)") -> Figure:
    """Test accuracy (with its interval as an error bar) against a cost (``ms``: latency per image, or e.g.
    training minutes with ``xlabel``), one point per model, log x axis labelled in plain numbers (1, 2, 5, 10,
    …). Models that fall on the same point share one label."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    acc, lo, hi, ms = (np.asarray(a, dtype=float) for a in (accuracy, low, high, ms))
    if not (len(names) == len(acc) == len(lo) == len(hi) == len(ms)) or not len(names):
        raise ValueError("names, accuracy, low, high and ms need one value per model (at least one)")
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    ax.errorbar(ms, acc, yerr=[acc - lo, hi - acc], fmt="o", capsize=3, color=SPLIT_COLOURS["test"])
    points: dict[tuple[float, float], list[str]] = {}
    for n, x, y in zip(names, ms, acc):
        points.setdefault((round(float(x), 9), round(float(y), 9)), []).append(str(n))
    for (x, y), ns in points.items():
        ax.annotate(", ".join(ns), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (95 % CI)")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    return fig


def heatmap(table: pd.DataFrame, title: str, fmt: str = ".3f", vmin: float | None = None,
            vmax: float | None = None, cmap: str = "Blues") -> Figure:
    """A table of numbers as an annotated heat map (rows and columns as labelled), e.g. per-class F1 by model."""
    import seaborn as sns

    t = table.astype(float)
    fig = _figure(1.0 * t.shape[1] + 2.6, 0.42 * t.shape[0] + 1.4)
    ax = fig.add_subplot()
    sns.heatmap(t, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, ax=ax, cbar=False,
                annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white")
    ax.tick_params(axis="x", rotation=30)
    for lab in ax.get_xticklabels():
        lab.set_ha("right")
    ax.set_title(title)
    return fig


def confusion_grid(cms: Mapping[str, np.ndarray], classes: Sequence[str] = CLASSES, ncols: int = 3,
                   title: str | None = None) -> Figure:
    """Row-normalised confusion matrices of several models, small multiples on one colour scale."""
    import seaborn as sns

    names = list(cms)
    nrows = -(-len(names) // ncols)
    fig = _figure(3.1 * ncols, 3.0 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    short = [_name(c)[:4] for c in classes]
    for ax, n in zip(axes, names):
        cm = np.asarray(cms[n], dtype=float)
        rows = cm.sum(axis=1, keepdims=True)
        sns.heatmap(np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0), vmin=0, vmax=1, cmap="Blues",
                    square=True, cbar=False, ax=ax, xticklabels=short, yticklabels=short)
        ax.set_title(n, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def coverage_plot(curves: Mapping[str, pd.DataFrame], title: str = "Refer the least confident cells") -> Figure:
    """Accuracy on the cells a model keeps against the share it hands to a person (:func:`coverage_curve`)."""
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    for n, c in curves.items():
        ax.plot(100 * c["referred"], 100 * c["accuracy_kept"], marker=".", label=n)
    ax.set_xlabel("cells referred to a person (%)")
    ax.set_ylabel("accuracy on the cells kept (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return fig


def label_efficiency_plot(points: pd.DataFrame, title: str = "Accuracy by labelled images per class",
                          labels: Mapping[str, str] | None = None,
                          full: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """Test accuracy against training images per class (log axis), one line per arm (the seeds' mean) with
    a band from the lowest to the highest seed. ``labels``: arm → legend text; ``full``: arm → (images per
    class, accuracy) of the arm trained on the whole training split, drawn as an open marker in its colour."""
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    for arm, g in points.groupby("arm"):
        s = g.groupby("per_class")["accuracy"].agg(["mean", "min", "max"])
        line, = ax.plot(s.index, 100 * s["mean"], marker="o", label=(labels or {}).get(arm, arm))
        ax.fill_between(s.index, 100 * s["min"], 100 * s["max"], alpha=0.2, color=line.get_color())
        if full and arm in full:  # dotted from the largest subset to the whole training split
            x, acc = full[arm]
            ax.plot([s.index[-1], x], [100 * s["mean"].iloc[-1], 100 * acc], linestyle=":", marker="o",
                    markevery=[1], markerfacecolor="none", markersize=8, color=line.get_color())
    if full:
        x = max(v[0] for v in full.values())
        ax.annotate("all images", (x, min(100 * v[1] for v in full.values())), textcoords="offset points",
                    xytext=(-20, -16), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def phase_paths_plot(paths: Mapping[str, pd.DataFrame], title: str = "What each phase buys, and costs") -> Figure:
    """Validation accuracy after each phase against the minutes spent up to its end, one line per network
    (:func:`helpers.results.phase_path`), each point labelled with its phase."""
    if not paths or any(p.empty for p in paths.values()):
        raise ValueError("phase_paths_plot needs at least one network, each with at least one phase")
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    for name, p in paths.items():
        ax.plot(p["minutes"], p["val accuracy"], marker="o", label=name)
        for _, row in p.iterrows():
            ax.annotate(row["phase"].replace("phase ", "p"), (row["minutes"], row["val accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("minutes spent, cumulative (this book's CPU)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return fig


def size_tables_plot(probes: Mapping[str, pd.DataFrame], speeds: Mapping[str, pd.DataFrame],
                     title: str = "The frozen features and the forward pass, by image size") -> Figure:
    """Two panels across the networks, one line each, against the image size: the frozen features' probe
    accuracy (:func:`helpers.transfer_run.resolution_probe`'s ``probe val accuracy``) and the forward speed
    (:func:`helpers.bench.speed_table`'s ``img/s``, log scale), as each chapter's record keeps them
    (:func:`helpers.results.record_table`)."""
    if not probes and not speeds:
        raise ValueError("size_tables_plot needs a probe or a speed table")
    fig = _figure(8.4, 3.4)
    left, right = fig.subplots(1, 2)
    for name, t in probes.items():
        left.plot(t.index, t["probe val accuracy"], marker="o", label=name)
    for name, t in speeds.items():
        right.plot(t.index, t["img/s"], marker="o", label=name)
    left.set_ylabel("probe accuracy (validation)")
    left.set_title("frozen features: a linear probe", fontsize=9)
    right.set_yscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    right.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 20, 50, 100, 200, …: numbers, not powers of ten
    right.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    right.yaxis.set_minor_formatter(NullFormatter())
    right.set_ylabel("images per second (log scale)")
    right.set_title("forward pass of the base", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("image size (px)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig
