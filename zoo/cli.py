"""``python -m zoo``: list, download, pin, classify, explain and measure the ResNets (and their robustness); check a deployment."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Sequence

from .errors import ZooError
from .commands.common import (DEFAULT_MODEL, ProgressPrinter, compile_for_run, device_arg,  # noqa: F401
                              precision_arg, print_progress)
from .commands.batch import engine_args, make_executor  # noqa: F401 (zoo robustness shares them)
from .registry import Zoo

# One module per command (zoo/commands/<name>.py), each with ``add_parser(sub, common)`` that
# parses into its feature's request; build_parser adds them in this order.
COMMANDS: tuple[str, ...] = ("batch",)

def cmd_list(zoo: Zoo, args: argparse.Namespace) -> int:
    from .hub import cached_path
    from .stats import model_stats

    rows = []
    for spec in zoo:
        rows.append({
            "name": spec.name, "depth": spec.depth, "repo": spec.repo or spec.path,
            "revision": spec.revision,
            "params": model_stats(spec.arch.name, num_classes=spec.num_classes).params,
            "top1": spec.top1, "top5": spec.top5, "cached": cached_path(spec) is not None,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<18}{'depth':>6}  {'params':>11}  {'top-1':>6}  {'top-5':>6}  {'cached':<7}repo")
    for r in rows:
        acc = lambda v: f"{v:6.2f}" if v is not None else f"{'-':>6}"  # noqa: E731
        print(f"{r['name']:<18}{r['depth']:>6}  {r['params']:>11,}  {acc(r['top1'])}  {acc(r['top5'])}  "
              f"{'yes' if r['cached'] else 'no':<7}{r['repo']}")
    return 0


def cmd_download(zoo: Zoo, args: argparse.Namespace) -> int:
    from .hub import evict, fetch_weights

    if not args.names and not args.all:
        raise ZooError("Name at least one model to download, or pass --all.")
    specs = list(zoo) if args.all else [zoo.get(n) for n in args.names]
    for spec in specs:
        if args.force:
            evict(spec)
        path = fetch_weights(spec, progress=print_progress)
        print(f"{spec.name}: {path}")
    return 0


def cmd_pin(zoo: Zoo, args: argparse.Namespace) -> int:
    """Each model's current commit, size and LFS sha256 on the Hub, as registry and front-matter lines."""
    import datetime as dt

    from huggingface_hub import constants

    from .pin import front_matter_line, read_hub_file, report, require_online

    specs = [zoo.get(n) for n in args.names] if args.names else zoo.builtin_depths
    require_online()
    today = dt.date.today()
    print(f"# Read from {constants.ENDPOINT} on {today.isoformat()} with huggingface_hub.model_info"
          "(files_metadata=True).\n# 'DIFFERS' marks a value the registry does not hold yet. Paste the lines "
          "below over the old ones.", flush=True)
    failed: list[str] = []
    differ: dict[str, list[str]] = {}
    front: list[str] = []
    for spec in specs:
        try:
            hub = read_hub_file(spec)
        except ZooError as e:
            print(f"error: {spec.name}: {e}", file=sys.stderr, flush=True)
            failed.append(spec.name)
            if spec.builtin:  # keep the block whole: this line as the registry has it now
                front.append(f"  - {spec.repo} {spec.filename}" + (f" {spec.revision}" if spec.pinned else "")
                             + "  # not read from the Hub: unchanged")
            continue
        lines, changed = report(spec, hub, today)
        print("\n" + "\n".join(lines), flush=True)
        if changed:
            differ[spec.name] = changed
        if spec.builtin:
            front.append(front_matter_line(hub))
    if front:
        print("\n# README.md, front matter:\npreload_from_hub:\n" + "\n".join(front))
    done = len(specs) - len(failed)
    if differ:
        print(f"\n# {len(differ)} of {done} differ from the registry: "
              + "; ".join(f"{n} ({', '.join(c)})" for n, c in differ.items())
              + ". After pasting, run the tests: tests/test_spaces.py checks the front matter against the registry.")
    elif done:
        print(f"\n# All {done} match the registry; nothing to paste.")
    if failed:
        print(f"# Not read: {', '.join(failed)} (see the errors above).")
    return 2 if failed else 0


