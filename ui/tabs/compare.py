"""Compare depths: every depth on one image, maps on a shared scale; the ``/compare`` endpoint."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from zoo.errors import ZooError
from zoo.features import compare
from zoo.features.compare import Comparison
from zoo.render import COLORMAPS

from .. import format as fmt
from ..views import compare as views
from ..common import (EXAMPLES, Context, Upload, carry_image, gpu, new_output_folder, progress_fn, require_image,
                      safe_image_input, user_errors)
from ..guard import cached_example, long_event, runs_no_model
from ..spaces import example_caching
from ..charts import csv_files, data_files

TITLE = "Compare depths"
CLASSIFY_TAB = "Classify & explain"  # that tab's id (build_app gives each tab its TITLE as id)


def render_scores(cmp: Comparison) -> tuple:
    """A row per depth and every depth's curves on one plot; hidden when not asked for."""
    rows, curves = views.scores(cmp)
    if not rows:
        return gr.Dataframe(value=None, visible=False), None
    return gr.Dataframe(value=rows, headers=views.FAITHFULNESS_HEADERS, visible=True), curves


def render_transfer(cmp: Comparison) -> tuple:
    """The evidence-transfer reading and heatmap; both hidden when not asked for."""
    text, heatmap = views.transfer(cmp)
    return gr.Markdown(value=text, visible=bool(text)), heatmap


def handlers(ctx: Context) -> SimpleNamespace:
    """The tab's handlers and its cost callback, built on the tab's one request."""
    rt = ctx.rt

    def request(image: Upload | None, models, method="cam", target=None, score=False,
                transfer=False) -> compare.Request:
        """The tab's one request: the handler runs it, the cost callback prices it (image None: pricing)."""
        return compare.Request.create(rt, getattr(image, "path", image), list(models or ctx.depth_names),
                                      method, target, faithfulness=bool(score), transfer=bool(transfer))

    def cost(image, models=None, method="cam", target=None, cmap=None, alpha=None, shared=None, score=False,
             transfer=False):
        """The estimate of one comparison (the page's figure, the ceiling's, ZeroGPU's)."""
        return compare.estimate(rt, request(image, models, method, target, score, transfer))

    @gpu(cost=lambda image, models, method, target, progress=None, score=False, transfer=False: cost(
        image, models, method, target, score=score, transfer=transfer))
    def run_compare(image: Upload | None, models, method, target, progress, score: bool = False,
                    transfer: bool = False) -> Comparison:
        return compare.result(rt, request(require_image(image), models, method, target, score, transfer),
                              progress_fn(progress))

    def render_compare(cmp: Comparison, cmap: str, alpha: float, shared: bool):
        gallery = views.gallery(cmp, cmap, alpha, shared, new_output_folder(ctx.outputs_dir))
        # Fixed widths, cells wrapped between words: five depths in view at 1400 px; on a phone
        # the table scrolls sideways with the rank pinned (ui/format.py says why not percentages).
        table = gr.Dataframe(value=views.compare_table(cmp), headers=views.top5_headers(cmp),
                             column_widths=views.compare_column_widths(len(cmp.results)))
        return gallery, table, views.agreement_markdown(cmp)

    @user_errors
    def ui_compare(image, models, method, target, cmap, alpha, shared, score, transfer=False,
                   progress=gr.Progress()):
        cmp = run_compare(image, models, method, target, progress, score, transfer)
        scores, agreement, moved = render_scores(cmp), views.map_agreement(cmp), render_transfer(cmp)
        # The data of the charts as CSV (each chart's camera icon saves its PNG).
        data = csv_files([scores[1], agreement[1], moved[1]], new_output_folder(ctx.outputs_dir))
        return (*render_compare(cmp, cmap, alpha, shared), *scores, *agreement, *moved, cmp, data)

    @runs_no_model
    def ui_estimate(models, method, score, transfer=False) -> str:
        """What pressing Compare will cost here, before pressing it."""
        try:
            return fmt.estimate_markdown(cost(None, models, method, score=score, transfer=transfer), rt.device,
                                         ctx.guard.limits)
        except ZooError as e:
            return str(e)

    @runs_no_model
    @user_errors
    def ui_compare_rerender(cmp, cmap, alpha, shared):
        if cmp is None:
            return gr.skip(), gr.skip(), gr.skip()
        return render_compare(cmp, cmap, alpha, shared)

    @user_errors
    def api_compare(image, progress=gr.Progress()):
        """Classify one image with every depth; CAMs for the class most depths agree on."""
        cmp = run_compare(image, ctx.depth_names, "cam", None, progress)
        gallery, table, text = render_compare(cmp, "jet", 0.5, True)
        return gallery, table, text, cmp.to_json()

    @user_errors
    @cached_example
    def ui_compare_example(image, progress=gr.Progress()):
        """An example's result at the tab's defaults; gradio caches it (ui/spaces.py says when)."""
        gallery, _, text, *_, cmp, _ = ui_compare(image, ctx.depth_names, "cam", "", "jet", 0.5, True, False,
                                                  False, progress)
        text += "\n\n*A cached example result: change the settings and press Compare to run it again.*"
        # The table as a plain value (gradio's cache stores values, not component updates);
        # no state (a cached result cannot be re-rendered); the controls that gradio's cache
        # restores faithfully are reset to what produced the result (it returns lists and
        # booleans as strings, so the model boxes and the shared-scale box are left alone).
        table = views.cached_table(cmp)
        return gallery, table, text, None, "cam", "", "jet", 0.5

    return SimpleNamespace(cost=cost, ui_compare=ui_compare, ui_estimate=ui_estimate, api_compare=api_compare,
                           ui_compare_rerender=ui_compare_rerender, ui_compare_example=ui_compare_example)


