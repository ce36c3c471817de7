"""The tests' synthetic PBC-style dataset: it lives in :mod:`helpers.synthetic` (``make bench`` uses it too)."""
from helpers.synthetic import PREFIX, make_synthetic_pbc  # noqa: F401

__all__ = ["PREFIX", "make_synthetic_pbc"]
