"""Classify & explain: one model, top-k, a map for any class; the ``/classify`` endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from zoo.errors import ZooError
from zoo.explain import IG_STEPS, OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES, Setting, takes_layer
from zoo.render import COLORMAPS, overlay_crop, save_jpeg
from zoo.service import Result

from .. import format as fmt
from ..every_stage import build_section as every_stage_section
from ..common import (EXAMPLES, Context, Upload, gpu, progress_fn, render_result, require_image,
                      safe_image_input, save_raw, user_errors)
from ..guard import cached_example, long_event, runs_no_model
from ..spaces import example_caching
from ..charts import csv_file, faithfulness_curves

TITLE = "Classify & explain"



def setting_slider(setting: Setting, label: str, elem_id: str) -> gr.Slider:
    """A slider for one of zoo's method settings: its range, default and step come from zoo,
    as the API's and the CLI's do. gr.Slider refuses values outside its range on the server
    too, so a raw call is bound as well; zoo refuses what would cost too much."""
    return gr.Slider(setting.low, setting.high, value=setting.default, step=setting.step, label=label,
                     elem_id=elem_id)


def method_params(method: str, window: int, stride: int, steps: int, layer: str | None = None) -> dict[str, Any]:
    """The settings of the page that ``method`` takes."""
    params: dict[str, Any] = {}
    if method == "occlusion":
        params = {"window": int(window), "stride": int(stride)}
    elif method == "integrated-gradients":
        params = {"steps": int(steps)}
    if layer and takes_layer(method):  # input-pixel methods have no stage; the dropdown does not apply
        params["layer"] = layer
    return params


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer

    def cost(image, model, top_k, method, target, cmap="jet", alpha=0.5, window=OCCLUSION_WINDOW.default,
             stride=OCCLUSION_STRIDE.default, steps=IG_STEPS.default, layer=None, score=False):
        """The estimate of one run: the figure the page shows, the server's ceiling checks and ZeroGPU asks for."""
        return explorer.estimate([model], method, bool(score), **method_params(method, window, stride, steps, layer))

    def run_cost(image, model, top_k, method, target, progress=None, window=OCCLUSION_WINDOW.default,
                 stride=OCCLUSION_STRIDE.default, steps=IG_STEPS.default, layer=None, score=False):
        return cost(image, model, top_k, method, target, window=window, stride=stride, steps=steps, layer=layer,
                    score=score)

    @gpu(cost=run_cost)  # ZeroGPU's duration from the same estimate (ui/spaces.py)
    def run_one(image: Upload | None, model: str, top_k: int, method: str, target: str | None,
                progress: gr.Progress, window: int = OCCLUSION_WINDOW.default,
                stride: int = OCCLUSION_STRIDE.default, steps: int = IG_STEPS.default, layer: str | None = None,
                score: bool = False) -> Result:
        upload = require_image(image)
        return explorer.run(upload.path, model, top_k, method, target or None, progress_fn(progress),
                            faithfulness=bool(score), **method_params(method, window, stride, steps, layer))

    @runs_no_model
    def ui_estimate(model, method, window, stride, steps, score, layer=None) -> str:
        """What pressing the button will cost here, before pressing it."""
        try:
            return fmt.estimate_markdown(cost(None, model, 5, method, None, window=window, stride=stride,
                                              steps=steps, layer=layer, score=score), explorer.device,
                                         ctx.guard.limits) + fmt.download_note(ctx.zoo.get(model))
        except ZooError as e:  # settings the server refuses: say so now
            return str(e)

    def seen_and_mapped(result: Result, overlay: str) -> tuple[str, str]:
        """The slider's two pictures: the crop the model saw, and the same crop under the map
        (``overlay``, as shown above). Opacity 0 draws the crop alone, at the overlay's size."""
        plain = Path(overlay).with_name(f"{result.run.model}-crop.jpg")
        save_jpeg(overlay_crop(result.run, result.explanation.raw, alpha=0.0), plain)
        return str(plain), overlay

    def curves(result: Result):
        return faithfulness_curves([(result.method, result.faithfulness)], result.explanation.target.label,
                                   name=f"{result.run.model}-{result.method}-{result.explanation.target.index}-curves")

    def render_scores(result: Result) -> tuple[str, Any]:
        f = result.faithfulness
        if f is None:
            return "", None
        return fmt.faithfulness_markdown(f), curves(result)

    def downloads(result: Result, crop: str, png: str) -> list[str]:
        """The overlay PNG, the raw map and, once the map is scored, its curves' data (CSV)."""
        folder = Path(crop).parent
        paths = [png, save_raw(result, folder)]
        if result.faithfulness is not None:
            paths.append(csv_file(curves(result), folder))
        return paths

    @user_errors
    def ui_classify(image, model, top_k, method, target, cmap, alpha, window, stride, steps, layer, score,
                    progress=gr.Progress()):
        result = run_one(image, model, top_k, method, target, progress, window, stride, steps, layer, score)
        crop, full, fig, png = render_result(ctx, result, cmap, alpha, download=True)
        return (fmt.label_dict(result), crop, full, fig, fmt.result_markdown(result), downloads(result, crop, png),
                *render_scores(result), seen_and_mapped(result, crop), result)

    @runs_no_model
    @user_errors
    def ui_rerender(result, cmap, alpha):
        if result is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        # The download too: it is the overlay as shown, in the colours and opacity now chosen.
        crop, full, fig, png = render_result(ctx, result, cmap, alpha, download=True)
        return crop, full, fig, downloads(result, crop, png), seen_and_mapped(result, crop)

    @user_errors
    def api_classify(image, model, top_k, method, target, progress=gr.Progress()):
        """Classify an image with one model and explain its decision."""
        result = run_one(image, model, top_k, method, target, progress)
        crop, full, fig = render_result(ctx, result, "jet", 0.5)
        return fmt.label_dict(result), crop, full, fig, result.to_json()

    @user_errors
    def api_explain(image, model, method, layer, target, progress=gr.Progress()):
        """Where one model looked for one class: the map of ``method`` read at ``layer``, for ``target``."""
        result = run_one(image, model, 5, method, target, progress, layer=layer or None)
        crop, _, fig = render_result(ctx, result, "jet", 0.5)
        return crop, fig, {**result.to_json(), "layer": result.explanation.layer}

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
    state = gr.State()

    @user_errors
    @cached_example
    def ui_example(image, progress=gr.Progress()):
        """An example's result at the tab's defaults; gradio caches it (ui/spaces.py says when)."""
        labels_, crop, full, fig, info_, files_, *_ = ui_classify(image, ctx.default_model, 5, "cam", "", "jet",
                                                                  0.5, OCCLUSION_WINDOW.default,
                                                                  OCCLUSION_STRIDE.default, IG_STEPS.default,
                                                                  "layer4", False, progress)
        info_ += "\n\n*A cached example result: change the settings and press Classify & explain to run it again.*"
        # No state: a cached result cannot be re-rendered, and a stale one must not be.
        # The controls are reset so that they show what produced the result.
        return labels_, crop, full, fig, info_, files_, None, ctx.default_model, "cam", 5, "", "jet", 0.5

    with examples_slot:
        gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")],
                    inputs=[image], label="Examples (photo credits: About tab)", fn=ui_example,
                    outputs=[labels, crop_view, full_view, raw_view, info, files, state, model, method, top_k, target,
                             cmap, alpha], api_name="classify_example", elem_id="classify-examples",
                    **example_caching())
    ins = [image, model, top_k, method, target, cmap, alpha, window, stride, steps, layer, score]
    outs = [labels, crop_view, full_view, raw_view, info, files, faith_info, faith_plot, crop_slider, state]
    run = long_event(ctx.guard, go.click, ui_classify, ins, outs, cost=cost, message=info, stop=stop,
                     api_visibility="private")
    # The estimate follows the settings, and the first run replaces its guess with a measurement.
    cost_ins = [model, method, window, stride, steps, score, layer]  # the layer: Score-CAM's passes
    for ctl in cost_ins:
        ctl.change(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    run.then(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    for ctl in (cmap, alpha):
        ctl.change(ui_rerender, [state, cmap, alpha], [crop_view, full_view, raw_view, files, crop_slider],
                   api_visibility="private", show_progress="hidden")
    # The public endpoint: fixed display settings, so its signature stays
    # /classify(image, model, top_k, method, target).
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_classify, [image, model, top_k, method, target],
               [labels, crop_view, full_view, raw_view, api_json], cost=cost, api_name="classify")
    # /explain(image, model, method, layer, target): the map alone, with the layer it is read from
    # (an MCP tool too, ui/mcp.py). Default display settings, as /classify.
    explain_json = gr.JSON(visible=False)
    explain_button = gr.Button(visible=False)
    long_event(ctx.guard, explain_button.click, api_explain, [image, model, method, layer, target],
               [crop_view, raw_view, explain_json], api_name="explain",
               cost=lambda image, model, method, layer=None, target=None: cost(image, model, 5, method, target,
                                                                               layer=layer))
    # "Every stage" (issue 18, part 5): its own section and event, from this tab's inputs.
    every_stage_section(ctx, image, model, method, target, cmap, alpha)
