"""Transfer learning from ImageNet, done the Keras way and made affordable on a CPU.

The recipe (Keras' *transfer learning & fine-tuning* guide, chapters 4–6):

1. **Preprocess inside the model** with the family's own ``preprocess_input`` (MobileNetV2:
   ``x/127.5 - 1``; ResNet50 and VGG19: "caffe", RGB→BGR minus the ImageNet channel means), so a
   saved model takes plain ``[0, 255]`` RGB images. It is built from stock Keras layers only, so
   the saved model loads without this module.
2. **Phase 1 – feature extraction**: the pretrained base is frozen and always called with
   ``training=False``; only a small head is trained.
3. **Phase 2 – fine-tuning**: the top block(s) are unfrozen and trained with the head at a low
   learning rate, batch-norm layers stay frozen (inference mode), and the model is *recompiled*
   after ``trainable`` changed.

CPU trick: the frozen lower part of the base (everything up to ``split_layer``) gives the same
output every epoch, so it runs **once** over train and val and its activations are cached
(``float16``, in memory and in ``outputs/features``). Phase 1 trains the head on the pooled
output of the frozen top; phase 2 trains ``top + head`` on the cached activations. The layers of
the top are *shared* with the base, so the fine-tuned weights are already in the base when the
full model ``preprocess → base → head`` is assembled and evaluated end-to-end on the test images.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import CLASSES
from .config import output_dir
from .io import atomic_write_json, text_digest
from .weights import check_family, describe, is_pretrained, load_base

log = logging.getLogger("helpers.transfer")

# Where the base is cut: the lower part (frozen, cached) ends at this layer, the top above it
# is fine-tuned in phase 2. Defaults: the last block (MobileNetV2: block_16 + Conv_1; ResNet50:
# conv5_block3; VGG19: block5_conv3 + block5_conv4).
SPLIT_LAYERS = {"mobilenetv2": "block_15_add", "resnet50": "conv5_block2_out", "vgg19": "block5_conv2"}
# ImageNet channel means (BGR) of the "caffe" preprocessing of ResNet50 and VGG19.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING = {
    "mobilenetv2": "inside the model: x / 127.5 - 1 (keras.applications.mobilenet_v2.preprocess_input)",
    "resnet50": "inside the model: RGB->BGR, minus ImageNet means (keras.applications.resnet50.preprocess_input)",
    "vgg19": "inside the model: RGB->BGR, minus ImageNet means (keras.applications.vgg19.preprocess_input)",
}
INPUT_CONTRACT = "float32 RGB in [0, 255], resized (antialiased) to image_size x image_size"


def preprocessing_layer(family: str):
    """The family's ``preprocess_input`` as a stock Keras layer (saved models need no custom code).

    MobileNetV2 → ``Rescaling(1/127.5, offset=-1)``. ResNet50/VGG19 ("caffe") → a frozen 1×1
    convolution whose kernel swaps R and B and whose bias subtracts the BGR means — exactly
    ``keras.applications.resnet50.preprocess_input``.
    """
    import keras

    family = check_family(family)
    if family == "mobilenetv2":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_mobilenetv2")
    perm = np.zeros((1, 1, 3, 3), dtype="float32")
    for out_c, in_c in enumerate((2, 1, 0)):  # output channel 0 (B) = input channel 2, …
        perm[0, 0, in_c, out_c] = 1.0
    layer = keras.layers.Conv2D(3, 1, name=f"preprocess_{family}_caffe", trainable=False,
                                kernel_initializer=keras.initializers.Constant(perm),
                                bias_initializer=keras.initializers.Constant(-np.array(CAFFE_MEAN_BGR, "float32")))
    return layer


def split_model(base, split_layer: str):
    """``(lower, top)``: two models sharing the base's layers, cut at ``split_layer``'s output."""
    import keras

    try:
        cut = base.get_layer(split_layer).output
    except ValueError:
        names = [l.name for l in base.layers if l.name.endswith(("_add", "_out", "_pool", "conv2", "relu"))][-12:]
        raise ValueError(f"{base.name} has no layer {split_layer!r}; candidates near the top: {names}") from None
    lower = keras.Model(base.input, cut, name=f"{base.name}_lower")
    top = keras.Model(cut, base.output, name=f"{base.name}_top")
    return lower, top


def make_head(input_dim: int, units: int = 256, dropout: float = 0.3, n_classes: int = len(CLASSES), name: str = "head"):
    """Classifier on pooled features: Dropout → [Dense(units, relu) → Dropout] → Dense(softmax)."""
    import keras

    L = keras.layers
    inp = keras.Input((int(input_dim),), name="features")
    x = L.Dropout(dropout, name="head_dropout1")(inp)
    if units:
        x = L.Dense(int(units), activation="relu", name="head_dense")(x)
        x = L.Dropout(dropout, name="head_dropout2")(x)
    out = L.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def _compile(model, lr: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def set_top_trainable(top, trainable: bool = True) -> int:
    """Unfreeze (:func:`unfreeze_from`, batch-norm stays frozen) or freeze all of the top.

    Returns the number of trainable weights tensors. Recompile afterwards!
    """
    if trainable:
        return unfreeze_from(top)
    top.trainable = False
    return 0


def unfreeze_from(base, first_layer: str | None = None) -> int:
    """Unfreeze ``base`` from ``first_layer`` upwards (``None``: every layer); batch-norm stays frozen.

    Layers below ``first_layer`` stay frozen (no gradient is computed for them, which also makes
    the backward pass cheaper). Keeping batch-norm frozen is *required*, not a detail: in Keras 3,
    ``fit`` calls the model with ``training=True`` and that reaches a nested base even when the
    base was called with ``training=False`` (keras-team/keras#20285); only ``trainable=False``
    keeps a BN layer in inference mode, i.e. on its ImageNet statistics. Returns the number of
    trainable weight tensors. Recompile afterwards!
    """
    import keras

    names = [l.name for l in base.layers]
    if first_layer is not None and first_layer not in names:
        raise ValueError(f"{base.name} has no layer {first_layer!r}; e.g. {names[-12:]}")
    start = names.index(first_layer) if first_layer is not None else 0
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return len(base.trainable_weights)


def finetune_augmentation(seed: int | None = 42):
    """Label-preserving augmentation for end-to-end fine-tuning: flips, quarter turns, stain jitter.

    Built from stock Keras layers plus :class:`helpers.models.RandomRot90`; it wraps the
    deployable model only while training, so the saved model contains none of it.
    """
    import keras

    from .augment import stain_augmentation
    from .models import augmentation_layers

    return keras.Sequential([*augmentation_layers(flip=True, rot90=True, seed=seed),
                             *stain_augmentation(seed=None if seed is None else seed + 100).layers],
                            name="finetune_augmentation")


def _random_search_class():
    """keras-tuner's RandomSearch, minus its unconditional TensorBoard import.

    keras-tuner 1.4 imports ``tensorboard`` before every trial (to patch a TensorBoard callback,
    if any), and ``tensorflow-cpu`` does not install it. We pass no TensorBoard callback, so the
    patching is skipped instead of adding a large dependency.
    """
    import keras_tuner as kt

    class RandomSearch(kt.RandomSearch):
        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            if any(c.__class__.__name__ == "TensorBoard" for c in callbacks):
                super()._configure_tensorboard_dir(callbacks, trial, execution)

    return RandomSearch


def _epoch_log(phase: str):
    """One log line per epoch (loss, val accuracy, seconds): long phases show progress."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info("%s epoch %d: loss %.4f, val accuracy %.4f (%.0f s)", phase, epoch + 1, logs.get("loss", np.nan),
                     logs.get("val_accuracy", np.nan), time.perf_counter() - self.t0)

    return EpochLog()


