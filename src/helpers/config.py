"""Where things live, configured in one place.

Every location comes from a parameter or an environment variable, never from a
hard-coded path:

==========================  =========================================================
``BLOODCELLS_DATA_DIR``     root of a PBC-style dataset (class folders somewhere below)
``KERAS_WEIGHTS_DIR``       folder with local ImageNet weight files (air-gapped labs)
``BLOODCELLS_OUTPUT_DIR``   saved models, caches, checkpoints (default ``outputs/``)
``BLOODCELLS_RESULTS_DIR``  the results registry (default ``results/`` of the project)
``BLOODCELLS_MODE``         ``smoke`` forces the tiny CI mode in every notebook
==========================  =========================================================
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("helpers")

DATA_ENV = "BLOODCELLS_DATA_DIR"
WEIGHTS_ENV = "KERAS_WEIGHTS_DIR"
OUTPUT_ENV = "BLOODCELLS_OUTPUT_DIR"
RESULTS_ENV = "BLOODCELLS_RESULTS_DIR"
MODE_ENV = "BLOODCELLS_MODE"
CLASSES_ENV = "BLOODCELLS_CLASSES"
MODES = ("book", "smoke")
KAGGLE_INPUT = Path("/kaggle/input")


class ConfigError(ValueError):
    """A parameter or environment variable has an unusable value."""


def classes_from_env() -> tuple[str, ...] | None:
    """``$BLOODCELLS_CLASSES`` (comma-separated folder names, e.g. ``"BLA,EOS,LYT"``): the class folders every
    chapter uses, in that order (the order gives the integer labels); ``None`` when unset or empty."""
    raw = os.environ.get(CLASSES_ENV, "")
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    return names or None


def resolve_mode(mode: str | None = "book") -> str:
    """The effective run mode: ``$BLOODCELLS_MODE`` wins over the notebook parameter.

    ``book`` runs on the full data with book settings; ``smoke`` is the tiny run CI uses.
    """
    env = os.environ.get(MODE_ENV)
    raw = env if env else mode
    source = f"${MODE_ENV}" if env else "MODE"
    if raw is None or raw == "":
        return "book"
    if not isinstance(raw, str):
        raise ConfigError(f"{source}={raw!r} is not a run mode; set it to one of {MODES}.")
    chosen = raw.strip().lower()
    if chosen not in MODES:
        raise ConfigError(f"{source}={raw!r} is not a run mode; set it to one of {MODES}.")
    return chosen


def positive_int(value, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` >= 1 (NumPy integers accepted), or a :class:`ConfigError` naming ``name``.

    Booleans, floats and strings are refused: ``MAX_PER_CLASS = 2.5`` or ``"10"`` is a typo, not a cap.
    """
    import numbers

    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        hint = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be a positive integer{hint}, got {value!r}; set it to e.g. 32.")
    return int(value)


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The book's checkout (the folder holding ``_toc.yml``), searched upward from ``start``/cwd.

    Falls back to the current directory when run outside a checkout (e.g. Colab).
    """
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "_toc.yml").is_file() and (p / "src" / "helpers").is_dir():
            return p
    return Path.cwd().resolve()


def _dir_from(value: str | os.PathLike | None, env: str, default: Path) -> Path:
    raw = value if value not in (None, "") else os.environ.get(env)
    return Path(raw).expanduser().resolve() if raw else default


def output_dir(value: str | os.PathLike | None = None) -> Path:
    """Folder for models, caches and checkpoints (outside git); created on demand."""
    p = _dir_from(value, OUTPUT_ENV, project_root() / "outputs")
    _ensure_writable_dir(p, "output directory", OUTPUT_ENV)
    return p


def results_dir(value: str | os.PathLike | None = None) -> Path:
    """Folder of the results registry (committed JSON records); created on demand."""
    p = _dir_from(value, RESULTS_ENV, project_root() / "results")
    _ensure_writable_dir(p, "results directory", RESULTS_ENV)
    return p


def splits_dir() -> Path:
    """Folder with the committed split manifests: package data of ``helpers``, so a reader who
    installed the helpers with pip (Colab, Kaggle) gets the book's split too."""
    from importlib.resources import files

    return Path(str(files("helpers") / "splits"))


def _ensure_writable_dir(p: Path, what: str, env: str) -> None:
    if p.exists() and not p.is_dir():
        raise ConfigError(f"The {what} {p} exists but is a file. Point {env} at a folder.")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"Cannot create the {what} {p}: {e.strerror or e}. "
                          f"Point {env} at a writable folder.") from e
    if not os.access(p, os.W_OK):
        raise ConfigError(f"The {what} {p} is not writable. Point {env} at a writable folder.")


def weights_dir(value: str | os.PathLike | None = None) -> Path | None:
    """Folder with local weight files, or None when not configured."""
    raw = value if value not in (None, "") else os.environ.get(WEIGHTS_ENV)
    return Path(raw).expanduser().resolve() if raw else None


def data_dir_candidates(value: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Places to look for the data, in order: parameter, environment variable, Kaggle inputs."""
    out: list[tuple[str, Path]] = []
    if value not in (None, ""):
        out.append(("parameter DATA_DIR", Path(value).expanduser()))
    elif os.environ.get(DATA_ENV):
        out.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    else:
        if KAGGLE_INPUT.is_dir():
            out.extend(("Kaggle input", p) for p in sorted(KAGGLE_INPUT.iterdir()) if p.is_dir())
        out.append(("download cache", output_dir() / "data"))
    return out
