"""Transfer learning from ImageNet, done the Keras way and made affordable on a CPU: the Keras parts.

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

Each phase is a function of the Keras parts and arrays it needs (:func:`tune_head`, :func:`train_head`,
:func:`fine_tune_top`, :func:`fine_tune_end_to_end`, :func:`assemble`). :mod:`helpers.transfer_run` carries
them between a chapter's cells, :mod:`helpers.profiles` holds the recipes per profile (cpu, gpu) and family.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import CLASSES
from .augment import finetune_augmentation
from .weights import check_family

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
    Dropout → [Dense(units, relu) → Dropout] → Dense(n_classes) → softmax.

    The logits and softmax compute in float32 under any dtype policy.
    """
    import keras

    L = keras.layers
    inputs = keras.Input((int(input_dim),), name="features")
    x = L.Dropout(dropout, name="head_dropout1")(inputs)
    if units:
        x = L.Dense(int(units), activation="relu", name="head_dense")(x)
        x = L.Dropout(dropout, name="head_dropout2")(x)
    x = L.Dense(n_classes, dtype="float32", name="logits")(x)
    outputs = L.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


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
# Keras history and the seconds it took. :class:`helpers.transfer_run.TransferRun` only carries them between cells.
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
    from .train import compile_classifier

    dim = Xtr.shape[1]

    def build(hp):
        head = make_head(dim, hp.Choice("units", list(units)), hp.Choice("dropout", list(dropouts)), n_classes)
        compile_classifier(head, hp.Choice("lr", list(lrs)))
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

    from .train import compile_classifier

    keras.utils.set_random_seed(seed)
    head = make_head(Xtr.shape[1], units, dropout, n_classes)
    compile_classifier(head, lr)
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

    from .train import compile_classifier

    n = unfreeze_from(top)  # before the model is built: Keras reads the flags then
    inp = keras.Input(Xtr.shape[1:], name="cached_activations")
    model = keras.Model(inp, head(top(inp, training=False)), name=name)
    compile_classifier(model, lr)
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
    if _replicas(wrapper) > 1:  # validation runs outside the strategy already (helpers.train.ValidationScores)
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
