"""Find ImageNet-pretrained weights for the transfer-learning chapters, and say which were used.

Where the weights of ``"vgg19"``, ``"resnet50"`` or ``"mobilenetv2"`` (``include_top=False``) come
from, in this order:

1. **a local file**: the ``weights`` argument (a file, or a folder holding a known file name)
   or the folder ``$KERAS_WEIGHTS_DIR`` (air-gapped labs, CI);
2. **Keras' cache** ``$KERAS_HOME/models`` (default ``~/.keras/models``), where an earlier
   ``weights="imagenet"`` download or a fetch script put the official file;
3. **a download** with ``weights="imagenet"`` (needs internet), when ``allow_download``.

The answer is a *provenance* dict that goes into every result record and model sidecar:
``{"kind", "family", "path", "sha256", "note"}`` with ``kind`` one of :data:`KINDS`. When nothing is
found, :class:`WeightsNotFoundError` says what to do; only an explicit ``allow_random=True`` turns that
into a randomly initialised base, and the record then says so in capitals.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import WEIGHTS_ENV, weights_dir
from .io import file_digest

log = logging.getLogger("helpers.weights")

KIND_LOCAL = "imagenet-local-file"
KIND_CACHE = "imagenet-keras-cache"
KIND_DOWNLOAD = "imagenet-download"
KIND_WORDS = {KIND_LOCAL: "from a local file", KIND_CACHE: "from Keras' cache", KIND_DOWNLOAD: "downloaded by Keras"}
"""How :func:`describe` names where the weights came from, for a reader."""
KIND_RANDOM = "none (trained from scratch)"
KINDS = (KIND_LOCAL, KIND_CACHE, KIND_DOWNLOAD, KIND_RANDOM)
RANDOM_LABEL = "random initialisation — NOT transfer learning"

# File names a family's weights are known under: the book's shared files first, then Keras' own.
FILE_NAMES: dict[str, tuple[str, ...]] = {
    "vgg19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",),
    "resnet50": ("resnet50_notop.weights.h5", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenetv2": ("mobilenet_v2_1.00_224_notop.weights.h5",
                    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
}
# Input shape the download is built at, so that Keras fetches the file of the 224-px network (one of FILE_NAMES).
DOWNLOAD_SHAPE = (224, 224, 3)
# Checksums of files whose origin is documented (README of the weights, Keras' own hashes).
KNOWN_SHA256: dict[str, str] = {
    "dd879f1e149b4a9586f8a2b8c2e03f9a8a84024d04b137b912f025e3ed149011":
        "MobileNetV2 1.0/224 from Google Coral's quantised TFLite model, de-quantised; batch-norm folded "
        "into the convolutions (call the base with training=False)",
    "815126c7efd134a3f6234bb56a407f934a18ef01d39fc984208ece79e0bf7d65":
        "Keras' original ImageNet ResNet50 weights (via the TF.js conversion, back to Keras 3 layout)",
    "bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35":
        "Keras' official VGG19 notop file (md5 253f8cb515780f3b799900260a226db6)",
}
FAMILY_NOTES = {
    "mobilenetv2": "MobileNetV2 (Sandler et al. 2018); preprocessing x/127.5 - 1",
    "resnet50": "ResNet50 (He et al. 2016); preprocessing 'caffe': RGB->BGR, minus ImageNet channel means",
    "vgg19": "VGG19 (Simonyan & Zisserman 2015); preprocessing 'caffe': RGB->BGR, minus ImageNet channel means",
}
FETCH_HINT = {
    "vgg19": "run the book's VGG19 fetch script once (fetch_vgg19_imagenet.sh, shipped with the project's "
             "shared weights) to put Keras' official file into Keras' cache",
}


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weights could be found; the message says how to provide them."""


def families() -> tuple[str, ...]:
    """The architectures this module knows."""
    return tuple(FILE_NAMES)


def check_family(family: str) -> str:
    """Normalise ``"MobileNetV2"``/``"mobilenet_v2"`` → ``"mobilenetv2"``; clear error otherwise."""
    key = str(family).strip().lower().replace("_", "").replace("-", "")
    if key not in FILE_NAMES:
        raise ValueError(f"Unknown model {family!r}: transfer learning supports {', '.join(FILE_NAMES)}.")
    return key


