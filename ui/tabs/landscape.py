"""Error surfaces: the loss around each depth's trained weights (Li et al. 2018), on the user's image; ``/landscape``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from zoo.errors import ZooError
from zoo.features import landscape
from zoo.landscape import Landscape
from zoo.params import SPAN_MAX

from .. import format as fmt
from .. import figures
from ..views import landscape as views
from ..common import (Context, InputFiles, about, checked_file, gpu, image_with_examples, progress_fn, require_image,
                      user_errors)
from ..guard import long_event, runs_no_model

TITLE = "Error surfaces"

# The app's defaults: a 7 x 7 surface for all five depths on one image takes about a minute on
# a 2-core CPU (benchmarks/landscape.py; README, "Error surfaces"). The command line defaults to
# the paper's 11 x 11. The slider bounds what a visitor can ask for; the estimate says the cost.
GRID = (3, 15, 7)
SPAN = (0.1, 2.0, 1.0)
DIMS = [("2-D: contour and surface per depth", 2), ("1-D: every depth's curve along δ", 1)]
MAX_IMAGES = 8  # the image and the optional extra files, together: each costs a forward per grid point

INTRO = """\
**How to read them.** The centre (red +) is the trained network θ; moving right or up adds α·δ + β·η, two random \
directions whose every filter has the norm of the matching filter of θ (*filter-normalized*), so ±1 moves each \
filter by its own size; the colour (one logarithmic scale for every depth) is the cross-entropy of the target \
class on your image. **What the paper found** (Li et al., [*Visualizing the Loss Landscape of Neural \
Nets*](https://arxiv.org/abs/1712.09913), NeurIPS 2018): without shortcuts the surface turns chaotic as the network \
gets deeper, while residual networks keep a smooth, nearly convex bowl around θ at every depth. The five depths \
here all have shortcuts: expect bowls, and see whether depth changes their width or shape.

Each grid point is one forward pass per image with every convolution and fc weight moved (biases and BatchNorm \
stay as trained, as in the paper), on a private fp32 copy of the weights: the other tabs are not affected. \
Stop ends a run between two points.
"""


def _extra(more: Any) -> list[Any]:
    """The optional extra files, checked (ui.common.checked_file)."""
    return [checked_file(f) for f in (more if isinstance(more, list) else [more] if more else [])]


def handlers(ctx: Context) -> SimpleNamespace:
    """The tab's handlers and its cost callback, built on the tab's one request."""
    rt = ctx.rt

    def request(image: Any, models: list[str] | None = None, target: Any = None, dims: Any = 2, grid: Any = 11,
                span: Any = SPAN[2], seed: Any = 0, more: Any = None) -> landscape.Request:
        """The tab's one request: the handlers run it, the cost callback prices it. Extra files (images,
        or a zip whose folders may name classes) join the image, as Batch reads them; before an upload
        (the page pricing its settings) the image counts as one, unread."""
        extra = _extra(more)
        sources = [*([image.path] if image is not None else []), *map(str, extra)]
        names = [*([image.name] if image is not None else []), *(p.name for p in extra)]
        return landscape.Request.create(
            rt, (sources if extra else sources[0]) if sources else None, list(models or ctx.depth_names), target,
            grid=int(grid), span=float(span if span is not None else SPAN[2]), dims=int(dims), seed=int(seed or 0),
            max_images=MAX_IMAGES, names=names if image is not None else None, unread=0 if image is not None else 1)

    def cost(image: Any, models: list[str] | None = None, target: Any = None, dims: int = 2, grid: int = 11,
             span: Any = None, seed: Any = None, more: Any = None):
        """The estimate of one run: the page's figure, the ceiling's and ZeroGPU's. Extra files are
        counted as the run reads them (a zip's members; decoding priced from their headers)."""
        return landscape.estimate(rt, request(image, models, target, dims, grid, span, seed, more))

    @gpu(cost=lambda image, models, target, dims, grid, span, seed, progress=None, more=None:
         cost(image, models, target, dims, grid, span, seed, more))
    def events(image: Any, models: list[str] | None, target: str | None, dims: int, grid: int, span: float,
               seed: float, progress: gr.Progress, more: Any = None) -> Iterator[Any]:
        req = request(require_image(image), models, target, dims, grid, span, seed, more)
        yield from landscape.run(rt, req, progress_fn(progress))

    @runs_no_model
    def ui_estimate(models, dims, grid, more=None) -> str:
        """What pressing Run will cost here, before pressing it."""
        try:
            est = cost(None, models, None, dims, grid, more=more)
        except ZooError as e:
            return str(e)
        return fmt.estimate_markdown(est, rt.device, ctx.guard.limits)

    @user_errors
    def ui_run(image, models, target, dims, grid, span, seed, more, progress=gr.Progress()):
        # A generator that yields before every grid point: Stop cancels the event, gradio then
        # closes it at its next yield, and closing the stream ends the work.
        total = len(models or ctx.depth_names)
        done: list[Landscape] = []
        text = ""
        for event in events(image, models, target, dims, grid, span, seed, progress, more):
            if isinstance(event, Landscape):
                done.append(event)
                text = views.landscape_markdown(done, total)
                yield figures.landscape_figure(done), text, views.numbers(done)
            else:  # where the run is, above what the finished depths said
                yield gr.skip(), views.running(event, text), gr.skip()

    @user_errors
    def api_landscape(image, model, progress=gr.Progress()):
        """The loss around one model's weights on the image: a 2-D surface at the tab's defaults."""
        done = [e for e in events(image, [model], None, 2, GRID[2], SPAN[2], 0, progress) if isinstance(e, Landscape)]
        return figures.landscape_figure(done), views.landscape_markdown(done, 1), done[0].to_json()

    return SimpleNamespace(cost=cost, ui_estimate=ui_estimate, ui_run=ui_run, api_landscape=api_landscape)


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    h = handlers(ctx)
    about("How to read these plots, and what the paper found", INTRO, open=True)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = image_with_examples("landscape-image", ("chelsea.png", "rocket.jpg"))
            more = InputFiles(label=f"More images or a .zip (optional; up to {MAX_IMAGES} in all)",
                              file_count="multiple", type="filepath", elem_id="landscape-more", height=130)
        with gr.Column(scale=1, min_width=300):
            models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Depths",
                                      elem_id="landscape-models")
            dims = gr.Radio(DIMS, value=2, label="Plot", elem_id="landscape-dims")
            with gr.Row():
                grid = gr.Slider(*GRID[:2], value=GRID[2], step=2, label="Grid points per axis (odd)",
                                 elem_id="landscape-grid", min_width=160)
                span = gr.Slider(SPAN[0], min(SPAN[1], SPAN_MAX), value=SPAN[2], step=0.1,
                                 label="Span: α, β in [−span, span]", elem_id="landscape-span", min_width=160)
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, maximum=2 ** 31 - 1, label="Seed of the directions",
                                 elem_id="landscape-seed", min_width=120)
                target = gr.Dropdown([""] + ctx.class_choices, value="", allow_custom_value=True, filterable=True,
                                     label="Target class (blank: each model's top-1)", elem_id="landscape-target",
                                     min_width=160)
            with gr.Row():
                go = gr.Button("Run", variant="primary", elem_id="landscape-run")
                stop = gr.Button("Stop", variant="stop", elem_id="landscape-stop")
            estimate = gr.Markdown(elem_id="landscape-estimate", elem_classes="rde-estimate")
    summary = gr.Markdown(elem_id="landscape-summary")
    # The figure carries its own title; gradio's label badge would cover it.
    plot = gr.Plot(label="Error surfaces", show_label=False, elem_id="landscape-plot")
    with gr.Accordion("The numbers (JSON)", open=False):
        numbers = gr.JSON(label="Per model: alphas, betas, loss[beta][alpha]")
    ins = [image, models, target, dims, grid, span, seed, more]
    outs = [plot, summary, numbers]
    run = long_event(ctx.guard, go.click, h.ui_run, ins, outs, cost=h.cost, message=summary, stop=stop,
                     what="This error surface", api_visibility="private")
    cost_ins = [models, dims, grid, more]
    for event in [ctl.change for ctl in cost_ins] + [run.then, ctx.demo.load]:
        event(h.ui_estimate, cost_ins, [estimate], api_visibility="private", show_progress="hidden")
    # The public endpoint /landscape(image, model): one model, a 2-D surface at the defaults above.
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    api_model = gr.Textbox(value=ctx.default_model, visible=False, label="model")
    long_event(ctx.guard, api_button.click, h.api_landscape, [image, api_model], [plot, summary, api_json],
               cost=lambda image, model: h.cost(image, [model], None, 2, GRID[2], SPAN[2], 0), what="This error surface",
               api_name="landscape")
