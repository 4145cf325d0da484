"""What every tab shares: the context, the error wrapper, the image input, progress, output files.

A tab module imports from here and from ``zoo``; it never reaches into another tab.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import gradio as gr
import numpy as np

from zoo.explain import METHODS, value_unit
from zoo.models import imagenet_labels
from zoo.registry import Zoo
from zoo.render import Scale, overlay_crop, overlay_image, raw_figure, save_jpeg, save_png
from zoo.features.classify import Result
from zoo.runtime import Runtime

from .errors import Upload, user_errors  # noqa: F401  (tabs import them from here)
from .guard import Guard, runs_no_model, show_progress
from .spaces import gpu  # noqa: F401  ZeroGPU as documented (ui/spaces.py); tabs import it from here

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_FILE_SIZE = "20mb"  # gradio's upload route refuses larger files (``launch(max_file_size=...)``)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the same limit in bytes (gradio's MB is 1024 * 1024)
# Files a request wrote (pictures, downloads) and uploads are kept this long, then removed:
# long enough to download a result or re-render it, short enough to bound the disk.
OUTPUT_MAX_AGE_S = 900
CACHE_SWEEP_S = 300  # how often old files are looked for


@dataclass(frozen=True)
class Context:
    """What ``build_app`` hands every tab's ``build``: shared, read-only, nothing per user."""

    rt: Runtime
    demo: gr.Blocks  # the Blocks being built, for page-load events
    outputs: tempfile.TemporaryDirectory  # removed when the process exits (its finalizer runs at exit)
    model_choices: list[tuple[str, str]]  # (label, zoo name) for model dropdowns
    method_choices: list[tuple[str, str]]  # (label, method name) for method dropdowns
    class_choices: list[str]  # "index: label" for target-class dropdowns
    depth_names: list[str]  # the built-in depths, resnet18 ... resnet152
    guard: Guard  # the gate, worker threads and upload budget every long event goes through (ui/guard.py)
    max_batch_images: int = 500  # images per request in the Batch tab (app.py --max-batch-images)
    # Components a tab offers to others (e.g. "tabs", "compare.image"), registered as tabs are
    # built, in TABS order: the Batch tab opens an image in Compare depths through these.
    components: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs_dir(self) -> Path:
        """Per-request output folders go under here (see ``new_output_folder``)."""
        return Path(self.outputs.name)

    @property
    def zoo(self) -> Zoo:
        return self.rt.zoo

    @property
    def default_model(self) -> str:
        return "resnet50" if "resnet50" in self.zoo else self.zoo.names[0]

    @classmethod
    def create(cls, rt: Runtime, demo: gr.Blocks, max_batch_images: int = 500,
               guard: Guard | None = None) -> Context:
        zoo = rt.zoo
        guard = guard or Guard.create()
        guard.demo = demo
        return cls(
            rt=rt,
            demo=demo,
            outputs=tempfile.TemporaryDirectory(prefix="rde-outputs-"),
            model_choices=[(f"{s.name} · {s.depth} layers" + (f" · {s.top1:.1f}% top-1" if s.top1 else ""),
                            s.name) for s in zoo],
            # Names only: the cost would be cut off in the box; the estimate under the buttons says it.
            method_choices=[(m.label, m.name) for m in METHODS.values()],
            class_choices=[f"{i}: {name}" for i, name in enumerate(imagenet_labels())],
            depth_names=[s.name for s in zoo.builtin_depths],
            guard=guard,
            max_batch_images=max_batch_images,
        )


UPLOAD_REFUSED = ("This app only accepts images uploaded to it (with the page's image box, or gradio_client's "
                  "handle_file). Upload the image, then try again.")


def _refuse() -> NoReturn:
    # One message for every refused payload: it must not tell a missing file from a
    # directory, a pipe or a file outside the upload folder.
    raise gr.Error(UPLOAD_REFUSED, print_exception=False)


def display_name(orig_name: str | None, path: str) -> str:
    """The name to show for an upload: the visitor's own file name, never a server folder."""
    name = "".join(c for c in Path(orig_name or path).name if c.isprintable())[:120]
    return name or "the image"


