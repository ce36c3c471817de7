"""Benchmark section "pipeline": input-pipeline images/s, naive loop vs tuned ``tf.data``.

For each image size: the naive Pillow loop, the tuned pipeline's first epoch (parallel decode
that fills the cache) and its cached epochs, each with and without the seed-001 augmentation
(per batch after the cache — what :func:`helpers.pipeline.make_dataset` does — and, at the
smallest size, per image). Then the training images/s of the book's small CNNs at 64 px, to
see whether the pipeline keeps up with the model it feeds. The timing code is
:mod:`helpers.bench`, the same that chapter 2 uses.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness
import numpy as np

from helpers import bench
from helpers.augment import make_augmentation

TITLE = "Input pipeline: naive loop vs tuned tf.data"
AUGMENTATION = "flip_rotate"


def small_models() -> dict[str, Callable[[int], Any]]:
    """The small CNNs whose training speed the pipeline must beat (helpers.models when present)."""
    try:
        from helpers.models import build_model

        return {name: (lambda size, name=name: build_model(name, size)) for name in ("bloodcells_cnn", "devnithw_cnn")}
    except ImportError:  # the models module is not there yet
        return {"reference_cnn": harness.reference_cnn}


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    """Measure; return ``{"title", "markdown", "results"}`` for benchmarks/run.py."""
    paths: list[str] = ctx["paths"]
    sizes: list[int] = ctx.get("sizes", [64, 96, 128])
    repeats: int = ctx.get("repeats", 3)
    say = ctx.get("progress", print)
    measurements: list[bench.Measurement] = []
    for i, size in enumerate(sizes):
        measurements += bench.pipeline_measurements(
            paths, size, batch_size=32, repeats=repeats, cached_epochs=3,
            augment_factory=lambda: make_augmentation(AUGMENTATION, seed=ctx.get("seed", 42)),
            placements=("batch", "image") if i == 0 else ("batch",), progress=say)
    table = bench.measurements_table(measurements, baseline="naive")

    train_size = ctx.get("train_size", 64)
    n_train = min(len(paths), ctx.get("train_images", 256))
    from helpers.pipeline import load_images

    x = load_images(paths[:n_train], train_size).astype("float32")
    y = np.arange(n_train) % 8
    say(f"training img/s: {', '.join(small_models())}")
    training = bench.training_measurements({name: (lambda f=factory: f(train_size)) for name, factory
                                            in small_models().items()}, x, y, batch_size=32, repeats=repeats,
                                           image_size=train_size)
    fastest = max(training, key=lambda m: m.median)
    at_size = {m.name: m.median for m in measurements if m.params["image_size"] == train_size}
    ttable = bench.measurements_table(training, baseline=fastest.name)

    def ratio(a: str, b: str, src: dict) -> float:
        return src[a] / src[b]

    key = {  # everything at image_size = train_size
        "image_size": train_size, "naive": at_size["naive"], "tuned_cached": at_size["tuned, cached"],
        "tuned_epoch1": at_size["tuned, epoch 1"],
        "tuned_aug_batch": at_size["tuned, cached + aug per batch"],
        "tuned_aug_image": at_size.get("tuned, cached + aug per image"),
        "naive_aug": at_size["naive + aug"],
        "ratio_tuned_cached_vs_naive": ratio("tuned, cached", "naive", at_size),
        "ratio_tuned_aug_vs_naive_aug": ratio("tuned, cached + aug per batch", "naive + aug", at_size),
        "fastest_model": fastest.name, "fastest_model_train_per_s": fastest.median,
        "ratio_tuned_cached_vs_training": at_size["tuned, cached"] / fastest.median,
        "ratio_tuned_aug_vs_training": at_size["tuned, cached + aug per batch"] / fastest.median,
    }
    md = [
        f"{len(paths)} images ({ctx['data_source']}), batch size 32, augmentation `{AUGMENTATION}` "
        f"(RandomFlip + RandomRotation(0.4)); one warm-up run per set-up, then {repeats} timed rounds "
        "in which the set-ups take turns; "
        "images/s are medians with the min–max over the runs; ratios are to the naive loop of the same size, "
        "measured in the same run. *cached* = epochs after the first, from the in-memory cache "
        "(3 epochs per timed run).",
        "",
        harness.markdown_table(table),
        "",
        f"**At {train_size} px:** tuned cached / naive = **{key['ratio_tuned_cached_vs_naive']:.1f}×**; "
        f"with augmentation on both sides = **{key['ratio_tuned_aug_vs_naive_aug']:.1f}×**.",
        "",
        f"### Does the pipeline keep up with training? ({train_size} px, {n_train} in-memory images, one epoch per run)",  # noqa: E501
        "",
        harness.markdown_table(ttable),
        "",
        f"The fastest small CNN (`{fastest.name}`) trains at {fastest.median:,.0f} images/s; the cached "
        f"pipeline delivers {key['ratio_tuned_cached_vs_training']:.1f}× that without augmentation and "
        f"{key['ratio_tuned_aug_vs_training']:.1f}× with per-batch augmentation.",
    ]
    return {"title": TITLE, "markdown": "\n".join(md), "key": key,
            "results": {"pipeline": [m.as_dict() for m in measurements],
                        "training": [m.as_dict() for m in training]}}