def cmd_classify(zoo: Zoo, args: argparse.Namespace) -> int:
    from .images import load_image
    from .inference import classify
    from .models import load_model

    spec = zoo.get(args.model)
    image = load_image(args.image)  # a bad path fails before seconds are spent on weights
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    compile_for_run(args, [model])
    result = classify(model, image, top_k=args.top)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    print(f"{spec.name} on {result.device}, {result.precision} ({result.seconds * 1000:.0f} ms):")
    for p in result.predictions:
        print(f"  {p.prob * 100:6.2f}%  {p.label}  (class {p.index})")
    return 0


def cmd_explain(zoo: Zoo, args: argparse.Namespace) -> int:
    from .explain import METHODS, layer_param
    from .images import load_image
    from .inference import classify
    from .models import load_model

    spec = zoo.get(args.model)
    if args.layer == "all":
        return explain_every_stage(zoo, args)
    names = list(METHODS) if args.method == "all" else [args.method]
    if args.method != "all":  # a layer the method refuses, or parameters over the limits, fail now
        layer_param(args.method, {"layer": args.layer}, spec.cam_layer)
        METHODS[args.method].passes(method_params(args.method, args), spec.preprocessing.crop)
    image = load_image(args.image)
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    compile_for_run(args, [model])
    run = classify(model, image, top_k=5)
    failed = 0
    for name in names:
        try:
            explain_one(model, run, name, args, suffix=args.method == "all")
        except ZooError as e:
            if args.method != "all":
                raise
            failed += 1  # one method's refusal (CAM below layer4) does not stop the others
            if args.json:
                print(json.dumps({"model": spec.name, "method": name, "error": str(e)}), flush=True)
            else:
                print(f"{name}: skipped: {e}", flush=True)
    return 0 if failed < len(names) else 2


def explain_every_stage(zoo: Zoo, args: argparse.Namespace) -> int:
    """``explain --layer all``: the method's maps at layer1 ... layer4, one line (or JSON object) each."""
    from pathlib import Path

    from .explain import METHODS, check_every_stage, every_stage, every_stage_passes
    from .images import load_image
    from .inference import classify
    from .models import load_model
    from .render import overlay_crop, save_png

    if args.method == "all":
        raise ZooError("--layer all shows one method at every stage; name one method with --method.")
    if args.faithfulness:
        raise ZooError("--faithfulness scores one map; use it with one --layer, not --layer all.")
    check_every_stage(args.method)  # CAM and the input methods have no map at every stage
    spec = zoo.get(args.model)
    params = method_params(args.method, args)
    passes = every_stage_passes(args.method, params, spec.preprocessing.crop)
    image = load_image(args.image)
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    run = classify(model, image, top_k=5)
    maps = every_stage(model, run, args.method, args.target, **params)
    for ex in maps:
        paths = []
        for path, kind in ((args.npy, "npy"), (args.out, "png")):
            if not path:
                continue
            path = Path(path)
            path = path.with_name(f"{path.stem}-{ex.layer}{path.suffix}")
            if kind == "npy":
                import numpy as np

                np.save(path, ex.raw.astype("float32"))
            else:
                save_png(overlay_crop(run, ex.raw, cmap=args.cmap, alpha=args.alpha), path)
            paths.append(path)
        t = ex.target
        if args.json:
            print(json.dumps({"model": spec.name, "method": args.method, "device": run.device,
                              "precision": run.precision, "precision_note": run.precision_note,
                              "target": {"index": t.index, "label": t.label, "prob": t.prob},
                              "layer": ex.layer, "shape": list(ex.raw.shape), "seconds": round(ex.seconds, 4),
                              "passes": passes, "notes": run.notes + ex.notes}), flush=True)
            continue
        for note in ex.notes:
            print(f"note: {note}")
        print(f"{spec.name} · {METHODS[args.method].label} for {t.label!r} (class {t.index}) at {ex.layer}: "
              f"map {ex.raw.shape[0]}x{ex.raw.shape[1]}", flush=True)
        for path in paths:
            print(f"wrote {path}")
    if not args.json:
        how = ("one forward and one backward for all four" if passes == 3
               else f"one run per stage ({passes} forward-pass equivalents)")
        print(f"every stage: {how}. Earlier stages are finer (56x56 at layer1) and see less abstract features "
              "(edges, textures); each stage's map is a different layer's evidence, so maps can flip between "
              "stages.")
    return 0


