"""Benchmark section "inference": latency and throughput of the exported model, Keras vs TFLite.

The model is the ``best`` bundle published by the evaluation chapter, else the saved bundle with
the best validation accuracy, else the chapter-6 recipe with random weights (said so). Each
runtime × core count runs in its own process (``bench_worker.py``), pinned to 1 or 2 cores with
TensorFlow's intra-op threads set to match (inter-op 1) before TensorFlow starts; its peak memory
is that process's high-water mark (``VmHWM``; see :func:`harness.peak_rss_mb`). Batch 1
(latency) and batch 32 (throughput) are timed with warm-up and interleaved repetitions. The 1-core
Keras process also profiles where the time goes
(every layer timed eagerly, summed by type and by part; base vs head on the compiled graph). The
TFLite model is checked against the bundle's *saved* Keras test predictions.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import harness

TITLE = "Inference: latency and throughput of the exported model (Keras vs TFLite)"
TARGET_MS = 10.0  # per image, batch 1, one core
WORKER = Path(__file__).resolve().parent / "bench_worker.py"
ROOT = Path(__file__).resolve().parents[1]


def choose_model() -> dict[str, Any]:
    """``{"bundle": path or None, "why": text, "recipe": {...}}``."""
    from helpers.compare import BEST, find_bundles
    from helpers.config import output_dir
    from helpers.export import BundleError, read_sidecar

    models = output_dir() / "models"
    best = models / BEST
    try:
        side = read_sidecar(best)
        return {"bundle": str(best), "why": f"the published `best` bundle (a copy of "
                f"`{side.get('selected', {}).get('source_bundle', '?')}`)", "sidecar": side}
    except BundleError:
        pass
    scored = []
    for b in find_bundles(models):
        try:
            side = read_sidecar(b)
        except BundleError:
            continue
        val = (side.get("metrics") or {}).get("val") or {}
        scored.append((float(val.get("accuracy", -1)), b, side))
    if scored:
        acc, b, side = max(scored, key=lambda t: t[0])
        return {"bundle": str(b), "sidecar": side,
                "why": f"no `best` bundle yet (chapter 7 publishes it): `{b.name}`, the saved bundle with the highest "
                       f"val accuracy ({acc:.3f}) of {len(scored)}"}
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
    configs = {(rt, c): {"kind": f"infer_{rt}", "threads": c} for rt in ("keras", "tflite") for c in cores}
    views = int(((choice.get("sidecar") or {}).get("tta") or {}).get("views", 1))
    if views > 1:  # a TTA model: also time the single-view network inside it (1 core, batch 1)
        configs.update({(f"{rt}-single-view", 1): {"kind": f"infer_{rt}", "threads": 1, "single_view": True}
                        for rt in ("keras", "tflite")})
    workers = {cfg: harness.Worker([sys.executable, WORKER, json.dumps({**base_spec, **extra})],
                                 name=f"{cfg[0]}-{cfg[1]}core") for cfg, extra in configs.items()}
    try:
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
        acc = None
        if choice["bundle"]:
            tw = workers[("tflite", max(cores))]
            say("TFLite vs saved Keras test predictions")
            try:
                acc = tw.request({"cmd": "accuracy", "limit": 64 if quick else None, "data_root": data_root()})
            except harness.WorkerError as e:
                acc = {"error": str(e).splitlines()[0]}
        infos = {cfg: dict(w.ready_info or {}) for cfg, w in workers.items()}
        mem = {cfg: w.close().get("peak_rss_mb") for cfg, w in workers.items()}
    finally:
        for w in workers.values():
            w.kill()
    return report(choice, ms, prof, acc, infos, mem, repeats, quick, views)


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


def report(choice, ms, prof, acc, infos, mem, repeats, quick, views: int = 1) -> dict[str, Any]:
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
    one = {rt: 1000 / lat[(rt, 1, 1)].median for rt in ("keras", "tflite") if (rt, 1, 1) in lat}
    best_rt = min(one, key=one.get)
    best_ms = one[best_rt]
    targets = [{"target": f"≤ {TARGET_MS:.0f} ms per image, batch 1, 1 core ({rt})", "value_ms": v,
                "met": v <= TARGET_MS, "margin": f"{v - TARGET_MS:+.1f} ms ({v / TARGET_MS:.1f}× the target)"}
               for rt, v in one.items()]
    info_k, info_t = infos.get(("keras", 1), {}), infos.get(("tflite", 1), {})
    md = [f"Model: {choice['why']}; {info_k.get('image_size')} px input, {info_k.get('params_count', 0):,} parameters"
          + (f", TFLite flatbuffer {info_t.get('tflite_mb')} MB (float32, converted in {info_t.get('convert_seconds')} s)"  # noqa: E501
             if info_t else "") + ".",
          f"Runtimes: {info_k.get('runtime')}; {info_t.get('runtime')}. Each runtime × core count is its own process, "
          "pinned with `os.sched_setaffinity` and intra-op threads = cores, inter-op = 1, set before TensorFlow "
          f"starts; random input tensors; one warm-up run, then {repeats} interleaved rounds. "
          "Peak RSS is the process's own high-water mark (`VmHWM`; `ru_maxrss` would include the parent's "
          "memory, as it survives `exec`): model + runtime; the TFLite process also holds the Keras model "
          "it was converted from, and the one that checked accuracy streamed the test images.",
          "", harness.markdown_table(df), ""]
    for t in targets:
        md.append(f"- **Target {t['target']}: {'met' if t['met'] else 'MISSED'}** — {t['value_ms']:.1f} ms, "
                  f"margin {t['margin']}.")
    if ("tflite", 1, 1) in lat:
        md.append(f"- TFLite / Keras speed at batch 1, 1 core: {lat[('tflite', 1, 1)].median / k1.median:.2f}×; "
                  f"2 cores / 1 core for Keras at batch 32: "
                  + (f"{lat[('keras', 2, 32)].median / lat[('keras', 1, 32)].median:.2f}×." if ("keras", 2, 32) in lat
                     else "not measured (1 usable core)."))
    single = {rt: 1000 / lat[(f"{rt}-single-view", 1, 1)].median for rt in ("keras", "tflite")
              if (f"{rt}-single-view", 1, 1) in lat}
    if single:
        fits = {rt: max([n for n in (1, 2, 4, 8) if n * v <= TARGET_MS], default=0) for rt, v in single.items()}
        md.append(f"- Test-time augmentation: this model averages **{views} views** of each image. The single-view "
                  "network inside it takes " + ", ".join(f"{v:.1f} ms ({rt})" for rt, v in single.items())
                  + " per image (1 core, batch 1), so the views cost "
                  + ", ".join(f"{one[rt] / v:.1f}× ({rt})" for rt, v in single.items() if rt in one)
                  + f". Estimated as views × the single-view time, the {TARGET_MS:.0f} ms budget of one core affords "
                  + ", ".join(f"{n} view{'s' * (n != 1)} ({rt})" for rt, n in fits.items())
                  + " (the view counts are 1, 2, 4 or 8); fewer views (`TTA_VIEWS` in chapters 3 and 6) trade "
                  "validation accuracy for latency.")
    if ("keras-eager", 1, 1) in lat:
        md.append(f"- A plain eager call `model(x)` (what `helpers.compare.latency` in chapter 7 times) takes "
                  f"{1000 / lat[('keras-eager', 1, 1)].median:.0f} ms per image on 1 core, "
                  f"{lat[('keras', 1, 1)].median / lat[('keras-eager', 1, 1)].median:.0f}× the `tf.function` call: "
                  "for deployment, compile the call (or use TFLite).")
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
    md += ["### TFLite vs Keras on the test split", ""]
    if acc is None:
        md.append("Not checked: there is no saved bundle (hence no saved test predictions).")
    elif "error" in acc:
        md.append(f"Not checked: {acc['error']}")
    else:
        md.append(f"The TFLite model was run on {acc['n']:,} test images{' (QUICK: a subset)' if quick else ''} of "
                  "the bundle's saved predictions and compared with the **saved** Keras probabilities (the test images "
                  "are touched only to compare two runtimes of an already-final model; nothing is selected on them): "
                  f"top-1 agreement **{acc['agreement']:.2%}** ({acc['n_disagree']} disagreements), accuracy "
                  f"TFLite {acc['accuracy_tflite']:.2%} vs Keras {acc['accuracy_keras_saved']:.2%}, largest "
                  f"probability difference {acc['max_abs_prob_diff']:.2g}.")
    key = {"model": choice["why"], "ms_per_image_1core": one, "best_runtime_1core": best_rt, "tta_views": views,
           "single_view_ms_per_image_1core": single or None,
           "target_ms": TARGET_MS, "met": best_ms <= TARGET_MS, "tflite_check": acc,
           "peak_rss_mb": {f"{rt}-{c}": v for (rt, c), v in mem.items()}}
    return {"title": TITLE, "markdown": "\n".join(md), "key": key, "targets": targets,
            "results": {"inference": [m.as_dict() for m in ms], "profile": prof, "tflite_check": acc,
                        "workers": {f"{rt}-{c}": {**infos[(rt, c)], "peak_rss_mb": mem[(rt, c)]} for rt, c in infos}}}
