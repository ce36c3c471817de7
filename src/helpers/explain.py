"""Grad-CAM (Selvaraju et al. 2017): *where* in the image did the model look for its answer?

The gradient of the class score with respect to the last convolutional feature map says how
much each channel matters; the weighted sum of the channels, rectified, is a coarse heat map
that is resized to the image. Works for the book's own CNNs and for transfer models whose
backbone is a *nested* Keras model (``input → preprocessing → base model → head``): the keras-io
recipe (a model that outputs the feature map and the prediction, under a ``tf.GradientTape``) is
built with public Keras APIs only, descending into the nested model (see :func:`_trace`).

The class score is the logit (pre-softmax) when the model ends in a ``Dense`` softmax layer,
otherwise the output probability.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("helpers.explain")

_SKIP_TYPES = ("Pooling", "Dropout", "Flatten", "Random", "Rescaling", "Normalization", "InputLayer")
_CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def _sublayers(layer) -> list:
    return list(getattr(layer, "layers", []) or [])


def _walk(model, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """All layers in order, nested models expanded: ``[(path of enclosing models, layer), ...]``."""
    out = []
    for layer in _sublayers(model):
        out.append((prefix, layer))
        if _sublayers(layer):
            out.extend(_walk(layer, prefix + (layer,)))
    return out


def _out_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # layer used several times or never built
        return None


def find_feature_layer(model, layer_name: str | None = None, min_grid: int | None = None):
    """The layer whose output Grad-CAM explains: ``layer_name`` (searched in nested models too), or the
    last layer with a spatial (B, H, W, C) output at or after the last convolution (H, W > 1).

    ``min_grid``: explain instead the last layer whose map is at least ``min_grid``×``min_grid`` positions
    (after the last convolution that still has such a map): a finer, less coarse heat map from a slightly
    earlier stage of the network. Without such a layer the default choice is kept.
    """
    layers = _walk(model)
    if layer_name is None and min_grid:
        def fine(layer) -> bool:
            shp = _out_shape(layer)
            return shp is not None and len(shp) == 4 and (shp[1] or 0) >= min_grid and (shp[2] or 0) >= min_grid
        convs = [i for i, (_, l) in enumerate(layers) if type(l).__name__ in _CONV_TYPES and fine(l)]
        if convs:
            cands = [l for i, (_, l) in enumerate(layers) if i >= convs[-1] and not _sublayers(l)
                     and not any(t in type(l).__name__ for t in _SKIP_TYPES + ("Padding",)) and fine(l)]
            if cands:
                return cands[-1]
    if layer_name is not None:
        for _, layer in layers:
            if layer.name == layer_name:
                return layer
        raise ValueError(f"no layer named {layer_name!r} in model {model.name!r} (nested models searched too)")
    last_conv = max((i for i, (_, l) in enumerate(layers) if type(l).__name__ in _CONV_TYPES), default=None)
    if last_conv is None:
        raise ValueError(f"model {model.name!r} has no convolutional layer; pass layer_name= to choose the "
                         "feature map to explain")
    best = None
    for i, (_, layer) in enumerate(layers):
        if i < last_conv or _sublayers(layer) or any(t in type(layer).__name__ for t in _SKIP_TYPES):
            continue
        shp = _out_shape(layer)
        if shp is not None and len(shp) == 4 and (shp[1] or 2) > 1 and (shp[2] or 2) > 1:
            best = layer
    if best is None:
        raise ValueError(f"no spatial feature map after the last convolution of {model.name!r}; pass layer_name=")
    return best


def _contains(model, target) -> bool:
    return target is not None and any(layer is target for _, layer in _walk(model))


def _softmax_layer(layer) -> bool:
    act = getattr(layer, "activation", None)
    return type(layer).__name__ in ("Dense", "Activation") and getattr(act, "__name__", "") == "softmax"


def final_softmax(model):
    """The model's last layer if it is a softmax — ``Activation("softmax")`` after ``Dense(n)`` (the book's
    models) or ``Dense(softmax)`` — also when it sits at the end of a nested head model (transfer models:
    ``… → head``); else ``None``."""
    last = model
    while _sublayers(last):
        last = last.layers[-1]
    return last if last is not model and _softmax_layer(last) else None


def _trace(model, target=None):
    """``model`` rebuilt on public Keras APIs to also return the target feature map and the final logits.

    Returns ``(traced, names)``: a functional model sharing ``model``'s layers and weights whose outputs are
    named by ``names`` (``"features"`` when ``target`` is given, ``"logits"`` when the model ends in a softmax
    (:func:`final_softmax`), and always ``"probs"``). Functional models are re-wired with
    ``keras.models.clone_model(clone_function=identity, call_function=...)``: the target's output is
    captured where it is computed, and so is the final softmax's input (a ``Dense(softmax)`` is called as
    ``softmax(x @ W + b)``); nested models on the way (the transfer models' base and head) are traced
    the same way, Sequential ones layer by layer.
    """
    import keras

    head = final_softmax(model)
    captured: dict[str, Any] = {}

    def call(layer, *args, **kwargs):
        if layer is target:
            captured["features"] = layer(*args, **kwargs)
            return captured["features"]
        if layer is head and type(layer).__name__ == "Activation":
            captured["logits"] = args[0]
            return layer(args[0], **kwargs)
        if layer is head:
            z = keras.ops.matmul(args[0], layer.kernel)
            captured["logits"] = z + layer.bias if layer.use_bias else z
            return keras.ops.softmax(captured["logits"], axis=-1)
        if _sublayers(layer) and (_contains(layer, target) or _contains(layer, head)):
            if isinstance(layer, keras.Sequential):
                x = args[0]
                for inner in layer.layers:
                    x = call(inner, x, **kwargs)
                return x
            inner, inner_names = _trace(layer, target if _contains(layer, target) else None)
            outs = inner(*args, **kwargs)
            captured.update({k: v for k, v in zip(inner_names, outs) if k != "probs"})
            return outs[-1]
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        inp = keras.Input(batch_shape=tuple(model.inputs[0].shape), dtype=model.inputs[0].dtype)
        inputs, probs = [inp], call(model, inp)
    else:
        try:
            clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
        except ValueError as e:  # subclassed models have no graph to re-wire
            raise TypeError(f"cannot trace model {model.name!r} ({type(model).__name__}) for Grad-CAM; use a "
                            f"functional or Sequential keras model ({e})") from None
        inputs, probs = clone.inputs, clone.outputs[0]
    if target is not None and "features" not in captured:
        raise RuntimeError(f"layer {target.name!r} was not reached in the forward pass")
    names = [k for k in ("features", "logits") if k in captured] + ["probs"]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, [captured[k] for k in names[:-1]] + [probs]), names


@dataclass
class GradCam:
    """Heat maps in [0, 1] of shape (N, H, W) at the input size, the explained class and the probabilities."""

    heatmaps: np.ndarray
    class_index: np.ndarray
    probs: np.ndarray
    layer: str


def grad_cam(model, images, class_index: int | Sequence[int] | None = None, layer_name: str | None = None,
             batch_size: int = 16, min_grid: int | None = None) -> GradCam:
    """Grad-CAM heat maps for ``images`` (float32 (N, H, W, 3) in [0, 255], as the model takes them).

    ``class_index``: the class to explain, one per image or one for all; ``None`` explains the
    predicted class. ``min_grid``: see :func:`find_feature_layer`.
    """
    import tensorflow as tf

    x_all = np.asarray(images, dtype="float32")
    if x_all.ndim == 3:
        x_all = x_all[None]
    if x_all.ndim != 4 or x_all.shape[-1] != 3 or len(x_all) == 0:
        raise ValueError(f"images must be an (N, H, W, 3) array, got shape {x_all.shape}")
    from .layers import is_tta, tta_core

    if is_tta(model):
        log.info("%s averages several views of each image: Grad-CAM explains the single-view model inside it",
                 model.name)
        model = tta_core(model)
    target = find_feature_layer(model, layer_name, min_grid)
    traced, names = _trace(model, target)
    if class_index is not None:
        ci = np.broadcast_to(np.asarray(class_index, dtype=int), (len(x_all),))
    maps, classes, probs = [], [], []
    for s in range(0, len(x_all), batch_size):
        x = tf.convert_to_tensor(x_all[s:s + batch_size])
        with tf.GradientTape() as tape:
            out = dict(zip(names, traced(x, training=False)))
            feats, p = out["features"], out["probs"]
            score_src = out.get("logits", p)
            k = np.asarray(p).argmax(axis=1) if class_index is None else ci[s:s + batch_size]
            score = tf.gather(score_src, tf.constant(k, dtype=tf.int32), axis=1, batch_dims=1)
        grads = tape.gradient(score, feats)
        if grads is None:
            raise RuntimeError(f"no gradient flows from the class score to layer {target.name!r}")
        w = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(w * feats, axis=-1))[..., None]
        cam = tf.image.resize(cam, x_all.shape[1:3], method="bilinear")[..., 0].numpy()
        top = cam.reshape(len(cam), -1).max(axis=1)
        cam = np.divide(cam, top[:, None, None], out=np.zeros_like(cam), where=top[:, None, None] > 0)
        maps.append(cam)
        classes.append(np.asarray(k))
        probs.append(np.asarray(p))
    return GradCam(np.concatenate(maps), np.concatenate(classes), np.concatenate(probs), target.name)


def logits_fn(model):
    """A function ``x -> logits`` (NumPy, ``training=False``) for a model ending in a softmax (also inside a
    nested head; :func:`final_softmax`), traced once; ``None`` (logged) when it ends otherwise. For a TTA wrapper
    (:mod:`helpers.tta`): the single-view model's logits, averaged over the same views."""
    from .layers import dihedral, is_tta, tta_core, tta_views

    if is_tta(model):
        core, views = logits_fn(tta_core(model)), tta_views(model)
        if core is None:
            return None
        return lambda x: np.mean([core(np.asarray(dihedral(x, k))) for k in range(views)], axis=0)
    if final_softmax(model) is None:
        log.info("model %s does not end in a softmax: no logits available", model.name)
        return None
    import tensorflow as tf

    traced, names = _trace(model)
    k = names.index("logits")
    fn = tf.function(lambda x: traced(x, training=False)[k], reduce_retracing=True)  # traced once, not eager
    return lambda x: np.asarray(fn(tf.convert_to_tensor(np.asarray(x, dtype="float32"))))


def logits(model, images, batch_size: int = 32) -> np.ndarray | None:
    """Pre-softmax logits of ``images`` (see :func:`logits_fn`); ``None`` when the model has none."""
    fn = logits_fn(model)
    if fn is None:
        return None
    x_all = np.asarray(images, dtype="float32")
    out = [fn(x_all[s:s + batch_size]) for s in range(0, len(x_all), batch_size)]
    if not out:
        from .layers import tta_core

        return np.zeros((0, int(tta_core(model).output_shape[-1])), "float32")
    return np.concatenate(out)


def overlay(image, heatmap, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heat map (H, W) over an RGB image (H, W, 3; uint8 or [0, 255] floats) → uint8."""
    from matplotlib import colormaps

    img = np.asarray(image, dtype="float32")
    h = np.asarray(heatmap, dtype="float32")
    if img.ndim != 3 or img.shape[:2] != h.shape:
        raise ValueError(f"image {img.shape} and heat map {h.shape} must have the same height and width")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colour = colormaps[cmap](np.clip(h, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * img + alpha * colour, 0, 255).astype("uint8")
