"""Classify & explain: one model, top-k, a map for any class, every stage's maps; the ``/classify`` and
``/explain`` endpoints. Layout and wiring only: the work is ``zoo.features.classify``'s, what the
components show is ``ui.views.classify``'s."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from zoo.errors import ZooError
from zoo.features import classify as feature
from zoo.features.classify import Result
from zoo.params import IG_STEPS, OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES
from zoo.render import COLORMAPS

from .. import format as fmt
from ..common import (EXAMPLES, Context, Upload, gpu, new_output_folder, progress_fn, render_result, require_image,
                      safe_image_input, save_raw, user_errors)
from ..guard import cached_example, long_event, runs_no_model
from ..spaces import example_caching
from ..views import classify as views

TITLE = "Classify & explain"


def setting_slider(setting: Any, label: str, elem_id: str) -> gr.Slider:
    """A slider for one of zoo's method settings (``zoo.params``): its range, default and step come
    from zoo, as the API's and the CLI's do. gr.Slider refuses values outside its range on the
    server too, so a raw call is bound as well; zoo refuses what would cost too much."""
    return gr.Slider(setting.low, setting.high, value=setting.default, step=setting.step, label=label,
                     elem_id=elem_id)


def request(ctx: Context, image: Upload | None, model: str, top_k: int, method: str, target: str | None,
            window: int = OCCLUSION_WINDOW.default, stride: int = OCCLUSION_STRIDE.default,
            steps: int = IG_STEPS.default, layer: str | None = None, score: bool = False, *, explain: bool = False,
            every_stage: bool = False) -> feature.Request:
    """The tab's one request, from its inputs: what the handlers run and the cost callbacks price.

    ``image`` None (the estimate before an upload) prices the request without one. Every
    slider is sent; the method takes its own (``zoo.params.method_params``).
    """
    return feature.Request.create(
        ctx.rt, image.path if image is not None else None, model, top_k, method, target or None,
        {"window": window, "stride": stride, "steps": steps, "layer": layer}, faithfulness=bool(score),
        explain=explain, every_stage=every_stage)


def _run_handlers(ctx: Context) -> SimpleNamespace:
    """The handlers of the tab's button, its estimate and its re-render."""
    rt = ctx.rt

    def cost(image, model, top_k, method, target, cmap="jet", alpha=0.5, window=OCCLUSION_WINDOW.default,
             stride=OCCLUSION_STRIDE.default, steps=IG_STEPS.default, layer=None, score=False):
        """The estimate of one run: the figure the page shows, the server's ceiling checks and ZeroGPU asks for."""
        return feature.estimate(rt, request(ctx, None, model, 5, method, None, window, stride, steps, layer, score))

    def run_cost(image, model, top_k, method, target, progress=None, window=OCCLUSION_WINDOW.default,
                 stride=OCCLUSION_STRIDE.default, steps=IG_STEPS.default, layer=None, score=False, explain=False):
        return cost(image, model, top_k, method, target, window=window, stride=stride, steps=steps, layer=layer,
                    score=score)

    @gpu(cost=run_cost)  # ZeroGPU's duration from the same estimate (ui/spaces.py)
    def run_one(image: Upload | None, model: str, top_k: int, method: str, target: str | None,
                progress: gr.Progress, window: int = OCCLUSION_WINDOW.default,
                stride: int = OCCLUSION_STRIDE.default, steps: int = IG_STEPS.default, layer: str | None = None,
                score: bool = False, explain: bool = False) -> Result:
        req = request(ctx, require_image(image), model, top_k, method, target, window, stride, steps, layer, score,
                      explain=explain)
        return feature.result(rt, req, progress_fn(progress))

    @runs_no_model
    def ui_estimate(model, method, window, stride, steps, score, layer=None) -> str:
        """What pressing the button will cost here, before pressing it."""
        try:
            return fmt.estimate_markdown(cost(None, model, 5, method, None, window=window, stride=stride,
                                              steps=steps, layer=layer, score=score), rt.device,
                                         ctx.guard.limits) + fmt.download_note(ctx.zoo.get(model))
        except ZooError as e:  # settings the server refuses: say so now
            return str(e)

    def shown(result: Result, cmap: str, alpha: float) -> tuple[Any, ...]:
        """The pictures, downloads and slider of a result, in the colours and opacity chosen."""
        crop, full, fig, png = render_result(ctx, result, cmap, alpha, download=True)
        files = views.downloads(result, png, save_raw(result, Path(crop).parent))
        return crop, full, fig, files, views.seen_and_mapped(result, crop)

    @user_errors
    def ui_classify(image, model, top_k, method, target, cmap, alpha, window, stride, steps, layer, score,
                    progress=gr.Progress()):
        result = run_one(image, model, top_k, method, target, progress, window, stride, steps, layer, score)
        crop, full, fig, files, slider = shown(result, cmap, alpha)
        return (views.label_dict(result), crop, full, fig, views.result_markdown(result), files,
                *views.scores(result), slider, result)

    @runs_no_model
    @user_errors
    def ui_rerender(result, cmap, alpha):
        if result is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        # The download too: it is the overlay as shown, in the colours and opacity now chosen.
        return shown(result, cmap, alpha)

    return SimpleNamespace(cost=cost, run_one=run_one, ui_estimate=ui_estimate, ui_classify=ui_classify,
                           ui_rerender=ui_rerender)