def checked_upload(payload: Any, upload_folder: str) -> Upload | None:
    """The file of an image payload, if gradio's upload route wrote it; never opens anything.

    Gradio checks a payload's path only when the payload carries ``meta``, so a raw
    REST call could name any path (a secret file, a FIFO, ``/proc/self/fd/N``), and a
    ``data:`` URL would be decoded by gradio outside the upload size limit. Here every
    payload must name a regular file inside the upload folder, symlinks resolved.
    """
    if payload is None:
        return None
    path, url = getattr(payload, "path", None), getattr(payload, "url", None)
    if not isinstance(path, str) or not path or (isinstance(url, str) and url.startswith("data:")):
        _refuse()
    try:
        real = os.path.realpath(path)
        root = os.path.realpath(upload_folder)
        inside = os.path.commonpath([real, root]) == root
        # stat, not open: opening a FIFO (or a pipe's /proc/self/fd/N) blocks until a writer comes.
        st = os.stat(real) if inside else None
    except (OSError, ValueError):  # missing, unreadable, a NUL byte in the path, ...
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        _refuse()
    name = display_name(getattr(payload, "orig_name", None), real)
    if st.st_size > MAX_UPLOAD_BYTES:  # e.g. fetched by gradio from a URL: no upload limit applied
        raise gr.Error(f"{name} is larger than {MAX_FILE_SIZE}.", print_exception=False)
    return Upload(real, name)


def progress_fn(progress: gr.Progress) -> Callable[[float | None, str], None]:
    """Adapt gradio's progress bar to zoo's ``(fraction, message)`` callback (``show_progress``)."""
    return functools.partial(show_progress, progress)


class UploadedImage(gr.Image):
    """``gr.Image`` whose handler gets a checked ``Upload`` (or None), never pixels.

    Gradio's own preprocessing would open any path a raw call names and decode the
    image (every frame of a GIF, converted to RGB) before our decoder could refuse it
    or note what it changed. Here the handler gets the checked file and passes
    ``upload.path`` to ``zoo``, which decodes it exactly as the CLI does.

    A subclass, not a patched instance: gradio rebuilds a component from its class
    (``block.__class__(**args)``) when an event such as an example click updates it,
    and that copy would run gradio's preprocessing again.
    """

    is_template = True  # drawn in the page as gradio's own "image" component

    def preprocess(self, payload: Any) -> Upload | None:  # type: ignore[override]
        # GRADIO_CACHE is where gradio's upload route (and its copies of the examples) write.
        return checked_upload(payload, self.GRADIO_CACHE)


def safe_image_input(**kwargs: Any) -> UploadedImage:
    """The image input every tab uses (see ``UploadedImage``)."""
    return UploadedImage(type="filepath", sources=["upload", "webcam", "clipboard"], **kwargs)


def press_js(elem_id: str) -> str:
    """Browser code that presses the button ``elem_id`` once it exists.

    Gradio renders a tab's contents when the tab is first shown, so after switching tabs
    the button may not be there yet: wait for it (up to 10 s).
    """
    return f"""() => {{
  let tries = 0;
  const timer = setInterval(() => {{
    const button = document.querySelector('#{elem_id}');
    if (button || ++tries > 100) {{ clearInterval(timer); if (button) setTimeout(() => button.click(), 300); }}
  }}, 100);
}}"""


def about(title: str, text: str, open: bool = False) -> None:
    """A tab's explanation above its inputs, in an accordion (closed unless ``open``)."""
    with gr.Accordion(title, open=open):
        gr.Markdown(text)


def image_with_examples(elem_id: str, examples: Sequence[str], height: int = 260) -> UploadedImage:
    """A tab's image input with, under it, the bundled photos (``examples/``) that fill it."""
    image = safe_image_input(label="Image", elem_id=elem_id, height=height)
    gr.Examples([[str(EXAMPLES / n)] for n in examples], inputs=[image])
    return image


def carry_image(button: Any, source: Any, to: Any, tabs: Any, title: str, press: str | None = None,
                also: Sequence[tuple[Any, Any]] = ()) -> None:
    """``button`` copies the image of ``source`` into the image input ``to`` of the tab ``title``
    and switches to that tab; with ``press``, it then presses the button of that elem_id there.

    ``also``: (from, to) pairs of other settings that go along (the method, the target class),
    so the other tab runs what the visitor was looking at, not its own defaults.
    """
    senders, receivers = [a for a, _ in also], [b for _, b in also]

    @runs_no_model
    def carry(image: Upload | None, *values: Any):
        return require_image(image).path, gr.Tabs(selected=title), *values

    event = button.click(carry, [source, *senders], [to, tabs, *receivers], api_visibility="private",
                         show_progress="hidden")
    if press:
        event.success(None, None, None, js=press_js(press), api_visibility="private")


