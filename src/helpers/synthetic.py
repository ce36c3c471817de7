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


BONE_MARROW_CLASSES = ("BLA", "EOS", "LYT", "MON", "NGS", "NIF", "PMO")
"""Seven class names of the bone-marrow cytology set of Matek et al. (2021): a laboratory's own classes."""


def make_synthetic_pbc(root: str | Path, n_per_class: int = 12, size: int = 72, seed: int = 0,
                       wrapper: str = "PBC_dataset_normal_DIB", classes: tuple[str, ...] = CLASSES) -> Path:
    """Write ``n_per_class`` JPEGs per class under ``root/wrapper/<class>/``; return ``root``.

    ``classes``: other class folders (e.g. :data:`BONE_MARROW_CLASSES`); their files are named ``<CLASS>_<n>``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, cls in enumerate(classes):
        d = root / wrapper / cls
        d.mkdir(parents=True, exist_ok=True)
        hue = np.array([(37 * k) % 256, (91 * k + 60) % 256, (151 * k + 120) % 256], dtype=float)
        for i in range(n_per_class):
            img = np.full((size, size, 3), 230.0) + rng.normal(0, 6, (size, size, 3))
            cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
            r = size // 5 + (k % 3) * 3
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
            img[mask] = hue + rng.normal(0, 8, (int(mask.sum()), 3))
            Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(d / f"{PREFIX.get(cls, cls)}_{1000 + i}.jpg",
                                                                        quality=92)
    return root


def make_synthetic_bloodmnist(path: str | Path, size: int = 64, split_sizes: dict[str, int] | None = None,
                              seed: int = 0) -> Path:
    """Write a BloodMNIST-layout ``.npz`` (``<split>_images`` uint8 (N, size, size, 3), ``<split>_labels`` (N, 1))
    of class-coloured discs; ``split_sizes`` default to the official 11,959 / 1,712 / 3,421. Returns ``path``."""
    from .download import BLOODMNIST_SPLIT

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    arrays = {}
    for split, n in (split_sizes or BLOODMNIST_SPLIT).items():
        labels = rng.integers(0, len(CLASSES), n)
        images = np.full((n, size, size, 3), 230, dtype=np.uint8)
        centres = rng.integers(size // 3, 2 * size // 3, (n, 2))
        for i, (k, (cx, cy)) in enumerate(zip(labels, centres)):
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (size // 5 + (k % 3) * 2) ** 2
            images[i][mask] = ((37 * k) % 256, (91 * k + 60) % 256, (151 * k + 120) % 256)
            images[i, i % size, (i // size) % size] = (i // size**2) % 256  # one marked pixel: distinct images
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.reshape(-1, 1)
    path = Path(path)
    np.savez_compressed(path, **arrays)
    return path