def _api_handlers(ctx: Context, run_one: Any) -> SimpleNamespace:
    """The public endpoints' handlers: /classify and /explain, fixed display settings."""

    @user_errors
    def api_classify(image, model, top_k, method, target, progress=gr.Progress()):
        """Classify an image with one model and explain its decision."""
        result = run_one(image, model, top_k, method, target, progress)
        crop, full, fig = render_result(ctx, result, "jet", 0.5)
        return views.label_dict(result), crop, full, fig, result.to_json()

    @user_errors
    def api_explain(image, model, method, layer, target, progress=gr.Progress()):
        """Where one model looked for one class: the map of ``method`` read at ``layer``, for ``target``."""
        result = run_one(image, model, 5, method, target, progress, layer=layer or None, explain=True)
        crop, _, fig = render_result(ctx, result, "jet", 0.5)
        return crop, fig, result.to_json()

    return SimpleNamespace(api_classify=api_classify, api_explain=api_explain)


def _layout(ctx: Context) -> SimpleNamespace:
    """The tab's components, laid out."""
    with gr.Row():
        with gr.Column(scale=1):
            image = safe_image_input(label="Image", elem_id="image-input", height=300)
            # The examples go right under the image (filled in below, once the outputs exist):
            # on a phone they come before the empty outputs, not after them.
            examples_slot = gr.Column()
            model = gr.Dropdown(ctx.model_choices, value=ctx.default_model, label="Model")
            method = gr.Dropdown(ctx.method_choices, value="cam", label="Explanation method",
                                 info="What it costs shows under the buttons.")
            layer = gr.Dropdown(list(STAGES), value=STAGES[-1], elem_id="layer-input",
                                label="Layer (stage methods only; CAM is exact on layer4 only)")
            target = gr.Dropdown([""] + ctx.class_choices, value="", label="Target class (blank: top-1)",
                                 allow_custom_value=True, filterable=True, elem_id="classify-target")
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
            with gr.Accordion("Display and method settings", open=False):
                cmap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity")
                window = setting_slider(OCCLUSION_WINDOW, "Occlusion window (px)", "occlusion-window")
                stride = setting_slider(OCCLUSION_STRIDE, "Occlusion stride (px)", "occlusion-stride")
                steps = setting_slider(IG_STEPS, "Integrated Gradients steps", "ig-steps")
            score = gr.Checkbox(False, label=f"Score this map ({fmt.FAITHFULNESS_NOTE})", elem_id="score-input")
            with gr.Row():
                go = gr.Button("Classify & explain", variant="primary", elem_id="classify-button")
                stop = gr.Button("Stop", variant="stop", elem_id="classify-stop")
            estimate = gr.Markdown(elem_id="classify-estimate", elem_classes="rde-estimate")
            to_compare = gr.Button("Compare this image across depths", size="sm", elem_id="classify-to-compare")
            # Compare depths (built next) wires these: it takes the image, method and target, and
            # hands its own back.
            ctx.components["classify.image"], ctx.components["classify.to_compare"] = image, to_compare
            ctx.components["classify.method"], ctx.components["classify.target"] = method, target
        with gr.Column(scale=2):
            labels = gr.Label(label="Predictions", elem_id="predictions")
            info = gr.Markdown(elem_id="result-info")
            # min_width: two maps side by side where there is room, one per row on a phone.
            with gr.Row():
                crop_view = gr.Image(label="Map on the model's 224×224 crop", elem_id="overlay-crop",
                                     format="jpeg", min_width=300)
                full_view = gr.Image(label="Whole photo: crop outlined, rest hatched",
                                     elem_id="overlay-full", format="jpeg", min_width=300)
            with gr.Row():
                # The figure carries its own title; gradio's label badge would cover it.
                # rde-when-filled: hidden until a result fills it (ui/app.py).
                raw_view = gr.Image(label="Raw map with colour bar", show_label=False, format="png", min_width=300,
                                    elem_id="raw-map", elem_classes="rde-when-filled")
                files = gr.File(label="Downloads: overlay PNG, raw map (.npy), scored curves (CSV)",
                                file_count="multiple",
                                min_width=300, elem_id="downloads", elem_classes="rde-when-filled")
            # What the model saw, and where the map puts the evidence, in one picture: drag the line.
            crop_slider = gr.ImageSlider(label="The model's crop without and with the map (drag the line)",
                                         type="filepath", format="jpeg", max_height=448, elem_id="crop-slider",
                                         buttons=["fullscreen"])
            faith_info = gr.Markdown(elem_id="faithfulness-info")
            # Plotly (ui/charts.py): hover a point for its fraction and probability; camera icon: PNG.
            faith_plot = gr.Plot(label="Deletion and insertion curves", elem_id="faithfulness-plot",
                                 elem_classes="rde-when-filled")
    return SimpleNamespace(**{k: v for k, v in locals().items() if k != "ctx"})


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    h = _run_handlers(ctx)
    api = _api_handlers(ctx, h.run_one)
    c = _layout(ctx)
    state = gr.State()

    @user_errors
    @cached_example
    def ui_example(image, progress=gr.Progress()):
        """An example's result at the tab's defaults; gradio caches it (ui/spaces.py says when)."""
        labels_, crop, full, fig, info_, files_, *_ = h.ui_classify(image, ctx.default_model, 5, "cam", "", "jet",
                                                                    0.5, OCCLUSION_WINDOW.default,
                                                                    OCCLUSION_STRIDE.default, IG_STEPS.default,
                                                                    "layer4", False, progress)
        info_ += "\n\n*A cached example result: change the settings and press Classify & explain to run it again.*"
        # No state: a cached result cannot be re-rendered, and a stale one must not be.
        # The controls are reset so that they show what produced the result.
        return labels_, crop, full, fig, info_, files_, None, ctx.default_model, "cam", 5, "", "jet", 0.5

    with c.examples_slot:
        gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")],
                    inputs=[c.image], label="Examples (photo credits: About tab)", fn=ui_example,
                    outputs=[c.labels, c.crop_view, c.full_view, c.raw_view, c.info, c.files, state, c.model,
                             c.method, c.top_k, c.target, c.cmap, c.alpha], api_name="classify_example",
                    elem_id="classify-examples", **example_caching())
    _wire(ctx, h, api, c, state)
    _every_stage_section(ctx, c)


