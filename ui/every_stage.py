"""Classify & explain's "Every stage" view: the chosen method's maps at layer1 … layer4 side by side.

A section of its own, built at the end of the tab from the tab's own inputs, so that the
tab's main event is untouched. Grad-CAM, XGrad-CAM and Layer-CAM come from one forward
and one backward for all four stages (``zoo.explain.every_stage``); other stage methods
run once per stage, and the estimate says so.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from zoo.errors import ZooError
from zoo.explain import METHODS, ONE_PASS, STAGES
from zoo.render import overlay_crop, save_jpeg

from . import format as fmt
from .common import Context, gpu, new_output_folder, progress_fn, require_image, user_errors
from .guard import long_event, runs_no_model

WHY = ("Earlier stages see small, less abstract features (edges and textures at layer1, 56×56 cells) and later "
       "ones whole parts and objects (layer4, 7×7 cells). Each map is that stage's own evidence for the class, "
       "weighted by the gradient reaching it, so a region can be evidence *for* the class at one stage and not "
       "(or against it) at another: maps can flip between stages without either being wrong.")


def build_section(ctx: Context, image: Any, model: Any, method: Any, target: Any, cmap: Any, alpha: Any) -> None:
    """The accordion, its button, estimate and gallery; wired to the Classify tab's inputs."""
    explorer = ctx.explorer

    @gpu
    def maps(image_, model_, method_, target_, progress):
        upload = require_image(image_)
        return explorer.every_stage(upload.path, model_, method_, target_ or None, progress_fn(progress))

    @user_errors
    def ui_stages(image_, model_, method_, target_, cmap_, alpha_, progress=gr.Progress()):
        run, explanations = maps(image_, model_, method_, target_, progress)
        folder = new_output_folder(ctx.outputs_dir)
        items = []
        for ex in explanations:
            h, w = ex.raw.shape
            path = save_jpeg(overlay_crop(run, ex.raw, cmap_, alpha_, size=320),
                             folder / f"{run.model}-{method_}-{ex.layer}.jpg")
            items.append((str(path), f"{ex.layer} · {h}×{w}"))
        t = explanations[0].target
        how = ("one forward and one backward for all four stages" if method_ in ONE_PASS
               else "one run per stage")
        notes = [f"**Note ({ex.layer}):** {n}" for ex in explanations for n in ex.notes]
        text = "\n\n".join([f"{METHODS[method_].label} for **{t.label}** (class {t.index}) at "
                            f"{', '.join(STAGES)}, each map on its own colour scale; {how}.", *notes])
        return items, text

    @runs_no_model
    def ui_estimate(model_: str, method_: str) -> str:
        try:
            return fmt.estimate_markdown(explorer.every_stage_estimate(model_, method_), explorer.device,
                                         ctx.guard.limits)
        except ZooError as e:  # CAM and the input methods have no map at every stage
            return str(e)

    with gr.Accordion("Every stage: the method's maps at layer1 … layer4 side by side", open=False,
                      elem_id="stages-section"):
        gr.Markdown(WHY)
        with gr.Row():
            go = gr.Button("Show every stage", elem_id="stages-button", scale=0, min_width=200)
            stop = gr.Button("Stop", variant="stop", elem_id="stages-stop", scale=0, min_width=100)
            estimate = gr.Markdown(elem_id="stages-estimate", elem_classes="rde-estimate")
        info = gr.Markdown(elem_id="stages-info")
        gallery = gr.Gallery(label="layer1 … layer4", columns=4, height="auto", object_fit="contain",
                             elem_id="stages-gallery")
    outs = [gallery, info]
    long_event(ctx.guard, go.click, ui_stages, [image, model, method, target, cmap, alpha], outs,
               cost=lambda image_, model_, method_, *rest: explorer.every_stage_estimate(model_, method_),
               message=info, stop=stop, api_visibility="private")
    for ctl in (model, method):
        ctl.change(ui_estimate, [model, method], [estimate], api_visibility="private", show_progress="hidden")
    ctx.demo.load(ui_estimate, [model, method], [estimate], api_visibility="private", show_progress="hidden")
