"""Model zoo: measured cost beside the paper's Table 1, latency, accuracy plots, downloads."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from zoo.hub import cached_path, fetch_weights
from zoo.models import resolve_device
from zoo.stats import NOTES, stage_stats, zoo_row

from .. import format as fmt
from ..common import Context, progress_fn, user_errors
from ..plots import accuracy_vs

TITLE = "Model zoo"


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer, zoo = ctx.explorer, ctx.zoo

    def zoo_tables(resolution: int, stage_model: str, latency: bool, progress=gr.Progress()):
        device = resolve_device(explorer.device) if latency else None
        rows = []
        for i, spec in enumerate(zoo):
            if latency:
                progress(i / len(zoo), desc=f"Timing {spec.name} on {device}")
            rows.append(zoo_row(spec, int(resolution), device))
        cached = {s.name: cached_path(s) is not None for s in zoo}
        spec = zoo.get(stage_model)
        stages = stage_stats(spec.arch.name, int(resolution), spec.num_classes)
        return (gr.Dataframe(value=fmt.zoo_table(rows, cached), headers=fmt.ZOO_HEADERS),
                gr.Dataframe(value=fmt.stage_table(stages), headers=fmt.STAGE_HEADERS),
                accuracy_vs(rows, "macs"), accuracy_vs(rows, "latency") if latency else None)

    @user_errors
    def ui_download(names, progress=gr.Progress()):
        done = []
        for name in names or []:
            path = fetch_weights(zoo.get(name), progress=progress_fn(progress))
            done.append(f"{name}: {Path(path).stat().st_size / 1e6:.0f} MB, verified")
        return "\n\n".join(done) or "Pick at least one model."

    gr.Markdown("Measured on the architectures themselves (no weights needed): parameters, multiply-adds "
                "(MACs, what the paper calls FLOPs) and FLOPs from `torch.utils.flop_counter`, beside the "
                "paper's Table 1.")
    with gr.Row():
        z_res = gr.Dropdown([160, 224, 320, 448], value=224, label="Input resolution")
        z_stage = gr.Dropdown(zoo.names, value=ctx.default_model, label="Per-stage table for")
        z_lat = gr.Checkbox(value=False, label=f"Measure latency on {explorer.device} (takes a while)")
        z_go = gr.Button("Refresh")
    z_table = gr.Dataframe(headers=fmt.ZOO_HEADERS, interactive=False, elem_id="zoo-table")
    z_stages = gr.Dataframe(headers=fmt.STAGE_HEADERS, interactive=False, label="Per stage (paper Table 1)")
    with gr.Row():
        z_plot_macs = gr.Plot(label="Top-1 vs multiply-adds")
        z_plot_lat = gr.Plot(label="Top-1 vs latency (tick 'Measure latency')")
    gr.Markdown("\n".join(f"* {n}" for n in NOTES))
    with gr.Row():
        z_dl = gr.CheckboxGroup(zoo.names, label="Download weights (verified, cached)")
        z_dl_go = gr.Button("Download")
    z_dl_out = gr.Markdown()
    z_ins = [z_res, z_stage, z_lat]
    z_outs = [z_table, z_stages, z_plot_macs, z_plot_lat]
    z_go.click(zoo_tables, z_ins, z_outs, api_visibility="private")
    z_stage.change(zoo_tables, z_ins, z_outs, api_visibility="private")
    z_res.change(zoo_tables, z_ins, z_outs, api_visibility="private")
    z_dl_go.click(ui_download, [z_dl], [z_dl_out], api_visibility="private").then(
        zoo_tables, z_ins, z_outs, api_visibility="private")
    ctx.demo.load(zoo_tables, z_ins, z_outs, api_visibility="private")
