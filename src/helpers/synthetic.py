"""A tiny synthetic PBC-style dataset, generated on the fly (no binary fixtures in git).

Each class gets a differently coloured disc on a pale background, so a CNN can learn it in
one epoch; it exercises every code path of the real layout when no real data is configured. The
tests use it (``tests/synthetic.py``), and so does ``make bench`` when no data is configured.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import CLASSES

PREFIX = {"basophil": "BA", "eosinophil": "EO", "erythroblast": "ERB", "ig": "MY", "lymphocyte": "LY",
          "monocyte": "MO", "neutrophil": "SNE", "platelet": "PLATELET"}


def make_synthetic_pbc(root: str | Path, n_per_class: int = 12, size: int = 72, seed: int = 0,
                       wrapper: str = "PBC_dataset_normal_DIB") -> Path:
    """Write ``n_per_class`` JPEGs per class under ``root/wrapper/<class>/``; return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, cls in enumerate(CLASSES):
        d = root / wrapper / cls
        d.mkdir(parents=True, exist_ok=True)
        hue = np.array([(37 * k) % 256, (91 * k + 60) % 256, (151 * k + 120) % 256], dtype=float)
        for i in range(n_per_class):
            img = np.full((size, size, 3), 230.0) + rng.normal(0, 6, (size, size, 3))
            cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
            r = size // 5 + (k % 3) * 3
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
            img[mask] = hue + rng.normal(0, 8, (int(mask.sum()), 3))
            Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(d / f"{PREFIX[cls]}_{1000 + i}.jpg",
                                                                        quality=92)
    return root
