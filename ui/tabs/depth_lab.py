"""Depth lab: the paper's claims about depth, measured block by block on the user's image; ``/analyze``."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from zoo.analysis import Analysis
from zoo.features import analyze
from zoo.params import LRP_COMPOSITES

from .. import charts
from ..views import depth_lab as views
from ..common import (EXAMPLES, Context, gpu, new_output_folder, progress_fn, require_image, safe_image_input,
                      user_errors)
from ..guard import long_event, runs_no_model, stop_button

TITLE = "Depth lab"
CHARTS = 7  # views.render's charts, in the order of build's outputs

INTRO = """\
What happens *inside* a residual network, measured on your image, block by block (torchvision's `layerS[j]`).

* **Smaller responses with depth** (He et al. 2016, §4.2, Fig. 7). The *response* of a block is the output of its \
3×3 layer after BatchNorm, before the ReLU and the addition. The paper found that ResNets respond more weakly than \
plain networks, and deeper ResNets more weakly still: the more layers, the less each one modifies the signal, as if \
the residual functions were close to zero. The second chart sorts each depth's responses from largest to smallest, \
as the paper does. ‖F(x)‖ / ‖shortcut(x)‖ says directly how much each block changes what it receives.
* **Why identity shortcuts train** (He et al., *Identity Mappings*, 2016). A block computes x + F(x), so the \
gradient at its input is the gradient at its output *plus* a term through F: the identity term carries the signal \
back to every earlier block without passing through any weight layer. The gradient chart shows how much of the \
target logit's gradient reaches each block.
* **An ensemble of shallow paths** (Veit, Wilber and Belongie 2016). Deleting one block (its residual branch, so \
it passes x on unchanged) barely hurts a ResNet, except at the downsampling blocks (crosses), which change the \
signal's shape; deleting several at random degrades it smoothly. In a *plain* network every path runs through \
every layer, so deleting any single layer breaks it.

**Signal analysis** takes one forward and one backward pass per depth. **Lesion study** also deletes every \
block in turn and k random identity blocks at once (k = 1, 2, 4, …, five seeded draws each); the lesioned \
variants reuse the undamaged pass up to their block. **Relevance flow** (either button, when ticked) adds one LRP pass per depth (Zennit's ResNet canonizer) and a chart of how much of each block's relevance flows into its residual branch rather than its shortcut, to set beside the lesion curve. Does each claim hold on your image?
"""


def handlers(ctx: Context) -> SimpleNamespace:
    """The tab's handlers and cost callbacks, built on the tab's one request."""
    rt = ctx.rt

    def request(image: Any, models: list[str] | None, target: str | None, lesion: bool, relevance: bool = False,
                composite: str | None = None) -> analyze.Request:
        """The tab's one request: the handlers run it, the cost callbacks price it (image None: pricing).
        The Lesion study deletes every block in turn and k random identity blocks at once."""
        return analyze.Request.create(rt, getattr(image, "path", image), list(models or ctx.depth_names), target,
                                      lesion=lesion, deletions=lesion, relevance=bool(relevance), composite=composite)

    def cost_of(lesion: bool):
        return lambda image, models=None, target=None, relevance=False, composite=None: analyze.estimate(
            rt, request(image, models, target, lesion, relevance, composite))

    @gpu
    def analyses(req: analyze.Request, progress: gr.Progress) -> Iterator[Analysis]:
        yield from analyze.run(rt, replace(req, image=require_image(req.image)), progress_fn(progress))

    def stream(req: analyze.Request, progress) -> Iterator[tuple]:
        # One update per depth: the charts fill in as each finishes, and Stop takes effect in between.
        done: list[Analysis] = []
        # An earlier run's charts go first: whatever shows after a Stop is this run's.
        yield (None,) * CHARTS + ("", None, None)
        for a in analyses(req, progress):
            done.append(a)
            out = views.render(done)
            # The data of every chart drawn so far, as CSV (the PNG comes from each chart's modebar).
            yield (*out, views.numbers(done), charts.csv_files(out[:CHARTS], new_output_folder(ctx.outputs_dir)))

    @user_errors
    def ui_signal(image, models, target, relevance, composite, progress=gr.Progress()):
        yield from stream(request(image, models, target, False, relevance, composite), progress)

    @user_errors
    def ui_lesion(image, models, target, relevance, composite, progress=gr.Progress()):
        yield from stream(request(image, models, target, True, relevance, composite), progress)

    @user_errors
    def api_analyze(image, model, target, progress=gr.Progress()):
        """Depth lab for one model: per-block responses, residual ratios, gradients, lesions, deletions and the
        relevance flow (epsilon-plus-flat: the default composite; the three published inputs stay as they were)."""
        (a,) = analyses(request(image, [model], target, True, True), progress)
        return (*views.render([a]), a.to_json())

    @runs_no_model
    def ui_estimate(models, relevance=False, composite=None) -> str:
        """What each button will cost here, before pressing it."""
        return views.depth_lab_estimate(cost_of(False)(None, models, None, relevance, composite),
                                        cost_of(True)(None, models, None, relevance, composite), rt.device)

    return SimpleNamespace(cost_of=cost_of, ui_signal=ui_signal, ui_lesion=ui_lesion, api_analyze=api_analyze,
                           ui_estimate=ui_estimate)


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    h = handlers(ctx)
    with gr.Accordion("What the papers found, and what each chart shows", open=True):
        gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            image = safe_image_input(label="Image", elem_id="lab-image", height=260)
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "rocket.jpg")], inputs=[image])
        with gr.Column(scale=1):
            models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Depths", elem_id="lab-models")
            target = gr.Dropdown([""] + ctx.class_choices, value="", allow_custom_value=True, filterable=True,
                                 label="Target class (blank: each model's top-1)")
            with gr.Row():
                signal_go = gr.Button("Signal analysis", variant="primary", elem_id="lab-signal-button")
                lesion_go = gr.Button("Lesion study", variant="secondary", elem_id="lab-lesion-button")
                stop = gr.Button("Stop", variant="stop", elem_id="lab-stop")
            with gr.Row():
                relevance = gr.Checkbox(value=False, label="Relevance flow (LRP): where each block's relevance goes, "
                                                           "shortcut or residual branch (one LRP pass per depth)",
                                        elem_id="lab-relevance")
                composite = gr.Dropdown(list(LRP_COMPOSITES), value=LRP_COMPOSITES[0], label="LRP composite",
                                        elem_id="lab-composite")
            estimate = gr.Markdown(elem_id="lab-estimate", elem_classes="rde-estimate")
    summary = gr.Markdown(elem_id="lab-summary")

    def plot(label: str, elem_id: str) -> gr.Plot:
        # Plotly (ui/charts.py): hover a point for its block, depth and value; click a legend
        # entry to hide that depth. The figure carries its own title; gradio's label badge would cover it. Until a run
        # fills it, the box is hidden (rde-when-filled, ui/app.py): an empty, unlabelled box
        # says nothing.
        # min_width: two charts per row where there is room, one per row on a phone (at 160 px
        # each, their titles, axes and legends were cut).
        return gr.Plot(label=label, show_label=False, elem_id=elem_id, elem_classes="rde-when-filled", min_width=500)

    with gr.Row():
        p_resp = plot("Layer responses vs depth", "lab-plot-response")
        p_sorted = plot("Layer responses, sorted (paper Fig. 7)", "lab-plot-sorted")
    with gr.Row():
        p_ratio = plot("How much each block changes the signal", "lab-plot-ratio")
        p_grad = plot("Gradient reaching each block", "lab-plot-grad")
    with gr.Row():
        p_lesion = plot("Lesion study: one block deleted", "lab-plot-lesion")
        p_rel = plot("Relevance into the residual branch, per block", "lab-plot-relevance")
    with gr.Row():
        p_del = plot("k random identity blocks deleted", "lab-plot-deletions")
    data = charts.data_files("lab-data")
    with gr.Accordion("The numbers (JSON)", open=False):
        numbers = gr.JSON(label="Per model and block")
    ins = [image, models, target, relevance, composite]
    outs = [p_resp, p_sorted, p_ratio, p_grad, p_lesion, p_del, p_rel, summary, numbers, data]

    signal_ev = long_event(ctx.guard, signal_go.click, h.ui_signal, ins, outs, cost=h.cost_of(False),
                           message=summary, api_visibility="private")
    lesion_ev = long_event(ctx.guard, lesion_go.click, h.ui_lesion, ins, outs, cost=h.cost_of(True), message=summary,
                           api_visibility="private")
    stop_button(stop, [signal_ev, lesion_ev], summary,
                "The charts show the depths finished before Stop (none if it came during the first); the others "
                "were not run.")

    for event in (models.change, relevance.change, composite.change, signal_ev.then, lesion_ev.then,
                  ctx.demo.load):
        event(h.ui_estimate, [models, relevance, composite], [estimate], api_visibility="private",
              show_progress="hidden")
    # The public endpoint /analyze(image, model, target): one model, everything (lesions included). Its
    # signature stays as published (gradio refuses a call with fewer values than inputs, so an added input
    # would break every caller); the relevance flow is the page's, the command line's and the library's.
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    api_model = gr.Textbox(value=ctx.default_model, visible=False, label="model")
    long_event(ctx.guard, api_button.click, h.api_analyze, [image, api_model, target], outs[:-2] + [api_json],
               cost=lambda image, model, target=None: h.cost_of(True)(image, [model], target, True), api_name="analyze")
