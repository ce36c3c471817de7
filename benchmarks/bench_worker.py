"""One benchmark set-up in its own process (started by the training and inference sections).

    python benchmarks/bench_worker.py '<json spec>'

The spec names the set-up (``kind``) and its settings; ``threads`` (optional) pins the process to
that many cores and sets TensorFlow's thread pools *before* TensorFlow starts. The process then
answers JSON requests on stdin (:func:`harness.serve`): ``run`` (one timed unit of work,
answers ``{"n": items}``), ``profile``, ``accuracy`` and ``quit`` (answers the peak memory).

Kinds: ``train_cnn`` (a chapter-3 CNN, ``steps`` training steps on synthetic tensors),
``transfer_head`` (phase 1: the head on pooled features), ``transfer_finetune`` (phase 2: top +
head on cached activations), ``frozen_lower`` (preprocess + the frozen lower base: what feature
caching costs), ``infer_keras`` / ``infer_litert`` / ``infer_onnx`` (the exported model under that
runtime, batch 1 and batch 32; ``views`` rebuilds a TTA model with that many views, ``save_converted``
writes the converted file there).
Training set-ups use random weights and random tensors: speed does not depend on their values.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import harness  # noqa: E402  (numpy only: TensorFlow is not imported yet)

from helpers.bench import training_epoch  # noqa: E402
from helpers.serve import convert, runner  # noqa: E402


def _synthetic(n: int, shape: tuple[int, ...], seed: int = 0, low: float = 0.0, high: float = 255.0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (n, *shape)).astype("float32"), (np.arange(n) % 8).astype("int32")


def _fit_runner(model, x, y, batch_size: int, lr: float) -> dict[str, Any]:
    """Train as the chapters do (:func:`helpers.bench.training_epoch`: Adam, sparse CE, here with accuracy);
    ``run`` = one pass over x."""
    epoch = training_epoch(model, x, y, batch_size=batch_size, learning_rate=lr)
    return {"run": lambda req: {"n": epoch()}}


def _base(family: str, size: int, split_layer: str):
    from helpers.transfer import split_model
    from helpers.weights import application

    base = application(family)(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    base.trainable = False
    lower, top = split_model(base, split_layer)
    return base, lower, top


def build_training(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import keras
    import numpy as np

    keras.utils.set_random_seed(42)
    kind, bs, steps = spec["kind"], int(spec["batch_size"]), int(spec["steps"])
    n = bs * steps
    if kind == "train_cnn":
        from helpers.models import build_model

        size = int(spec["image_size"])
        model = build_model(spec["model"], size, **spec.get("kwargs", {}))
        x, y = _synthetic(n, (size, size, 3))
        return _fit_runner(model, x, y, bs, 1e-3), {"params_count": int(model.count_params())}
    from helpers.transfer import make_head, preprocessing_layer, unfreeze_from

    base, lower, top = _base(spec["family"], int(spec["image_size"]), spec["split_layer"])
    hp = spec.get("head", {})
    head = make_head(int(base.output.shape[-1]), int(hp.get("units", 256)), float(hp.get("dropout", 0.3)))
    if kind == "transfer_head":
        x, y = _synthetic(n, (int(base.output.shape[-1]),), low=0.0, high=2.0)
        return _fit_runner(head, x, y, bs, float(hp.get("lr", 1e-3))), {"params_count": int(head.count_params())}
    if kind == "transfer_finetune":
        unfreeze_from(top)
        inp = keras.Input(tuple(lower.output.shape[1:]), name="cached_activations")
        ft = keras.Model(inp, head(top(inp, training=False)), name="finetune")
        x, y = _synthetic(n, tuple(lower.output.shape[1:]), low=0.0, high=4.0)
        trainable = int(sum(np.prod(w.shape) for w in ft.trainable_weights))
        return _fit_runner(ft, x, y, bs, float(spec.get("lr", 1e-4))), {"params_count": trainable}
    if kind == "transfer_end_to_end":
        from helpers.augment import finetune_augmentation

        size = int(spec["image_size"])
        inp = keras.Input((size, size, 3), name="image")
        x = preprocessing_layer(spec["family"])(finetune_augmentation(42)(inp))
        model = keras.Model(inp, head(base(x, training=False)), name="end_to_end")
        unfreeze_from(base, spec.get("first_layer"))
        x, y = _synthetic(n, (size, size, 3))
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        return _fit_runner(model, x, y, bs, float(spec.get("lr", 3e-4))), {"params_count": trainable}
    if kind == "frozen_lower":
        import tensorflow as tf

        pre = preprocessing_layer(spec["family"])
        step = tf.function(lambda t: tf.cast(lower(pre(t), training=False), tf.float16), reduce_retracing=True)
        x, _ = _synthetic(bs, (int(spec["image_size"]),) * 2 + (3,))
        xt = tf.constant(x)

        def run(req: dict[str, Any]) -> dict[str, Any]:
            for _ in range(steps):
                step(xt).numpy()
            return {"n": n}

        return {"run": run}, {"params_count": int(lower.count_params()),
                              "activation_shape": list(lower.output.shape[1:])}
    raise ValueError(f"unknown training kind {kind!r}")


def load_inference_model(spec: dict[str, Any]):
    """``(model, description)``: the bundle in ``spec["bundle"]``, else the chapter-6 recipe without weights."""
    if spec.get("bundle"):
        from helpers.export import load_bundle

        model, side = load_bundle(spec["bundle"])
        views = 1 if spec.get("single_view") else spec.get("views")
        if views:
            from helpers.serve import serving_model

            return serving_model(model, int(views)), f"bundle {Path(spec['bundle']).name} with {views} view(s)"
        return model, f"bundle {Path(spec['bundle']).name}"
    import keras

    from helpers.transfer import make_head, preprocessing_layer

    r = spec["recipe"]
    size = int(r["image_size"])
    base, _, _ = _base(r["family"], size, r["split_layer"])
    inp = keras.Input((size, size, 3), dtype="float32", name="image")
    out = make_head(int(base.output.shape[-1]), int(r.get("units", 256)))(base(preprocessing_layer(r["family"])(inp),
                                                                             training=False))
    return keras.Model(inp, out, name=f"transfer_{r['family']}"), "chapter-6 recipe, RANDOM weights (no bundle)"


def build_inference(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import tensorflow as tf

    model, desc = load_inference_model(spec)
    size = int(model.input.shape[1])
    k1, k32 = int(spec.get("calls_b1", 20)), int(spec.get("calls_b32", 2))
    x1, _ = _synthetic(1, (size, size, 3))
    x32, _ = _synthetic(32, (size, size, 3), seed=1)
    info: dict[str, Any] = {"model": desc, "image_size": size, "params_count": int(model.count_params())}
    rt = {"infer_tflite": "litert"}.get(spec["kind"], spec["kind"].removeprefix("infer_"))
    threads = int(spec.get("threads") or 2)
    content = None
    if rt == "keras":
        compiled = runner(model, "keras")  # what the command line and the app call
        call = {"b1": compiled, "b32": compiled, "b1_eager": lambda x: np.asarray(model(x, training=False))}
        info["runtime"] = compiled.runtime
    else:
        t0 = time.perf_counter()
        content = convert(model, rt)
        info.update(convert_seconds=round(time.perf_counter() - t0, 1), file_mb=round(len(content) / 1e6, 2))
        if spec.get("save_converted"):
            from helpers.io import atomic_write_bytes

            atomic_write_bytes(spec["save_converted"], content)
        runners = {"b1": runner(model, rt, threads, content), "b32": runner(model, rt, threads, content)}
        info["runtime"] = runners["b1"].runtime
        call = {b: (lambda x, r=r: r(x)) for b, r in runners.items()}
    inputs = {"b1": (x1, k1), "b1_eager": (x1, int(spec.get("calls_eager", k1))), "b32": (x32, k32)}

    def run(req: dict[str, Any]) -> dict[str, Any]:
        what = req.get("what", "b1")
        x, k = inputs[what]
        fn = call[what]
        for _ in range(k):
            fn(x)
        return {"n": int(len(x) * k)}

    def profile(req: dict[str, Any]) -> dict[str, Any]:
        rows = harness.layer_times(model, x1, repeats=int(req.get("repeats", 3)))
        parts = harness.share_by(rows, "part")
        # the compiled graph: the whole model vs everything before its last layer (the head, for a transfer model)
        whole = _median_ms(call["b1"], x1)
        nodes = [nd for d in sorted(model._nodes_by_depth, reverse=True) for nd in model._nodes_by_depth[d]
                 if not nd.is_input]
        base_ms, head_ms, last = None, None, nodes[-1] if nodes else None
        if len(nodes) >= 2:
            import keras

            ins = last.input_tensors
            sub = keras.Model(model.inputs, ins[0] if len(ins) == 1 else list(ins))
            g = tf.function(lambda t: sub(t, training=False), reduce_retracing=True)
            base_ms = _median_ms(lambda x: np.asarray(g(tf.constant(x))), x1)
            if len(ins) == 1:  # the last part alone, on the activations it receives
                a = np.asarray(sub(x1, training=False))
                h = tf.function(lambda t: last.operation(t, training=False), reduce_retracing=True)
                head_ms = _median_ms(lambda v: np.asarray(h(tf.constant(v))), a)
        return {"by_type": harness.share_by(rows, "type")[:12], "by_part": parts, "n_layers": len(rows),
                "eager_sum_ms": sum(r["ms"] for r in rows), "compiled_ms": whole,
                "compiled_without_last_part_ms": base_ms, "compiled_last_part_alone_ms": head_ms, "last_part": last.operation.name if last else None}  # noqa: E501

    def accuracy(req: dict[str, Any]) -> dict[str, Any]:
        from helpers.compare import resolve_paths
        from helpers.export import load_predictions
        from helpers.pipeline import make_dataset

        pred = load_predictions(spec["bundle"], req.get("split", "test"))
        limit = req.get("limit")
        idx = np.arange(len(pred))[: int(limit) if limit else None]
        paths = resolve_paths(np.asarray(pred.paths)[idx].tolist(), req.get("data_root"))
        ds = make_dataset(paths, pred.y_true[idx], size, batch_size=32, cache=False)
        run32 = runners_for_accuracy()
        probs = np.concatenate([run32(xb.numpy()) for xb, _ in ds])
        keras_probs, y = pred.probs[idx], pred.y_true[idx]
        top_t, top_k = probs.argmax(1), keras_probs.argmax(1)
        out = {"n": int(len(idx)), "runtime": info["runtime"], "agreement": float((top_t == top_k).mean()),
               "accuracy": float((top_t == y).mean()), "accuracy_keras_saved": float((top_k == y).mean()),
               "max_abs_prob_diff": float(np.abs(probs - keras_probs).max()),
               "n_disagree": int((top_t != top_k).sum())}
        if req.get("return_probs"):
            out["probs"] = probs.astype("float64").round(7).tolist()
        return out

    def runners_for_accuracy():
        if content is not None:
            return runner(model, rt, threads, content)
        return lambda x: np.asarray(model(x, training=False))

    return {"run": run, "profile": profile, "accuracy": accuracy}, info


def _median_ms(fn, x, repeats: int = 7) -> float:
    import statistics

    fn(x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    return 1000 * statistics.median(ts)


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = harness.protocol_stream()  # from here on, stray prints go to stderr
    t0 = time.perf_counter()
    threads = harness.limit_threads(spec.get("threads"), pin=spec.get("pin", True))
    builder = build_inference if spec["kind"].startswith("infer_") else build_training
    try:
        handlers, info = builder(spec)
    except Exception as e:
        import traceback

        out.write(json.dumps({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}) + "\n")
        out.flush()
        raise SystemExit(1) from None
    harness.serve(handlers, {**info, **threads, "build_seconds": round(time.perf_counter() - t0, 1)}, out=out)


if __name__ == "__main__":
    main()
