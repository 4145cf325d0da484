"""What every tab shares: the context, the error wrapper, the image input, progress, output files.

A tab module imports from here and from ``zoo``; it never reaches into another tab.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image

from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.models import imagenet_labels
from zoo.registry import Zoo
from zoo.render import Scale, overlay_crop, overlay_image, raw_figure, save_png
from zoo.service import Explorer, Result

from .spaces import gpu  # noqa: F401  ZeroGPU as documented (ui/spaces.py); tabs import it from here

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_FILE_SIZE = "20mb"
OUTPUT_MAX_AGE_S = 3600


@dataclass(frozen=True)
class Context:
    """What ``build_app`` hands every tab's ``build``: shared, read-only, nothing per user."""

    explorer: Explorer
    demo: gr.Blocks  # the Blocks being built, for page-load events
    outputs_dir: Path  # per-request output folders go under here (see ``new_output_folder``)
    model_choices: list[tuple[str, str]]  # (label, zoo name) for model dropdowns
    method_choices: list[tuple[str, str]]  # (label, method name) for method dropdowns
    class_choices: list[str]  # "index: label" for target-class dropdowns
    depth_names: list[str]  # the built-in depths, resnet18 ... resnet152
    max_batch_images: int = 500  # images per request in the Batch tab (app.py --max-batch-images)
    # Components a tab offers to others (e.g. "tabs", "compare.image"), registered as tabs are
    # built, in TABS order: the Batch tab opens an image in Compare depths through these.
    components: dict[str, Any] = field(default_factory=dict)

    @property
    def zoo(self) -> Zoo:
        return self.explorer.zoo

    @property
    def default_model(self) -> str:
        return "resnet50" if "resnet50" in self.zoo else self.zoo.names[0]

    @classmethod
    def create(cls, explorer: Explorer, demo: gr.Blocks, max_batch_images: int = 500) -> Context:
        zoo = explorer.zoo
        return cls(
            explorer=explorer,
            demo=demo,
            outputs_dir=Path(tempfile.mkdtemp(prefix="rde-outputs-")),
            model_choices=[(f"{s.name} · {s.depth} layers" + (f" · {s.top1:.1f}% top-1" if s.top1 else ""),
                            s.name) for s in zoo],
            method_choices=[(f"{m.label} — {m.cost}", m.name) for m in METHODS.values()],
            class_choices=[f"{i}: {name}" for i, name in enumerate(imagenet_labels())],
            depth_names=[s.name for s in zoo.builtin_depths],
            max_batch_images=max_batch_images,
        )


def user_errors(fn: Callable) -> Callable:
    """Show errors a user can cause as a message in the page (and the API), not a traceback."""
    if inspect.isgeneratorfunction(fn):  # a handler that streams results (and can be stopped between them)
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except ZooError as e:
                raise gr.Error(str(e), print_exception=False) from None

        return stream

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZooError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def progress_fn(progress: gr.Progress) -> Callable[[float | None, str], None]:
    """Adapt gradio's progress bar to zoo's ``(fraction, message)`` callback."""
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


def upload_root() -> Path:
    """Where gradio keeps uploads: ``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def checked_upload(path: Any) -> Path:
    """``path`` resolved, if it is a regular file in gradio's upload folder; else a message.

    A file input's value is a path the client sends; gradio checks it, and this checks
    again so no request can point the app at another file on the server.
    """
    refused = gr.Error("That file is not an upload this app received; upload it again.", print_exception=False)
    try:
        p = Path(os.fspath(path)).resolve(strict=True)
    except (OSError, RuntimeError, TypeError, ValueError):
        raise refused from None
    if not p.is_relative_to(upload_root()) or not p.is_file():
        raise refused
    return p


def require_image(image: Any) -> None:
    if image is None or image == "":
        raise gr.Error("Upload an image first (or pick one of the examples).", print_exception=False)


def new_output_folder(root: Path) -> Path:
    """A fresh folder for one request's files; folders older than an hour are removed."""
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            pass
    return Path(tempfile.mkdtemp(dir=root))


def render_result(ctx: Context, result: Result, cmap: str, alpha: float,
                  scale: Scale | None = None) -> tuple[str, str, str]:
    """The three pictures of one result, as PNG files (gradio would re-encode arrays slowly)."""
    raw = result.explanation.raw
    folder = new_output_folder(ctx.outputs_dir)
    stem = f"{result.run.model}-{result.method}-{result.explanation.target.index}"
    crop = save_png(overlay_crop(result.run, raw, cmap, alpha, scale), folder / f"{stem}-overlay.png")
    full = save_png(overlay_image(result.run, raw, cmap, alpha, scale), folder / f"{stem}-photo.png")
    fig = save_png(raw_figure(raw, cmap, scale, f"{result.run.model} · {result.method}"), folder / f"{stem}-raw.png")
    return str(crop), str(full), str(fig)


def save_raw(result: Result, folder: Path) -> str:
    """The raw map as ``.npy`` beside the result's pictures, for download."""
    npy = folder / f"{result.run.model}-{result.method}-{result.explanation.target.index}-raw.npy"
    np.save(npy, result.explanation.raw.astype(np.float32))
    return str(npy)
