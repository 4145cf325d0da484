"""The Gradio app: assembles one tab per module under ``ui/tabs``.

Turns user input into calls of ``zoo`` and results into components. No model logic
and no torch in ``ui``. Shared state is the read-only zoo and the explorer's locked
model cache, both reached through the ``Context`` made here; nothing per user lives
in module globals.

Layout of ``ui``:

* ``app.py``: ``build_app`` (this file): the page header and the tabs, in ``TABS`` order.
* ``common.py``: what tabs share: ``Context``; ``user_errors`` (``ZooError`` becomes a
  message naming the visitor's file); ``shown_in_page`` (a page event's error replaces its
  result in the page); ``carry_image`` (an image to another tab); ``safe_image_input``
  (the only way to take an image: its handler gets an ``Upload`` whose ``path`` goes to
  zoo, which alone decodes it); ``require_image``; ``stop_run`` (a Stop button for a long event);
  ``progress_fn``; ``gpu`` (ZeroGPU when present); output files (``new_output_folder``,
  ``render_result``, ``save_raw``).
* ``format.py`` (tables and text), ``plots.py`` (figures): presentation helpers.
* ``tabs/<name>.py``: one tab each: ``classify``, ``compare``, ``rank``, ``depth_lab``, ``batch``,
  ``zoo_tab``, ``about``.

Adding a tab: write ``ui/tabs/<name>.py`` that defines

* ``TITLE: str``: the tab's label;
* ``def build(ctx: Context) -> None``: creates the tab's components and wires its
  events; it is called inside ``with gr.Tab(TITLE)``. Handlers are closures over
  ``ctx``; wrap each in ``@user_errors`` (and a page event's in ``shown_in_page``), take images
  with ``safe_image_input`` (never
  ``gr.Image`` or ``gr.File`` as an input: they would open paths a raw call names), run
  model work with ``concurrency_id="model"`` so it shares the queue's limit, give long
  work a Stop button (``stop_run``) and bound its cost with the sliders' ranges
  (gr.Slider refuses out-of-range values on the server, not only in the page).
  A public endpoint is a hidden button's event with ``api_name=``; everything else
  is ``api_visibility="private"``.

then add the module to ``TABS`` below.
"""

from __future__ import annotations

import os
import tempfile

import gradio as gr

from zoo.service import Explorer

from .common import MAX_FILE_SIZE, OUTPUT_MAX_AGE_S, Context
from .tabs import about, batch, classify, compare, depth_lab, rank, zoo_tab

TABS = (classify, compare, rank, depth_lab, batch, zoo_tab, about)

# Gradio's default theme declares its font at weights 400 and 600, and the 600 file it
# ships holds almost no glyphs: bold text fell back to another, larger font. Declaring
# 400 and 700 (a complete file) makes **bold** and semibold labels use the same family.
THEME = gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])

# Page-wide style rules; each says why it is there.
CSS = """
/* A handler's error is written into the page where its result would be (ui/common.py,
   page_errors). Gradio also paints an "Error" badge over every output of the event, and
   over a stopped run's outputs when its cancel races the stream's end: that badge would
   cover the message and the kept result, so it is not shown. */
[data-testid="status-tracker"]:has(> .error) { display: none !important; }
/* That message: it must read as an error, where the result would have been. */
.rde-error { border-left: 4px solid var(--error-border-color, #ef4444); background: var(--error-background-fill, #fef2f2);
             color: var(--error-text-color, #b91c1c); padding: 0.6em 0.9em; border-radius: 4px; }
/* The estimate under each Run button: small, so it reads as a note. */
.rde-estimate { font-size: var(--text-sm); opacity: 0.85; }
/* Gallery captions and download names wrap rather than end in "…": the end is the point
   ("p(tabby) = 0.92", ".npy"). */
.gallery-item .caption-label { white-space: normal !important; overflow: visible !important;
                               text-overflow: clip !important; max-width: calc(100% - 8px) !important; }
.file-preview td.filename, .file-preview td.filename .stem { white-space: normal !important;
    overflow: visible !important; text-overflow: clip !important; overflow-wrap: anywhere; }
/* Galleries (height="auto") grow with their maps. Gradio keeps an "auto" gallery between
   450 px and 55% of the window's height and scrolls inside it: at 1400 x 800 px the second
   row of Compare's maps (resnet101, resnet152) and their captions were out of sight, and a
   single row sat in a mostly empty box. Only these two: applied to every gallery, together
   with the wrapping tabs it made the Batch tab's Stop lose its race with a short run
   (tests/test_batch.py::test_browser_batch_tab), and Batch's thumbnails fit one row anyway. */
#compare-gallery .grid-wrap.fixed-height, #rank-gallery .grid-wrap.fixed-height {
  min-height: 0 !important; max-height: none !important; overflow-y: visible !important; }
/* An output that stays empty until a run fills it (elem_classes "rde-when-filled": charts,
   the raw map) is hidden while empty, so the page shows no large blank, unlabelled boxes;
   while a run is under way its status tracker is showing, and so is the box with its progress. */
.rde-when-filled:has(.empty[aria-label="Empty value"]):not(:has([data-testid="status-tracker"]:not(.hide))) {
  display: none !important; }
/* A phone. The tabs wrap (gr.Tabs(overflow_behavior="wrap"): no "•••" menu, no reshuffling
   when one is picked) onto exactly two rows of four equal cells, labels on two lines where
   needed; flowing them would take three rows at 400 px. */
@media (max-width: 640px) {
  .tab-container.wrap { display: grid !important; grid-template-columns: repeat(4, minmax(0, 1fr));
                        background: none !important; }
  .tab-container.wrap > button { white-space: normal !important; height: auto !important; min-height: var(--size-10);
                                 padding: var(--size-1) !important; justify-content: center; text-align: center;
                                 line-height: 1.15; overflow: visible !important; }
  /* Galleries: one map per row, as in Classify. */
  .grid-container { grid-template-columns: 1fr !important; }
}
"""


def launch_options() -> dict:
    """What ``demo.launch`` needs besides host and port: theme, style, upload limit, errors shown."""
    return {"theme": THEME, "css": CSS, "max_file_size": MAX_FILE_SIZE, "show_error": True}


def build_app(explorer: Explorer, max_batch_images: int = 500) -> gr.Blocks:
    """The whole page: a header, then each module of ``TABS`` in its own tab (id: its TITLE).

    Launch it with ``**launch_options()``.
    """
    # Cached example results go to a folder of this process: gradio's default,
    # ./.gradio/cached_examples, outlives the process and would serve results computed
    # by other weights or older code.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="rde-examples-"))
    # delete_cache: gradio drops its copies of served files after an hour, too.
    with gr.Blocks(title="ResNet Depth Explorer", analytics_enabled=False,
                   delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        ctx = Context.create(explorer, demo, max_batch_images)
        gr.Markdown("# ResNet Depth Explorer\nClassify with an ImageNet ResNet of any depth, see where it looked, "
                    f"and what each depth costs. Device: `{explorer.device}`, precision `{explorer.precision}`.")
        with gr.Tabs(overflow_behavior="wrap") as tabs:  # every tab's button in view, in a fixed place
            ctx.components["tabs"] = tabs  # lets a tab switch to another: gr.Tabs(selected=TITLE)
            for tab in TABS:
                with gr.Tab(tab.TITLE, id=tab.TITLE):
                    tab.build(ctx)
    return demo
