"""Sanity check: can I believe this map? Cascading randomization (Adebayo et al. 2018); ``/sanity``.

The maps of each method as the network's weights are re-initialised from the top, the
similarity with the original map at each step, and a verdict per method; or one method on
every depth side by side. Streams after each step, so Stop ends it between steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.render import save_png, stack, strip
from zoo.sanity import DEFAULT_METHODS, GRANULARITIES, PASS_BELOW, SEED, step_count

from .. import format as fmt
from .. import charts
from ..common import (EXAMPLES, Context, gpu, new_output_folder, progress_fn, require_image, safe_image_input,
                      user_errors)
from ..guard import long_event, runs_no_model, stop_button

TITLE = "Sanity check"
# Integrated Gradients at the page's default (as in Classify & explain): half the library's
# default, 7 maps of it stay affordable.
PARAMS = {"integrated-gradients": {"steps": 16}}
GRANULARITY_CHOICES = [("Stage (fc, layer4 … layer1, stem: 7 maps per method)", "stage"),
                       ("Block (fc, every residual block top down, stem)", "block")]
DEPTH_DEFAULT = "gradcam"


# The strips as a phone shows them: the picture is scaled to the screen's width (about 360 px),
# so 8 cells a row would draw the labels at 5 px. Four larger cells a row, larger labels:
# about 11 px on screen. Shown instead of the wide picture under 640 px (ui/app.py's CSS).
NARROW = {"per_row": 4, "cell": 128, "font_size": 17}


def step_title(name: str) -> str:
    """A strip cell's title: cumulative steps read "+layer4" (fc already random)."""
    return "original" if name == "none" else f"+{name}"


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer
    method_choices = [(m.label, m.name) for m in METHODS.values()]

    def total_maps(model: str, methods: list[str], granularity: str) -> int:
        return step_count(ctx.zoo.get(model), granularity) * len(methods)

    def render(reports: list[Any], folder: Path, total: int, by_depth: bool = False) -> tuple:
        """One picture of every strip (a row per method, or per depth: the paper's Fig. 2 on this image),
        the similarity chart and the verdicts so far."""
        rows, narrow, series, verdicts = [], [], [], []
        for r in reports:
            for m in r.methods:
                cells = (r.run.crop, m.heats, [step_title(s.randomized) for s in m.steps], fmt.sanity_notes(m))
                heading = fmt.sanity_caption(m, r.model)
                rows.append(strip(*cells, heading=heading))
                narrow.append(strip(*cells, heading=heading, **NARROW))
                series.append((r.model if by_depth else METHODS[m.method].label, m.steps))
                verdicts.append(m.verdict_at)
        done = sum(len(m.steps) for r in reports for m in r.methods)
        path = save_png(stack(rows), folder / f"sanity-{reports[0].model}-{done}.png")
        # Room at the top: on a phone gradio's image buttons would cover the first row's last titles.
        phone = save_png(stack(narrow, top=28), folder / f"sanity-{reports[0].model}-{done}-narrow.png")
        chart = charts.sanity_chart(series, verdicts, PASS_BELOW, name=f"sanity-{reports[0].model}-{done}")
        # The chart's data as CSV beside the picture (its camera icon saves the chart as PNG).
        return (str(path), chart, fmt.sanity_markdown(reports, total, by_depth), charts.csv_files([chart], folder),
                str(phone))

    @gpu
    def one_model(image, model, methods, target, granularity, seed, progress) -> Iterator[Any]:
        upload = require_image(image)
        if not methods:
            raise gr.Error("Tick at least one method to check.", print_exception=False)
        yield from explorer.iter_sanity(upload.path, model, list(methods), target or None, granularity,
                                        int(seed or 0), PARAMS, progress_fn(progress))

    @gpu
    def every_depth(image, method, target, granularity, seed, progress) -> Iterator[list[Any]]:
        upload = require_image(image)
        yield from explorer.iter_sanity_depths(upload.path, method, ctx.depth_names, target or None, granularity,
                                               int(seed or 0), PARAMS, progress_fn(progress))

    @user_errors
    def ui_sanity(image, model, methods, target, granularity, seed, progress=gr.Progress()):
        folder = new_output_folder(ctx.outputs_dir)
        total = total_maps(model, list(methods or []), granularity)
        for report in one_model(image, model, methods, target, granularity, seed, progress):
            yield render([report], folder, total)

    @user_errors
    def ui_depths(image, method, target, granularity, seed, progress=gr.Progress()):
        folder = new_output_folder(ctx.outputs_dir)
        total = sum(step_count(ctx.zoo.get(n), granularity) for n in ctx.depth_names)
        for reports in every_depth(image, method, target, granularity, seed, progress):
            yield render(reports, folder, total, by_depth=True)

    @user_errors
    def api_sanity(image, model, methods, progress=gr.Progress()):
        """Can this map be trusted? Re-initialises the model's weights from the top (fc, layer4 … the stem,
        cumulatively, seed 0) and recomputes each method's map for the original top-1 class.

        Returns one picture (a strip of maps per method, left to right as the layers are randomized)
        and, as JSON, the similarity with the original map at each step (Spearman of |map| and of the
        map, SSIM) and whether the method passes. An empty
        ``methods`` list checks CAM, Grad-CAM, Guided Grad-CAM, Integrated Gradients and the edges control.
        """
        report = None
        for report in one_model(image, model, list(methods or DEFAULT_METHODS), None, "stage", SEED, progress):
            pass
        folder = new_output_folder(ctx.outputs_dir)
        picture, *_ = render([report], folder, 0)
        return picture, report.to_json()

    @runs_no_model
    def ui_estimate(model: str, methods: list[str], granularity: str) -> str:
        try:
            methods = list(methods or [])
            if not methods:
                return "Tick at least one method."
            est = explorer.sanity_estimate([model], methods, granularity, PARAMS)
            maps = step_count(ctx.zoo.get(model), granularity)
            text = (f"{maps} maps per method (the original, then {maps - 1} randomization steps), "
                    f"{maps * len(methods)} in all. "
                    + fmt.estimate_markdown(est, explorer.device, ctx.guard.limits))
            return text
        except ZooError as e:
            return str(e)

    @runs_no_model
    def ui_depth_estimate(method: str, granularity: str) -> str:
        try:
            est = explorer.sanity_estimate(ctx.depth_names, [method], granularity, PARAMS)
            maps = sum(step_count(ctx.zoo.get(n), granularity) for n in ctx.depth_names)
            text = (f"{maps} maps over {len(ctx.depth_names)} depths. "
                    + fmt.estimate_markdown(est, explorer.device, ctx.guard.limits))
            return text
        except ZooError as e:
            return str(e)

    with gr.Accordion("Can I trust this map? What this checks", open=False):
        gr.Markdown(fmt.SANITY_NOTE + f"\n\nA method **passes** when, with fc and layer4 random, its map keeps "
                    f"less than {PASS_BELOW} of its similarity with the original, both by rank (Spearman of |map|) "
                    "and by structure (SSIM), as in Adebayo et al., [Sanity Checks for Saliency Maps]"
                    "(https://arxiv.org/abs/1810.03292) (NeurIPS 2018). The check runs on a private copy of the "
                    "weights, re-initialised with torchvision's rules from a fixed seed; the shared model is "
                    "never touched.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = safe_image_input(label="Image", elem_id="sanity-image", height=260)
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png")], inputs=[image])
            model = gr.Dropdown(ctx.model_choices, value=ctx.default_model, label="Model", elem_id="sanity-model")
            methods = gr.CheckboxGroup(method_choices, value=list(DEFAULT_METHODS), elem_id="sanity-methods",
                                       label="Methods (edges: the control, never reads the network)")
            target = gr.Dropdown([""] + ctx.class_choices, value="", label="Target class (blank: top-1)",
                                 allow_custom_value=True, filterable=True, elem_id="sanity-target")
            with gr.Accordion("Granularity and seed", open=False):
                granularity = gr.Radio(GRANULARITY_CHOICES, value=GRANULARITIES[0], label="Randomize",
                                       elem_id="sanity-granularity")
                seed = gr.Number(SEED, precision=0, minimum=0, maximum=2 ** 32 - 1, label="Seed",
                                 elem_id="sanity-seed")
            with gr.Row():
                go = gr.Button("Run sanity check", variant="primary", elem_id="sanity-button")
                stop = gr.Button("Stop", variant="stop", elem_id="sanity-stop")
            estimate = gr.Markdown(elem_id="sanity-estimate", elem_classes="rde-estimate")
            gr.Markdown("**Every depth**: one method, checked on all five depths side by side (whether it passes "
                        "can depend on depth).")
            depth_method = gr.Dropdown(method_choices, value=DEPTH_DEFAULT, label="Method for every depth",
                                       elem_id="sanity-depth-method")
            depth_go = gr.Button("Check it on every depth", elem_id="sanity-depth-button")
            depth_estimate = gr.Markdown(elem_id="sanity-depth-estimate", elem_classes="rde-estimate")
        with gr.Column(scale=3):
            info = gr.Markdown(fmt.SANITY_NOTE, elem_id="sanity-info")
            gr.Markdown("Each row: the input, then the map as the weights are randomized from the top, left to "
                        "right (each map drawn as |map| on its own scale). Under each map: r, its rank correlation "
                        "with the original (of |map|), and S, their SSIM.", elem_classes="rde-estimate")
            # The picture carries its own headings; gradio's label badge would cover the first.
            strips = gr.Image(label="Maps as the weights are randomized", show_label=False, format="png",
                              elem_id="sanity-strips", elem_classes="rde-wide-only")
            strips_narrow = gr.Image(label="Maps as the weights are randomized", show_label=False, format="png",
                                     elem_id="sanity-strips-narrow", elem_classes="rde-narrow-only")
            gr.Markdown("Similarity with the original map per step: dashed, the step after which fc and layer4 "
                        f"are random (the verdict); dotted, the pass line ({PASS_BELOW}).",
                        elem_classes="rde-estimate")
            # Plotly (ui/charts.py): hover a point for the method, the layers randomized so far and the value.
            chart = gr.Plot(label="Similarity with the original map, per step", show_label=False,
                            elem_id="sanity-chart")
            data = charts.data_files("sanity-chart-data")
    outs = [strips, chart, info, data, strips_narrow]
    def cost(image, model, methods=None, target=None, granularity="stage", seed=None):
        return explorer.sanity_estimate([model], list(methods or DEFAULT_METHODS), granularity, PARAMS)

    def depth_cost(image, method, target=None, granularity="stage", seed=None):
        return explorer.sanity_estimate(ctx.depth_names, [method], granularity, PARAMS)

    run = long_event(ctx.guard, go.click, ui_sanity, [image, model, methods, target, granularity, seed], outs,
                     cost=cost, message=info, what="This sanity check", api_visibility="private")
    depth_run = long_event(ctx.guard, depth_go.click, ui_depths, [image, depth_method, target, granularity, seed],
                           outs, cost=depth_cost, message=info, what="This sanity check", api_visibility="private")
    # The token ends a run within one block; the page says it stopped.
    stop_button(stop, [run, depth_run], info)
    cost_ins = [model, methods, granularity]
    for ctl in cost_ins:
        ctl.change(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    for ctl in (depth_method, granularity):
        ctl.change(ui_depth_estimate, [depth_method, granularity], [depth_estimate], api_visibility="private",
                   show_progress="hidden")
    run.then(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_depth_estimate, [depth_method, granularity], [depth_estimate], api_visibility="private",
                  show_progress="hidden")
    # The public endpoint /sanity(image, model, methods): stage granularity, seed 0, the top-1 class.
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_sanity, [image, model, methods], [strips, api_json],
               cost=lambda image, model, methods=None: cost(image, model, methods), what="This sanity check",
               api_name="sanity")