def cmd_sanity(zoo: Zoo, args: argparse.Namespace) -> int:
    """The sanity check (Adebayo et al. 2018): does each method's map depend on the weights?"""
    from . import sanity
    from .explain import METHODS
    from .images import load_image
    from .models import resolve_device

    spec = zoo.get(args.model)
    methods = sanity.check_methods(args.methods)
    params = {"integrated-gradients": {"steps": args.steps}} if "integrated-gradients" in methods else {}
    n = sanity.forwards(spec, methods, args.granularity, params)
    maps = sanity.step_count(spec, args.granularity)
    image = load_image(args.image)
    if not args.json:
        print(f"{spec.name}: {len(methods)} method(s) x {maps} maps (the original, then {maps - 1} randomization "
              f"steps), about {n} forward-pass equivalents, in fp32; seed {args.seed}", file=sys.stderr, flush=True)

    def progress(fraction: float | None, message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    report = sanity.sanity_check(spec, image, methods, target=args.target, granularity=args.granularity,
                                 seed=args.seed, device=resolve_device(args.device), params=params,
                                 progress=progress)
    if args.npy_dir:
        paths = report.save_maps(args.npy_dir)
        if not args.json:
            print(f"wrote {len(paths)} maps to {args.npy_dir}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    t = report.target
    print(f"{spec.name}, class {t.label!r} ({t.index}), granularity {report.granularity}, seed {report.seed}: "
          f"similarity of each map with the original as the layers are randomized, top down")
    fmt = lambda v: f"{v:6.2f}" if v is not None else f"{'-':>6}"  # noqa: E731
    for m in report.methods:
        at = f" at {m.layer}" if m.layer else ""
        verdict = {True: "PASSES", False: "FAILS", None: "no verdict"}[m.passes]
        print(f"\n{METHODS[m.method].label}{at}: {verdict}")
        print(f"  {'randomized':<12}{'|rank|':>8}{'rank':>8}{'SSIM':>8}")
        for s in m.steps:
            mark = "  <- verdict" if s.randomized == m.verdict_at else ""
            print(f"  {s.randomized:<12}{fmt(s.spearman_abs):>8}{fmt(s.spearman):>8}{fmt(s.ssim):>8}{mark}")
        for note in m.notes:
            print(f"  note: {note}")
    print(f"\nA method passes when, with fc and layer4 random, both the rank correlation of the absolute maps and "
          f"SSIM fall below {sanity.PASS_BELOW}. 'edges' never reads the network: it must fail.")
    return 0


def method_params(name: str, args: argparse.Namespace) -> dict:
    """The command line's parameters for one method."""
    if name == "occlusion":
        return {"window": args.window, "stride": args.stride}
    if name == "integrated-gradients":
        return {"steps": args.steps}
    return {}


def explain_one(model, run, name: str, args: argparse.Namespace, suffix: bool) -> None:
    """One method's map (and its scores with --faithfulness); one line or one JSON object."""
    from pathlib import Path

    from .explain import METHODS, explain, takes_layer
    from .faithfulness import faithfulness
    from .render import overlay_crop, save_png

    params = method_params(name, args)
    if args.layer and (takes_layer(name) or not suffix):  # --method all: input methods just take none
        params["layer"] = args.layer
    ex = explain(model, run, name, args.target, **params)
    scores = faithfulness(model, run, ex.raw, ex.target.index) if args.faithfulness else None
    paths = []
    for path, write in ((args.npy, "npy"), (args.out, "png")):
        if not path:
            continue
        path = Path(path)
        if suffix:
            path = path.with_name(f"{path.stem}-{name}{path.suffix}")
        if write == "npy":
            import numpy as np

            np.save(path, ex.raw.astype("float32"))
        else:
            save_png(overlay_crop(run, ex.raw, cmap=args.cmap, alpha=args.alpha), path)
        paths.append(path)
    if args.json:
        t = ex.target
        out = {"model": model.spec.name, "method": name, "device": run.device, "precision": run.precision,
               "precision_note": run.precision_note,
               "target": {"index": t.index, "label": t.label, "prob": t.prob}, "shape": list(ex.raw.shape),
               "layer": ex.layer, "seconds": round(ex.seconds, 4), "notes": run.notes + ex.notes,
               "faithfulness": None}
        if scores is not None:
            f = scores.to_json()
            out["faithfulness"] = {k: f[k] for k in ("deletion_auc", "insertion_auc", "deletion_curve",
                                                      "insertion_curve", "fractions", "steps", "forwards", "seconds",
                                                      "road")}
        print(json.dumps(out), flush=True)
        return
    for note in run.notes + ex.notes:
        print(f"note: {note}")
    at = f" at {ex.layer}" if ex.layer else ""
    print(f"{model.spec.name} · {METHODS[name].label} for {ex.target.label!r} (class {ex.target.index}, "
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


def cmd_compare(zoo: Zoo, args: argparse.Namespace) -> int:
    """Several depths on one image, maps for one shared class, and how far the maps agree."""
    from pathlib import Path

    from .explain import get_method
    from .images import load_image
    from .service import Explorer

    get_method(args.method)  # a typo fails before any download
    models = args.models or [s.name for s in zoo.builtin_depths]
    for name in models:
        zoo.get(name)
    image = load_image(args.image)
    explorer = Explorer(zoo, args.device, cache_size=len(models), precision=args.precision, compile=args.compile)
    if explorer.compile_plan.mode == "on":
        compile_for_run(args, [explorer.cache.get(zoo.get(n), None if args.json else print_progress)
                               for n in models])
    cmp = explorer.compare(image, models, args.method, args.target, faithfulness=args.faithfulness,
                           progress=None if args.json else print_progress)
    written = []
    if args.npy_dir:
        import numpy as np

        folder = Path(args.npy_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for r in cmp.results:
            path = folder / f"{r.run.model}-{args.method}-{cmp.target}.npy"
            np.save(path, r.explanation.raw.astype("float32"))
            written.append(path)
    if args.json:
        print(json.dumps(cmp.to_json()))
        return 0
    for r in cmp.results:
        for note in r.run.notes + r.explanation.notes:
            print(f"note: {r.run.model}: {note}")
    print(f"{args.method} maps for {cmp.target_label!r} (class {cmp.target}; "
          f"{'the class you gave' if cmp.chosen == 'given' else 'the class most models put first'}):")
    for r in cmp.results:
        top = r.run.predictions[0]
        line = (f"  {r.run.model:<14} top-1 {top.label!r} ({top.prob:.3f}) · p(target) "
                f"{r.explanation.target.prob:.3f} · map {r.explanation.raw.shape[0]}x{r.explanation.raw.shape[1]} · "
                f"{r.seconds * 1000:.0f} ms")
        if r.faithfulness is not None:
            f = r.faithfulness
            line += f" · deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f}"
            if f.road is not None:
                line += f", ROAD {f.road.combined:+.3f}"
        print(line)
    m = cmp.map_agreement
    if len(m.models) > 1:
        print(f"\nDo the depths look at the same place? (on the {m.size}x{m.size} crop)")
        for title, matrix in (("Spearman rank correlation", m.spearman),
                              ("IoU of the top-20 % regions", m.iou_top20)):
            print(f"{title}:\n" + " " * 14 + "".join(f"{n[:10]:>11}" for n in m.models))
            for name, row in zip(m.models, matrix):
                print(f"{name:<14}" + "".join(f"{'-' if v != v else f'{v:.2f}':>11}" for v in row))
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_analyze(zoo: Zoo, args: argparse.Namespace) -> int:
    from .analysis import analyze, check_target
    from .images import load_image
    from .models import load_model

    spec = zoo.get(args.model)
    check_target(spec, args.target)
    image = load_image(args.image)
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    result = analyze(model, image, args.target, lesion=args.lesion, deletions=args.deletions)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    t = result.target
    lesions = f", lesions in {result.precision}" if args.lesion or args.deletions else ""
    print(f"{spec.name} on {result.device}: {result.num_blocks} blocks, target {t.label!r} (class {t.index}, "
          f"p={t.prob:.3f}); statistics in fp32{lesions}, {result.seconds:.1f} s")
    head = f"{'block':<11}{'proj':>5}{'response std':>14}{'|F|/|x|':>10}{'grad norm':>12}"
    if args.lesion:
        head += f"{'p deleted':>11}  top-1 when deleted"
    print(head)
    for b in result.blocks:
        line = (f"{b.name:<11}{'yes' if b.downsample else '':>5}{b.response_std:14.4g}{b.residual_ratio:10.3f}"
                f"{b.grad_norm:12.4g}")
        if b.lesion:
            line += f"{b.lesion.prob:11.3f}  {b.lesion.top1.label}"
        print(line)
    if result.deletions:
        print(f"\nk identity blocks deleted at random ({result.deletions[1].draws} seeded draws each):")
        print(f"{'k':>4}{'draws':>7}{'mean p':>9}{'top-1 kept':>12}")
        for d in result.deletions:
            print(f"{d.k:>4}{d.draws:>7}{d.prob_mean:9.3f}{d.top1_kept:12.0%}")
    print("\nresponse std: spread of each block's 3x3-layer output after BN (paper Fig. 7); |F|/|x|: how much "
          "the block changes its input; grad norm: gradient of the target logit at the block's input"
          + ("; p deleted: p(target) with the block's residual branch removed (Veit et al. 2016)."
             if args.lesion else "."))
    return 0


def cmd_stats(zoo: Zoo, args: argparse.Namespace) -> int:
    from . import stats

    if args.stages:
        spec = zoo.get(args.stages)
        rows = stats.stage_stats(spec.arch.name, args.resolution, spec.num_classes)
        if args.json:  # the model's whole row, as `stats --json` writes it, with its stages
            row = stats.zoo_row(spec, args.resolution).to_json()
            print(json.dumps({**row, "stages": [r.to_json() for r in rows]}, indent=2))
        else:
            print(stats.format_stage_table(spec.name, rows, args.resolution))
        return 0
    device = None
    if args.latency:
        from .models import resolve_device

        device = resolve_device(args.device)
    rows = [stats.zoo_row(spec, args.resolution, latency_device=device) for spec in zoo]
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(stats.format_table(rows, args.resolution))
        print()
        for note in stats.NOTES:
            print(f"* {note}")
    return 0


def cmd_robustness(zoo: Zoo, args: argparse.Namespace) -> int:
    """A folder under ImageNet-C corruptions: JSON lines or a table; accuracy, CE and mCE when labelled."""
    from .batch import Skipped, gather
    from .models import imagenet_labels
    from .robustness import FolderSummary, SampleResult, corruption_names, severity_list
    from .service import Explorer

    if args.out and not args.out.lower().endswith(".jsonl"):
        raise ZooError("--out for robustness is a journal of JSON lines: name it FILE.jsonl.")
    models = list(dict.fromkeys(args.models or [s.name for s in zoo.builtin_depths]))
    explorer = Explorer(zoo, args.device, cache_size=len(models), precision=args.precision, compile=args.compile)
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        if fraction is None or time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    # Forwards per model: the clean crop and one per corruption and severity, per image.
    crops = 1 + len(corruption_names(args.corruptions)) * len(severity_list(args.severities))
    images = len(gather(args.paths, labels_csv=args.labels, globs=True).items)  # a listing: nothing decoded
    make = make_executor(zoo, args, "robustness", progress, explorer.cache, forwards=images * crops)
    labels = zoo.get(models[0]).labels or imagenet_labels()  # a run's models share one label set
    result = None
    for event in explorer.robustness_stream(args.paths, models, corruptions=args.corruptions,
                                            severities=args.severities, labels_csv=args.labels, seed=args.seed,
                                            save_dir=args.save_dir, top_k=args.top, batch_size=args.batch_size,
                                            globs=True, progress=progress,
                                            executor=make):
        if isinstance(event, Skipped):
            print(f"skipped {event.name}: {event.reason}", file=sys.stderr)
        elif isinstance(event, SampleResult) and args.json:
            for r in event.records(models, labels, args.top):
                print(json.dumps(r), flush=True)
        elif isinstance(event, FolderSummary) and not event.partial:
            result = event
    assert result is not None
    if args.json:
        print(json.dumps({"summary": result.to_json()}))
    else:
        print(_robustness_text(result))
    if args.save_dir:
        print(f"wrote the crops to {args.save_dir}", file=sys.stderr)
    return 0


def _robustness_text(r) -> str:
    from .robustness import get_corruption

    pct = lambda v: "    -" if v != v else f"{v * 100:5.1f}"  # noqa: E731  (NaN: no labelled image)
    lines = [f"{r.images} images ({r.labelled} labelled), {len(r.skipped)} skipped; {len(r.corruptions)} corruptions "
             f"x severities {', '.join(map(str, r.severities))}; seed {r.seed}; {r.device}, {r.precision}, "
             f"{r.seconds:.1f} s"]
    if not r.labelled:
        lines += ["No labels: accuracy and corruption errors need them (class folders or --labels CSV).", "",
                  "Share of images whose top-1 changed from the clean crop's, % (mean over severities):",
                  f"{'corruption':<18}" + "".join(f"{m[:12]:>14}" for m in r.models)]
        for j, c in enumerate(r.corruptions):
            lines.append(f"{get_corruption(c).label:<18}"
                         + "".join(f"{pct(float(r.changed[i, j].mean())):>14}" for i in range(len(r.models))))
    else:
        alex = "" if r.mce_alexnet is None else f"{'mCE/AlexNet':>13}"
        lines.append(f"{'model':<14}{'clean %':>9}{'mCE':>8}{alex}")
        for i, m in enumerate(r.models):
            row = f"{m:<14}{pct(r.clean_accuracy[i]):>9}{r.mce[i]:8.3f}"
            if r.mce_alexnet is not None:
                row += f"{r.mce_alexnet[i]:13.3f}"
            lines.append(row)
        lines += ["", f"Top-1 accuracy % by corruption (mean over severities); CE relative to {r.reference}:",
                  f"{'corruption':<18}" + "".join(f"{m[:12]:>14}" for m in r.models)]
        for j, c in enumerate(r.corruptions):
            cells = "".join(f"{pct(float(r.accuracy[i, j].mean())):>7} {r.ce[i, j]:6.3f}" for i in range(len(r.models)))
            lines.append(f"{get_corruption(c).label:<18}{cells}")
    if r.skipped:
        lines += ["", f"Skipped {len(r.skipped)}:"] + [f"  {s.name}: {s.reason}" for s in r.skipped]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def cmd_landscape(zoo: Zoo, args: argparse.Namespace) -> int:
    """The loss around one model's weights along filter-normalized random directions (Li et al. 2018)."""
    import time

    from .landscape import Landscape
    from .service import Explorer

    if args.directions_out and not args.directions_out.lower().endswith(".safetensors"):
        raise ZooError("--directions-out writes safetensors: give a file name ending in .safetensors.")
    explorer = Explorer(zoo, args.device, cache_size=1, precision=args.precision)
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        # Hub phases and the first point always; then where the grid is, every 10 seconds.
        if fraction in (None, 0.0) or time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    result = None
    for event in explorer.landscape_each(args.paths, [args.model], args.target, grid=args.grid, span=args.span,
                                         dims=args.dims, seed=args.seed, max_images=args.max_images,
                                         labels_csv=args.labels, globs=True,
                                         keep_directions=bool(args.directions_out),
                                         progress=None if args.json else progress):
        if isinstance(event, Landscape):
            result = event
    assert isinstance(result, Landscape)
    if args.directions_out:
        result.save_directions(args.directions_out)
    for s in result.skipped:
        print(f"skipped {s.name}: {s.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(_landscape_text(result))
    if args.directions_out:
        print(f"wrote {args.directions_out} (delta and eta by parameter name; seed {result.seed})", file=sys.stderr)
    return 0


def _landscape_text(r) -> str:
    n = len(r.images)
    lines = [f"{r.model} on {r.device}, fp32: cross-entropy averaged over {n} image(s), filter-normalized "
             f"directions, seed {r.seed}, {r.points} points ({r.point_seconds * 1000:.0f} ms each), "
             f"{r.seconds:.1f} s",
             "targets: " + ", ".join(f"{i.name}: {i.label} ({i.chosen})" for i in r.images[:8])
             + (" ..." if n > 8 else ""),
             f"loss at the trained weights: {r.center_loss:.4g}"]
    if r.dims == 1:
        lines += [f"{'alpha':>8}  loss"] + [f"{a:8.2f}  {v:.4g}" for a, v in zip(r.alphas, r.loss[0])]
    else:
        lines.append("loss[beta][alpha]; rows: beta from -span to +span, columns: alpha")
        corner = "b \\ a"
        lines.append(f"{corner:>7}" + "".join(f"{a:>9.2f}" for a in r.alphas))
        for b, row in zip(r.betas, r.loss):
            lines.append(f"{b:7.2f}" + "".join(f"{v:9.3g}" for v in row))
    lines += [f"note: {note}" for note in r.notes]
    return "\n".join(lines)


def cmd_selfcheck(zoo: Zoo, args: argparse.Namespace) -> int:
    """Pin, sha256 and the example photos' answers for each model; exit 1 if any fails."""
    from .selfcheck import report
    from .service import Explorer

    explorer = Explorer(zoo, args.device, precision=args.precision)
    result = explorer.selfcheck(args.models, progress=None if args.json else print_progress)
    print(json.dumps(result.to_json(), indent=2) if args.json else report(result))
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--zoo", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML file with extra [[model]] entries (default: $ZOO_FILE)")
    p = argparse.ArgumentParser(prog="python -m zoo", parents=[common],
                                description="ImageNet ResNets (18-152) from the Hugging Face Hub: "
                                            "classify, explain, measure.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(sub, common)

    s = sub.add_parser("list", parents=[common], help="the models, their size and whether they are cached")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("download", parents=[common], help="fetch and verify weights")
    s.add_argument("names", nargs="*", metavar="NAME")
    s.add_argument("--all", action="store_true", help="every model in the zoo")
    s.add_argument("--force", action="store_true", help="drop the cached copy first")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("pin", parents=[common],
                       help="read each model's current commit, size and sha256 from the Hub; print the lines to "
                            "paste into zoo/registry.py and the README's front matter")
    s.add_argument("names", nargs="*", metavar="NAME", help="zoo names (default: the five built-in depths)")
    s.set_defaults(func=cmd_pin)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("image", metavar="IMAGE")
        s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
        device_arg(s)
        precision_arg(s)
        s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("classify", parents=[common], help="top-k ImageNet classes of an image")
    model_args(s)
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.set_defaults(func=cmd_classify)

    from .explain import IG_STEPS, MAX_OCCLUSION_POSITIONS, METHODS, OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES

    s = sub.add_parser("explain", parents=[common], help="where the network looked")
    model_args(s)
    s.add_argument("--method", default="cam", choices=[*METHODS, "all"],
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
    # Defaults and limits are zoo.explain's, as in the page and the API.
    s.add_argument("--window", type=int, default=OCCLUSION_WINDOW.default,
                   help=f"occlusion window (pixels, default {OCCLUSION_WINDOW.default})")
    s.add_argument("--stride", type=int, default=OCCLUSION_STRIDE.default,
                   help=f"occlusion stride (pixels, default {OCCLUSION_STRIDE.default}); at most "
                        f"{MAX_OCCLUSION_POSITIONS} window positions in all")
    s.add_argument("--steps", type=int, default=IG_STEPS.default,
                   help=f"integrated-gradients steps ({IG_STEPS.low}-{IG_STEPS.high}, default {IG_STEPS.default})")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("compare", parents=[common], help="several depths on one image: maps for one shared "
                                                         "class, and whether they look at the same place")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    s.add_argument("--method", default="cam", choices=list(METHODS), help="explanation method (default cam)")
    s.add_argument("--target", default=None, help="class index or name (default: the class most models put first)")
    s.add_argument("--faithfulness", action="store_true", help="also score each depth's map (deletion, insertion, "
                                                               "ROAD)")
    s.add_argument("--npy-dir", metavar="DIR", help="write each model's raw map as DIR/<model>-<method>-<class>.npy")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object: what /compare's details hold")
    s.set_defaults(func=cmd_compare)

    from .sanity import DEFAULT_METHODS, GRANULARITIES, SEED

    s = sub.add_parser("sanity", parents=[common],
                       help="can I trust this map? re-initialise the layers top down and watch each map change")
    model_args(s)
    s.add_argument("--methods", nargs="+", metavar="METHOD", choices=list(METHODS),
                   help=f"methods to check (default: {' '.join(DEFAULT_METHODS)}); 'edges' is the control")
    s.add_argument("--target", default=None, help="class index or name (default: top-1 of the original model)")
    s.add_argument("--granularity", default="stage", choices=GRANULARITIES,
                   help="'stage': fc, layer4 ... layer1, stem (6 steps); 'block': every residual block, top down")
    s.add_argument("--seed", type=int, default=SEED, help=f"seed of the re-initialisation (default {SEED})")
    s.add_argument("--steps", type=int, default=IG_STEPS.default,
                   help=f"integrated-gradients steps ({IG_STEPS.low}-{IG_STEPS.high}, default {IG_STEPS.default})")
    s.add_argument("--npy-dir", metavar="DIR", help="write each step's map on the crop as METHOD-STEP.npy")
    s.set_defaults(func=cmd_sanity)

    s = sub.add_parser("analyze", parents=[common], help="per-block responses, gradients and lesions (Depth lab)")
    model_args(s)
    s.add_argument("--target", default=None, help="class index or name (default: top-1)")
    s.add_argument("--lesion", action="store_true", help="delete each block's residual branch in turn")
    s.add_argument("--deletions", action="store_true", help="delete k random identity-shortcut blocks at once")
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("stats", parents=[common], help="parameters, FLOPs and speed per depth and stage")
    s.add_argument("--json", action="store_true")
    s.add_argument("--resolution", type=int, default=224, metavar="N")
    s.add_argument("--stages", metavar="NAME", help="per-stage table of one model, as in the paper's Table 1")
    s.add_argument("--latency", action="store_true", help="also measure latency on --device")
    device_arg(s)
    precision_arg(s)
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("robustness", parents=[common],
                       help="a folder under ImageNet-C corruptions (Hendrycks & Dietterich 2019): accuracy, CE, mCE")
    s.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (walked), globs, .zip files")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    s.add_argument("--corruptions", nargs="+", metavar="NAME",
                   help="corruption names (default: all 19; e.g. fog jpeg_compression gaussian_noise)")
    s.add_argument("--severities", nargs="+", type=int, metavar="S", help="1-5 (default: all five)")
    s.add_argument("--labels", metavar="CSV", help="'file,label' rows; otherwise labels come from folder names "
                                                   "(ImageNet class names or WordNet ids), if any")
    s.add_argument("--seed", type=int, default=0, help="base seed of the random corruptions (default 0); each "
                                                       "crop's own seed is in its JSON line")
    s.add_argument("--save-dir", metavar="DIR", help="write the clean and every corrupted crop as PNG "
                                                     "(DIR/<image>/<corruption>-<severity>.png)")
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="default: 64 on CUDA, 32 on MPS, 16 on CPU")
    s.add_argument("--json", action="store_true",
                   help="JSON lines: one per image, model, corruption and severity, then a summary")
    s.add_argument("--out", metavar="FILE.jsonl", help="a journal: one JSON line per image, corruption, severity "
                                                       "and model, written as each is done, that --resume goes on "
                                                       "with")
    device_arg(s)
    precision_arg(s)
    engine_args(s, "robustness")
    s.set_defaults(func=cmd_robustness)

    from .landscape import DEFAULT_MAX_IMAGES, MAX_GRID, MAX_IMAGES, MAX_SPAN, MIN_GRID

    s = sub.add_parser("landscape", parents=[common],
                       help="the loss around a model's weights along random directions (Li et al. 2018)")
    s.add_argument("paths", nargs="+", metavar="PATH", help="an image, or files, folders, globs, a .zip (as batch)")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
    s.add_argument("--target", default=None, help="class index or name for every image (default: each image's "
                                                   "label from its folder or --labels, else the model's top-1)")
    s.add_argument("--labels", metavar="CSV", help="'file,label' rows, as for batch")
    s.add_argument("--grid", type=int, default=11, metavar="N",
                   help=f"points per axis, odd, {MIN_GRID}-{MAX_GRID} (default 11: 11 x 11 in 2-D)")
    s.add_argument("--span", type=float, default=1.0, help=f"alpha, beta in [-span, span] (default 1, at most "
                                                           f"{MAX_SPAN:g})")
    s.add_argument("--dims", type=int, default=2, choices=[1, 2], help="2: a surface; 1: a curve along delta only")
    s.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    s.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES, metavar="N",
                   help=f"average over the first N images (default {DEFAULT_MAX_IMAGES}, at most {MAX_IMAGES})")
    s.add_argument("--directions-out", metavar="FILE.safetensors",
                   help="save delta and eta, keyed by torchvision parameter name, to recompute any point")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    device_arg(s)
    precision_arg(s)  # accepted like everywhere; the landscape itself always runs in fp32
    s.set_defaults(func=cmd_landscape)

    s = sub.add_parser("selfcheck", parents=[common],
                       help="do the deployed weights give real answers? pin, sha256 and the example photos' "
                            "top-5 per model, with a diagnosis of what looks wrong")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_selfcheck)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "compile", None) == "on" or (getattr(args, "compile", None) is None
                                                      and os.environ.get("ZOO_COMPILE", "").lower() == "on"):
            # --compile on where it cannot be done fails at once, in every command
            from .compiled import resolve
            from .models import resolve_device

            resolve("on", resolve_device(getattr(args, "device", "auto")))
        zoo = Zoo.load(getattr(args, "zoo", None))
        return args.func(zoo, args)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
