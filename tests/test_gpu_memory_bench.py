"""benchmarks/gpu_memory_bench.py: the extrapolation to 224 px adds its parts as the report says (the measurement
itself runs in `make bench`)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_memory_bench as gm  # noqa: E402


def _row(size, fixed=900.0, extract=300.0, bpp=3.1):
    return {"size": size, "images": 1600, "pooled_dim": 2048, "fixed_mb": fixed, "extract_peak_mb": extract,
            "cache_bytes_per_pixel": bpp}


def test_the_extrapolation_scales_each_part_as_it_grows():
    rows = [_row(64, fixed=880.0, extract=90.0, bpp=3.4), _row(128, fixed=900.0, extract=300.0, bpp=3.1)]
    est = gm.extrapolate(rows, n_images=10_000, size=224)
    assert est["fixed"] == pytest.approx(900 * 2**20 / 1e9, abs=0.01)  # the largest size's
    assert est["extraction"] == pytest.approx(300 * 2**20 * (224 / 128) ** 2 / 1e9, abs=0.01)  # by the area
    assert est["pooled features"] == pytest.approx(10_000 * 2048 * 4 / 1e9, abs=0.01)
    assert est["image cache"] == pytest.approx(10_000 * 224 * 224 * gm.cache_bytes_per_pixel(rows) / 1e9, abs=0.01)
    assert est["total"] == pytest.approx(sum(v for k, v in est.items() if k != "total"), abs=0.02)


def test_uint8_images_need_three_bytes_a_pixel_at_least():
    # the book's split at 224 px: 12,313 images of 224 x 224 x 3 bytes are 1.85 GB before any overhead
    est = gm.extrapolate([_row(128, bpp=3.0)], n_images=12_313)
    assert est["image cache"] == pytest.approx(1.85, abs=0.01)


def test_the_caches_growth_per_pixel_is_a_slope_a_fixed_overhead_drops_out():
    overhead = 2e6  # bytes, whatever the size
    rows = [{"size": px, "images": 800, "cache_bytes_per_pixel": (800 * px * px * 3.2 + overhead) / (800 * px * px)}
            for px in (64, 96, 128)]
    assert gm.cache_bytes_per_pixel(rows) == pytest.approx(3.2)
    assert gm.cache_bytes_per_pixel(rows[:1]) > 3.2  # one size cannot separate them
