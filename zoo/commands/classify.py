"""``python -m zoo classify`` and ``explain`` (one method, every method, or one method at every stage):
each parses into ``zoo.features.classify.Request``; ``--json`` prints the result's ``to_json()``."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ZooError
from ..features import classify as feature
from ..params import IG_STEPS, MAX_OCCLUSION_POSITIONS, OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES, method_names
from ..registry import Zoo
from .common import compile_for_run, model_args, print_progress


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("classify", parents=[common], help="top-k ImageNet classes of an image")
    model_args(s)
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("explain", parents=[common], help="where the network looked")
    model_args(s)
    s.add_argument("--method", default="cam", choices=[*method_names(), "all"],
                   help="explanation method, or 'all': one line (or JSON object) per method")
    s.add_argument("--layer", default=None, choices=[*STAGES, "all"],
                   help="stage the map is read from (default layer4; CAM works on layer4 only); 'all': the "
                        "method's maps at layer1 ... layer4, one forward and one backward for Grad-CAM, XGrad-CAM "
                        "and Layer-CAM")
    s.add_argument("--faithfulness", action="store_true",
                   help="also score the map: deletion AUC (lower is better), insertion AUC (higher is better) "
                        "and ROAD (higher is better), about 50 forwards and a few seconds of imputation")
    s.add_argument("--target", default=None, help="class index or name (default: top-1)")
    s.add_argument("--out", metavar="PNG", help="write the overlay on the model's crop")
    s.add_argument("--npy", metavar="NPY", help="write the raw map (float32, before normalising/upsampling)")
    s.add_argument("--cmap", default="jet")
    s.add_argument("--alpha", type=float, default=0.5)
    # Defaults and limits are zoo.params', as in the page and the API.
    s.add_argument("--window", type=int, default=OCCLUSION_WINDOW.default,
                   help=f"occlusion window (pixels, default {OCCLUSION_WINDOW.default})")
    s.add_argument("--stride", type=int, default=OCCLUSION_STRIDE.default,
                   help=f"occlusion stride (pixels, default {OCCLUSION_STRIDE.default}); at most "
                        f"{MAX_OCCLUSION_POSITIONS} window positions in all")
    s.add_argument("--steps", type=int, default=IG_STEPS.default,
                   help=f"integrated-gradients steps ({IG_STEPS.low}-{IG_STEPS.high}, default {IG_STEPS.default})")
    s.set_defaults(func=cmd_explain)


def runtime(zoo: Zoo, args: argparse.Namespace) -> Any:
    """The command's runtime: --device, --precision, --compile; one model in its cache."""
    from ..runtime import Runtime

    return Runtime(zoo, args.device, cache_size=1, precision=args.precision, compile=args.compile)


def load(rt: Any, args: argparse.Namespace, model: str) -> None:
    """Load ``model`` (its progress on stderr unless --json) and, with ``--compile on``, compile it:
    under ``auto`` one image runs eager (``compile_for_run``)."""
    compile_for_run(args, [rt.cache.get(rt.zoo.get(model), None if args.json else print_progress)])


def settings(args: argparse.Namespace, layer: bool = True) -> dict[str, Any]:
    """The command line's method settings; the method takes its own (``zoo.params.method_params``)."""
    out: dict[str, Any] = {"window": args.window, "stride": args.stride, "steps": args.steps}
    if layer and args.layer:
        out["layer"] = args.layer
    return out


def cmd_classify(zoo: Zoo, args: argparse.Namespace) -> int:
    """Top-k classes (the result carries CAM's map, which costs no pass: ``/classify``'s JSON)."""
    from ..images import load_image

    rt = runtime(zoo, args)
    req = feature.Request.create(rt, load_image(args.image), args.model, args.top)  # a bad path fails first
    load(rt, args, req.model)
    result = feature.result(rt, req)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    run = result.run
    for note in run.notes:
        print(f"note: {note}")
    print(f"{run.model} on {run.device}, {run.precision} ({run.seconds * 1000:.0f} ms):")
    for p in run.predictions:
        print(f"  {p.prob * 100:6.2f}%  {p.label}  (class {p.index})")
    return 0