def _early_stop(patience: int):
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience, restore_best_weights=True,
                                         mode="max")


@dataclass
class TransferLearner:
    """One family, one image size: cached features, tuned head, fine-tuned top, final model."""

    family: str
    image_size: int
    provenance: Mapping[str, Any]
    split_layer: str | None = None
    seed: int = 42
    batch_size: int = 32
    times: dict[str, float] = field(default_factory=dict)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    phase_val: dict[str, float] = field(default_factory=dict)
    tuner_table: pd.DataFrame | None = None
    best_hp: dict[str, Any] = field(default_factory=dict)
    speeds: dict[str, float] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    used_paths: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import keras

        self.family = check_family(self.family)
        self.image_size = int(self.image_size)
        self.split_layer = self.split_layer or SPLIT_LAYERS[self.family]
        keras.utils.set_random_seed(self.seed)
        self.base = load_base(self.family, self.image_size, dict(self.provenance))
        self.base.trainable = False
        self.lower, self.top = split_model(self.base, self.split_layer)
        self.preprocess = preprocessing_layer(self.family)
        self.features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.pooled: dict[str, np.ndarray] = {}
        self.head = None
        self.model = None
        self.finetune_model = None
        self.finetuned_weights: list[str] = []
        self.end_to_end: dict[str, Any] = {}

    # ---------------------------------------------------------------- description
    def describe(self) -> pd.DataFrame:
        """Parameter counts of the frozen lower part, the fine-tunable top and the cached tensor shape."""
        def n(ws):
            return int(sum(np.prod(w.shape) for w in ws))

        top_layers = [l for l in self.top.layers if l.weights]
        return pd.DataFrame([
            {"part": f"lower (input … {self.split_layer}), frozen, run once", "layers": len(self.lower.layers),
             "params": n(self.lower.weights), "output": str(tuple(self.lower.output.shape[1:]))},
            {"part": f"top ({top_layers[0].name} … {top_layers[-1].name}), fine-tuned in phase 2",
             "layers": len(self.top.layers), "params": n(self.top.weights), "output": str(tuple(self.top.output.shape[1:]))},
        ]).set_index("part")

    # ---------------------------------------------------------------- features
    def _cache_key(self, paths: Sequence[str]) -> str:
        ident = "|".join([self.family, str(self.image_size), self.split_layer, str(self.provenance.get("sha256")),
                          *map(str, paths)])
        return text_digest(ident)

    def _run_lower(self, paths: Sequence[str], labels: np.ndarray, desc: str) -> np.ndarray:
        import tensorflow as tf

        from .pipeline import make_dataset

        ds = make_dataset(paths, labels, self.image_size, batch_size=64, cache=False)
        pre, lower = self.preprocess, self.lower

        @tf.function(reduce_retracing=True)
        def step(x):
            return tf.cast(lower(pre(x), training=False), tf.float16)

        out, done, t0, last = [], 0, time.perf_counter(), time.perf_counter()
        for x, _ in ds:
            out.append(step(x).numpy())
            done += int(x.shape[0])
            if time.perf_counter() - last > 60:
                log.info("%s: %d/%d images (%.0f img/s)", desc, done, len(paths), done / (time.perf_counter() - t0))
                last = time.perf_counter()
        return np.concatenate(out)

    def extract(self, data, splits: Sequence[str] = ("train", "val"), cache: bool = True,
                max_train_per_class: int | None = None, max_val_per_class: int | None = None) -> pd.DataFrame:
        """Run the frozen lower part once over each split; keep the activations (float16).

        With ``cache`` the arrays are also stored as ``.npy`` in ``outputs/features`` and reused by a
        later run with the same family, size, cut, weights and files (the timing reported is then the
        one measured when the cache was computed, stored beside it). ``max_train_per_class`` trains on
        a stratified random subset of the training split when a base is too slow to run over all of it
        (``max_val_per_class`` likewise for val; the test split always stays complete). Returns a timing table.
        """
        rows = []
        folder = output_dir() / "features"
        for split in splits:
            paths, labels = data.paths(split), data.labels(split)
            cap = {"train": max_train_per_class, "val": max_val_per_class}.get(split)
            if cap:
                keep = stratified_subset(labels, cap, self.seed)
                paths, labels = [paths[i] for i in keep], labels[keep]
                self.caps[split] = int(cap)
            self.used_paths[split] = list(paths)
            f = folder / f"{self.family}_{self.image_size}_{self._cache_key(paths)}_{split}.npy"
            meta_file = f.with_suffix(".json")
            t0 = time.perf_counter()
            if cache and f.is_file() and meta_file.is_file():
                X = np.load(f)
                meta = json.loads(meta_file.read_text())
                secs = float(meta["seconds"])  # the cost of computing it, measured when it was computed
                how = f"loaded from cache in {time.perf_counter() - t0:.1f} s (computed {meta['created']})"
            else:
                X = self._run_lower(paths, labels, f"{self.family} {split}")
                secs = time.perf_counter() - t0
                how = "computed"
                if cache:
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = f.with_name(f".{f.stem}.{os.getpid()}.tmp.npy")
                    np.save(tmp, X)
                    os.replace(tmp, f)
                    atomic_write_json(meta_file, {"seconds": round(secs, 1), "images": len(paths),
                                                  "created": time.strftime("%Y-%m-%d %H:%M")})
            self.features[split] = (X, labels)
            self.times[f"extract_{split}"] = round(secs, 1)
            self.speeds[f"lower_{split}"] = len(paths) / secs
            rows.append({"split": split, "images": len(paths), "activation shape": str(X.shape[1:]),
                         "MB (float16)": round(X.nbytes / 2**20, 1), "seconds to compute": round(secs, 1),
                         "img/s": round(len(paths) / secs, 1), "how": how})
            log.info("%s features of %s: %s, %s in %.1f s", self.family, split, X.shape, how, secs)
        self._pool()
        return pd.DataFrame(rows).set_index("split")

    def _pool(self) -> None:
        """Frozen top over the cached activations → pooled feature vectors (phase 1 input)."""
        t0 = time.perf_counter()
        for split, (X, _) in self.features.items():
            self.pooled[split] = np.asarray(self.top.predict(X.astype("float32"), batch_size=256, verbose=0))
        self.times["pool_frozen_top"] = round(time.perf_counter() - t0, 1)

    def _xy(self, split: str, pooled: bool):
        if split not in self.features:
            raise RuntimeError(f"no {split} features yet: call extract(data) first")
        y = self.features[split][1]
        return (self.pooled[split] if pooled else self.features[split][0]), y

    # ---------------------------------------------------------------- tuning
    def tune_head(self, max_trials: int = 8, epochs: int = 15, directory: str | os.PathLike | None = None,
                  lrs: Sequence[float] = (3e-3, 1e-3, 3e-4), units: Sequence[int] = (0, 128, 256, 512),
                  dropouts: Sequence[float] = (0.0, 0.2, 0.4)) -> pd.DataFrame:
        """Random search (keras-tuner) of the head's learning rate, width and dropout on the cached
        pooled features; selection by **val** accuracy. Returns one row per trial, best first."""
        Xtr, ytr = self._xy("train", True)
        Xva, yva = self._xy("val", True)
        dim = Xtr.shape[1]

        def build(hp):
            head = make_head(dim, hp.Choice("units", list(units)), hp.Choice("dropout", list(dropouts)))
            _compile(head, hp.Choice("lr", list(lrs)))
            return head

        d = Path(directory) if directory else output_dir() / "tuner"
        tuner = _random_search_class()(build, objective="val_accuracy", max_trials=max_trials, seed=self.seed,
                                directory=str(d), project_name=f"{self.family}_{self.image_size}", overwrite=True)
        t0 = time.perf_counter()
        tuner.search(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=256, verbose=0,
                     callbacks=[_early_stop(3)])
        self.times["tune_head"] = round(time.perf_counter() - t0, 1)
        rows = []
        for t in tuner.oracle.get_best_trials(max_trials):
            rows.append({**t.hyperparameters.values, "val_accuracy": t.score})
        self.tuner_table = pd.DataFrame(rows)
        self.tuner_table.index.name = "rank"
        self.best_hp = {k: (v.item() if hasattr(v, "item") else v)
                        for k, v in self.tuner_table.iloc[0][["units", "dropout", "lr"]].items()}
        self.best_hp["units"] = int(self.best_hp["units"])
        log.info("best head: %s (val accuracy %.4f)", self.best_hp, self.tuner_table.iloc[0]["val_accuracy"])
        return self.tuner_table

    # ---------------------------------------------------------------- phase 1
    def train_head(self, epochs: int = 30, units: int | None = None, dropout: float | None = None,
                   lr: float | None = None, patience: int = 5) -> dict[str, list[float]]:
        """Phase 1: the base frozen (its output is the cached pooled features); train the head."""
        import keras

        hp = {"units": 256, "dropout": 0.3, "lr": 1e-3, **self.best_hp}
        hp.update({k: v for k, v in {"units": units, "dropout": dropout, "lr": lr}.items() if v is not None})
        self.best_hp = hp
        keras.utils.set_random_seed(self.seed)
        Xtr, ytr = self._xy("train", True)
        Xva, yva = self._xy("val", True)
        self.head = make_head(Xtr.shape[1], hp["units"], hp["dropout"])
        _compile(self.head, hp["lr"])
        t0 = time.perf_counter()
        h = self.head.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=4 * self.batch_size,
                          verbose=0, callbacks=[_early_stop(patience)])
        self.times["phase1_head"] = round(time.perf_counter() - t0, 1)
        self.histories["phase1"] = {k: [float(v) for v in vals] for k, vals in h.history.items()}
        self.phase_val["phase 1: frozen base + head"] = float(max(h.history["val_accuracy"]))
        log.info("phase 1: val accuracy %.4f after %d epochs (%.0f s)", self.phase_val["phase 1: frozen base + head"],
                 len(h.history["loss"]), self.times["phase1_head"])
        return self.histories["phase1"]

    # ---------------------------------------------------------------- phase 2
    def fine_tune(self, epochs: int = 5, lr: float = 1e-4, patience: int = 2) -> dict[str, list[float]]:
        """Phase 2: unfreeze the top (BN stays frozen), recompile at a low LR, train top + head on the
        cached activations. The top is called with ``training=False`` (BN and the base in inference mode)."""
        import keras

        if self.head is None:
            raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the top")
        Xtr, ytr = self._xy("train", False)
        Xva, yva = self._xy("val", False)
        n = set_top_trainable(self.top, True)  # before the model is built: Keras reads the flags then
        inp = keras.Input(Xtr.shape[1:], name="cached_activations")
        out = self.head(self.top(inp, training=False))
        ft = keras.Model(inp, out, name=f"{self.family}_finetune")
        _compile(ft, lr)  # (re)compile after changing trainable: only then does the optimiser see it
        self.finetuned_weights = [w.path for w in ft.trainable_weights]
        log.info("phase 2: %d trainable weight tensors in the top (%s), lr %g", n, self.split_layer, lr)
        before = float(ft.evaluate(Xva.astype("float32"), yva, batch_size=128, verbose=0)[1])
        t0 = time.perf_counter()
        h = ft.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=self.batch_size, verbose=0,
                   callbacks=[_early_stop(patience), _epoch_log("phase 2")])
        self.times["phase2_finetune"] = round(time.perf_counter() - t0, 1)
        set_top_trainable(self.top, False)
        hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
        hist["val_accuracy_before"] = [before]
        self.histories["phase2"] = hist
        self.phase_val[f"phase 2: fine-tuned top ({self.split_layer} …)"] = float(max(h.history["val_accuracy"]))
        self.finetune_model = ft
        log.info("phase 2: val accuracy %.4f → %.4f (%.0f s)", before, max(h.history["val_accuracy"]),
                 self.times["phase2_finetune"])
        return hist

    def fine_tune_end_to_end(self, data, *, epochs: int = 6, lr: float = 3e-4, first_layer: str | None = None,
                             augment: bool = True, patience: int | None = 3, time_budget: float | None = None,
                             schedule: str | None = "cosine", resume: bool = False) -> dict[str, Any]:
        """Phase 3: fine-tune the base from ``first_layer`` up (``None``: all of it) on the *images*,
        with augmentation, starting from the phase-1 head (and the phase-2 top, if it ran).

        Cached activations cannot be augmented (a flipped image has other activations), so this
        phase pays the full forward and backward pass every step; it is affordable only for a
        light base. Batch-norm stays frozen (:func:`unfreeze_from`). Training goes through
        :func:`helpers.train.fit`: cosine learning-rate decay, early stopping on val accuracy with
        the best weights restored, a time budget, per-epoch macro-F1, resumable checkpoints. The
        trained layers are the deployable model's own (:meth:`assemble`), so no copy is needed.
        Returns ``fit``'s summary.
        """
        import keras

        from .pipeline import make_dataset
        from .train import fit

        if self.head is None:
            raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the base")
        model = self.model or self.assemble()
        n = unfreeze_from(self.base, first_layer)
        inp = keras.Input((self.image_size, self.image_size, 3), dtype="float32", name="image")
        x = finetune_augmentation(self.seed)(inp) if augment else inp
        wrapper = keras.Model(inp, model(x), name=f"{self.family}_end_to_end")
        self.used_paths["val"] = data.paths("val")
        train_ds = make_dataset(data.paths("train"), data.labels("train"), self.image_size, self.batch_size,
                                shuffle=True, seed=self.seed)
        val_ds = make_dataset(data.paths("val"), data.labels("val"), self.image_size, 64)
        log.info("phase 3: %d trainable weight tensors (from %s), lr %g, %s augmentation", n,
                 first_layer or "the first layer", lr, "with" if augment else "without")
        try:
            res = fit(wrapper, train_ds, val_ds, epochs=epochs, learning_rate=lr, schedule=schedule,
                      patience=patience, min_delta=0.001, run_name=f"transfer_{self.family}_{self.image_size}_e2e",
                      resume=resume, time_budget=time_budget)
        finally:
            self.base.trainable = False  # the deployable model is used for inference from here on
        self.times["phase3_end_to_end"] = round(res["train_seconds"], 1)
        hist = {k: [float(v) for v in vals] for k, vals in res["history"].items()}
        self.histories["phase3"] = hist
        best = res["best_epoch"]
        label = f"phase 3: end-to-end from {first_layer or 'the input'}" + (", augmented" if augment else "")
        self.phase_val[label] = float(hist["val_accuracy"][best - 1]) if best else float("nan")
        self.end_to_end = {k: res[k] for k in ("epochs_run", "max_epochs", "best_epoch", "stopped", "schedule",
                                                "learning_rate", "patience", "time_budget", "steps_per_epoch")}
        self.end_to_end.update(first_layer=first_layer, augmentation=("flip + quarter turns + stain jitter"
                                                                     if augment else None),
                               trainable_weight_tensors=n)
        self.speeds["end_to_end_train"] = res["epochs_run"] * len(data.paths("train")) / max(res["train_seconds"], 1e-9)
        return res

    def val_probs(self, data=None) -> tuple[np.ndarray, np.ndarray]:
        """(val probabilities, labels) of the current model: from the cached activations, or — after
        phase 3, which changed the lower layers too — end-to-end from the val images."""
        if "phase3" in self.histories:
            from .evaluate import predict_proba
            from .pipeline import make_dataset

            if data is None:
                raise ValueError("after end-to-end fine-tuning the val images are needed: val_probs(data)")
            ds = make_dataset(data.paths("val"), data.labels("val"), self.image_size, batch_size=64, cache=False)
            y, p = predict_proba(self.model, ds)
            return p, y
        return self.val_from_cache(), self.labels("val")

    def val_from_cache(self) -> np.ndarray:
        """Val probabilities of the current top + head from the cached val activations (labels:
        :meth:`labels`)."""
        X, _ = self._xy("val", False)
        pooled = self.top.predict(X.astype("float32"), batch_size=256, verbose=0)
        return np.asarray(self.head.predict(pooled, batch_size=256, verbose=0))

    def labels(self, split: str) -> np.ndarray:
        """Labels of the images whose features were extracted for ``split`` (after any cap)."""
        return self._xy(split, True)[1]

    # ---------------------------------------------------------------- final model
    def assemble(self):
        """The deployable model: ``[0,255] image → preprocess → base(training=False) → head``."""
        import keras

        if self.head is None:
            raise RuntimeError("no head yet: run train_head (phase 1) first")
        self.base.trainable = False
        inp = keras.Input((self.image_size, self.image_size, 3), dtype="float32", name="image")
        x = self.preprocess(inp)
        x = self.base(x, training=False)
        out = self.head(x)
        self.model = keras.Model(inp, out, name=f"transfer_{self.family}")
        return self.model

    def evaluate_split(self, data, split: str = "test") -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """End-to-end evaluation of the assembled model on the images of ``split`` (once, for test)."""
        from .evaluate import metrics_block, predict_proba
        from .pipeline import make_dataset

        model = self.model or self.assemble()
        ds = make_dataset(data.paths(split), data.labels(split), self.image_size, batch_size=64, cache=False)
        t0 = time.perf_counter()
        y, p = predict_proba(model, ds)
        secs = time.perf_counter() - t0
        self.times[f"evaluate_{split}"] = round(secs, 1)
        self.speeds[f"full_model_{split}"] = len(y) / secs
        return metrics_block(y, p), y, p

    def phase_table(self) -> pd.DataFrame:
        """Val accuracy after each phase (and the tuner's best head)."""
        rows = []
        if self.tuner_table is not None and len(self.tuner_table):
            rows.append({"phase": "tuning: best head found by keras-tuner", "val_accuracy": float(self.tuner_table.iloc[0]["val_accuracy"])})
        rows += [{"phase": k, "val_accuracy": v} for k, v in self.phase_val.items()]
        return pd.DataFrame(rows).set_index("phase")

    def train_seconds(self) -> float:
        """Feature extraction (train+val) + tuning + every training phase that ran."""
        keys = ("extract_train", "extract_val", "pool_frozen_top", "tune_head", "phase1_head", "phase2_finetune",
                "phase3_end_to_end")
        return float(sum(self.times.get(k, 0.0) for k in keys))

    def record(self, name: str, data, val: Mapping[str, Any], test: Mapping[str, Any] | None, *, mode: str,
               **extra: Any) -> dict[str, Any]:
        """A results-registry record with weights provenance, phase times and tuner results."""
        from .results import make_record

        epochs = sum(len(h.get("loss", [])) for h in self.histories.values())
        tuner = self.tuner_table.to_dict(orient="records") if self.tuner_table is not None else None
        return make_record(name, image_size=self.image_size, epochs=epochs, train_seconds=self.train_seconds(),
                           weights_source=dict(self.provenance), data=data.provenance(), seed=self.seed, val=val,
                           test=test, mode=mode, family=self.family, split_layer=self.split_layer,
                           pretrained=is_pretrained(self.provenance), weights_summary=describe(self.provenance),
                           phase_seconds=dict(self.times), phase_val_accuracy=dict(self.phase_val),
                           throughput_img_per_s={k: round(v, 1) for k, v in self.speeds.items()},
                           head_hyperparameters=dict(self.best_hp), tuner=tuner, history=self.histories,
                           params=int(self.model.count_params()) if self.model is not None else None,
                           preprocessing=PREPROCESSING[self.family], per_class_caps=dict(self.caps),
                           n_used={k: int(len(v[1])) for k, v in self.features.items()},
                           end_to_end=dict(self.end_to_end) or None,
                           **extra)

    def save(self, name: str, data, metrics: Mapping[str, Any], directory: str | os.PathLike | None = None,
             predictions: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
        """Save the assembled model + sidecar atomically to ``outputs/models/<name>/`` (helpers.export)."""
        from .export import save_bundle

        model = self.model or self.assemble()
        d = Path(directory) if directory else output_dir() / "models" / name
        return save_bundle(model, d, image_size=self.image_size, weights_source=dict(self.provenance),
                           metrics=metrics, data=data.provenance(),
                           preprocessing=f"{INPUT_CONTRACT}; {PREPROCESSING[self.family]}",
                           predictions=predictions, family=self.family, split_layer=self.split_layer,
                           pretrained=is_pretrained(self.provenance), head_hyperparameters=dict(self.best_hp))


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 42) -> np.ndarray:
    """Sorted indices of at most ``per_class`` random items of each label."""
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"max_train_per_class must be a positive integer, got {per_class!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def resolution_probe(family: str, provenance: Mapping[str, Any], data, sizes: Sequence[int] = (64, 96, 128),
                     per_class: int = 30, seed: int = 42) -> pd.DataFrame:
    """How good are the *frozen* ImageNet features at each image size? A quick answer before paying
    for a size: a logistic-regression probe on the pooled features of ``per_class`` train and val
    images per class (val accuracy), with the measured speed on real images."""
    import keras
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .pipeline import make_dataset

    picks = {}
    for split in ("train", "val"):
        keep = stratified_subset(data.labels(split), per_class, seed)
        picks[split] = ([data.paths(split)[i] for i in keep], data.labels(split)[keep])
    rows = []
    for size in sizes:
        base = load_base(family, int(size), dict(provenance))
        inp = keras.Input((int(size), int(size), 3))
        model = keras.Model(inp, base(preprocessing_layer(family)(inp), training=False))
        feats, secs = {}, 0.0
        for split, (paths, labels) in picks.items():
            ds = make_dataset(paths, labels, int(size), batch_size=64, cache=False)
            t0 = time.perf_counter()
            feats[split] = np.asarray(model.predict(ds, verbose=0))
            secs += time.perf_counter() - t0
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(feats["train"], picks["train"][1])
        acc = float((clf.predict(feats["val"]) == picks["val"][1]).mean())
        n = sum(len(p) for p, _ in picks.values())
        rows.append({"image_size": int(size), "probe val accuracy": round(acc, 4), "img/s (incl. start-up)": round(n / secs, 1)})
        log.info("%s at %d px: frozen-feature probe val accuracy %.3f (%.0f img/s)", family, size, acc, n / secs)
        keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("image_size")
