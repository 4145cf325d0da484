"""Method ranking: several methods' maps of one image, each scored for faithfulness; ``/rank_methods``.

The maps appear one by one as their scores come in, sorted by the score the user picks;
Stop cancels between methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr

from zoo.explain import METHODS
from zoo.render import overlay_crop, save_png
from zoo.service import RANK_DEFAULT, Ranked, Ranking

from .. import format as fmt
from ..common import (EXAMPLES, Context, gpu, new_output_folder, progress_fn, require_image, safe_image_input,
                      user_errors)
from ..guard import long_event, runs_no_model
from ..charts import csv_files, data_files, faithfulness_curves

TITLE = "Method ranking"
# What the tab ticks: the methods that answer in seconds on a CPU, and Edges, the floor every
# method should beat (it ignores the network). The rest are one click away ("Tick every method"),
# the estimate says what they cost. (All of them took about 3 minutes on a CPU.)
QUICK = ("cam", "gradcam", "saliency", "edges")
SORT_CHOICES = [("Deletion AUC (lower is better)", "deletion"), ("Insertion AUC (higher is better)", "insertion"),
                ("ROAD (higher is better)", "road")]


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer

    def choices(model: str) -> list[tuple[str, str]]:
        spec = ctx.zoo.get(model) if model in ctx.zoo else None
        return [fmt.method_choice(name, spec) for name in METHODS]

    def picture(folder: Path, ranking: Ranking, r: Ranked) -> str:
        name = f"{ranking.run.model}-{r.method}-{ranking.target.index}.png"
        return str(save_png(overlay_crop(ranking.run, r.explanation.raw, "jet", 0.5, size=256,
                                         signed=METHODS[r.method].signed), folder / name))

    def render(ranking: Ranking, by: str, total: int, pictures: dict[str, str]):
        """Gallery (best first), table, text and curves for the ranking so far."""
        entries = ranking.sorted(by)
        gallery = [(pictures[r.method], fmt.rank_caption(i + 1, r)) for i, r in enumerate(entries)]
        table = gr.Dataframe(value=fmt.rank_table(entries), headers=fmt.RANK_HEADERS)
        curves = faithfulness_curves([(METHODS[r.method].label, r.faithfulness) for r in entries],
                                     ranking.target.label, name=f"rank-curves-{ranking.run.model}-{ranking.target.index}",
                                     areas=False)  # 13 methods' areas made the legend taller than the plot
        # The curves' data as CSV, beside the pictures of this run (the chart's camera icon saves its PNG).
        folder = Path(next(iter(pictures.values()))).parent if pictures else new_output_folder(ctx.outputs_dir)
        data = csv_files([curves], folder)
        return gallery, table, fmt.ranking_markdown(ranking, total, by), curves, data

    @gpu
    def stream(image, model, target, methods, progress) -> Iterator[Ranking]:
        upload = require_image(image)
        if not methods:
            raise gr.Error("Tick at least one method to rank.", print_exception=False)
        yield from explorer.iter_rank(upload.path, model, target or None, list(methods), progress_fn(progress))

    @user_errors
    def ui_rank(image, model, target, methods, by, progress=gr.Progress()):
        folder = new_output_folder(ctx.outputs_dir)
        pictures: dict[str, str] = {}
        ranking = None
        for ranking in stream(image, model, target, methods, progress):
            for r in ranking.entries:
                if r.method not in pictures:
                    pictures[r.method] = picture(folder, ranking, r)
            yield (*render(ranking, by, len(methods), pictures), (ranking, pictures, len(methods)))

    @runs_no_model
    @user_errors
    def ui_resort(state, by):
        if state is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        ranking, pictures, total = state
        return render(ranking, by, total, pictures)

    @user_errors
    def api_rank(image, model, target, methods, progress=gr.Progress()):
        """Each named method's map of the image for one class (blank: top-1), scored for faithfulness.

        Returns the maps as a gallery, best deletion score first, and the ranking as JSON
        (deletion AUC: lower is better; insertion AUC: higher is better; ROAD's combined score,
        ``road_combined``: higher is better).
        """
        upload = require_image(image)
        ranking = explorer.rank_methods(upload.path, model, target or None, list(methods or RANK_DEFAULT),
                                        progress_fn(progress))
        folder = new_output_folder(ctx.outputs_dir)
        gallery = [(picture(folder, ranking, r), fmt.rank_caption(i + 1, r))
                   for i, r in enumerate(ranking.sorted("deletion"))]
        return gallery, ranking.to_json("deletion")

    with gr.Row():
        with gr.Column(scale=1):
            image = safe_image_input(label="Image", elem_id="rank-image", height=260)
            model = gr.Dropdown(ctx.model_choices, value=ctx.default_model, label="Model", elem_id="rank-model")
            target = gr.Dropdown([""] + ctx.class_choices, value="", label="Target class (blank: top-1)",
                                 allow_custom_value=True, filterable=True)
            methods = gr.CheckboxGroup(choices(ctx.default_model), value=list(QUICK), elem_id="rank-methods",
                                       label="Methods (cost of one map, in passes; each score adds about 50 "
                                             "forwards and ROAD's imputation)")
            every = gr.Button("Tick every method", size="sm", elem_id="rank-all")
            by = gr.Radio(SORT_CHOICES, value="deletion", label="Sort by", elem_id="rank-sort")
            with gr.Row():
                go = gr.Button("Rank methods", variant="primary", elem_id="rank-button")
                stop = gr.Button("Stop", variant="stop", elem_id="rank-stop")
            estimate = gr.Markdown(elem_id="rank-estimate", elem_classes="rde-estimate")
        with gr.Column(scale=2):
            info = gr.Markdown(f"Each method's map is scored for faithfulness: {fmt.FAITHFULNESS_NOTE} per map.",
                               elem_id="rank-info")
            gallery = gr.Gallery(label="Maps, best first", columns=3, height="auto", elem_id="rank-gallery")
            table = gr.Dataframe(label="Scores", interactive=False, elem_id="rank-table", wrap=True, pinned_columns=1,
                                 column_widths=fmt.RANK_COLUMN_WIDTHS)  # fixed widths: ui/format.py says why
            curves = gr.Plot(label="Deletion and insertion curves, every method", elem_id="rank-curves",
                             elem_classes="rde-when-filled")  # hidden until a run fills it (ui/app.py)
            data = data_files("rank-chart-data")
    state = gr.State()
    gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png")], inputs=[image])
    outs = [gallery, table, info, curves, data, state]
    def cost(image, model, target=None, methods=None, by=None):
        return explorer.rank_estimate(model, list(methods or RANK_DEFAULT))

    event = long_event(ctx.guard, go.click, ui_rank, [image, model, target, methods, by], outs, cost=cost,
                       message=info, stop=stop, api_visibility="private",
                       stopped="The methods scored before Stop stay shown, best first; the rest were not run.")

    @runs_no_model
    def ui_estimate(model, methods) -> str:
        """What Rank methods will cost here, before pressing it."""
        everything = fmt.estimate_markdown(explorer.rank_estimate(model, list(METHODS)), explorer.device,
                                           ctx.guard.limits)
        every_text = f"\n\nEvery method ({len(METHODS)}, 'Tick every method'): {everything[0].lower()}{everything[1:]}"
        if not methods:
            return "Tick at least one method to rank." + every_text
        chosen = fmt.estimate_markdown(explorer.rank_estimate(model, list(methods)), explorer.device, ctx.guard.limits)
        return chosen + ("" if len(set(methods)) == len(METHODS) else every_text)

    for trigger in (model.change, methods.change, event.then, ctx.demo.load):
        trigger(ui_estimate, [model, methods], [estimate], api_visibility="private", show_progress="hidden")
    every.click(runs_no_model(lambda: gr.CheckboxGroup(value=list(METHODS))), None, [methods], api_visibility="private",
                show_progress="hidden")
    by.change(ui_resort, [state, by], [gallery, table, info, curves, data], api_visibility="private",
              show_progress="hidden")
    # Score-CAM's label counts its forwards for the model picked: 514 on ResNet-18, 2050 on ResNet-50.
    model.change(runs_no_model(lambda m, v: gr.CheckboxGroup(choices=choices(m), value=v)), [model, methods], [methods],
                 api_visibility="private", show_progress="hidden")
    # The public endpoint /rank_methods(image, model, target, methods).
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_rank, [image, model, target, methods], [gallery, api_json],
               cost=cost, api_name="rank_methods")