def layout(ctx: Context) -> SimpleNamespace:
    """The tab's components (each ``c_*``), laid out; no events."""
    with gr.Row():
        with gr.Column(scale=1):
            c_image = safe_image_input(label="Image", elem_id="compare-image", height=260)
            examples_slot = gr.Column()  # the examples, under the image (filled in below)
            ctx.components["compare.image"] = c_image  # the Batch tab opens images here
            c_models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Models", elem_id="compare-models")
            c_method = gr.Dropdown(ctx.method_choices, value="cam", label="Method", elem_id="compare-method",
                                   info="CAM is free; what the others cost shows under the buttons.")
            c_target = gr.Dropdown([""] + ctx.class_choices, value="", allow_custom_value=True, filterable=True,
                                   label="Target class (blank: the class most depths agree on)",
                                   elem_id="compare-target")
            c_shared = gr.Checkbox(value=True, label="Shared colour scale (compare magnitudes honestly)")
            c_score = gr.Checkbox(value=False, elem_id="compare-score",
                                  label="Score each depth's map (deletion: lower is better; insertion and ROAD: "
                                        "higher is better; costs about 50 forwards per depth and ROAD's "
                                        "imputation)")
            c_transfer = gr.Checkbox(value=False, elem_id="compare-transfer",
                                     label="Evidence transfer: delete pixels by each depth's map and watch every "
                                           "other depth's confidence (costs about 40 forwards per pair of depths)")
            c_cmap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
            c_alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity")
            with gr.Row():
                c_go = gr.Button("Compare", variant="primary", elem_id="compare-button")
                c_stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
            c_estimate = gr.Markdown(elem_id="compare-estimate", elem_classes="rde-estimate")
            c_to_classify = gr.Button("Classify & explain this image", size="sm", elem_id="compare-to-classify")
        with gr.Column(scale=2):
            c_text = gr.Markdown(elem_id="agreement")
            c_gallery = gr.Gallery(label="Maps per depth, on each model's crop", columns=3, height="auto",
                                   elem_id="compare-gallery")
            # Wrapped cells: all five depths fit at desktop width; on a phone the table scrolls
            # sideways with the rank column pinned.
            c_table = gr.Dataframe(label="Top-5 per depth", interactive=False, wrap=True, pinned_columns=1,
                                   column_widths=views.compare_column_widths(len(ctx.depth_names)),
                                   elem_id="compare-table")
            c_maps_text = gr.Markdown(elem_id="map-agreement")
            # Plotly (ui/charts.py): hover a cell for the two depths, ρ and IoU.
            c_maps_plot = gr.Plot(label="Map agreement between depths", elem_id="map-agreement-plot")
            c_faith = gr.Dataframe(label="Faithfulness of each depth's map, for the shared class", interactive=False,
                                   visible=False, elem_id="compare-faithfulness", wrap=True, pinned_columns=1,
                                   column_widths=views.FAITHFULNESS_COLUMN_WIDTHS)
            # Hidden until scoring fills it (rde-when-filled, ui/app.py).
            c_faith_plot = gr.Plot(label="Deletion and insertion curves, every depth", elem_id="compare-curves",
                                   elem_classes="rde-when-filled")
            # Both hidden until a run with evidence transfer fills them.
            c_transfer_text = gr.Markdown(visible=False, elem_id="compare-transfer-text")
            c_transfer_plot = gr.Plot(label="Evidence transfer between depths", elem_id="compare-transfer-plot",
                                      elem_classes="rde-when-filled")
            c_data = data_files("compare-chart-data")
    c_state = gr.State()
    # Every component above by its variable name (c.c_image, ...), for build's wiring.
    return SimpleNamespace(**{k: v for k, v in locals().items() if k.startswith("c_") or k == "examples_slot"})


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    h, c = handlers(ctx), layout(ctx)
    with c.examples_slot:
        gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "rocket.jpg")], inputs=[c.c_image],
                    fn=h.ui_compare_example, outputs=[c.c_gallery, c.c_table, c.c_text, c.c_state, c.c_method,
                                                      c.c_target, c.c_cmap, c.c_alpha],
                    api_name="compare_example", elem_id="compare-examples", **example_caching())
    outs = [c.c_gallery, c.c_table, c.c_text, c.c_faith, c.c_faith_plot, c.c_maps_text, c.c_maps_plot,
            c.c_transfer_text, c.c_transfer_plot, c.c_state, c.c_data]
    run = long_event(ctx.guard, c.c_go.click, h.ui_compare,
                     [c.c_image, c.c_models, c.c_method, c.c_target, c.c_cmap, c.c_alpha, c.c_shared, c.c_score,
                      c.c_transfer], outs, cost=h.cost, message=c.c_text, stop=c.c_stop, api_visibility="private")
    cost_ins = [c.c_models, c.c_method, c.c_score, c.c_transfer]
    for event in [ctl.change for ctl in cost_ins] + [run.then, ctx.demo.load]:
        event(h.ui_estimate, cost_ins, [c.c_estimate], api_visibility="private", show_progress="hidden")
    # The image goes both ways between Classify & explain and here; Compare runs at once.
    tabs, image_classify = ctx.components.get("tabs"), ctx.components.get("classify.image")
    if tabs is not None and image_classify is not None:
        # The method and the target class go along both ways (both tabs offer the same choices).
        method, target = ctx.components["classify.method"], ctx.components["classify.target"]
        carry_image(ctx.components["classify.to_compare"], image_classify, c.c_image, tabs, TITLE,
                    press="compare-button", also=[(method, c.c_method), (target, c.c_target)])
        carry_image(c.c_to_classify, c.c_image, image_classify, tabs, CLASSIFY_TAB, press="classify-button",
                    also=[(c.c_method, method), (c.c_target, target)])
    for ctl in (c.c_cmap, c.c_alpha, c.c_shared):
        ctl.change(h.ui_compare_rerender, [c.c_state, c.c_cmap, c.c_alpha, c.c_shared],
                   [c.c_gallery, c.c_table, c.c_text], api_visibility="private", show_progress="hidden")
    # The public endpoint /compare(image): every built-in depth, CAM, consensus class.
    api_json = gr.JSON(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, h.api_compare, [c.c_image], [c.c_gallery, c.c_table, c.c_text, api_json],
               cost=h.cost, api_name="compare")
