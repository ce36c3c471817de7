"""Helpers for the blood-cell classification book.

Small modules with one job each:

* :mod:`helpers.config`     – where data, weights and outputs live; run modes; parameter checks
* :mod:`helpers.io`         – atomic writes (files and folders), hashing, provenance (git commit)
* :mod:`helpers.data`       – find and scan a PBC-style dataset, duplicates, fingerprints, ``load_split``
* :mod:`helpers.split`      – the deterministic, duplicate-aware train/val/test split and its manifest
* :mod:`helpers.download`   – verified, cached downloads of PBC (Mendeley) and BloodMNIST (Zenodo)
* :mod:`helpers.explore`    – descriptive statistics of a dataset (chapter 1)
* :mod:`helpers.pipeline`   – ``tf.data`` input pipelines
* :mod:`helpers.preprocess` – what resizing and normalisation do (chapter 2)
* :mod:`helpers.augment`    – every augmenter (pipeline and in-model) and class weights
* :mod:`helpers.layers`     – the book's custom Keras layers, registered on import (saved models need them)
* :mod:`helpers.models`     – the seed CNNs and the improved baseline
* :mod:`helpers.train`      – chapter 3's ``compile`` and callbacks, one ``fit`` for every chapter; evaluate once
  and record
* :mod:`helpers.predictions` – one value for a model's answers on a split (``Predictions``) and ``predict``
* :mod:`helpers.runs`       – ``save_run``: the one writer of a trained model's record and bundle
* :mod:`helpers.weights`    – ImageNet weights: local file, Keras cache or download, with provenance
* :mod:`helpers.features`   – the frozen lower part's activations, run once per split and cached
* :mod:`helpers.transfer`   – transfer learning's Keras parts: head, freezing, one function per phase
* :mod:`helpers.transfer_run` – one transfer run cell by cell (``TransferRun``), its seed spread, the size probe
* :mod:`helpers.profiles`   – the transfer recipes per profile (cpu, gpu) and family; distribution strategy
* :mod:`helpers.literature` – published results on the PBC data, for the chapters' comparisons
* :mod:`helpers.tta`        – test-time augmentation over the symmetries of a cell image
* :mod:`helpers.evaluate`   – metrics, bootstrap intervals, ROC, McNemar, errors by sub-type
* :mod:`helpers.calibrate`  – expected calibration error and temperature scaling
* :mod:`helpers.explain`    – Grad-CAM
* :mod:`helpers.domain`     – BCCD crops and out-of-distribution scores
* :mod:`helpers.compare`    – the saved bundles: find them, their moved images, their latency
* :mod:`helpers.export`     – model bundles (model + sidecar + saved predictions)
* :mod:`helpers.predict`    – classify image files (``classify``: the one path of the command line and the app)
* :mod:`helpers.ood`        – warnings for images unlike the training cells (size, shape, low confidence)
* :mod:`helpers.app`        – the classifier as a web app on 127.0.0.1 (Gradio; ``make demo``)
* :mod:`helpers.results`    – the results registry ("lab book") in ``results/``
* :mod:`helpers.plots`      – figures reused across chapters
* :mod:`helpers.bench`      – images/s of input pipelines and of training and forward passes (chapters 2, 4–6)
* :mod:`helpers.report`     – read the committed benchmark report ``benchmarks/results.json`` (chapter 7)
* :mod:`helpers.serve`      – run a model for serving: TFLite conversion and interpreter
* :mod:`helpers.synthetic`  – a tiny generated PBC-style dataset (tests; ``make bench`` without data)
* :mod:`helpers.book`       – notebook logging and ``glue``

Heavy modules (TensorFlow) are imported lazily by the modules that need them.
"""
import os as _os
import sys as _sys
import warnings as _warnings
from importlib.metadata import PackageNotFoundError, version

# TensorFlow is imported later, by the modules that need it: its C++ start-up lines (oneDNN, CPU features)
# must be silenced before that, or they land in every notebook's output. A value set by the user wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's convolution kernels: TensorFlow switches them on by itself only on CPUs with AVX-512 VNNI/AMX.
# On an AVX2 CPU (measured, 2-core AMD EPYC, batch 32): ResNet50 trains 2.5x faster at 64 px (10.8 -> 26.7
# img/s), VGG19 1.2x, MobileNetV2 1.17x, the improved CNN 1.19x; forward passes within 15 %. The user's
# value wins (TF_ENABLE_ONEDNN_OPTS=0 restores TensorFlow's own choice of kernels).
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


class _QuietTensorFlowImport:
    """A one-shot import hook: ``import tensorflow`` runs with the process's stderr (file descriptor 2)
    sent to /dev/null. Its C++ start-up notice ("oneDNN custom operations are on …", written twice while
    the libraries load, before TensorFlow's logging honours ``TF_CPP_MIN_LOG_LEVEL``) would otherwise land in
    every notebook. Python errors still propagate; nothing else is silenced after the import."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.util

        _sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding this hook again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            saved, devnull = _os.dup(2), _os.open(_os.devnull, _os.O_WRONLY)
            try:
                _os.dup2(devnull, 2)
                exec_module(module)
            finally:
                _os.dup2(saved, 2)
                _os.close(saved)
                _os.close(devnull)

        spec.loader.exec_module = quiet_exec
        return spec


if "tensorflow" not in _sys.modules and _os.environ.get("BLOODCELLS_TF_STARTUP_LOG") != "1":
    _sys.meta_path.insert(0, _QuietTensorFlowImport())
# tqdm.auto, imported by a dependency inside Jupyter without ipywidgets, warns with its own file path.
_warnings.filterwarnings("ignore", message="IProgress not found")
# TensorFlow's Python-side WARNINGs (e.g. tf.function retracing advice when a tiny smoke run makes every
# epoch a single step) are for library developers; errors still show. A filter, not a level: TensorFlow
# resets its logger's level to INFO the first time it is used in Jupyter.
import logging as _logging  # noqa: E402

_logging.getLogger("tensorflow").addFilter(lambda record: record.levelno >= _logging.ERROR)

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


def class_order(labels) -> list[str]:
    """The distinct class names in ``labels``: PBC's classes first (in :data:`CLASSES` order), then any
    others (a laboratory's own classes) alphabetically."""
    present = set(labels)
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def display_name(cls: str) -> str:
    """The name to show for class ``cls``: :data:`CLASS_NAMES` where known, else the folder name itself."""
    return CLASS_NAMES.get(cls, cls)