def application(family: str) -> Callable:
    """The ``keras.applications`` constructor of a family."""
    import keras

    return {"vgg19": keras.applications.VGG19, "resnet50": keras.applications.ResNet50,
            "mobilenetv2": keras.applications.MobileNetV2}[check_family(family)]


def keras_cache_dir() -> Path:
    """Keras' download cache for application weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "models"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a weights file (memoised per path, size and mtime: hashing 100 MB takes a moment)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(p)
    return _DIGESTS[key]


def _record(kind: str, family: str, path: Path | None, note: str) -> dict[str, Any]:
    sha = sha256_of(path) if path is not None else None
    known = KNOWN_SHA256.get(sha or "")
    if path is not None:
        note = f"{note}; sha256 {'matches: ' + known if known else 'not in the list of known files'}"
    return {"kind": kind, "family": family, "path": str(path) if path else None, "sha256": sha,
            "file": path.name if path else None, "note": note}


def _in_folder(folder: Path, family: str) -> Path | None:
    for name in FILE_NAMES[family]:
        if (folder / name).is_file():
            return folder / name
    return None


def resolve_weights(family: str, weights: str | os.PathLike | None = None, *, allow_download: bool = True,
                    allow_random: bool = False) -> dict[str, Any]:
    """Find pretrained weights for ``family``; return their provenance dict (see module docstring).

    ``weights``: ``None`` (search), a weights file, a folder with a known file name, ``"imagenet"``
    (search, then download) or ``"random"`` (same as ``allow_random`` with no search).
    Nothing found → :class:`WeightsNotFoundError`, unless ``allow_random``.
    """
    family = check_family(family)
    names = " or ".join(FILE_NAMES[family])
    if isinstance(weights, str) and weights.lower() in ("random", "none"):
        if not allow_random:
            raise ValueError(f"weights={weights!r} asks for a random base; pass allow_random=True to confirm "
                             "that this run is not transfer learning.")
        return _random(family, "random initialisation requested explicitly")
    looked: list[str] = []
    if weights not in (None, "", "imagenet"):
        p = Path(weights).expanduser()
        if p.is_file():
            return _found(KIND_LOCAL, family, p, "file given as a parameter")
        if p.is_dir():
            f = _in_folder(p, family)
            if f:
                return _found(KIND_LOCAL, family, f, "folder given as a parameter")
            raise WeightsNotFoundError(f"The weights folder {p} holds no {family} file (expected {names}).")
        raise WeightsNotFoundError(f"The weights file {p} does not exist. Give an existing .h5 file, a folder "
                                   f"holding {names}, or weights=None to search ${WEIGHTS_ENV} and Keras' cache.")
    wd = weights_dir()
    if wd is not None:
        f = _in_folder(wd, family) if wd.is_dir() else (wd if wd.is_file() else None)
        if f:
            return _found(KIND_LOCAL, family, f, f"${WEIGHTS_ENV}")
        looked.append(f"${WEIGHTS_ENV}={wd} (no {names} there)")
    else:
        looked.append(f"${WEIGHTS_ENV} (not set)")
    cache = keras_cache_dir()
    f = _in_folder(cache, family)
    if f:
        return _found(KIND_CACHE, family, f, "Keras' cache")
    looked.append(f"Keras' cache {cache}")
    if allow_download:
        try:
            return _download(family)
        except Exception as e:  # no internet shows up as many exception types
            looked.append(f"download of weights='imagenet' ({type(e).__name__}: {e})")
    else:
        looked.append("download (not allowed in this run)")
    if allow_random:
        return _random(family, "no pretrained weights found; looked in: " + "; ".join(looked))
    hint = FETCH_HINT.get(family, f"put {names} into a folder and point ${WEIGHTS_ENV} at it")
    raise WeightsNotFoundError(
        f"No ImageNet weights for {family} were found. Looked in: {'; '.join(looked)}.\n"
        f"Do one of these, then run again:\n"
        f"  1. set ${WEIGHTS_ENV} (or the notebook's WEIGHTS parameter) to a folder holding {names};\n"
        f"  2. {hint};\n"
        f"  3. on a machine with internet, allow the download (allow_download=True): Keras fetches the "
        f"official file into {cache}.\n"
        f"Training from random weights is possible only with allow_random=True, and is then not transfer learning.")


def _found(kind: str, family: str, path: Path, where: str) -> dict[str, Any]:
    rec = _record(kind, family, path.resolve(), f"{FAMILY_NOTES[family]}; found via {where}")
    log.debug("%s weights: %s, sha256 %s…", family, path.name, rec["sha256"][:8])  # the chapter prints describe()
    return rec


def _random(family: str, why: str) -> dict[str, Any]:
    rec = {"kind": KIND_RANDOM, "family": family, "path": None, "sha256": None, "file": None,
           "note": f"{RANDOM_LABEL.upper()}: {why}"}
    log.warning("%s: %s — %s", family, RANDOM_LABEL.upper(), why)
    return rec


def _download(family: str) -> dict[str, Any]:
    """Let Keras download the official no-top file (it lands in Keras' cache); return its provenance.

    Built at :data:`DOWNLOAD_SHAPE`: MobileNetV2 picks its file by input size, and only the 224-px network
    is the one the book uses (at 96 px Keras would fetch the 96-px network, a different model). The no-top
    file then loads at every size, e.g. ``load_base(family, 96, provenance)``.
    """
    import keras

    application(family)(include_top=False, weights="imagenet", input_shape=DOWNLOAD_SHAPE)
    keras.backend.clear_session()
    from keras.src.backend.config import keras_home  # Keras reads $KERAS_HOME once, when it is imported

    folders = dict.fromkeys((keras_cache_dir(), Path(keras_home()) / "models"))
    f = next((f for f in map(lambda d: _in_folder(d, family), folders) if f), None)
    if f is None:  # pragma: no cover - Keras stored it somewhere else
        raise WeightsNotFoundError(f"Keras downloaded the {family} weights but they are not in "
                                   f"{' or '.join(map(str, folders))}")
    return _found(KIND_DOWNLOAD, family, f, "download by Keras (weights='imagenet')")


def is_pretrained(provenance: dict[str, Any]) -> bool:
    """True unless the provenance says the base was randomly initialised."""
    return provenance.get("kind") != KIND_RANDOM


def describe(provenance: dict[str, Any]) -> str:
    """What weights a network starts from, for notebooks and logs: wrapped to the page's width."""
    from .book import page_fill

    if not is_pretrained(provenance):
        text = f"{provenance['family']}: {RANDOM_LABEL.upper()} ({provenance['note']})"
    else:
        where = KIND_WORDS.get(provenance["kind"], provenance["kind"])
        text = (f"{provenance['family']}: ImageNet weights, {where}: {provenance['file']} "
                f"(sha256 {provenance['sha256'][:12]}…)")
    return page_fill(text)


def release_words(provenance: dict[str, Any]) -> str:
    """Which release of a network's ImageNet weights a run started from, in a reader's words."""
    if not is_pretrained(provenance):
        return RANDOM_LABEL
    if "folded" in str(provenance.get("note", "")):
        return ("a de-quantised copy of Google's quantised ImageNet model, with batch normalisation folded into "
                "the convolutions (its batch-norm layers are identities)")
    return "Keras' own ImageNet file, the one weights='imagenet' downloads"


def load_base(family: str, image_size: int, provenance: dict[str, Any], pooling: str | None = "avg"):
    """The convolutional base (``include_top=False``) with the weights named by ``provenance``."""
    app = application(family)
    path = provenance.get("path") if is_pretrained(provenance) else None
    size = int(image_size)
    try:
        base = app(include_top=False, weights=path, input_shape=(size, size, 3), pooling=pooling)
    except (OSError, ValueError) as e:
        raise WeightsNotFoundError(f"Loading the {family} weights from {path} failed: {e}. Is the file complete "
                                   f"and really {family} (include_top=False)?") from e
    log.debug("loaded %s at %d px", describe(provenance), size)  # the chapter prints describe() once
    return base
