"""Compare depths: every depth on one image, maps on a shared scale; the ``/compare`` endpoint."""

from __future__ import annotations

import gradio as gr

from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.render import COLORMAPS, Scale, overlay_crop, save_jpeg
from zoo.features.classify import map_estimate
from zoo.service import Comparison

from .. import format as fmt
from ..common import (EXAMPLES, Context, Upload, carry_image, gpu, new_output_folder, progress_fn, require_image,
                      safe_image_input, user_errors)
from ..guard import cached_example, long_event, runs_no_model
from ..spaces import example_caching
from ..plots import csv_files, data_files, faithfulness_curves, map_agreement_heatmap

TITLE = "Compare depths"
CLASSIFY_TAB = "Classify & explain"  # that tab's id (build_app gives each tab its TITLE as id)


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer

    def cost(image, models=None, method="cam", target=None, cmap=None, alpha=None, shared=None, score=False):
        """The estimate of one comparison (the page's figure, the ceiling's, ZeroGPU's)."""
        return map_estimate(explorer, list(models or ctx.depth_names), method, None, bool(score))

    @gpu(cost=lambda image, models, method, target, progress=None, score=False: cost(image, models, method,
                                                                                     score=score))
    def run_compare(image: Upload | None, models, method, target, progress, score: bool = False) -> Comparison:
        upload = require_image(image)
        return explorer.compare(upload.path, list(models or ctx.depth_names), method, target or None,
                                progress=progress_fn(progress), faithfulness=bool(score))

    def render_scores(cmp: Comparison):
        """A row per depth and every depth's curves on one plot; hidden when not asked for."""
        rows = fmt.faithfulness_table(cmp)
        if not rows:
            return gr.Dataframe(value=None, visible=False), None
        curves = [(r.run.model, r.faithfulness) for r in cmp.results]
        return (gr.Dataframe(value=rows, headers=fmt.FAITHFULNESS_HEADERS, visible=True),
                faithfulness_curves(curves, cmp.target_label, name=f"compare-curves-{cmp.target}"))

    def render_compare(cmp: Comparison, cmap: str, alpha: float, shared: bool):
        scale = Scale.of(*[r.explanation.raw for r in cmp.results]) if shared else None
        signed = METHODS[cmp.results[0].method].signed  # diverging colours centred on 0 (zoo.render.map_style)
        folder = new_output_folder(ctx.outputs_dir)
        gallery = [(str(save_jpeg(overlay_crop(r.run, r.explanation.raw, cmap, alpha, scale, size=320, signed=signed),
                                 folder / f"{r.run.model}-{cmp.target}.jpg")),
                    # Short: the top-1s are in the table and the times in the text above.
                    f"{r.run.model} · p({cmp.target_label}) = {r.explanation.target.prob:.2f}"
                    + (" · flat map (see the text)" if r.explanation.notes else ""))
                   for r in cmp.results]
        # Fixed widths, cells wrapped between words: five depths in view at 1400 px; on a phone
        # the table scrolls sideways with the rank pinned (ui/format.py says why not percentages).
        table = gr.Dataframe(value=fmt.compare_table(cmp), headers=["rank"] + [r.run.model for r in cmp.results],
                             column_widths=fmt.compare_column_widths(len(cmp.results)))
        return gallery, table, fmt.agreement_markdown(cmp)

    def render_map_agreement(cmp: Comparison):
        """Do the depths look at the same place: a sentence and the depth x depth heatmap."""
        m = cmp.map_agreement.to_json()
        return fmt.map_agreement_markdown(cmp), map_agreement_heatmap(m["models"], m["spearman"], m["iou_top20"])

    @user_errors
    def ui_compare(image, models, method, target, cmap, alpha, shared, score, progress=gr.Progress()):
        cmp = run_compare(image, models, method, target, progress, score)
        scores, agreement = render_scores(cmp), render_map_agreement(cmp)
        # The data of both charts as CSV (each chart's camera icon saves its PNG).
        data = csv_files([scores[1], agreement[1]], new_output_folder(ctx.outputs_dir))
        return (*render_compare(cmp, cmap, alpha, shared), *scores, *agreement, cmp, data)

    @runs_no_model
    def ui_estimate(models, method, score) -> str:
        """What pressing Compare will cost here, before pressing it."""
        try:
            return fmt.estimate_markdown(cost(None, models, method, score=score), explorer.device, ctx.guard.limits)
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
                                   column_widths=fmt.compare_column_widths(len(ctx.depth_names)),
                                   elem_id="compare-table")
            c_maps_text = gr.Markdown(elem_id="map-agreement")
            # Plotly (ui/plots.py): hover a cell for the two depths, ρ and IoU.
            c_maps_plot = gr.Plot(label="Map agreement between depths", elem_id="map-agreement-plot")
            c_faith = gr.Dataframe(label="Faithfulness of each depth's map, for the shared class", interactive=False,
                                   visible=False, elem_id="compare-faithfulness", wrap=True, pinned_columns=1,
                                   column_widths=fmt.FAITHFULNESS_COLUMN_WIDTHS)
            # Hidden until scoring fills it (rde-when-filled, ui/app.py).
            c_faith_plot = gr.Plot(label="Deletion and insertion curves, every depth", elem_id="compare-curves",
                                   elem_classes="rde-when-filled")
            c_data = data_files("compare-chart-data")
    c_state = gr.State()

    @user_errors
    @cached_example
    def ui_compare_example(image, progress=gr.Progress()):
        """An example's result at the tab's defaults; gradio caches it (ui/spaces.py says when)."""
        gallery, _, text, _, _, _, _, cmp, _ = ui_compare(image, ctx.depth_names, "cam", "", "jet", 0.5, True, False,
                                                       progress)
        text += "\n\n*A cached example result: change the settings and press Compare to run it again.*"
        # The table as a plain value (gradio's cache stores values, not component updates);
        # no state (a cached result cannot be re-rendered); the controls that gradio's cache
        # restores faithfully are reset to what produced the result (it returns lists and
        # booleans as strings, so the model boxes and the shared-scale box are left alone).
        table = {"headers": ["rank"] + [r.run.model for r in cmp.results], "data": fmt.compare_table(cmp)}
        return gallery, table, text, None, "cam", "", "jet", 0.5

    with examples_slot:
        gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "rocket.jpg")], inputs=[c_image],
                    fn=ui_compare_example, outputs=[c_gallery, c_table, c_text, c_state, c_method, c_target, c_cmap,
                                                    c_alpha],
                    api_name="compare_example", elem_id="compare-examples", **example_caching())
    c_outs = [c_gallery, c_table, c_text, c_faith, c_faith_plot, c_maps_text, c_maps_plot, c_state, c_data]
    run = long_event(ctx.guard, c_go.click, ui_compare,
                     [c_image, c_models, c_method, c_target, c_cmap, c_alpha, c_shared, c_score], c_outs,
                     cost=cost, message=c_text, stop=c_stop, api_visibility="private")
    cost_ins = [c_models, c_method, c_score]
    for ctl in cost_ins:
        ctl.change(ui_estimate, cost_ins, [c_estimate], api_visibility="private", show_progress="hidden")
    run.then(ui_estimate, cost_ins, [c_estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, cost_ins, [c_estimate], api_visibility="private", show_progress="hidden")
    # The image goes both ways between Classify & explain and here; Compare runs at once.
    tabs, c_image_classify = ctx.components.get("tabs"), ctx.components.get("classify.image")
    if tabs is not None and c_image_classify is not None:
        # The method and the target class go along both ways (both tabs offer the same choices).
        method, target = ctx.components["classify.method"], ctx.components["classify.target"]
        carry_image(ctx.components["classify.to_compare"], c_image_classify, c_image, tabs, TITLE,
                    press="compare-button", also=[(method, c_method), (target, c_target)])
        carry_image(c_to_classify, c_image, c_image_classify, tabs, CLASSIFY_TAB, press="classify-button",
                    also=[(c_method, method), (c_target, target)])
    for ctl in (c_cmap, c_alpha, c_shared):
        ctl.change(ui_compare_rerender, [c_state, c_cmap, c_alpha, c_shared], [c_gallery, c_table, c_text],
                   api_visibility="private", show_progress="hidden")
    # The public endpoint /compare(image): every built-in depth, CAM, consensus class.
    c_json = gr.JSON(visible=False)
    c_api = gr.Button(visible=False)
    long_event(ctx.guard, c_api.click, api_compare, [c_image], [c_gallery, c_table, c_text, c_json], cost=cost,
               api_name="compare")
