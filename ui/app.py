"""The Gradio app: classify & explain, compare depths, the model zoo, about.

Turns user input into calls of ``zoo`` and results into components. No model logic
and no torch here. Shared state is the read-only zoo and the explorer's locked model
cache, both made in ``build_app``; nothing per user lives in module globals.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image

from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.hub import cached_path, fetch_weights
from zoo.models import imagenet_labels, resolve_device
from zoo.render import COLORMAPS, Scale, overlay_crop, overlay_image, raw_figure, save_png
from zoo.service import Explorer, Result
from zoo.stats import NOTES, stage_stats, zoo_row

from . import format as fmt
from .plots import accuracy_vs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_FILE_SIZE = "20mb"
PAPER = "https://arxiv.org/abs/1512.03385"

try:  # Hugging Face ZeroGPU: run the heavy calls on a GPU slice when the Space has one.
    import spaces  # type: ignore[import-not-found]

    gpu: Callable = spaces.GPU
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn


def user_errors(fn: Callable) -> Callable:
    """Show errors a user can cause as a message in the page (and the API), not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZooError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def progress_fn(progress: gr.Progress) -> Callable[[float | None, str], None]:
    return lambda fraction, message: progress(fraction, desc=message)


def safe_image_input(**kwargs: Any) -> gr.Image:
    """An image input whose decoding errors become a clear message.

    Gradio opens the upload with Pillow before our code runs; a non-image would
    otherwise surface as a bare "Error".
    """
    comp = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], **kwargs)
    original = comp.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            name = getattr(payload, "orig_name", None) or "The upload"
            raise gr.Error(f"{name} is not an image we can read ({type(e).__name__}). Use a JPEG, PNG, WebP, "
                           "GIF, BMP or TIFF.", print_exception=False) from None

    comp.preprocess = preprocess  # type: ignore[method-assign]
    return comp


def _require_image(image: Any) -> None:
    if image is None or image == "":
        raise gr.Error("Upload an image first (or pick one of the examples).", print_exception=False)


OUTPUT_MAX_AGE_S = 3600


def _new_output_folder(root: Path) -> Path:
    """A fresh folder for one request's files; folders older than an hour are removed."""
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            pass
    return Path(tempfile.mkdtemp(dir=root))


