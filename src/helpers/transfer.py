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
(The cache itself is :mod:`helpers.features`.) A light base can afford **phase 3**: every layer from
a chosen one up, fine-tuned end-to-end on augmented images.

Each phase is a function of the Keras parts and arrays it needs (:func:`tune_head`,
:func:`train_head`, :func:`fine_tune_top`, :func:`fine_tune_end_to_end`, :func:`assemble`). The
chapters carry the parts between cells in a :class:`TransferRun` (plain fields) and call one step
per cell (:func:`start_run`, :func:`extract`, :func:`tune`, :func:`phase1`, :func:`phase2`,
:func:`phase3`, :func:`evaluate`, :func:`save`); saving goes through :func:`helpers.runs.save_run`.

Profiles: :func:`recipe` returns a :class:`Recipe` (sizes, epochs, phases) per profile and family.
``"cpu"`` is the book's recipe, measured on a 2-core CPU (cache + head; phase 2 only for MobileNetV2,
whose top does not over-fit the cache; phase 3 from the middle of VGG19 and ResNet50, from the input of
MobileNetV2). ``"gpu"`` runs phase 1 and then phase 3 for every family at 224 px (the ImageNet
networks' own scale; MedMNIST+ reports its best end-to-end results there), 10-15 epochs with a
cosine schedule and early stopping, batch 64; phase 2 is skipped (phase 3 trains the same layers
and all the others), so :func:`extract` keeps only the *pooled* features (the whole frozen base, batch by
batch: at 224 px the split layer's activations of every training image would not fit a free Colab's RAM), and on
a GPU every model is built under Keras' ``mixed_float16`` policy (the head's softmax in float32; ``compile``
scales the loss), restored afterwards. ``"auto"`` is gpu when TensorFlow sees a GPU (:func:`resolve_profile`). On
more than one GPU, :func:`distribution_strategy` gives ``tf.distribute.MirroredStrategy``, and the
run builds and compiles every model inside its scope (``start_run(..., strategy=...)``); there every training batch
splits evenly across the GPUs and validation runs outside the strategy (Keras fails on uneven batches).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import CLASSES
from .augment import finetune_augmentation
from .config import output_dir
from .predictions import Predictions, predict_split
from .runs import SavedRun
from .weights import check_family, describe, is_pretrained, load_base

log = logging.getLogger("helpers.transfer")


@contextmanager
def _quiet(logger: str = "helpers") -> Iterator[None]:
    """Raise ``logger`` to WARNING for the block (its INFO lines would repeat on the page), then restore it."""
    lg = logging.getLogger(logger)
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)

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
        ends = ("_add", "_out", "_pool", "conv2", "relu")
        names = [layer.name for layer in base.layers if layer.name.endswith(ends)][-12:]
        raise ValueError(f"{base.name} has no layer {split_layer!r}; candidates near the top: {names}") from None
    lower = keras.Model(base.input, cut, name=f"{base.name}_lower")
    top = keras.Model(cut, base.output, name=f"{base.name}_top")
    return lower, top