def checked_file(path: Any) -> Path:
    """A ``gr.File`` value (a path the client sends), held to the image input's rule.

    Only regular files inside gradio's upload folder pass, with the same message for
    every refusal; nothing is opened here.
    """
    payload = type("Payload", (), {"path": os.fspath(path) if path is not None else None, "url": None,
                                   "orig_name": None})
    upload = checked_upload(payload, upload_root())
    return Path(upload.path)


class InputFiles(gr.File):
    """``gr.File`` for uploads a handler reads by path (``type="filepath"``), minus a leak.

    Gradio 6's ``File.preprocess`` opens a ``NamedTemporaryFile`` in its cache for every file
    of every request and only renames the object: an empty file, never tracked by
    ``delete_cache``, one per uploaded file per run (issue 29 item 7). This hands over the path
    alone, after the same file-type check.
    """

    is_template = True  # drawn in the page as gradio's own "file" component

    def _process_single_file(self, f: Any) -> Any:
        if self.type != "filepath":
            return super()._process_single_file(f)
        from gradio.utils import NamedString
        from gradio_client import utils as client_utils

        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: {self.file_types}")
        return NamedString(f.path)


def remove_uploads(demo: gr.Blocks) -> int:
    """At shutdown: delete the files gradio keeps for this app (uploads, copies of served files),
    inside its upload folder only, and their folders once empty; the number of files deleted.

    Gradio deletes them in its server's lifespan shutdown, which a SIGTERM during a long
    request never reaches (the process exits first): 84 MB of uploads were left behind.
    """
    root = Path(upload_root()).resolve()
    files = {f for fs in getattr(demo, "temp_file_sets", []) for f in list(fs)}
    for block in list(getattr(demo, "blocks", {}).values()):
        files.update(getattr(block, "keep_in_cache", ()) or ())
    removed = 0
    for f in files:
        path = Path(f)
        try:
            inside = path.resolve().is_relative_to(root) and path.resolve() != root
            if inside and path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
            parent = path.parent
            while parent.resolve() != root and parent.resolve().is_relative_to(root):
                parent.rmdir()  # only when empty: OSError otherwise
                parent = parent.parent
        except OSError:
            continue
    return removed


def upload_root() -> str:
    """Where gradio's upload route writes: ``GRADIO_TEMP_DIR``, else ``<tmp>/gradio`` (gradio's own rule)."""
    return os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")


def require_image(image: Upload | None) -> Upload:
    if image is None:
        raise gr.Error("Upload an image first (or pick one of the examples).", print_exception=False)
    return image


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
                  scale: Scale | None = None, download: bool = False) -> tuple[str, ...]:
    """The three pictures of one result as files (gradio would re-encode arrays slowly).

    The two overlays are shown as JPEG (a seventh of the PNG's bytes, encoded ~15x
    faster; see ``zoo.render.save_jpeg``); the raw map with its colour bar and text stays
    PNG. With ``download``, a fourth path: the overlay as lossless PNG, to keep, at the
    crop's own size (224 px): the on-screen 448 px is that crop upscaled, so nothing is lost,
    and it costs a quarter of the encoding.
    """
    raw = result.explanation.raw
    signed = METHODS[result.method].signed  # drawn on a diverging colormap centred on 0 (zoo.render)
    folder = new_output_folder(ctx.outputs_dir)
    stem = f"{result.run.model}-{result.method}-{result.explanation.target.index}"
    overlay = overlay_crop(result.run, raw, cmap, alpha, scale, signed=signed)
    crop = save_jpeg(overlay, folder / f"{stem}-overlay.jpg")
    full = save_jpeg(overlay_image(result.run, raw, cmap, alpha, scale, signed=signed), folder / f"{stem}-photo.jpg")
    h, w = raw.shape
    # Two short lines: one long line ran past the picture's edge and under the image's buttons
    # (top right), "Raw map 224x224 · resnet50 · integrated-gradien".
    fig = save_png(raw_figure(raw, cmap, scale, f"Raw map {h}x{w}\n{result.run.model} · {result.method}",
                              signed=signed, unit=value_unit(result.method)),
                   folder / f"{stem}-raw.png")
    paths = [str(crop), str(full), str(fig)]
    if download:
        native = overlay_crop(result.run, raw, cmap, alpha, scale, size=result.run.crop.width, signed=signed)
        paths.append(str(save_png(native, folder / f"{stem}.png")))  # short: the whole name shows in the list
    return tuple(paths)


def save_raw(result: Result, folder: Path) -> str:
    """The raw map as ``.npy`` beside the result's pictures, for download."""
    npy = folder / f"{result.run.model}-{result.method}-{result.explanation.target.index}.npy"
    np.save(npy, result.explanation.raw.astype(np.float32))
    return str(npy)
