"""Benchmark section "inference": latency and throughput of the exported model under Keras, LiteRT and
ONNX Runtime, and the configuration the command line and the app serve.

The model is the ``best`` bundle published by the evaluation chapter, else the saved bundle with
the best validation accuracy, else the chapter-6 recipe with random weights (said so). Each
runtime × core count runs in its own process (``bench_worker.py``), pinned to 1 or 2 cores with
the runtime's threads set to match (TensorFlow's inter-op 1) before TensorFlow starts; its peak memory
is that process's high-water mark (``VmHWM``; see :func:`harness.peak_rss_mb`). Batch 1
(latency) and batch 32 (throughput) are timed with warm-up and interleaved repetitions. The 1-core
Keras process also profiles where the time goes
(every layer timed eagerly, summed by type and by part; base vs head on the compiled graph). Each
converted model (LiteRT, ONNX) is checked against the bundle's *saved* Keras test predictions on every
test image.

Serving (:func:`choose_serving`): the published model with its own test-time-augmentation views, on the
fastest runtime (1 core, batch 1) that agrees with Keras on every test image; ``TARGET_MS`` (10 ms per image on
one core: a 100-cell differential in about a second on a laptop core) is a target it is measured against, not a
reason to serve another configuration. That exact configuration is then built, timed, scored once on val and
test with that runtime, and saved
as the bundle ``served`` with its own record ``results/served.json`` (``make demo`` serves it).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import harness

TITLE = "Inference: latency and throughput of the exported model (Keras, LiteRT, ONNX Runtime)"
TARGET_MS = 10.0  # per image, batch 1, one core
RUNTIMES = ("keras", "litert", "onnx")
AGREE_MAX_DIFF = 1e-3  # a runtime agrees with Keras: the same top-1 class on every test image and |Δp| ≤ this
SERVED = "served"
WORKER = Path(__file__).resolve().parent / "bench_worker.py"
ROOT = Path(__file__).resolve().parents[1]


def choose_model() -> dict[str, Any]:
    """``{"bundle": path or None, "why": text, "recipe": {...}}``: the book's final model
    (:func:`helpers.results.final_model`, chosen on validation as chapter 8 chooses it) when its bundle was saved
    here; else the saved bundle with the best validation macro-F1; else an untrained stand-in (said so)."""
    from helpers.compare import BEST, find_bundles
    from helpers.config import output_dir
    from helpers.export import BundleError, read_sidecar
    from helpers.results import final_model, load_records

    models = output_dir() / "models"
    name = final_model(load_records(ROOT / "results"))
    if name:
        try:
            side = read_sidecar(models / name)
            return {"bundle": str(models / name), "sidecar": side, "final": name,
                    "why": f"`{name}`, the book's final model (the highest validation macro-F1 of the scored runs, "
                           "as chapter 8 chooses it)"}
        except BundleError:
            pass
    scored = []
    for b in find_bundles(models, exclude=(BEST, "ensemble", SERVED)):
        try:
            side = read_sidecar(b)
        except BundleError:
            continue
        val = (side.get("metrics") or {}).get("val") or {}
        scored.append((float(val.get("macro_f1", -1)), b, side))  # chapter 7 publishes by val macro-F1 too
    if scored:
        acc, b, side = max(scored, key=lambda t: t[0])
        return {"bundle": str(b), "sidecar": side,
                "why": f"the final model's bundle is not here: `{b.name}`, the saved bundle with the highest "
                       f"val macro-F1 ({acc:.3f}) of {len(scored)}"}
    from training_bench import FAMILIES, notebook_assignments

    p = notebook_assignments(ROOT / "notebooks" / f"{FAMILIES['mobilenetv2']}.ipynb")
    recipe = {"family": "mobilenetv2", "image_size": int(p.get("IMAGE_SIZE", 128)),
              "split_layer": p.get("SPLIT_LAYER", "block_12_add"), "units": 256}
    return {"bundle": None, "recipe": recipe, "why": "NO saved bundle: the chapter-6 architecture (MobileNetV2 "
            f"{recipe['image_size']} px + head) built **without trained weights** — timings are valid, accuracy is not"}


def data_root() -> str | None:
    """The configured dataset root (to find the test images if the saved paths moved), or None."""
    try:
        from helpers.data import find_dataset_root

        d = os.environ.get("BLOODCELLS_DATA_DIR")
        return str(find_dataset_root(d)) if d else None
    except Exception:
        return None


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    quick = bool(ctx.get("quick"))
    repeats = int(ctx.get("repeats", 3))
    say = ctx.get("progress", print)
    choice = choose_model()
    say(f"model: {choice['why']}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = [c for c in (1, 2) if c <= usable]
    base_spec = {"bundle": choice["bundle"], "recipe": choice.get("recipe"),
                 "calls_b1": 5 if quick else 30, "calls_b32": 1 if quick else 3, "calls_eager": 2 if quick else 5}
    configs = {(rt, c): {"kind": f"infer_{rt}", "threads": c} for rt in RUNTIMES for c in cores}
    views = int(((choice.get("sidecar") or {}).get("tta") or {}).get("views", 1))
    if views > 1:  # a TTA model: also time the single-view network inside it (1 core, batch 1)
        configs.update({(f"{rt}-single-view", 1): {"kind": f"infer_{rt}", "threads": 1, "single_view": True}
                        for rt in RUNTIMES})
    workers = {cfg: harness.Worker([sys.executable, WORKER, json.dumps({**base_spec, **extra})],
                                 name=f"{cfg[0]}-{cfg[1]}core") for cfg, extra in configs.items()}
    failed: dict[str, str] = {}
    try:
        for cfg, w in list(workers.items()):  # a runtime whose conversion fails drops out; Keras must start
            try:
                w.wait_ready()
            except harness.WorkerError as e:
                if cfg[0] == "keras":
                    raise
                failed[cfg[0].split("-")[0]] = str(e).splitlines()[0]
                w.kill()
                del workers[cfg]
        rows = []
        for (rt, c), w in workers.items():
            k1, k32 = base_spec["calls_b1"], base_spec["calls_b32"]
            rows.append((f"{rt}, {c} core{'s' * (c > 1)}, batch 1", w, {"cmd": "run", "what": "b1"}, k1,
                         {"runtime": rt, "cores": c, "batch": 1}))
            if rt.endswith("single-view"):
                continue
            rows.append((f"{rt}, {c} core{'s' * (c > 1)}, batch 32", w, {"cmd": "run", "what": "b32"}, 32 * k32,
                         {"runtime": rt, "cores": c, "batch": 32}))
            if rt == "keras" and c == 1:
                rows.append(("keras eager call (model(x)), 1 core, batch 1", w, {"cmd": "run", "what": "b1_eager"},
                             base_spec["calls_eager"],
                             {"runtime": "keras-eager", "cores": 1, "batch": 1}))
        say(f"starting {len(workers)} workers ({', '.join(w.name for w in workers.values())})")
        ms = harness.measure_workers(rows, repeats=repeats, warmup=1, progress=lambda t: say(f"inference {t}"))
        k1w = workers[("keras", 1)]
        say("profile (1 core, batch 1)")
        try:
            prof = k1w.request({"cmd": "profile", "repeats": 2 if quick else 5})
        except harness.WorkerError as e:
            prof = {"error": str(e).splitlines()[0]}
        checks: dict[str, Any] = {rt: {"error": f"did not start: {why}"} for rt, why in failed.items()}
        if choice["bundle"]:
            for rt in [r for r in RUNTIMES[1:] if r not in failed]:
                say(f"{rt} vs saved Keras test predictions")
                try:
                    checks[rt] = workers[(rt, max(cores))].request(
                        {"cmd": "accuracy", "limit": 64 if quick else None, "data_root": data_root()})
                except harness.WorkerError as e:
                    checks[rt] = {"error": str(e).splitlines()[0]}
        infos = {cfg: dict(w.ready_info or {}) for cfg, w in workers.items()}
        mem = {cfg: w.close().get("peak_rss_mb") for cfg, w in workers.items()}
    finally:
        for w in workers.values():
            w.kill()
    lat = {(m.params["runtime"], m.params["cores"], m.params["batch"]): m for m in ms}
    one = {rt: 1000 / lat[(rt, 1, 1)].median for rt in RUNTIMES if (rt, 1, 1) in lat}
    single = {rt: 1000 / lat[(f"{rt}-single-view", 1, 1)].median for rt in RUNTIMES
              if (f"{rt}-single-view", 1, 1) in lat}
    serving = choose_serving(one, single, checks, views)
    served = None
    if choice["bundle"]:
        say(f"serving: {serving['runtime']}, {serving['views']} view(s) — timing and scoring that configuration")
        try:
            served = publish_served(choice, serving, ctx, timed=lat.get((serving["runtime"], 1, 1)))
        except Exception as e:  # the measurements above stay in the report whatever goes wrong here
            served = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return report(choice, ms, prof, checks, infos, mem, repeats, quick, views, serving, served)


def choose_serving(ms_1core: dict[str, float], single_ms: dict[str, float], checks: dict[str, Any], views: int,
                   target_ms: float = TARGET_MS) -> dict[str, Any]:
    """The runtime that serves the published model, with the model's own views (the model the book publishes is
    the model the command line and the app serve, nothing less): the fastest runtime (ms per image of the whole
    model, 1 core, batch 1; its single-view network's time × the views where the whole was not timed) among those
    that agree with Keras on every checked test image. ``fits`` says whether it meets ``target_ms``."""
    views = max(1, int(views))
    per_image = {rt: ms_1core[rt] if rt in ms_1core else views * single_ms[rt]
                 for rt in set(ms_1core) | set(single_ms)}
    agreeing = ["keras"] + [rt for rt, c in checks.items() if c and "error" not in c and c.get("n_disagree") == 0
                            and c.get("max_abs_prob_diff", 1.0) <= AGREE_MAX_DIFF]
    usable = [rt for rt in agreeing if rt in per_image]
    if not usable:
        raise ValueError("no runtime was timed: nothing to choose from")
    rt = min(usable, key=per_image.get)
    return {"runtime": rt, "views": views, "threads": 1, "estimated_ms": per_image[rt], "target_ms": target_ms,
            "agreeing": agreeing, "ms_per_image": dict(per_image), "fits": per_image[rt] <= target_ms}


def publish_served(choice: dict[str, Any], serving: dict[str, Any], ctx: dict[str, Any],
                   timed: harness.Measurement | None = None) -> dict[str, Any]:
    """Build the chosen configuration in a 1-core worker, score it with that runtime on val and test, and save it
    as the bundle ``served`` with its record. Returns what the report shows. Its latency is ``timed``, the
    comparison's measurement of that runtime with the model's views (1 core, batch 1), so that the report gives
    one number for one configuration; only where the comparison timed its single view alone is it timed here."""
    import numpy as np

    from helpers.config import output_dir
    from helpers.export import load_bundle, load_predictions
    from helpers.predictions import Predictions
    from helpers.runs import save_run
    from helpers.serve import RUNTIME_FILES, serving_model

    quick = bool(ctx.get("quick"))
    src = Path(choice["bundle"])
    rt, n = serving["runtime"], int(serving["views"])
    scratch = Path(ctx.get("scratch") or output_dir()) / "bench-served"
    models = scratch / "models" if quick else output_dir() / "models"
    results = scratch / "results" if quick else ROOT / "results"
    converted = scratch / f"converted.{rt}"
    scratch.mkdir(parents=True, exist_ok=True)
    spec = {"bundle": str(src), "kind": f"infer_{rt}", "threads": 1, "views": n, "calls_b1": 5 if quick else 30,
            "calls_b32": 1, **({"save_converted": str(converted)} if rt in RUNTIME_FILES else {})}
    w = harness.Worker([sys.executable, WORKER, json.dumps(spec)], name=f"served-{rt}-{n}v")
    try:
        m = timed or harness.measure_workers(
            [(f"served: {rt}, {n} view(s), 1 core, batch 1", w, {"cmd": "run", "what": "b1"}, spec["calls_b1"],
              {"runtime": f"served-{rt}", "cores": 1, "batch": 1})], repeats=int(ctx.get("repeats", 3)), warmup=1)[0]
        limit = 64 if quick else None
        scored = {split: w.request({"cmd": "accuracy", "split": split, "limit": limit, "data_root": data_root(),
                                    "return_probs": True}) for split in ("val", "test")}
        runtime_name = (w.ready_info or {}).get("runtime")
        w.close()
    finally:
        w.kill()
    model, side = load_bundle(src)
    source = (side.get("selected") or {}).get("source_bundle") or side.get("source_bundle") or src.name
    preds = {}
    for split, res in scored.items():
        saved = load_predictions(src, split)
        k = int(res["n"])
        preds[split] = Predictions(list(saved.paths)[:k], saved.y_true[:k], np.asarray(res["probs"], dtype="float32"))
    block = {"runtime": rt, "runtime_name": runtime_name, "views": n, "threads": 1,
             "ms_per_image_1core": round(1000 / m.median, 3), "target_ms": serving["target_ms"],
             "fits_target": 1000 / m.median <= serving["target_ms"], "source_bundle": source,
             "chosen_by": "make bench (benchmarks/inference_bench.py): the published model with its own views, "
                          "on the fastest runtime that agrees with Keras"}
    run_ = save_run(serving_model(model, n), SERVED, side.get("data") or {}, preds,
                    image_size=int(side["image_size"]), epochs=0, train_seconds=0.0,
                    weights_source={"kind": "a saved bundle configured for serving", "source_bundle": source,
                                    "runtime": rt, "views": n},
                    seed=42, mode="smoke" if quick else "book", record={"serving": block},
                    bundle={"serving": block, "tta": {"views": n}, "source_bundle": source},
                    preprocessing=side.get("preprocessing"),
                    results_directory=results, models_directory=models)
    if rt in RUNTIME_FILES:
        os.replace(converted, run_.bundle / RUNTIME_FILES[rt])
    return {**block, "bundle": run_.bundle.name, "record": run_.record_path.name,
            "val_accuracy": run_.record["val"]["accuracy"], "test_accuracy": run_.record["test"]["accuracy"],
            "test_macro_f1": run_.record["test"]["macro_f1"], "n_test": int(scored["test"]["n"]),
            "spread": m.spread}


def part_table(prof: dict[str, Any], top: int = 8) -> str:
    """The by-part table; for a flat model (every part one layer) only the ``top`` slowest layers."""
    import pandas as pd

    parts = prof["by_part"]
    if len(parts) <= top or any(p["layers"] > 1 for p in parts):
        return harness.markdown_table(pd.DataFrame(parts))
    rest = parts[top:]
    rows = parts[:top] + [{"part": f"the other {len(rest)} layers", "layers": len(rest),
                           "ms": sum(r["ms"] for r in rest), "share": sum(r["share"] for r in rest)}]
    return harness.markdown_table(pd.DataFrame(rows).rename(columns={"part": "layer (flat model)"}))


def report(choice, ms, prof, checks, infos, mem, repeats, quick, views: int = 1, serving=None,
           served=None) -> dict[str, Any]:
    import pandas as pd

    lat = {(m.params["runtime"], m.params["cores"], m.params["batch"]): m for m in ms}
    k1 = lat[("keras", 1, 1)]
    rows = []
    for m in ms:
        p = m.params
        rows.append({"setup": m.name, "ms per call (median)": 1000 * p["batch"] / m.median,
                     "ms per image": 1000 / m.median, "images/s": m.median, "spread": m.spread,
                     "× keras 1-core": m.median / lat[("keras", 1, p["batch"])].median,
                     "peak RSS MB (process)": mem.get((p["runtime"], p["cores"]),
                                                      mem.get((p["runtime"].split("-")[0], p["cores"])))})
    df = pd.DataFrame(rows)
    one = {rt: 1000 / lat[(rt, 1, 1)].median for rt in RUNTIMES if (rt, 1, 1) in lat}
    best_rt = min(one, key=one.get)
    targets = [{"target": f"≤ {TARGET_MS:.0f} ms per image, batch 1, 1 core ({rt}, {views} view{'s' * (views > 1)})",
                "value_ms": v, "met": v <= TARGET_MS,
                "margin": f"{v - TARGET_MS:+.1f} ms ({v / TARGET_MS:.1f}× the target)"} for rt, v in one.items()]
    if served and "error" not in served:
        v = served["ms_per_image_1core"]
        targets.append({"target": f"≤ {TARGET_MS:.0f} ms per image, batch 1, 1 core (the served configuration)",
                        "value_ms": v, "met": v <= TARGET_MS,
                        "margin": f"{v - TARGET_MS:+.1f} ms ({v / TARGET_MS:.1f}× the target)"})
    info_k = infos.get(("keras", 1), {})
    conv = [f"{rt}: {infos[(rt, 1)].get('file_mb')} MB, converted in {infos[(rt, 1)].get('convert_seconds')} s"
            for rt in RUNTIMES[1:] if (rt, 1) in infos]
    md = [f"Model: {choice['why']}; {info_k.get('image_size')} px input, {info_k.get('params_count', 0):,} parameters"
          + (f"; float32 files ({'; '.join(conv)})" if conv else "") + ".",
          "Runtimes: " + "; ".join(str(infos[(rt, 1)].get("runtime")) for rt in RUNTIMES if (rt, 1) in infos)
          + ". LiteRT runs the TFLite flatbuffer of `tf.lite.TFLiteConverter`; ONNX Runtime runs Keras' own export "
          "(`model.export(format=\"onnx\")`, through tf2onnx). Each runtime × core count is its own process, "
          "pinned with `os.sched_setaffinity` and its threads = cores (inter-op 1), set before TensorFlow "
          f"starts; random input tensors; one warm-up run, then {repeats} interleaved rounds. "
          "Peak RSS is the process's own high-water mark (`VmHWM`; `ru_maxrss` would include the parent's "
          "memory, as it survives `exec`): model + runtime; the LiteRT and ONNX processes also hold the Keras "
          "model they were converted from, and the ones that checked accuracy streamed the test images.",
          "", harness.markdown_table(df), ""]
    for t in targets:
        md.append(f"- **Target {t['target']}: {'met' if t['met'] else 'MISSED'}** — {t['value_ms']:.1f} ms, "
                  f"margin {t['margin']}.")
    md.append("- Speed at batch 1, 1 core, relative to Keras: "
              + ", ".join(f"{rt} {lat[(rt, 1, 1)].median / k1.median:.2f}×"
                          for rt in RUNTIMES[1:] if (rt, 1, 1) in lat)
              + "; 2 cores / 1 core for Keras at batch 32: "
              + (f"{lat[('keras', 2, 32)].median / lat[('keras', 1, 32)].median:.2f}×." if ("keras", 2, 32) in lat
                 else "not measured (1 usable core)."))
    single = {rt: 1000 / lat[(f"{rt}-single-view", 1, 1)].median for rt in RUNTIMES
              if (f"{rt}-single-view", 1, 1) in lat}
    if single:
        md.append(f"- Test-time augmentation: this model averages **{views} views** of each image. The single-view "
                  "network inside it takes " + ", ".join(f"{v:.1f} ms ({rt})" for rt, v in single.items())
                  + " per image (1 core, batch 1), so the views cost "
                  + ", ".join(f"{one[rt] / v:.1f}× ({rt})" for rt, v in single.items() if rt in one) + ".")
    if ("keras-eager", 1, 1) in lat:
        md.append(f"- A plain eager call `model(x)` (what `helpers.compare.latency` in chapter 7 times) takes "
                  f"{1000 / lat[('keras-eager', 1, 1)].median:.0f} ms per image on 1 core, "
                  f"{lat[('keras', 1, 1)].median / lat[('keras-eager', 1, 1)].median:.0f}× the `tf.function` call: "
                  "for deployment, compile the call (or use a serving runtime).")
    md += ["", "### Where the time goes (Keras, 1 core, batch 1)", ""]
    if "error" in prof:
        md.append(f"Profile failed: {prof['error']}")
    elif prof.get("compiled_without_last_part_ms"):
        head_share = 1 - prof["compiled_without_last_part_ms"] / prof["compiled_ms"]
        alone = prof.get("compiled_last_part_alone_ms")
        md.append(f"Compiled graph (1 core, batch 1): whole model {prof['compiled_ms']:.1f} ms; without its last part "
                  f"(`{prof['last_part']}`) {prof['compiled_without_last_part_ms']:.1f} ms, i.e. "
                  + (f"{1 - head_share:.0%} of the whole is everything before it (preprocessing + feature extractor)"
                     if head_share > 0 else "as long as the whole within the noise of one call: the last part is "
                     "negligible")
                  + (f"; the last part alone on its input {alone:.2f} ms ({alone / prof['compiled_ms']:.0%}; "
                     "each figure includes the fixed cost of one graph call, so the two shares need not add up to 100 %)"  # noqa: E501
                     if alone is not None else "") + ".")
    md += [] if "error" in prof else [f"Every one of the {prof['n_layers']} layers timed eagerly on its own input (sum "
           f"{prof['eager_sum_ms']:.1f} ms vs {prof['compiled_ms']:.1f} ms compiled: eager calls add a per-layer "
           "overhead, so read the shares, which overstate cheap layers):", "",
           harness.markdown_table(pd.DataFrame(prof["by_type"]).rename(columns={"type": "layer type"})), "",
           part_table(prof), ""]
    md += ["### Each runtime against Keras on the test split", ""]
    if not checks:
        md.append("Not checked: there is no saved bundle (hence no saved test predictions).")
    else:
        md.append("Each converted model was run on the test images of the bundle's saved predictions"
                  f"{' (QUICK: a subset)' if quick else ''} and compared with the **saved** Keras probabilities (the "
                  "test images are touched only to compare runtimes of an already-final model; nothing is selected "
                  f"on them). A runtime agrees when it picks the same class on every image and no probability "
                  f"differs by more than {AGREE_MAX_DIFF:g}.")
        md.append("")
        crow = []
        for rt, c in checks.items():
            if "error" in c:
                crow.append({"runtime": rt, "images": "–", "top-1 agreement": "–", "disagreements": "–",
                             "largest |Δp|": "–", "accuracy": "–", "note": c["error"]})
            else:
                crow.append({"runtime": rt, "images": c["n"], "top-1 agreement": f"{c['agreement']:.2%}",
                             "disagreements": c["n_disagree"], "largest |Δp|": f"{c['max_abs_prob_diff']:.2g}",
                             "accuracy": f"{c['accuracy']:.2%} (Keras {c['accuracy_keras_saved']:.2%})",
                             "note": "agrees" if rt in (serving or {}).get("agreeing", []) else "does not agree"})
        md.append(harness.markdown_table(pd.DataFrame(crow)))
    md += ["", "### What the command line and the app serve", ""]
    if serving:
        views_txt = f"{serving['views']} view{'s' * (serving['views'] > 1)}"
        md.append(f"The published model is served as it is, with its {views_txt}, on the fastest runtime that "
                  f"agrees with Keras: **{serving['runtime']}** "
                  f"({', '.join(f'{k} {v:.2f} ms' for k, v in sorted(serving['ms_per_image'].items()))} per image, "
                  f"1 core, batch 1). The budget of {TARGET_MS:.0f} ms per image on one core (a 100-cell differential "
                  "in about a second on a laptop core) is "
                  + ("met." if serving["fits"] else "**missed**: the model is served all the same, and slower."))
    if served is None:
        md.append("No saved bundle: nothing was published for serving.")
    elif "error" in served:
        md.append(f"Publishing the served configuration failed: {served['error']}")
    else:
        md.append(f"That configuration was built from `{served['source_bundle']}` "
                  f"({served['ms_per_image_1core']:.2f} ms per image, 1 core, batch 1, as timed above) and scored "
                  "once with "
                  f"{served['runtime']} on val and test: **test accuracy {served['test_accuracy']:.2%}**, macro-F1 "
                  f"{served['test_macro_f1']:.3f} (n = {served['n_test']:,}; val accuracy {served['val_accuracy']:.2%})"
                  f". It is saved as the bundle `{served['bundle']}` with its own record `results/{served['record']}`"
                  "; `make demo` and `python -m helpers.predict outputs/models/served …` serve it.")
    key = {"model": choice["why"], "ms_per_image_1core": one, "best_runtime_1core": best_rt, "tta_views": views,
           "single_view_ms_per_image_1core": single or None, "target_ms": TARGET_MS,
           "met": bool(served and "error" not in served and served["fits_target"]), "serving": serving,
           "served": served, "runtime_checks": checks,
           "peak_rss_mb": {f"{rt}-{c}": v for (rt, c), v in mem.items()}}
    return {"title": TITLE, "markdown": "\n".join(md), "key": key, "targets": targets,
            "results": {"inference": [m.as_dict() for m in ms], "profile": prof, "runtime_checks": checks,
                        "serving": serving, "served": served,
                        "workers": {f"{rt}-{c}": {**infos[(rt, c)], "peak_rss_mb": mem[(rt, c)]} for rt, c in infos}}}