def build_app(explorer: Explorer) -> gr.Blocks:
    zoo = explorer.zoo
    outputs_dir = Path(tempfile.mkdtemp(prefix="rde-outputs-"))
    model_choices = [(f"{s.name} · {s.depth} layers" + (f" · {s.top1:.1f}% top-1" if s.top1 else ""), s.name)
                     for s in zoo]
    method_choices = [(f"{m.label} — {m.cost}", m.name) for m in METHODS.values()]
    class_choices = [f"{i}: {name}" for i, name in enumerate(imagenet_labels())]
    depth_names = [s.name for s in zoo.builtin_depths]

    def render(result: Result, cmap: str, alpha: float, scale: Scale | None = None) -> tuple[str, str, str]:
        """The three pictures of one result, as PNG files (gradio would re-encode arrays slowly)."""
        raw = result.explanation.raw
        folder = _new_output_folder(outputs_dir)
        stem = f"{result.run.model}-{result.method}-{result.explanation.target.index}"
        crop = save_png(overlay_crop(result.run, raw, cmap, alpha, scale), folder / f"{stem}-overlay.png")
        full = save_png(overlay_image(result.run, raw, cmap, alpha, scale), folder / f"{stem}-photo.png")
        fig = save_png(raw_figure(raw, cmap, scale, f"{result.run.model} · {result.method}"), folder / f"{stem}-raw.png")
        return str(crop), str(full), str(fig)

    def save_raw(result: Result, folder: Path) -> str:
        npy = folder / f"{result.run.model}-{result.method}-{result.explanation.target.index}-raw.npy"
        np.save(npy, result.explanation.raw.astype(np.float32))
        return str(npy)

    @gpu
    def run_one(image: Any, model: str, top_k: int, method: str, target: str | None, progress: gr.Progress,
                window: int = 32, stride: int = 16, steps: int = 32) -> Result:
        _require_image(image)
        params: dict[str, Any] = {}
        if method == "occlusion":
            params = {"window": int(window), "stride": int(stride)}
        elif method == "integrated-gradients":
            params = {"steps": int(steps)}
        return explorer.run(image, model, int(top_k), method, target or None, progress_fn(progress), **params)

    @user_errors
    def ui_classify(image, model, top_k, method, target, cmap, alpha, window, stride, steps,
                    progress=gr.Progress()):
        result = run_one(image, model, top_k, method, target, progress, window, stride, steps)
        crop, full, fig = render(result, cmap, alpha)
        return (fmt.label_dict(result), crop, full, fig, fmt.result_markdown(result),
                [crop, save_raw(result, Path(crop).parent)], result)

    @user_errors
    def ui_rerender(result, cmap, alpha):
        if result is None:
            return gr.skip(), gr.skip(), gr.skip()
        return render(result, cmap, alpha)

    @user_errors
    def api_classify(image, model, top_k, method, target, progress=gr.Progress()):
        """Classify an image with one model and explain its decision."""
        result = run_one(image, model, top_k, method, target, progress)
        crop, full, fig = render(result, "jet", 0.5)
        return fmt.label_dict(result), crop, full, fig, result.to_json()

    @gpu
    def run_compare(image, models, method, target, progress):
        _require_image(image)
        return explorer.compare(image, list(models or depth_names), method, target or None,
                                progress=progress_fn(progress))

    def render_compare(cmp, cmap, alpha, shared):
        scale = Scale.of(*[r.explanation.raw for r in cmp.results]) if shared else None
        folder = _new_output_folder(outputs_dir)
        gallery = [(str(save_png(overlay_crop(r.run, r.explanation.raw, cmap, alpha, scale, size=320),
                                 folder / f"{r.run.model}-{cmp.target}.png")),
                    f"{r.run.model}: {r.run.predictions[0].label} ({r.run.predictions[0].prob * 100:.0f}%) · "
                    f"p({cmp.target_label}) = {r.explanation.target.prob:.2f} · {r.seconds * 1000:.0f} ms")
                   for r in cmp.results]
        table = gr.Dataframe(value=fmt.compare_table(cmp), headers=["rank"] + [r.run.model for r in cmp.results])
        return gallery, table, fmt.agreement_markdown(cmp)

    @user_errors
    def ui_compare(image, models, method, target, cmap, alpha, shared, progress=gr.Progress()):
        cmp = run_compare(image, models, method, target, progress)
        return (*render_compare(cmp, cmap, alpha, shared), cmp)

    @user_errors
    def ui_compare_rerender(cmp, cmap, alpha, shared):
        if cmp is None:
            return gr.skip(), gr.skip(), gr.skip()
        return render_compare(cmp, cmap, alpha, shared)

    @user_errors
    def api_compare(image, progress=gr.Progress()):
        """Classify one image with every depth; CAMs for the class most depths agree on."""
        cmp = run_compare(image, depth_names, "cam", None, progress)
        gallery, table, text = render_compare(cmp, "jet", 0.5, True)
        return gallery, table, text, cmp.to_json()

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

    # delete_cache: gradio drops its copies of served files after an hour, too.
    with gr.Blocks(title="ResNet Depth Explorer", analytics_enabled=False,
                   delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown("# ResNet Depth Explorer\nClassify with an ImageNet ResNet of any depth, see where it looked, "
                    f"and what each depth costs. Device: `{explorer.device}`, precision `{explorer.precision}`.")
        with gr.Tab("Classify & explain"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = safe_image_input(label="Image", elem_id="image-input", height=300)
                    model = gr.Dropdown(model_choices, value="resnet50" if "resnet50" in zoo else zoo.names[0],
                                        label="Model")
                    method = gr.Dropdown(method_choices, value="cam", label="Explanation method")
                    target = gr.Dropdown([""] + class_choices, value="", label="Target class (blank: top-1)",
                                         allow_custom_value=True, filterable=True)
                    top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
                    with gr.Accordion("Display and method settings", open=False):
                        cmap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                        alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity")
                        window = gr.Slider(8, 112, value=32, step=8, label="Occlusion window (px)")
                        stride = gr.Slider(4, 112, value=16, step=4, label="Occlusion stride (px)")
                        steps = gr.Slider(4, 128, value=32, step=4, label="Integrated Gradients steps")
                    go = gr.Button("Classify & explain", variant="primary", elem_id="classify-button")
                with gr.Column(scale=2):
                    labels = gr.Label(label="Predictions", elem_id="predictions")
                    info = gr.Markdown(elem_id="result-info")
                    with gr.Row():
                        crop_view = gr.Image(label="Map on the model's 224×224 crop", elem_id="overlay-crop",
                                             format="png")
                        full_view = gr.Image(label="Map on the whole image (outlined: the crop; hatched: not seen)",
                                             elem_id="overlay-full", format="png")
                    with gr.Row():
                        raw_view = gr.Image(label="Raw map with colour bar", format="png")
                        files = gr.File(label="Downloads: overlay PNG and raw map (.npy)", file_count="multiple")
            state = gr.State()
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")],
                        inputs=[image], label="Examples (credits: examples/CREDITS.md)")
            ins = [image, model, top_k, method, target, cmap, alpha, window, stride, steps]
            go.click(ui_classify, ins, [labels, crop_view, full_view, raw_view, info, files, state],
                     api_visibility="private", concurrency_id="model")
            for ctl in (cmap, alpha):
                ctl.change(ui_rerender, [state, cmap, alpha], [crop_view, full_view, raw_view],
                           api_visibility="private", show_progress="hidden")
            api_json = gr.JSON(visible=False)
            api_button = gr.Button(visible=False)
            api_button.click(api_classify, [image, model, top_k, method, target],
                             [labels, crop_view, full_view, raw_view, api_json], api_name="classify",
                             concurrency_id="model")

        with gr.Tab("Compare depths"):
            with gr.Row():
                with gr.Column(scale=1):
                    c_image = safe_image_input(label="Image", elem_id="compare-image", height=260)
                    c_models = gr.CheckboxGroup(zoo.names,
                                                value=depth_names, label="Models")
                    c_method = gr.Dropdown(method_choices, value="cam", label="Method (CAM is free; others cost "
                                           "one pass or more per model)")
                    c_target = gr.Dropdown([""] + class_choices, value="", allow_custom_value=True, filterable=True,
                                           label="Target class (blank: the class most depths agree on)")
                    c_shared = gr.Checkbox(value=True, label="Shared colour scale (compare magnitudes honestly)")
                    c_cmap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap")
                    c_alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity")
                    c_go = gr.Button("Compare", variant="primary", elem_id="compare-button")
                with gr.Column(scale=2):
                    c_text = gr.Markdown(elem_id="agreement")
                    c_gallery = gr.Gallery(label="Maps per depth, on each model's crop", columns=3, height="auto",
                                           elem_id="compare-gallery")
                    c_table = gr.Dataframe(label="Top-5 per depth", interactive=False)
            c_state = gr.State()
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "rocket.jpg")], inputs=[c_image])
            c_go.click(ui_compare, [c_image, c_models, c_method, c_target, c_cmap, c_alpha, c_shared],
                       [c_gallery, c_table, c_text, c_state], api_visibility="private", concurrency_id="model")
            for ctl in (c_cmap, c_alpha, c_shared):
                ctl.change(ui_compare_rerender, [c_state, c_cmap, c_alpha, c_shared], [c_gallery, c_table, c_text],
                           api_visibility="private", show_progress="hidden")
            c_json = gr.JSON(visible=False)
            c_api = gr.Button(visible=False)
            c_api.click(api_compare, [c_image], [c_gallery, c_table, c_text, c_json], api_name="compare",
                        concurrency_id="model")

        with gr.Tab("Model zoo"):
            gr.Markdown("Measured on the architectures themselves (no weights needed): parameters, multiply-adds "
                        "(MACs, what the paper calls FLOPs) and FLOPs from `torch.utils.flop_counter`, beside the "
                        "paper's Table 1.")
            with gr.Row():
                z_res = gr.Dropdown([160, 224, 320, 448], value=224, label="Input resolution")
                z_stage = gr.Dropdown(zoo.names, value="resnet50" if "resnet50" in zoo else zoo.names[0],
                                      label="Per-stage table for")
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
            demo.load(zoo_tables, z_ins, z_outs, api_visibility="private")

        with gr.Tab("About"):
            gr.Markdown(ABOUT)
    return demo


