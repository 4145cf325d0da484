"""Sanity check: can I believe this map? Cascading randomization (Adebayo et al. 2018); ``/sanity``.
Layout and wiring over ``zoo.features.sanity``; what the components show: ``ui/views/sanity.py``.

The maps of each method as the network's weights are re-initialised from the top, the
similarity with the original map at each step, and a verdict per method; or one method on
every depth side by side. Streams after each step, so Stop ends it between steps.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.params import SEED_MAX, SMOOTH_SAMPLES_MAX
from zoo.features import sanity as feature
from zoo.sanity import DEFAULT_METHODS, GRANULARITIES, PASS_BELOW, SEED

from .. import format as fmt
from .. import charts
from ..common import (EXAMPLES, Context, gpu, new_output_folder, progress_fn, require_image, safe_image_input,
                      user_errors)
from ..guard import long_event, runs_no_model, stop_button
from ..views import sanity as views

TITLE = "Sanity check"
# Integrated Gradients at the page's default (as in Classify & explain): half the library's
# default, 7 maps of it stay affordable.
PARAMS = {"integrated-gradients": {"steps": 16}}
GRANULARITY_CHOICES = [("Stage (fc, layer4 … layer1, stem: 7 maps per method)", "stage"),
                       ("Block (fc, every residual block top down, stem)", "block"),
                       ("Residual branches (each block's branch, top down; stem, shortcuts, fc kept)",
                        "residual-branches")]
DEPTH_DEFAULT = "gradcam"
METHOD_CHOICES = [(m.label, m.name) for m in METHODS.values()]


def request(ctx: Context, image: Any, models: list[str], methods: Any, target: Any = None,
            granularity: Any = "stage", seed: Any = SEED, samples: Any = 0) -> feature.Request:
    """The one request of both parts (one model and its methods; one method on every depth), for the
    handler and its cost. ``image``: an upload's path, or None for the estimate; ``samples``: N of
    smooth MPRT (0: off)."""
    return feature.Request.create(ctx.rt, image, models, list(methods or DEFAULT_METHODS), target,
                                  granularity, SEED if seed is None else seed, PARAMS,
                                  smooth_samples=0 if samples is None else samples)


def cost(ctx: Context, image: Any, model: str, methods: Any = None, target: Any = None, granularity: Any = "stage",
         seed: Any = None, samples: Any = 0) -> Any:
    return feature.estimate(ctx.rt, request(ctx, None, [model], methods, target, granularity, samples=samples))


def depth_cost(ctx: Context, image: Any, method: str, target: Any = None, granularity: Any = "stage",
               seed: Any = None, samples: Any = 0) -> Any:
    return feature.estimate(ctx.rt, request(ctx, None, ctx.depth_names, [method], target, granularity,
                                            samples=samples))


def gpu_checks(ctx: Context) -> Any:
    """The model-running function, a closure over ``ctx``: on ZeroGPU its arguments (the request)
    travel to a forked worker; the context stays here."""

    @gpu(cost=lambda req, progress=None: feature.estimate(ctx.rt, req))
    def checks(req: feature.Request, progress: Any) -> Iterator[feature.Checks]:
        yield from feature.run(ctx.rt, req, progress_fn(progress))

    return checks


def estimate_text(ctx: Context, models: list[str], methods: Any, granularity: Any, samples: Any = 0) -> str:
    """The estimate under a button: the maps it draws, then its cost."""
    try:
        req = request(ctx, None, models, methods, None, granularity, samples=samples)
        return (views.maps_text(feature.maps(ctx.rt, req), len(req.methods), len(req.models))
                + fmt.estimate_markdown(feature.estimate(ctx.rt, req), ctx.rt.device, ctx.guard.limits))
    except ZooError as e:
        return str(e)


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    c = _layout(ctx)
    _wire(ctx, c, gpu_checks(ctx))


def _layout(ctx: Context) -> SimpleNamespace:
    with gr.Accordion("Can I trust this map? What this checks", open=False):
        gr.Markdown(views.ABOUT)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = safe_image_input(label="Image", elem_id="sanity-image", height=260)
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png")], inputs=[image])
            model = gr.Dropdown(ctx.model_choices, value=ctx.default_model, label="Model", elem_id="sanity-model")
            methods = gr.CheckboxGroup(METHOD_CHOICES, value=list(DEFAULT_METHODS), elem_id="sanity-methods",
                                       label="Methods (edges: the control, never reads the network)")
            target = gr.Dropdown([""] + ctx.class_choices, value="", label="Target class (blank: top-1)",
                                 allow_custom_value=True, filterable=True, elem_id="sanity-target")
            with gr.Accordion("Granularity, seed and smooth MPRT", open=False):
                granularity = gr.Radio(GRANULARITY_CHOICES, value=GRANULARITIES[0], label="Randomize",
                                       elem_id="sanity-granularity")
                seed = gr.Number(SEED, precision=0, minimum=0, maximum=SEED_MAX, label="Seed",
                                 elem_id="sanity-seed")
                samples = gr.Number(0, precision=0, minimum=0, maximum=SMOOTH_SAMPLES_MAX, elem_id="sanity-samples",
                                    label="Smooth MPRT samples (0 = off): each map averaged over this many noisy "
                                          "copies of the input, at the first and the last step")
            with gr.Row():
                go = gr.Button("Run sanity check", variant="primary", elem_id="sanity-button")
                stop = gr.Button("Stop", variant="stop", elem_id="sanity-stop")
            estimate = gr.Markdown(elem_id="sanity-estimate", elem_classes="rde-estimate")
            gr.Markdown("**Every depth**: one method, checked on all five depths side by side (whether it passes "
                        "can depend on depth).")
            depth_method = gr.Dropdown(METHOD_CHOICES, value=DEPTH_DEFAULT, label="Method for every depth",
                                       elem_id="sanity-depth-method")
            depth_go = gr.Button("Check it on every depth", elem_id="sanity-depth-button")
            depth_estimate = gr.Markdown(elem_id="sanity-depth-estimate", elem_classes="rde-estimate")
        with gr.Column(scale=3):
            info = gr.Markdown(views.SANITY_NOTE, elem_id="sanity-info")
            gr.Markdown("Each row: the input, then the map as the weights are randomized from the top, left to "
                        "right (each map drawn as |map| on its own scale). Under each map: r, its rank correlation "
                        "with the original (of |map|), and S, their SSIM.", elem_classes="rde-estimate")
            # The picture carries its own headings; gradio's label badge would cover the first.
            strips = gr.Image(label="Maps as the weights are randomized", show_label=False, format="png",
                              elem_id="sanity-strips", elem_classes="rde-wide-only")
            strips_narrow = gr.Image(label="Maps as the weights are randomized", show_label=False, format="png",
                                     elem_id="sanity-strips-narrow", elem_classes="rde-narrow-only")
            gr.Markdown("Similarity with the original map per step: dashed, the verdict's step (fc and layer4 "
                        "random; with residual branches, every branch random); dotted, the pass line "
                        f"({PASS_BELOW}).",
                        elem_classes="rde-estimate")
            # Plotly (ui/charts.py): hover a point for the method, the layers randomized so far and the value.
            chart = gr.Plot(label="Similarity with the original map, per step", show_label=False,
                            elem_id="sanity-chart")
            data = charts.data_files("sanity-chart-data")
    return SimpleNamespace(image=image, model=model, methods=methods, target=target, granularity=granularity,
                           seed=seed, samples=samples, go=go, stop=stop, estimate=estimate, depth_method=depth_method,
                           depth_go=depth_go, depth_estimate=depth_estimate, info=info, strips=strips,
                           strips_narrow=strips_narrow, chart=chart, data=data)


def _wire(ctx: Context, c: SimpleNamespace, checks: Any) -> None:
    @user_errors
    def ui_sanity(image, model, methods, target, granularity, seed, samples=0, progress=gr.Progress()):
        if not methods:
            raise gr.Error("Tick at least one method to check.", print_exception=False)
        req = request(ctx, require_image(image).path, [model], methods, target, granularity, seed, samples)
        folder, total = new_output_folder(ctx.outputs_dir), feature.maps(ctx.rt, req)
        for done in checks(req, progress):
            yield views.render(done.reports, folder, total)

    @user_errors
    def ui_depths(image, method, target, granularity, seed, samples=0, progress=gr.Progress()):
        req = request(ctx, require_image(image).path, ctx.depth_names, [method], target, granularity, seed,
                      samples)
        folder, total = new_output_folder(ctx.outputs_dir), feature.maps(ctx.rt, req)
        for done in checks(req, progress):
            yield views.render(done.reports, folder, total, by_depth=True)

    @runs_no_model
    def ui_estimate(model: str, methods: list[str], granularity: str, samples: Any = 0) -> str:
        return (estimate_text(ctx, [model], methods, granularity, samples) if methods
                else "Tick at least one method.")

    @runs_no_model
    def ui_depth_estimate(method: str, granularity: str, samples: Any = 0) -> str:
        return estimate_text(ctx, ctx.depth_names, [method], granularity, samples)

    outs = [c.strips, c.chart, c.info, c.data, c.strips_narrow]
    run = long_event(ctx.guard, c.go.click, ui_sanity,
                     [c.image, c.model, c.methods, c.target, c.granularity, c.seed, c.samples], outs, cost=lambda *a: cost(ctx, *a), message=c.info, what="This sanity check",
                     api_visibility="private")
    depth_run = long_event(ctx.guard, c.depth_go.click, ui_depths,
                           [c.image, c.depth_method, c.target, c.granularity, c.seed, c.samples], outs,
                           cost=lambda *a: depth_cost(ctx, *a), message=c.info, what="This sanity check",
                           api_visibility="private")
    # The token ends a run within one block; the page says it stopped.
    stop_button(c.stop, [run, depth_run], c.info)
    cost_ins, depth_ins = [c.model, c.methods, c.granularity, c.samples], [c.depth_method, c.granularity, c.samples]
    for ctl in cost_ins:
        ctl.change(ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    for ctl in depth_ins:
        ctl.change(ui_depth_estimate, depth_ins, [c.depth_estimate], api_visibility="private", show_progress="hidden")
    run.then(ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_depth_estimate, depth_ins, [c.depth_estimate], api_visibility="private", show_progress="hidden")
    _endpoint(ctx, c, checks)


def _endpoint(ctx: Context, c: SimpleNamespace, checks: Any) -> None:
    @user_errors
    def api_sanity(image, model, methods, progress=gr.Progress()):
        """Can this map be trusted? Re-initialises the model's weights from the top (fc, layer4 … the stem,
        cumulatively, seed 0) and recomputes each method's map for the original top-1 class.

        Returns one picture (a strip of maps per method, left to right as the layers are randomized)
        and, as JSON, the similarity with the original map at each step (Spearman of |map| and of the
        map, SSIM) and whether the method passes. An empty
        ``methods`` list checks CAM, Grad-CAM, Guided Grad-CAM, Integrated Gradients and the edges control.
        """
        req = request(ctx, require_image(image).path, [model], methods, None, "stage", SEED)
        done = None
        for done in checks(req, progress):
            pass
        picture, *_ = views.render(done.reports, new_output_folder(ctx.outputs_dir), 0)
        return picture, done.to_json()

    # The public endpoint /sanity(image, model, methods): stage granularity, seed 0, the top-1 class.
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_sanity, [c.image, c.model, c.methods], [c.strips, api_json],
               cost=lambda image, model, methods=None: cost(ctx, image, model, methods), what="This sanity check",
               api_name="sanity")