def cmd_explain(zoo: Zoo, args: argparse.Namespace) -> int:
    """One method's map (``--method all``: every method's, one line or JSON object each; ``--layer
    all``: the method's maps at every stage)."""
    from ..images import load_image

    if args.layer == "all":
        return explain_every_stage(zoo, args)
    rt = runtime(zoo, args)
    one = args.method != "all"
    if one:  # a layer the method refuses, or settings over the limits, fail before the image and weights
        feature.Request.create(rt, None, args.model, 5, args.method, args.target, settings(args),
                               args.faithfulness, explain=True, refuse_layer=True)
    image = load_image(args.image)
    load(rt, args, zoo.get(args.model).name)
    failed = 0
    names = [args.method] if one else method_names()
    for name in names:
        try:
            req = feature.Request.create(rt, image, args.model, 5, name, args.target, settings(args),
                                         args.faithfulness, explain=True, refuse_layer=one)
            result = feature.result(rt, req)
        except ZooError as e:
            if one:
                raise
            failed += 1  # one method's refusal (CAM below layer4) does not stop the others
            if args.json:
                print(json.dumps({"model": rt.zoo.get(args.model).name, "method": name, "error": str(e)}),
                      flush=True)
            else:
                print(f"{name}: skipped: {e}", flush=True)
            continue
        show(result, args, write(result.run, [(result.explanation, name if not one else "")], args))
    return 0 if failed < len(names) else 2


def write(run: Any, maps: list[tuple[Any, str]], args: argparse.Namespace) -> list[Path]:
    """--npy and --out for each (explanation, suffix): the suffix (a method, a stage) goes into the file's name."""
    from ..render import overlay_crop, save_png

    paths = []
    for ex, suffix in maps:
        for path, kind in ((args.npy, "npy"), (args.out, "png")):
            if not path:
                continue
            path = Path(path)
            if suffix:
                path = path.with_name(f"{path.stem}-{suffix}{path.suffix}")
            if kind == "npy":
                import numpy as np

                np.save(path, ex.raw.astype("float32"))
            else:
                save_png(overlay_crop(run, ex.raw, cmap=args.cmap, alpha=args.alpha), path)
            paths.append(path)
    return paths


def show(result: feature.Result, args: argparse.Namespace, paths: list[Path]) -> None:
    """One map's line (and its scores'), or its JSON object."""
    from ..explain import METHODS

    if args.json:
        print(json.dumps(result.to_json()), flush=True)
        return
    run, ex, scores = result.run, result.explanation, result.faithfulness
    for note in run.notes + ex.notes:
        print(f"note: {note}")
    at = f" at {ex.layer}" if ex.layer else ""
    print(f"{run.model} · {METHODS[result.method].label} for {ex.target.label!r} (class {ex.target.index}, "
          f"p={ex.target.prob:.3f}){at}; map {ex.raw.shape[0]}x{ex.raw.shape[1]}, {ex.seconds * 1000:.0f} ms",
          flush=True)
    if scores is not None:
        print(f"  deletion AUC {scores.deletion_auc:.4f} (lower is better) · insertion AUC "
              f"{scores.insertion_auc:.4f} (higher is better) · {scores.forwards} forwards, "
              f"{scores.seconds * 1000:.0f} ms", flush=True)
        if scores.road is not None:
            r = scores.road
            print(f"  ROAD {r.combined:+.4f} (higher is better; percentiles {', '.join(map(str, r.percentiles))}) · "
                  f"{r.forwards} forwards, {r.seconds * 1000:.0f} ms", flush=True)
    for path in paths:
        print(f"wrote {path}")


def explain_every_stage(zoo: Zoo, args: argparse.Namespace) -> int:
    """``explain --layer all``: the method's maps at layer1 ... layer4, one line (or JSON object) each."""
    from ..explain import METHODS
    from ..images import load_image

    if args.method == "all":
        raise ZooError("--layer all shows one method at every stage; name one method with --method.")
    if args.faithfulness:
        raise ZooError("--faithfulness scores one map; use it with one --layer, not --layer all.")
    rt = runtime(zoo, args)
    req = feature.Request.create(rt, None, args.model, 5, args.method, args.target, settings(args, layer=False),
                                 every_stage=True)  # CAM and the input methods have no map at every stage
    req = replace(req, image=load_image(args.image))
    load(rt, args, req.model)
    stages = feature.result(rt, req)
    written = [write(stages.run, [(ex, ex.layer)], args) for ex in stages.explanations]
    if args.json:
        for line in stages.to_json():
            print(json.dumps(line), flush=True)
        return 0
    for ex, paths in zip(stages.explanations, written):
        t = ex.target
        for note in ex.notes:
            print(f"note: {note}")
        print(f"{req.model} · {METHODS[req.method].label} for {t.label!r} (class {t.index}) at {ex.layer}: "
              f"map {ex.raw.shape[0]}x{ex.raw.shape[1]}", flush=True)
        for path in paths:
            print(f"wrote {path}")
    how = ("one forward and one backward for all four" if stages.passes == 3
           else f"one run per stage ({stages.passes} forward-pass equivalents)")
    print(f"every stage: {how}. Earlier stages are finer (56x56 at layer1) and see less abstract features "
          "(edges, textures); each stage's map is a different layer's evidence, so maps can flip between "
          "stages.")
    return 0
