"""Helpers for the blood-cell classification book.

Small modules with one job each:

* :mod:`helpers.config`   – where data, weights and outputs live; run modes
* :mod:`helpers.io`       – atomic writes, hashing, provenance (git commit)
* :mod:`helpers.data`     – find and scan a PBC-style dataset, duplicates, fingerprints
* :mod:`helpers.split`    – the deterministic, duplicate-aware train/val/test split
* :mod:`helpers.pipeline` – ``tf.data`` input pipelines
* :mod:`helpers.results`  – the results registry ("lab book") in ``results/``

Heavy modules (TensorFlow) are imported lazily by the modules that need them.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bloodcells-helpers")
except PackageNotFoundError:  # running from a source checkout without install
    __version__ = "0+unknown"

CLASSES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
"""The eight PBC classes, in the (alphabetical) order used for integer labels."""

CLASS_NAMES: dict[str, str] = {
    "basophil": "Basophil",
    "eosinophil": "Eosinophil",
    "erythroblast": "Erythroblast",
    "ig": "Immature granulocyte",
    "lymphocyte": "Lymphocyte",
    "monocyte": "Monocyte",
    "neutrophil": "Neutrophil",
    "platelet": "Platelet",
}
"""Human-readable names for plots and tables."""