def make_head(input_dim: int, units: int = 256, dropout: float = 0.3,
              n_classes: int = len(CLASSES), name: str = "head"):
    """The new classifier on the base's pooled features:
    Dropout → [Dense(units, relu) → Dropout] → Dense(softmax).

    The softmax computes in float32 under any dtype policy (mixed precision).
    """
    import keras

    L = keras.layers
    inputs = keras.Input((int(input_dim),), name="features")
    x = L.Dropout(dropout, name="head_dropout1")(inputs)
    if units:
        x = L.Dense(int(units), activation="relu", name="head_dense")(x)
        x = L.Dropout(dropout, name="head_dropout2")(x)
    outputs = L.Dense(n_classes, activation="softmax", dtype="float32",
                      name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _compile(model, lr: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def freeze(model) -> None:
    """Freeze every layer of ``model`` (the inverse of :func:`unfreeze_from`). Recompile afterwards!"""
    model.trainable = False


def unfreeze_from(base, first_layer: str | None = None) -> int:
    """Unfreeze ``base`` from ``first_layer`` up (``None``: every layer), but
    keep every batch-norm layer frozen; returns the trainable weight tensors.

    Keras 3's ``fit`` calls the model with ``training=True``, and that reaches
    a nested base even when it was called with ``training=False``
    (keras-team/keras#20285): only ``trainable=False`` keeps a batch-norm
    layer on its ImageNet statistics. Recompile afterwards!
    """
    import keras

    names = [layer.name for layer in base.layers]
    if first_layer is not None and first_layer not in names:
        raise ValueError(f"{base.name} has no layer {first_layer!r}; "
                         f"e.g. {names[-12:]}")
    start = names.index(first_layer) if first_layer is not None else 0
    base.trainable = True
    for i, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and not is_bn
    return len(base.trainable_weights)


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


# Several replicas (MirroredStrategy, e.g. two GPUs): Keras fails on a batch that does not split evenly across them
# (keras-team/keras#19246: fit and evaluate average the first batch over the replicas to learn its shapes, "AddN must
# have the same size and shape"; a replica given an empty shard fails in the convolutions). There, training batches
# are made to split evenly and validation and prediction run outside the strategy, on every image. One replica (the
# cpu profile) keeps Keras' own paths.
def _replicas(model) -> int:
    """How many replicas ``model`` is trained on (the strategy it was built under; 1 without one)."""
    return int(getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1))


def _even_batches(ds, n: int, batch_size: int, replicas: int):
    """The batches of ``ds`` (batched ``n`` shuffled elements), every one splitting evenly across ``replicas``.

    A last batch that does not split evenly loses its ``n % batch_size % replicas`` last elements (fewer than
    ``replicas``; the training set is reshuffled every epoch, so other ones each epoch)."""
    import tensorflow as tf

    if batch_size % replicas:
        raise ValueError(f"the batch size ({batch_size}) must be a multiple of the {replicas} replicas "
                         "(keras-team/keras#19246)")
    cut = n % batch_size % replicas
    if not cut:
        return ds
    steps = -(-(n - cut) // batch_size)  # unbatch() forgets the length, which the cosine schedule needs
    ds = ds.unbatch().take(n - cut).batch(batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def _predict(model, X: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict``; with several replicas, one plain model call per batch (keras-team/keras#19246)."""
    from .predictions import predict_array

    if _replicas(model) > 1:
        return predict_array(model, X, batch_size)
    return np.asarray(model.predict(X, batch_size=batch_size, verbose=0))


def _val_scores(model, X: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on every one of ``X``, computed outside the strategy."""
    import keras

    p = _predict(model, X, batch_size)
    loss = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y, p))
    return float(np.mean(loss)), float(np.mean(p.argmax(1) == np.asarray(y)))


def _validation(X: np.ndarray, y: np.ndarray, batch_size: int):
    """A callback that writes ``val_loss`` and ``val_accuracy`` into the epoch's logs (list it before the
    callbacks that read them): ``fit``'s ``validation_data`` for several replicas."""
    import keras

    class Validation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["val_loss"], logs["val_accuracy"] = _val_scores(self.model, X, y, batch_size)

    return Validation()


def _fit(model, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, *, epochs: int,
         batch_size: int, callbacks: Sequence[Any]):
    """``model.fit`` on arrays, validated on ``(Xva, yva)`` after every epoch; several replicas: see above."""
    replicas = _replicas(model)
    if replicas == 1:
        return model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=batch_size, verbose=0,
                         callbacks=list(callbacks))
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((Xtr, ytr)).shuffle(len(Xtr), reshuffle_each_iteration=True)
    ds = _even_batches(ds.batch(batch_size), len(Xtr), batch_size, replicas)
    return model.fit(ds, epochs=epochs, verbose=0, callbacks=[_validation(Xva, yva, batch_size), *callbacks])



# ==================================================================================== the phases
# Each phase is a function of the Keras parts and arrays it needs; it returns what it trained, the
# Keras history and the seconds it took. :class:`TransferRun` below only carries them between cells.
@dataclass(frozen=True)
class PhaseResult:
    """A trained phase: the model it trained, its Keras history, its wall time and the weights it trained."""

    model: Any
    history: dict[str, list[float]]
    seconds: float
    trained: tuple[str, ...] = ()           # paths of the weight tensors the phase trained
    summary: Mapping[str, Any] | None = None  # phase 3: the summary of :func:`helpers.train.fit`


def _history(history: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    return {k: [float(v) for v in vals] for k, vals in history.items()}


def pool(top, X: np.ndarray) -> np.ndarray:
    """The (frozen) top's pooled output for cached activations ``X``: the head's input in phase 1."""
    return _predict(top, X.astype("float32"), 256)


def head_probs(top, head, X: np.ndarray) -> np.ndarray:
    """Class probabilities of ``top → head`` for cached activations ``X``."""
    return _predict(head, pool(top, X), 256)


def tune_head(Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, *, directory: str | os.PathLike,
              project_name: str = "head", seed: int = 42, max_trials: int = 8, epochs: int = 15,
              lrs: Sequence[float] = (3e-3, 1e-3, 3e-4), units: Sequence[int] = (0, 128, 256, 512),
              dropouts: Sequence[float] = (0.0, 0.2, 0.4), n_classes: int = len(CLASSES)) -> tuple[pd.DataFrame, float]:
    """Random search (keras-tuner) of the head's learning rate, width and dropout on pooled features.

    Selection by **val** accuracy. Returns ``(one row per trial, best first; seconds)``.
    """
    dim = Xtr.shape[1]

    def build(hp):
        head = make_head(dim, hp.Choice("units", list(units)), hp.Choice("dropout", list(dropouts)), n_classes)
        _compile(head, hp.Choice("lr", list(lrs)))
        return head

    tuner = _random_search_class()(build, objective="val_accuracy", max_trials=max_trials, seed=seed,
                                   directory=str(directory), project_name=project_name, overwrite=True)
    t0 = time.perf_counter()
    tuner.search(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=256, verbose=0,
                 callbacks=[_early_stop(3)])
    seconds = time.perf_counter() - t0
    table = pd.DataFrame([{**t.hyperparameters.values, "val_accuracy": t.score}
                          for t in tuner.oracle.get_best_trials(max_trials)])
    table.index.name = "rank"
    return table, seconds


def best_hyperparameters(table: pd.DataFrame) -> dict[str, Any]:
    """``units``, ``dropout`` and ``lr`` of the best trial of :func:`tune_head` (plain Python numbers)."""
    best = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[0][["units", "dropout", "lr"]].items()}
    best["units"] = int(best["units"])
    return best


def train_head(Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, *, units: int = 256,
               dropout: float = 0.3, lr: float = 1e-3, epochs: int = 30, batch_size: int = 128, patience: int = 5,
               seed: int = 42, n_classes: int = len(CLASSES)) -> PhaseResult:
    """Phase 1: a new head (:func:`make_head`, Keras seeded with ``seed``) trained on pooled features."""
    import keras

    keras.utils.set_random_seed(seed)
    head = make_head(Xtr.shape[1], units, dropout, n_classes)
    _compile(head, lr)
    t0 = time.perf_counter()
    h = _fit(head, Xtr, ytr, Xva, yva, epochs=epochs, batch_size=batch_size, callbacks=[_early_stop(patience)])
    seconds = time.perf_counter() - t0
    return PhaseResult(head, _history(h.history), seconds, tuple(w.path for w in head.trainable_weights))


def fine_tune_top(top, head, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, *,
                  lr: float = 1e-4, epochs: int = 5, batch_size: int = 32, patience: int = 2,
                  name: str = "finetune") -> PhaseResult:
    """Phase 2: unfreeze ``top`` (batch-norm stays frozen), train ``top → head`` on cached activations.

    The model is compiled *after* the unfreezing (only then does the optimiser see it), the top is
    called with ``training=False``, and it is frozen again afterwards. The history also holds
    ``val_accuracy_before`` (top + head before this phase).
    """
    import keras

    n = unfreeze_from(top)  # before the model is built: Keras reads the flags then
    inp = keras.Input(Xtr.shape[1:], name="cached_activations")
    model = keras.Model(inp, head(top(inp, training=False)), name=name)
    _compile(model, lr)
    trained = tuple(w.path for w in model.trainable_weights)
    log.info("phase 2: %d trainable weight tensors in %s, lr %g", n, top.name, lr)
    if _replicas(model) > 1:
        before = _val_scores(model, Xva.astype("float32"), yva, 128)[1]
    else:
        before = float(model.evaluate(Xva.astype("float32"), yva, batch_size=128, verbose=0)[1])
    try:
        t0 = time.perf_counter()
        h = _fit(model, Xtr, ytr, Xva, yva, epochs=epochs, batch_size=batch_size,
                 callbacks=[_early_stop(patience), _epoch_log("phase 2")])
        seconds = time.perf_counter() - t0
    finally:
        freeze(top)
    history = _history(h.history)
    history["val_accuracy_before"] = [before]
    return PhaseResult(model, history, seconds, trained)


def fine_tune_end_to_end(model, base, data, *, image_size: int, epochs: int = 6, lr: float = 3e-4,
                         first_layer: str | None = None, augment: bool = True, seed: int = 42,
                         batch_size: int = 32, patience: int | None = None, time_budget: float | None = None,
                         schedule: str | None = "cosine", resume: bool = False, run_name: str = "transfer_e2e",
                         name: str = "end_to_end") -> PhaseResult:
    """Phase 3: fine-tune ``base`` (inside the deployable ``model``) from ``first_layer`` up on the *images*.

    Cached activations cannot be augmented (a flipped image has other activations), so this phase
    pays the forward pass of the whole base and the backward pass from ``first_layer`` up every step.
    ``patience=None`` (the default) runs the whole cosine schedule and keeps the best epoch: an early
    stop would cut the schedule before its low-learning-rate epochs.
    Batch-norm stays frozen (:func:`unfreeze_from`). ``augment`` wraps ``model`` in
    :func:`finetune_augmentation` while training only. Training goes through :func:`helpers.train.fit`
    (cosine decay, early stopping on val accuracy with the best weights restored, a time budget,
    per-epoch macro-F1, resumable checkpoints) on the train and val splits of ``data``. ``model`` is
    trained in place and returned; ``summary`` is ``fit``'s, ``trained`` the base's trained weights.
    """
    import keras

    from .pipeline import make_dataset
    from .train import fit

    n = unfreeze_from(base, first_layer)
    trained = tuple(w.path for w in base.trainable_weights)
    inp = keras.Input((image_size, image_size, 3), dtype="float32", name="image")
    x = finetune_augmentation(seed)(inp) if augment else inp
    wrapper = keras.Model(inp, model(x), name=name)
    train_ds = make_dataset(data.paths("train"), data.labels("train"), image_size, batch_size, shuffle=True,
                            seed=seed)
    if _replicas(wrapper) > 1:  # validation runs outside the strategy already (helpers.train.EpochEnd)
        train_ds = _even_batches(train_ds, len(data.paths("train")), batch_size, _replicas(wrapper))
    val_ds = make_dataset(data.paths("val"), data.labels("val"), image_size, 64)
    log.info("phase 3: %d weight tensors train from %s, lr %g%s", n, first_layer or "the input", lr,
             ", augmented" if augment else "")
    try:
        res = fit(wrapper, train_ds, val_ds, epochs=epochs, learning_rate=lr, schedule=schedule,
                  patience=patience, min_delta=0.001, run_name=run_name, resume=resume, time_budget=time_budget)
    finally:
        freeze(base)  # the deployable model is used for inference from here on
    return PhaseResult(model, _history(res["history"]), float(res["train_seconds"]), trained, res)


def assemble(preprocess, base, head, image_size: int, name: str = "transfer"):
    """The deployable model: image in [0, 255] → preprocess → frozen base,
    called in inference mode → head."""
    import keras

    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), dtype="float32",
                         name="image")
    x = preprocess(inputs)
    x = base(x, training=False)  # batch norm keeps its ImageNet statistics
    return keras.Model(inputs, head(x), name=name)


# ==================================================================================== one run, cell by cell
@dataclass
class TransferRun:
    """The parts and results of one transfer-learning run (one family, one image size), carried between cells.

    Plain fields only: :func:`start_run` makes it, :func:`extract`, :func:`tune`, :func:`phase1`,
    :func:`phase2`, :func:`phase3` and :func:`evaluate` call the functions above and note what they
    return (``times`` in seconds, ``speeds`` in images/s), :func:`save` writes the record and bundle.
    """

    family: str
    image_size: int
    provenance: Mapping[str, Any]
    split_layer: str
    seed: int
    batch_size: int
    base: Any
    lower: Any
    top: Any
    preprocess: Any
    # split → (activations, y); activations None in a pooled-only run (it keeps only ``pooled``)
    features: dict[str, tuple[np.ndarray | None, np.ndarray]] = field(default_factory=dict)
    pooled: dict[str, np.ndarray] = field(default_factory=dict)
    used_paths: dict[str, list[str]] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    speeds: dict[str, float] = field(default_factory=dict)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    phase_val: dict[str, float] = field(default_factory=dict)
    tuner_table: pd.DataFrame | None = None
    best_hp: dict[str, Any] = field(default_factory=dict)
    head: Any = None
    model: Any = None
    finetuned_weights: list[str] = field(default_factory=list)
    end_to_end: dict[str, Any] = field(default_factory=dict)
    profile: str = "cpu"
    strategy: Any = None  # a tf.distribute strategy (gpu profile); None: TensorFlow's default
    classes: tuple[str, ...] = CLASSES  # the data's classes (set by :func:`extract`); the head has one output each
    pooled_only: bool = False  # extract keeps only the pooled features (no phase 2)
    precision: str = "float32"  # the Keras dtype policy every model of the run is built under


def start_run(family: str, image_size: int, provenance: Mapping[str, Any], split_layer: str | None = None, *,
              seed: int = 42, batch_size: int = 32, profile: str = "cpu", strategy=None,
              pooled_only: bool | None = None, precision: str | None = None) -> TransferRun:
    """Seed Keras, load the frozen base (:func:`helpers.weights.load_base`) and cut it at ``split_layer``.

    ``strategy`` (:func:`distribution_strategy`): the base, and later phase 3's model, are built and
    compiled inside its scope, so that Keras trains them on every replica. ``pooled_only`` and ``precision``
    (a Keras dtype policy, e.g. ``"mixed_float16"`` to force it on a CPU): ``None`` takes the profile's
    (:attr:`Recipe.pooled_only`, :attr:`Recipe.precision`); every model of the run is built under ``precision``."""
    import keras

    family = check_family(family)
    image_size = int(image_size)
    split_layer = split_layer or SPLIT_LAYERS[family]
    r = recipe(family, profile)
    pooled_only = r.pooled_only if pooled_only is None else bool(pooled_only)
    precision = precision or r.precision
    keras.utils.set_random_seed(seed)
    with _scope(strategy, precision):
        base = load_base(family, image_size, dict(provenance))
        freeze(base)
        lower, top = split_model(base, split_layer)
        preprocess = preprocessing_layer(family)
    return TransferRun(family, image_size, provenance, split_layer, seed, batch_size, base, lower, top,
                       preprocess, profile=r.profile, strategy=strategy, pooled_only=pooled_only,
                       precision=precision)


def parts_table(run: TransferRun) -> pd.DataFrame:
    """Parameter counts of the frozen lower part, the fine-tunable top and the cached tensor shape."""
    def n(ws):
        return int(sum(np.prod(w.shape) for w in ws))

    top_layers = [layer for layer in run.top.layers if layer.weights]
    return pd.DataFrame([
        {"part": f"lower (input … {run.split_layer}), frozen, run once", "layers": len(run.lower.layers),
         "params": n(run.lower.weights), "output": str(tuple(run.lower.output.shape[1:]))},
        {"part": f"top ({top_layers[0].name} … {top_layers[-1].name}), fine-tuned in phase 2 (if run)",
         "layers": len(run.top.layers), "params": n(run.top.weights), "output": str(tuple(run.top.output.shape[1:]))},
    ]).set_index("part")


def extract(run: TransferRun, data, splits: Sequence[str] = ("train", "val"), *, cache: bool = True,
            max_train_per_class: int | None = None, max_val_per_class: int | None = None) -> pd.DataFrame:
    """Run the frozen lower part once over each split (:func:`helpers.features.activations`), then pool.

    A pooled-only run (``run.pooled_only``) runs the whole frozen base instead, batch by batch, and keeps (and
    caches) only its pooled output: the activations at the split layer are never held for a whole split.

    ``max_train_per_class`` trains on a stratified random subset of the training split when a base
    is too slow to run over all of it (``max_val_per_class`` likewise for val; the test split always
    stays complete). ``cache``: reuse / write ``outputs/features``. Returns a timing table.
    """
    from .features import activations

    run.classes = tuple(getattr(data, "classes", CLASSES))
    rows = []
    for split in splits:
        paths, labels = data.paths(split), data.labels(split)
        cap = {"train": max_train_per_class, "val": max_val_per_class}.get(split)
        if cap:
            keep = stratified_subset(labels, cap, run.seed)
            paths, labels = [paths[i] for i in keep], labels[keep]
            run.caps[split] = int(cap)
        run.used_paths[split] = list(paths)
        act = activations(run.preprocess, run.base if run.pooled_only else run.lower, paths, labels,
                          family=run.family, image_size=run.image_size, split_layer=_cached_output(run),
                          weights_sha256=run.provenance.get("sha256"), split=split, cache=cache)
        X, secs = act.X, act.seconds
        run.features[split] = (None if run.pooled_only else X, labels)
        if run.pooled_only:
            run.pooled[split] = X.astype("float32")
        run.times[f"extract_{split}"] = round(secs, 1)
        run.speeds[f"lower_{split}"] = len(paths) / secs
        rows.append({"split": split, "images": len(paths), "activation shape": str(X.shape[1:]),
                     "MB (float16)": round(X.nbytes / 2**20, 1), "seconds to compute": round(secs, 1),
                     "img/s": round(len(paths) / secs, 1), "how": act.how})
        log.info("%s features of %s: %s, %s, which took %.1f s", run.family, split, X.shape, act.how, secs)
    if not run.pooled_only:
        t0 = time.perf_counter()
        for split, (X, _) in run.features.items():
            run.pooled[split] = pool(run.top, X)
        run.times["pool_frozen_top"] = round(time.perf_counter() - t0, 1)
    return pd.DataFrame(rows).set_index("split")


def _cached_output(run: TransferRun) -> str:
    """The cache key's name of what :func:`extract` caches: the split layer, or ``"pooled"`` in a pooled-only
    run; the precision is added unless it is float32 (float16 computations give other numbers)."""
    name = "pooled" if run.pooled_only else run.split_layer
    return name if run.precision == "float32" else f"{name} {run.precision}"


def _xy(run: TransferRun, split: str, *, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    if split not in run.features:
        raise RuntimeError(f"no {split} features yet: call extract(run, data) first")
    X, y = run.features[split]
    if not pooled and X is None:
        raise RuntimeError(f"phase 2 needs the cached activations at {run.split_layer}, and this run kept only the "
                           "pooled features (start_run's pooled_only, the default of the gpu profile, whose recipe "
                           "skips phase 2): start_run(..., pooled_only=False), then extract(run, data)")
    return (run.pooled[split] if pooled else X), y


def labels(run: TransferRun, split: str) -> np.ndarray:
    """Labels of the images whose features were extracted for ``split`` (after any cap)."""
    return _xy(run, split, pooled=True)[1]


def tune(run: TransferRun, *, max_trials: int = 8, epochs: int = 15, directory: str | os.PathLike | None = None,
         **space: Sequence[float]) -> pd.DataFrame:
    """:func:`tune_head` on the run's pooled features (``space``: ``lrs``, ``units``, ``dropouts``)."""
    Xtr, ytr = _xy(run, "train", pooled=True)
    Xva, yva = _xy(run, "val", pooled=True)
    table, seconds = tune_head(Xtr, ytr, Xva, yva, directory=Path(directory) if directory else output_dir() / "tuner",
                               project_name=f"{run.family}_{run.image_size}", seed=run.seed, max_trials=max_trials,
                               epochs=epochs, n_classes=len(run.classes), **space)
    run.times["tune_head"] = round(seconds, 1)
    run.tuner_table = table
    run.best_hp = best_hyperparameters(table)
    log.info("best head: %s (val accuracy %.4f)", run.best_hp, table.iloc[0]["val_accuracy"])
    return table


def phase1(run: TransferRun, *, epochs: int = 30, units: int | None = None, dropout: float | None = None,
           lr: float | None = None, patience: int = 5) -> dict[str, list[float]]:
    """Phase 1, :func:`train_head`: the base frozen (its output is the cached pooled features).

    The head's hyperparameters: the tuner's best (:func:`tune`), else 256 units, dropout 0.3, lr 1e-3;
    any given here wins. Returns the history.
    """
    hp = {"units": 256, "dropout": 0.3, "lr": 1e-3, **run.best_hp}
    hp.update({k: v for k, v in {"units": units, "dropout": dropout, "lr": lr}.items() if v is not None})
    run.best_hp = hp
    Xtr, ytr = _xy(run, "train", pooled=True)
    Xva, yva = _xy(run, "val", pooled=True)
    with _scope(run.strategy, run.precision):  # the head's variables must live in the strategy that trains it
        res = train_head(Xtr, ytr, Xva, yva, units=hp["units"], dropout=hp["dropout"], lr=hp["lr"],
                         epochs=epochs, batch_size=4 * run.batch_size, patience=patience, seed=run.seed,
                         n_classes=len(run.classes))
    run.head = res.model
    run.times["phase1_head"] = round(res.seconds, 1)
    run.histories["phase1"] = res.history
    run.phase_val["phase 1: frozen base + head"] = float(max(res.history["val_accuracy"]))
    log.info("phase 1: val accuracy %.4f after %d epochs (%.0f s)", run.phase_val["phase 1: frozen base + head"],
             len(res.history["loss"]), run.times["phase1_head"])
    return res.history


def phase2(run: TransferRun, *, epochs: int = 5, lr: float = 1e-4, patience: int = 2) -> dict[str, list[float]]:
    """Phase 2, :func:`fine_tune_top`: top + head on the cached activations, at a low learning rate
    (a pooled-only run has none: a clear error)."""
    Xtr, ytr = _xy(run, "train", pooled=False)
    Xva, yva = _xy(run, "val", pooled=False)
    if run.head is None:
        raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the top")
    with _scope(run.strategy, run.precision):
        res = fine_tune_top(run.top, run.head, Xtr, ytr, Xva, yva, lr=lr, epochs=epochs,
                            batch_size=run.batch_size, patience=patience, name=f"{run.family}_finetune")
    run.finetuned_weights = list(res.trained)
    run.times["phase2_finetune"] = round(res.seconds, 1)
    run.histories["phase2"] = res.history
    best = float(max(res.history["val_accuracy"]))
    run.phase_val[f"phase 2: fine-tuned top ({run.split_layer} …)"] = best
    log.info("phase 2: val accuracy %.4f → %.4f (%.0f s)", res.history["val_accuracy_before"][0], best,
             run.times["phase2_finetune"])
    return res.history


def deployable(run: TransferRun):
    """The run's deployable model (:func:`assemble`, made once the head exists)."""
    if run.head is None:
        raise RuntimeError("no head yet: run phase1 first")
    if run.model is None:
        with _scope(run.strategy, run.precision):
            run.model = assemble(run.preprocess, run.base, run.head, run.image_size, name=f"transfer_{run.family}")
    return run.model


def _tag(data) -> str:
    """``""`` for PBC, else ``_<dataset>``: runs on other data keep checkpoints and records of their own."""
    dataset = getattr(data, "dataset", "pbc")
    return "" if dataset == "pbc" else f"_{dataset}"


def phase3(run: TransferRun, data, *, epochs: int = 6, lr: float = 3e-4, first_layer: str | None = None,
           augment: bool = True, patience: int | None = None, time_budget: float | None = None,
           schedule: str | None = "cosine", resume: bool = False, run_name: str | None = None) -> dict[str, Any]:
    """Phase 3, :func:`fine_tune_end_to_end` of the deployable model, from the phase-1 head (and the
    phase-2 top, if it ran). ``run_name`` names its checkpoints (default: family, size and dataset).
    Returns ``fit``'s summary."""
    if run.head is None:
        raise RuntimeError("train the head first (phase 1): fine-tuning with a random head wrecks the base")
    model = deployable(run)
    run.used_paths["val"] = data.paths("val")
    with _scope(run.strategy, run.precision):
        res = fine_tune_end_to_end(model, run.base, data, image_size=run.image_size, epochs=epochs, lr=lr,
                                   first_layer=first_layer, augment=augment, seed=run.seed,
                                   batch_size=run.batch_size, patience=patience, time_budget=time_budget,
                                   schedule=schedule, resume=resume,
                                   run_name=run_name or f"transfer_{run.family}_{run.image_size}{_tag(data)}_e2e",
                                   name=f"{run.family}_end_to_end")
    summary = dict(res.summary)
    run.times["phase3_end_to_end"] = round(summary["train_seconds"], 1)
    run.histories["phase3"] = res.history
    best = summary["best_epoch"]
    label = f"phase 3: end-to-end from {first_layer or 'the input'}" + (", augmented" if augment else "")
    run.phase_val[label] = float(res.history["val_accuracy"][best - 1]) if best else float("nan")
    run.end_to_end = {k: summary[k] for k in ("epochs_run", "max_epochs", "best_epoch", "stopped", "schedule",
                                              "learning_rate", "patience", "time_budget", "steps_per_epoch")}
    run.end_to_end.update(first_layer=first_layer,
                          augmentation="flip + quarter turns + stain jitter" if augment else None,
                          trainable_weight_tensors=len(res.trained))
    run.speeds["end_to_end_train"] = (summary["epochs_run"] * len(data.paths("train"))
                                      / max(summary["train_seconds"], 1e-9))
    return summary


def val_predictions(run: TransferRun, data=None) -> Predictions:
    """Val predictions of the current model: from the cached activations (top → head; a pooled-only run:
    the head on the pooled features), or — after phase 3, which changed the lower layers too — end-to-end
    from the val images of ``data``."""
    if "phase3" in run.histories:
        if data is None:
            raise ValueError("after end-to-end fine-tuning the val images are needed: val_predictions(run, data)")
        return predict_split(deployable(run), data, "val", run.image_size)
    X, y = _xy(run, "val", pooled=run.pooled_only)
    probs = _predict(run.head, X, 256) if run.pooled_only else head_probs(run.top, run.head, X)
    return Predictions(tuple(run.used_paths["val"]), y, probs, run.classes)


def evaluate(run: TransferRun, data) -> dict[str, Predictions]:
    """``{"val": …, "test": …}``: :func:`val_predictions`, and the deployable model end-to-end on the
    test images (once; its time and speed are noted as ``evaluate_test`` and ``full_model_test``)."""
    model = deployable(run)
    val = val_predictions(run, data)
    t0 = time.perf_counter()
    test = predict_split(model, data, "test", run.image_size)
    seconds = time.perf_counter() - t0
    run.times["evaluate_test"] = round(seconds, 1)
    run.speeds["full_model_test"] = len(test) / seconds
    return {"val": val, "test": test}


def phase_table(run: TransferRun) -> pd.DataFrame:
    """Val accuracy after each phase (and the tuner's best head)."""
    rows = []
    if run.tuner_table is not None and len(run.tuner_table):
        rows.append({"phase": "tuning: best head found by keras-tuner",
                     "val_accuracy": float(run.tuner_table.iloc[0]["val_accuracy"])})
    rows += [{"phase": k, "val_accuracy": v} for k, v in run.phase_val.items()]
    return pd.DataFrame(rows).set_index("phase")


def train_seconds(run: TransferRun) -> float:
    """Feature extraction (train+val) + tuning + every training phase that ran."""
    keys = ("extract_train", "extract_val", "pool_frozen_top", "tune_head", "phase1_head", "phase2_finetune",
            "phase3_end_to_end")
    return float(sum(run.times.get(k, 0.0) for k in keys))


def time_table(run: TransferRun) -> pd.DataFrame:
    """Seconds of every step, and each one's share of :func:`train_seconds`."""
    times = pd.Series(run.times, name="seconds").to_frame()
    times["share of training"] = (times["seconds"] / train_seconds(run)).round(2)
    return times


def record_fields(run: TransferRun) -> dict[str, Any]:
    """The transfer chapters' fields of a results record (``results/README.md``)."""
    tuner = run.tuner_table.to_dict(orient="records") if run.tuner_table is not None else None
    return dict(family=run.family, split_layer=run.split_layer, pretrained=is_pretrained(run.provenance),
                weights_summary=describe(run.provenance), phase_seconds=dict(run.times),
                phase_val_accuracy=dict(run.phase_val),
                throughput_img_per_s={k: round(v, 1) for k, v in run.speeds.items()},
                head_hyperparameters=dict(run.best_hp), tuner=tuner, history=run.histories,
                params=int(run.model.count_params()) if run.model is not None else None,
                preprocessing=PREPROCESSING[run.family], per_class_caps=dict(run.caps),
                n_used={k: int(len(v[1])) for k, v in run.features.items()},
                end_to_end=dict(run.end_to_end) or None, profile=run.profile,
                replicas=int(getattr(run.strategy, "num_replicas_in_sync", 1)), precision=run.precision,
                pooled_only=run.pooled_only)


def save(run: TransferRun, name: str, data, predictions: Mapping[str, Predictions], *, mode: str,
         save_model: bool = True, results_directory: str | os.PathLike | None = None,
         models_directory: str | os.PathLike | None = None) -> SavedRun:
    """The run's record and bundle through :func:`helpers.runs.save_run` (``predictions``: at least ``val``)."""
    from .runs import save_run

    model = deployable(run)
    epochs = sum(len(h.get("loss", [])) for h in run.histories.values())
    return save_run(model, name, data, predictions, image_size=run.image_size, epochs=epochs,
                    train_seconds=train_seconds(run), weights_source=dict(run.provenance), seed=run.seed, mode=mode,
                    record=record_fields(run),
                    bundle={"family": run.family, "split_layer": run.split_layer,
                            "pretrained": is_pretrained(run.provenance), "head_hyperparameters": dict(run.best_hp)},
                    preprocessing=f"{INPUT_CONTRACT}; {PREPROCESSING[run.family]}", save_model=save_model,
                    results_directory=results_directory, models_directory=models_directory)


def run_phases(run: TransferRun, data, r: Recipe, *, run_name: str | None = None) -> TransferRun:
    """Chapter 4's recipe in one call, for the chapters that reuse it: the head tuned on the cached features
    (unless ``run.best_hp`` is already set or ``r.tuner_trials`` is 0), phase 1, phase 2 if ``r.ft_epochs``,
    phase 3 if ``r.e2e_epochs`` (with ``r``'s learning rates, first layer and time budget).
    Call :func:`extract` first; returns ``run``, its histories, times and phase accuracies filled in."""
    if r.tuner_trials and not run.best_hp:
        tune(run, max_trials=r.tuner_trials, epochs=r.tuner_epochs)
    phase1(run, epochs=r.head_epochs)
    if r.ft_epochs:
        phase2(run, epochs=r.ft_epochs, lr=r.ft_lr)
    if r.e2e_epochs:
        budget = 60 * r.e2e_time_budget_min if r.e2e_time_budget_min else None
        phase3(run, data, epochs=r.e2e_epochs, lr=r.e2e_lr, first_layer=r.e2e_first_layer, time_budget=budget,
               run_name=run_name)
    return run


PHASE_NAMES = {"phase1": "1: head", "phase2": "2: top block", "phase3": "3: end to end"}
"""How figures name the phases of the recipe."""


def phase_histories(run: TransferRun) -> dict[str, dict[str, list[float]]]:
    """The Keras history of every phase that ran, in training order, under its name (for ``plots.phase_curves``)."""
    return {name: run.histories[key] for key, name in PHASE_NAMES.items() if key in run.histories}


def phase_numbers(run: TransferRun) -> dict[str, float]:
    """The numbers a chapter quotes about its phases (glued as ``<family>_<key>``): val accuracy after
    phase 1 (``p1_val``), phase 2 (``p2_val``) and phase 3 (``p3_val``), NaN for a phase that did not run;
    phase 3's minutes, epochs and training speed in images per second."""
    def after(prefix: str) -> float:
        hits = [v for k, v in run.phase_val.items() if k.startswith(prefix)]
        return float(hits[-1]) if hits else float("nan")

    e2e = run.end_to_end or {}
    return {"p1_val": after("phase 1"), "p2_val": after("phase 2"), "p3_val": after("phase 3"),
            "e2e_minutes": run.times.get("phase3_end_to_end", float("nan")) / 60,
            "e2e_epochs": int(e2e.get("epochs_run", 0)),
            "e2e_img_s": float(run.speeds.get("end_to_end_train", float("nan")))}


def seed_run(family: str, provenance: Mapping[str, Any], data, r: Recipe, seed: int, *,
             head: Mapping[str, Any] | None = None, strategy=None, tag: str = "spread") -> tuple[float, int]:
    """One run of the recipe (:func:`run_phases`) from ``seed`` on ``data``, the head's hyper-parameters fixed to
    ``head``, without its log on the page: (the validation accuracy it ends with, phase-3 epochs run)."""
    import contextlib
    import io

    t0 = time.perf_counter()
    with _quiet("helpers"), contextlib.redirect_stdout(io.StringIO()):
        run = start_run(family, r.image_size, provenance, r.split_layer, seed=seed,
                        batch_size=r.batch_size, profile=r.profile, strategy=strategy,
                        pooled_only=r.pooled_only, precision=r.precision)
        extract(run, data)
        run.best_hp = dict(head or {})
        run_phases(run, data, r, run_name=f"transfer_{family}_{r.image_size}{_tag(data)}_{tag}_s{seed}")
    acc = float(list(run.phase_val.values())[-1])
    log.info("%s, seed %d: val accuracy %.4f (%.1f min)", family, seed, acc, (time.perf_counter() - t0) / 60)
    return acc, (run.end_to_end.get("epochs_run", 0) if run.end_to_end else 0)


def spread_budget(data, r: Recipe, e2e_epochs: int, *, full: bool = False) -> str:
    """The ``budget`` line of a transfer spread: which data and how many epochs of each phase; a capped set's
    says :data:`helpers.results.SMALLER_BUDGET`, which chapter 8 refuses as a full-data tolerance."""
    from .results import SMALLER_BUDGET

    def epochs(n: int, phase: str) -> str:
        return f", {n} epoch{'s' if n != 1 else ''} of {phase}"

    n_train, n_val = len(data.paths("train")), len(data.paths("val"))
    phases = "head" + (epochs(r.ft_epochs, "phase 2") if r.ft_epochs else "") + (
        epochs(e2e_epochs, "phase 3") if r.e2e_epochs else "")
    what = "full data" if full else "capped set"
    tail = "the chapter's budget" if full else SMALLER_BUDGET
    return (f"{what}: {n_train} training and {n_val} validation images ({phases}; the chapter's tuned head), "
            f"{tail}")


def seed_spread(family: str, provenance: Mapping[str, Any], data, r: Recipe, *,
                head: Mapping[str, Any] | None = None, strategy=None) -> dict[str, Any]:
    """How much the seed moves the recipe: :func:`seed_run` from each of ``r.spread_seeds`` on ``data``
    (a capped copy of the split, e.g. ``load_split(max_per_class=r.spread_per_class)``: minutes, not the
    chapter's budget), the head's hyper-parameters fixed to ``head`` (the chapter's tuned ones). Returns a
    :func:`helpers.train.spread_block` of the val accuracies, its ``budget`` saying how small the run was."""
    from .train import spread_block

    runs = [seed_run(family, provenance, data, r, seed, head=head, strategy=strategy) for seed in r.spread_seeds]
    budget = spread_budget(data, r, max(e for _, e in runs))
    return spread_block([a for a, _ in runs], r.spread_seeds, metric="val accuracy", budget=budget)


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

    from .features import run_lower

    picks = {}
    for split in ("train", "val"):
        keep = stratified_subset(data.labels(split), per_class, seed)
        picks[split] = ([data.paths(split)[i] for i in keep], data.labels(split)[keep])
    rows = []
    for size in sizes:
        with _quiet("helpers.weights"):  # the file was named once already: not again for every size
            base = load_base(family, int(size), dict(provenance))
        feats, secs = {}, 0.0
        for split, (paths, labels) in picks.items():
            # eager: model.predict would trace a graph for every model, split and last-batch shape
            # (and TensorFlow would warn about the retracing) to run only a few batches through each
            t0 = time.perf_counter()
            feats[split] = run_lower(preprocessing_layer(family), base, paths, labels, int(size),
                                     f"probe {size} px", graph=False).astype("float32")
            secs += time.perf_counter() - t0
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(feats["train"], picks["train"][1])
        acc = float((clf.predict(feats["val"]) == picks["val"][1]).mean())
        n = sum(len(p) for p, _ in picks.values())
        rows.append({"image_size": int(size), "probe val accuracy": round(acc, 4),
                     "img/s (incl. start-up)": round(n / secs, 1)})
        log.info("%s at %d px: frozen-feature probe val accuracy %.3f (%.0f img/s)", family, size, acc, n / secs)
        keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("image_size")


# ==================================================================================== profiles
PROFILES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Recipe:
    """Sizes, epochs and phases of one transfer chapter, for one profile and one architecture.

    ``profile`` is resolved (``"cpu"`` or ``"gpu"``); ``ft_epochs = 0`` skips phase 2 and
    ``e2e_epochs = 0`` skips phase 3. ``replicas`` is the number of GPUs the gpu profile trains on
    (:func:`distribution_strategy`); ``precision`` the Keras dtype policy its models are built under
    (``"mixed_float16"`` in the gpu profile when TensorFlow sees a GPU). ``why`` says in one sentence why the
    profile looks as it does.
    """

    profile: str
    family: str
    image_size: int
    split_layer: str
    batch_size: int = 32
    tuner_trials: int = 8
    tuner_epochs: int = 10
    head_epochs: int = 30
    ft_epochs: int = 5
    ft_lr: float = 1e-4
    e2e_epochs: int = 0
    e2e_lr: float = 3e-4
    e2e_first_layer: str | None = None
    e2e_time_budget_min: float | None = None
    speed_sizes: tuple[int, ...] = ()
    probe_sizes: tuple[int, ...] = ()
    probe_per_class: int = 20
    max_per_class: int | None = None
    spread_seeds: tuple[int, ...] = (42, 43, 44)
    spread_per_class: int = 100
    replicas: int = 1
    precision: str = "float32"
    why: str = ""

    @property
    def pooled_only(self) -> bool:
        """Whether :func:`extract` keeps only the pooled features: the gpu profile, which skips phase 2."""
        return self.profile == "gpu" and not self.ft_epochs

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


_CPU_WHY = ("a 2-core CPU: the frozen lower part runs once and is cached for the head (phase 1); the upper "
            "layers are then fine-tuned on augmented images (phase 3) at the size whose training epoch costs "
            "a few minutes")
_GPU_WHY = ("a GPU: end-to-end fine-tuning of every layer on augmented images at 224 px, the ImageNet "
            "networks' own scale, with a cosine schedule for 10-15 epochs, as the benchmark papers do; "
            "phase 2 is left out, because phase 3 trains the same layers and all the others")
# The CPU profile is the book's recipe, measured on a 2-core CPU: change it only with new measurements.
CPU_RECIPES: dict[str, dict[str, Any]] = {
    # VGG19 and ResNet50: phase 2 on a cache of un-augmented activations over-fits (train 98 % vs val 83-92 %),
    # so the cpu profile fine-tunes on augmented images instead (phase 3), from the middle of the network up.
    # Epochs: with 2 (VGG19) and 3 (ResNet50) the val accuracy still rose at the last epoch (0.891 → 0.937;
    # 0.898 → 0.947 → 0.952), so the schedules are longer: 4 and 5 epochs. Their cost, measured on a 2-core
    # Zen 4 CPU: chapter 4 51 min, chapter 5 30 min, over the 60 min the bench allows the three transfer
    # chapters together (results/transfer_*.json keep each epoch's minutes and val accuracy).
    "vgg19": dict(image_size=64, split_layer="block5_conv2", ft_epochs=0, e2e_epochs=4, e2e_lr=1e-4,
                  e2e_first_layer="block4_conv1", e2e_time_budget_min=None, speed_sizes=(48, 64, 96),
                  probe_sizes=(48, 64, 96, 128), probe_per_class=20),
    "resnet50": dict(image_size=64, split_layer="conv5_block2_out", ft_epochs=0, e2e_epochs=5, e2e_lr=1e-4,
                     e2e_first_layer="conv3_block1_1_conv", e2e_time_budget_min=None,
                     speed_sizes=(64, 96, 128), probe_sizes=(64, 96, 128, 160), probe_per_class=25),
    # phase 3: 12 epochs and no clock (a slower CPU takes longer; the model stays the same). 12, not 6: the
    # pilot with phase 3 twice as long gained beyond the seed noise (results/pilots/transfer_recipes.json)
    "mobilenetv2": dict(image_size=96, split_layer="block_12_add", ft_epochs=4, e2e_epochs=12, e2e_lr=3e-4,
                        e2e_time_budget_min=None, speed_sizes=(64, 96, 128, 160), probe_sizes=(),
                        probe_per_class=20),
}
# The GPU profile: phase 3 at 224 px. VGG19 has no batch norm and the largest gradients, so the lowest
# peak rate; MobileNetV2's depthwise filters tolerate (and need) the highest.
GPU_RECIPES: dict[str, dict[str, Any]] = {
    "vgg19": dict(image_size=224, split_layer="block5_conv2", batch_size=64, ft_epochs=0, e2e_epochs=10,
                  e2e_lr=1e-4, e2e_time_budget_min=60, speed_sizes=(128, 224), probe_sizes=(64, 128, 224)),
    "resnet50": dict(image_size=224, split_layer="conv5_block2_out", batch_size=64, ft_epochs=0,
                     e2e_epochs=12, e2e_lr=2e-4, e2e_time_budget_min=60, speed_sizes=(128, 224),
                     probe_sizes=(64, 128, 224), probe_per_class=25),
    "mobilenetv2": dict(image_size=224, split_layer="block_12_add", batch_size=64, ft_epochs=0,
                        e2e_epochs=15, e2e_lr=3e-4, e2e_time_budget_min=60, speed_sizes=(128, 224)),
}
# Smoke mode (CI): every profile shrinks to a code check of its own phases.
SMOKE = dict(max_per_class=8, image_size=64, tuner_trials=2, tuner_epochs=1, head_epochs=1,
             probe_per_class=2, spread_seeds=(42, 43), spread_per_class=8)


def gpus() -> list[Any]:
    """The GPUs TensorFlow sees."""
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def resolve_profile(profile: str = "auto") -> str:
    """``"cpu"`` or ``"gpu"``: ``"auto"`` is ``"gpu"`` when TensorFlow sees a GPU."""
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    if profile == "auto":
        return "gpu" if gpus() else "cpu"
    return profile


def recipe(family: str, profile: str = "auto", mode: str = "book", **overrides: Any) -> Recipe:
    """The :class:`Recipe` of ``family`` for ``profile`` (resolved) in ``mode``; ``overrides`` win.

    Smoke mode keeps the profile's phases but shrinks sizes and epochs to one of each; overrides
    whose value is ``None`` are ignored (a notebook parameter left at ``None`` means "the profile's").
    """
    family = check_family(family)
    profile = resolve_profile(profile)
    table = GPU_RECIPES if profile == "gpu" else CPU_RECIPES
    fields: dict[str, Any] = {**table[family], "why": _GPU_WHY if profile == "gpu" else _CPU_WHY}
    if profile == "gpu":  # a GPU's tensor cores compute in float16; float16 on a CPU is slow
        fields["replicas"] = max(1, len(gpus()))
        fields["precision"] = "mixed_float16" if gpus() else "float32"
    if mode == "smoke":
        fields.update(SMOKE, speed_sizes=(64,), probe_sizes=(64,) if fields.get("probe_sizes") else (),
                      ft_epochs=min(fields.get("ft_epochs", 5), 1), e2e_epochs=min(fields.get("e2e_epochs", 0), 1),
                      batch_size=min(fields.get("batch_size", 32), 32))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(fields) - set(Recipe.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown recipe fields: {sorted(unknown)}")
    return Recipe(profile=profile, family=family, **fields)


def distribution_strategy(profile: str = "cpu", devices: Sequence[str] | None = None):
    """``tf.distribute.MirroredStrategy`` for the gpu profile on more than one GPU (or on ``devices``),
    else TensorFlow's default strategy. Build and compile the model inside ``strategy.scope()``:
    :func:`start_run` and :func:`phase3` do, given ``strategy=``."""
    import tensorflow as tf

    if devices is not None:
        return tf.distribute.MirroredStrategy(list(devices))
    if resolve_profile(profile) == "gpu" and len(gpus()) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@contextmanager
def _scope(strategy, precision: str = "float32") -> Iterator[None]:
    """Build and compile models inside ``strategy``'s scope (``None``: TensorFlow's default) under Keras' global
    dtype policy ``precision`` (``"mixed_float16"``: float16 computations, float32 variables). The previous
    policy is restored afterwards: models built later, e.g. by a cpu run in the same process, are unaffected."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope() if strategy is not None else nullcontext():
            yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ==================================================================================== the literature
# Reference points from the sources list ("Results to compare with"), with their bibliography keys.
LITERATURE = [
    {"work": "acevedo2019recognition", "data": "PBC", "model": "VGG-16 features + SVM", "px": None,
     "training": "frozen features", "test accuracy": 0.86},
    {"work": "acevedo2019recognition", "data": "PBC", "model": "VGG-16", "px": None,
     "training": "fine-tuned", "test accuracy": 0.962},
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "VGG16", "px": px,
       "training": "linear probe (frozen)", "test accuracy": acc}
      for px, acc in ((64, 0.8453), (128, 0.8886), (224, 0.9377))],
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "VGG16", "px": px,
       "training": "end-to-end, GPU", "test accuracy": acc}
      for px, acc in ((64, 0.9820), (128, 0.9852), (224, 0.9877))],
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "ResNet-18", "px": px,
       "training": "end-to-end, GPU", "test accuracy": acc}
      for px, acc in ((64, 0.9706), (128, 0.9834), (224, 0.9894))],
]


def literature_table(run: TransferRun | None = None, test_accuracy: float | None = None,
                     label: str | None = None) -> pd.DataFrame:
    """The published reference points, with this chapter's run (``test_accuracy``) as the last row."""
    names = {"acevedo2019recognition": "Acevedo et al. 2019", "doerrich2024medmnistplus": "MedMNIST+ 2025"}
    table = pd.DataFrame([dict(r, work=names[r["work"]]) for r in LITERATURE])
    table["px"] = table["px"].astype("Int64")  # a whole number, or <NA> where the work does not say
    if run is not None and test_accuracy is not None:
        how = "phases 1-3" if run.end_to_end else "phases 1-2, cached activations"
        table.loc[len(table)] = {"work": label or "this chapter", "data": "PBC (the book's split)",
                                 "model": run.family, "px": run.image_size, "training": how,
                                 "test accuracy": round(float(test_accuracy), 4)}
    return table