ABOUT = f"""
### Why depth needed a trick
Stacking more plain layers made networks *worse*, even on the training set: a 56-layer plain net trained
to a higher error than a 20-layer one. This **degradation problem** is not overfitting; deep plain nets are
simply hard to optimise.

### Residual learning
He et al. ([Deep Residual Learning for Image Recognition, 2015]({PAPER})) let each block learn a residual
F(x) and output **F(x) + x** through an identity shortcut. If the best thing a block can do is nothing, it
only has to push F towards zero. With this, 152 layers train well and beat shallower nets, while bottleneck
blocks (1×1, 3×3, 1×1) keep ResNet-50/101/152 cheaper than VGG-16/19.

### Reading the maps
* **CAM**: the network ends in global average pooling and one linear layer, so the class score is exactly
  the mean over a 7×7 map, Σₖ wₖ·fₖ(x, y). Each cell covers a 32×32 patch of the 224×224 crop. Free.
* **Grad-CAM** weighs layer4's channels by gradients instead; **Guided Grad-CAM**, **Saliency**,
  **Integrated Gradients** and **Occlusion** work at pixel level and cost more passes.
* The model sees only a resized **center crop**; the whole-image view outlines it and hatches what the model
  never saw. Use the **shared colour scale** in *Compare depths* to compare magnitudes across depths.

Weights: the original torchvision ImageNet weights, from the Hugging Face Hub as safetensors, pinned and
checked by sha256. Example photos: see `examples/CREDITS.md`.
"""
