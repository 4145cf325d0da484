"""Method ranking: several methods' maps of one image, each scored for faithfulness; ``/rank_methods``.

The maps appear one by one as their scores come in, sorted by the score the user picks;
Stop cancels between methods.
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from zoo.explain import METHODS
from zoo.features import rank as feature
from zoo.features.rank import Ranking

from .. import format as fmt
from ..common import (EXAMPLES, Context, gpu, new_output_folder, progress_fn, require_image, safe_image_input,
                      user_errors)
from ..guard import long_event, runs_no_model
from ..charts import data_files
from ..views import rank as views

TITLE = "Method ranking"


def request(ctx: Context, image: Any, model: str, target: str | None, methods: Any) -> feature.Request:
    """The tab's one request, from its inputs: what the handlers run and the cost callbacks price.
    No methods ticked: the cheap ones (``RANK_DEFAULT``), as the endpoint runs."""
    return feature.Request.create(ctx.rt, None if image is None else image.path, model, target or None,
                                  list(methods or []) or None)


def _handlers(ctx: Context) -> tuple[Any, Any, Any, Any]:
    """The button's (a stream), the re-sort's, the endpoint's, and the cost callback."""
    rt = ctx.rt

    @gpu
    def stream(image, model, target, methods, progress) -> Iterator[Ranking]:
        upload = require_image(image)
        if not methods:
            raise gr.Error("Tick at least one method to rank.", print_exception=False)
        yield from feature.run(rt, request(ctx, upload, model, target, methods), progress_fn(progress))

    @user_errors
    def ui_rank(image, model, target, methods, by, progress=gr.Progress()):
        folder = new_output_folder(ctx.outputs_dir)
        pictures: dict[str, str] = {}
        for ranking in stream(image, model, target, methods, progress):
            views.pictures_of(folder, ranking, pictures)
            yield (*shown(ranking, by, len(methods), pictures, folder), (ranking, pictures, len(methods), folder))

    def shown(ranking: Ranking, by: str, total: int, pictures: dict[str, str], folder: Any) -> tuple[Any, ...]:
        items, rows, text, curves, data = views.render(ranking, by, total, pictures, folder)
        return items, gr.Dataframe(value=rows, headers=views.RANK_HEADERS), text, curves, data

    @runs_no_model
    @user_errors
    def ui_resort(state, by):
        if state is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        ranking, pictures, total, folder = state
        return shown(ranking, by, total, pictures, folder)

    @user_errors
    def api_rank(image, model, target, methods, progress=gr.Progress()):
        """Each named method's map of the image for one class (blank: top-1), scored for faithfulness.

        Returns the maps as a gallery, best deletion score first, and the ranking as JSON
        (deletion AUC: lower is better; insertion AUC: higher is better; ROAD's combined score,
        ``road_combined``: higher is better).
        """
        ranking = feature.result(rt, request(ctx, require_image(image), model, target, methods),
                                 progress_fn(progress))
        pictures = views.pictures_of(new_output_folder(ctx.outputs_dir), ranking, {})
        return views.gallery(ranking, "deletion", pictures), ranking.to_json()

    def cost(image, model, target=None, methods=None, by=None):
        return feature.estimate(rt, request(ctx, None, model, None, methods))

    return ui_rank, ui_resort, api_rank, cost


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    rt = ctx.rt
    ui_rank, ui_resort, api_rank, cost = _handlers(ctx)

    with gr.Row():
        with gr.Column(scale=1):
            image = safe_image_input(label="Image", elem_id="rank-image", height=260)
            model = gr.Dropdown(ctx.model_choices, value=ctx.default_model, label="Model", elem_id="rank-model")
            target = gr.Dropdown([""] + ctx.class_choices, value="", label="Target class (blank: top-1)",
                                 allow_custom_value=True, filterable=True)
            methods = gr.CheckboxGroup(views.choices(ctx.zoo, ctx.default_model), value=list(views.QUICK),
                                       elem_id="rank-methods",
                                       label="Methods (cost of one map, in passes; each score adds about 50 "
                                             "forwards and ROAD's imputation)")
            every = gr.Button("Tick every method", size="sm", elem_id="rank-all")
            by = gr.Radio(views.SORT_CHOICES, value="deletion", label="Sort by", elem_id="rank-sort")
            with gr.Row():
                go = gr.Button("Rank methods", variant="primary", elem_id="rank-button")
                stop = gr.Button("Stop", variant="stop", elem_id="rank-stop")
            estimate = gr.Markdown(elem_id="rank-estimate", elem_classes="rde-estimate")
        with gr.Column(scale=2):
            info = gr.Markdown(f"Each method's map is scored for faithfulness: {fmt.FAITHFULNESS_NOTE} per map.",
                               elem_id="rank-info")
            gallery = gr.Gallery(label="Maps, best first", columns=3, height="auto", elem_id="rank-gallery")
            table = gr.Dataframe(label="Scores", interactive=False, elem_id="rank-table", wrap=True, pinned_columns=1,
                                 column_widths=views.RANK_COLUMN_WIDTHS)  # fixed widths: ui/format.py says why
            curves = gr.Plot(label="Deletion and insertion curves, every method", elem_id="rank-curves",
                             elem_classes="rde-when-filled")  # hidden until a run fills it (ui/app.py)
            data = data_files("rank-chart-data")
    state = gr.State()
    gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png")], inputs=[image])
    outs = [gallery, table, info, curves, data, state]
    event = long_event(ctx.guard, go.click, ui_rank, [image, model, target, methods, by], outs, cost=cost,
                       message=info, stop=stop, api_visibility="private",
                       stopped="The methods scored before Stop stay shown, best first; the rest were not run.")

    @runs_no_model
    def ui_estimate(model, methods) -> str:
        """What Rank methods will cost here, before pressing it."""
        everything = fmt.estimate_markdown(feature.rank_estimate(rt, model, list(METHODS)), rt.device,
                                           ctx.guard.limits)
        every_text = f"\n\nEvery method ({len(METHODS)}, 'Tick every method'): {everything[0].lower()}{everything[1:]}"
        if not methods:
            return "Tick at least one method to rank." + every_text
        chosen = fmt.estimate_markdown(feature.rank_estimate(rt, model, list(methods)), rt.device,
                                        ctx.guard.limits)
        return chosen + ("" if len(set(methods)) == len(METHODS) else every_text)

    for trigger in (model.change, methods.change, event.then, ctx.demo.load):
        trigger(ui_estimate, [model, methods], [estimate], api_visibility="private", show_progress="hidden")
    every.click(runs_no_model(lambda: gr.CheckboxGroup(value=list(METHODS))), None, [methods], api_visibility="private",
                show_progress="hidden")
    by.change(ui_resort, [state, by], [gallery, table, info, curves, data], api_visibility="private",
              show_progress="hidden")
    # Score-CAM's label counts its forwards for the model picked: 514 on ResNet-18, 2050 on ResNet-50.
    model.change(runs_no_model(lambda m, v: gr.CheckboxGroup(choices=views.choices(ctx.zoo, m), value=v)),
                 [model, methods], [methods], api_visibility="private", show_progress="hidden")
    # The public endpoint /rank_methods(image, model, target, methods).
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_rank, [image, model, target, methods], [gallery, api_json],
               cost=cost, api_name="rank_methods")