def _wire(ctx: Context, h: SimpleNamespace, api: SimpleNamespace, c: SimpleNamespace, state: Any) -> None:
    """The button, the estimate that follows the settings, the re-render, and the public endpoints."""
    ins = [c.image, c.model, c.top_k, c.method, c.target, c.cmap, c.alpha, c.window, c.stride, c.steps, c.layer,
           c.score]
    outs = [c.labels, c.crop_view, c.full_view, c.raw_view, c.info, c.files, c.faith_info, c.faith_plot,
            c.crop_slider, state]
    run = long_event(ctx.guard, c.go.click, h.ui_classify, ins, outs, cost=h.cost, message=c.info, stop=c.stop,
                     api_visibility="private")
    # The estimate follows the settings, and the first run replaces its guess with a measurement.
    cost_ins = [c.model, c.method, c.window, c.stride, c.steps, c.score, c.layer]  # the layer: Score-CAM's passes
    for ctl in cost_ins:
        ctl.change(h.ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    run.then(h.ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(h.ui_estimate, cost_ins, [c.estimate], api_visibility="private", show_progress="hidden")
    for ctl in (c.cmap, c.alpha):
        ctl.change(h.ui_rerender, [state, c.cmap, c.alpha], [c.crop_view, c.full_view, c.raw_view, c.files,
                                                              c.crop_slider],
                   api_visibility="private", show_progress="hidden")
    # The public endpoint: fixed display settings, so its signature stays
    # /classify(image, model, top_k, method, target).
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api.api_classify, [c.image, c.model, c.top_k, c.method, c.target],
               [c.labels, c.crop_view, c.full_view, c.raw_view, api_json], cost=h.cost, api_name="classify")
    # /explain(image, model, method, layer, target): the map alone, with the layer it is read from
    # (an MCP tool too, ui/mcp.py). Default display settings, as /classify.
    explain_json = gr.JSON(visible=False)
    explain_button = gr.Button(visible=False)
    long_event(ctx.guard, explain_button.click, api.api_explain, [c.image, c.model, c.method, c.layer, c.target],
               [c.crop_view, c.raw_view, explain_json], api_name="explain",
               cost=lambda image, model, method, layer=None, target=None: h.cost(image, model, 5, method, target,
                                                                                 layer=layer))


# --- "Every stage" (issue 18, part 5): its own section and event, from the tab's inputs -------

def _every_stage_section(ctx: Context, c: SimpleNamespace) -> None:
    """The accordion, its button, estimate and gallery. Grad-CAM, XGrad-CAM and Layer-CAM come
    from one forward and one backward for all four stages; other stage methods run once per
    stage, and the estimate says so."""
    rt = ctx.rt

    def stages_request(image: Upload | None, model: str, method: str, target: str | None) -> feature.Request:
        return request(ctx, image, model, 5, method, target, every_stage=True)

    def cost(image, model, method, *rest):
        return feature.estimate(rt, stages_request(None, model, method, None))

    @gpu
    def maps(image, model, method, target, progress):
        return feature.result(rt, stages_request(require_image(image), model, method, target), progress_fn(progress))

    @user_errors
    def ui_stages(image, model, method, target, cmap, alpha, progress=gr.Progress()):
        stages = maps(image, model, method, target, progress)
        return views.stages_gallery(stages, cmap, alpha, new_output_folder(ctx.outputs_dir)), \
            views.stages_markdown(stages)

    @runs_no_model
    def ui_estimate(model: str, method: str) -> str:
        try:
            return fmt.estimate_markdown(cost(None, model, method), rt.device, ctx.guard.limits)
        except ZooError as e:  # CAM and the input methods have no map at every stage
            return str(e)

    with gr.Accordion("Every stage: the method's maps at layer1 … layer4 side by side", open=False,
                      elem_id="stages-section"):
        gr.Markdown(views.STAGES_WHY)
        with gr.Row():
            go = gr.Button("Show every stage", elem_id="stages-button", scale=0, min_width=200)
            stop = gr.Button("Stop", variant="stop", elem_id="stages-stop", scale=0, min_width=100)
            estimate = gr.Markdown(elem_id="stages-estimate", elem_classes="rde-estimate")
        info = gr.Markdown(elem_id="stages-info")
        gallery = gr.Gallery(label="layer1 … layer4", columns=4, height="auto", object_fit="contain",
                             elem_id="stages-gallery")
    long_event(ctx.guard, go.click, ui_stages, [c.image, c.model, c.method, c.target, c.cmap, c.alpha],
               [gallery, info], cost=cost, message=info, stop=stop, api_visibility="private")
    for ctl in (c.model, c.method):
        ctl.change(ui_estimate, [c.model, c.method], [estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, [c.model, c.method], [estimate], api_visibility="private", show_progress="hidden")
