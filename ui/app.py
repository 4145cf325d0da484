"""The Gradio app: assembles one tab per module under ``ui/tabs``.

Turns user input into calls of ``zoo`` and results into components. No model logic
and no torch in ``ui``. Shared state is the read-only zoo and the runtime's locked
model cache, both reached through the ``Context`` made here; nothing per user lives
in module globals.

Layout of ``ui``:

* ``app.py``: ``build_app`` (this file): the page header and the tabs, in ``TABS`` order.
* ``errors.py``: the one conversion of a ``ZooError`` into what the visitor reads
  (``user_message``: an upload named by its file name; ``user_errors`` for handlers that do
  not pass the gate, which converts by itself); ``Upload``.
* ``common.py``: what tabs share: ``Context``; ``user_errors`` and ``Upload`` (from ``errors.py``); ``carry_image`` (an image to another tab); ``safe_image_input``
  (the only way to take an image: its handler gets an ``Upload`` whose ``path`` goes to
  zoo, which alone decodes it); ``require_image``; ``progress_fn``; ``gpu`` (ZeroGPU when
  present); output files (``new_output_folder``, ``render_result``, ``save_raw``).
* ``guard.py``: how every model-running event runs: ``long_event`` registers it with its
  cost (checked against the server's ceiling, a lane and a turn per visitor), a
  cancellation token that Stop, a closed page and the deadline cancel, errors written in
  the page; ``stop_button``.
* ``server.py``: HTTP middleware (upload budget, unknown endpoints, server paths) and the
  output folder's pruning.
* ``mcp.py``: which endpoints are MCP tools (``python app.py --mcp``) and what an agent reads about them.
* ``views/<feature>.py``: a feature's result as the components show it (plain functions).
* ``format.py`` (tables and text), ``charts.py`` (Plotly charts), ``figures.py`` (matplotlib figures): presentation helpers.
* ``tabs/<name>.py``: one tab each: ``classify``, ``compare``, ``rank``, ``sanity``, ``depth_lab``,
  ``landscape``, ``robustness``, ``batch``, ``zoo_tab``, ``about``.

Adding a tab: write ``ui/tabs/<name>.py`` that defines

* ``TITLE: str``: the tab's label;
* ``def build(ctx: Context) -> None``: creates the tab's components and wires its
  events; it is called inside ``with gr.Tab(TITLE)``. Handlers are closures over
  ``ctx``; wrap each that does not pass the gate in ``@user_errors``, take images with ``safe_image_input`` (never
  ``gr.Image`` or ``gr.File`` as an input: they would open paths a raw call names),
  register every event that runs a model with ``guard.long_event(ctx.guard, button.click,
  fn, inputs, outputs, cost=..., message=..., stop=...)``: ``cost`` returns the
  feature estimate (``zoo.features``) of the request from the same inputs (the page shows it under the
  button, the server refuses it over the ceiling, ZeroGPU sizes its slot from it); long
  loops in ``zoo`` call ``zoo.cancel.check()`` between steps. Bound costs with the
  sliders' ranges too (gr.Slider refuses out-of-range values on the server).
  A public endpoint is a hidden button's event with ``api_name=``; everything else
  is ``api_visibility="private"``. Page-load events (``ctx.demo.load``) run a model through
  ``long_event`` too: anyone can join them with any inputs. Every other handler (an estimate,
  a re-render, a tab switch) is declared with ``@runs_no_model``; ``build_app`` refuses an
  event that is neither (``guard.check_events``).

then add the module to ``TABS`` below.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import gradio as gr

from zoo.runtime import Runtime

from zoo.limits import Limits

from . import mcp, server
from .common import CACHE_SWEEP_S, MAX_FILE_SIZE, OUTPUT_MAX_AGE_S, Context
from .guard import Guard, check_events, runs_no_model
from .tabs import about, batch, classify, compare, depth_lab, landscape, rank, robustness, sanity, zoo_tab

TABS = (classify, compare, rank, sanity, depth_lab, landscape, robustness, batch, zoo_tab, about)

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
/* "Stopped." where a stopped run's result would be: a notice, not an error. */
.rde-stopped { border-left: 4px solid var(--color-accent, #f97316); padding: 0.6em 0.9em; border-radius: 4px;
               background: var(--background-fill-secondary); }
/* Gallery captions and download names wrap rather than end in "…": the end is the point
   ("p(tabby) = 0.92", ".npy"). */
.gallery-item .caption-label { white-space: normal !important; overflow: visible !important;
                               text-overflow: clip !important; max-width: calc(100% - 8px) !important; }
/* A download name is one run of text that wraps only after a hyphen of its stem, its
   extension kept on the stem's last part ("resnet50-integrated-" / "gradients-281.png"):
   gradio lays the stem and the extension out as two flex items, which broke names into
   three pieces. The space gradio puts between the two spans is neither shown (font-size 0)
   nor a place to break (nowrap on the cell; the stem itself wraps normally). */
.file-preview td.filename { display: block !important; white-space: nowrap !important; font-size: 0 !important;
                            overflow: visible !important; }
.file-preview td.filename .stem, .file-preview td.filename .ext { font-size: var(--text-md); overflow: visible !important;
                                                                  text-overflow: clip !important; }
.file-preview td.filename .stem { white-space: normal !important; overflow-wrap: normal; }
/* Robustness's maps: the caption under the map, not over it (it covered half of each map). */
#robust-gallery .gallery-item { height: auto !important; }
#robust-gallery .thumbnail-item { display: flex !important; flex-direction: column; height: auto !important;
                                  aspect-ratio: auto !important; }
#robust-gallery .thumbnail-item > img { height: auto !important; aspect-ratio: 1 / 1; }
#robust-gallery .caption-label { position: static !important; max-width: none !important; border: none !important;
                                 background: none !important; text-align: center; }
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
/* Tables written in Markdown (summaries): a word is never broken over two lines ("res/net/18");
   a table wider than its column scrolls sideways in its own box, as the data tables do. */
.prose table { display: block; max-width: 100%; overflow-x: auto; }
.prose th, .prose td { overflow-wrap: normal !important; word-break: normal !important; hyphens: none; }
/* A phone. The tabs wrap (gr.Tabs(overflow_behavior="wrap"): no "•••" menu, no reshuffling
   when one is picked) onto exactly two rows of five equal cells (ten tabs), labels on two
   lines where needed; flowing them would take three or four rows at 400 px. */
/* A picture drawn twice, for a wide screen and for a phone (the sanity strips: ui/tabs/sanity.py). */
@media (min-width: 641px) { .rde-narrow-only { display: none !important; } }
@media (max-width: 640px) {
  .rde-wide-only { display: none !important; }
  .tab-container.wrap { display: grid !important; grid-template-columns: repeat(5, minmax(0, 1fr));
                        background: none !important; }
  .tab-container.wrap > button { white-space: normal !important; height: auto !important; min-height: var(--size-10);
                                 padding: var(--size-1) !important; justify-content: center; text-align: center;
                                 line-height: 1.15; overflow: visible !important; }
  /* Galleries: one map per row, as in Classify. */
  .grid-container { grid-template-columns: 1fr !important; }
}
"""


# Page-wide behaviour, run once when the page loads (``launch(js=...)``); each part says why.
PAGE_JS = """
() => {
  if (window.rdePageJs) return;
  window.rdePageJs = true;
  // gradio 6's Dropdown filters its list in its keydown handler only (BaseDropdown), so a
  // class name pasted with the mouse, dropped, or set by a script left the whole list
  // showing. Every input event in a dropdown's box now also sends it a keydown of no key.
  document.addEventListener("input", (e) => {
    const box = e.target;
    if (box instanceof HTMLInputElement && box.getAttribute("role") === "combobox") {
      box.dispatchEvent(new KeyboardEvent("keydown", {key: "Unidentified", bubbles: true}));
    }
  }, true);
  // Enter in a target-class box runs, as in a search box (a Dropdown has no submit event).
  // The box takes the typed or highlighted class on Enter itself, a tick later; the press waits.
  const runs = {"classify-target": "classify-button", "compare-target": "compare-button"};
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing || !e.isTrusted) return;
    const box = e.target.closest && e.target.closest(Object.keys(runs).map((id) => "#" + id).join(","));
    if (box) setTimeout(() => { const b = document.getElementById(runs[box.id]); if (b) b.click(); }, 150);
  }, true);
  // An error or "Stopped." is written where the result would be (ui/guard.py): when that is
  // off screen (the page scrolled down to the settings, or a phone's inputs above it), bring
  // it into view, or the visitor sees only empty panels.
  const shown = new WeakSet();
  const reveal = () => {
    for (const el of document.querySelectorAll(".rde-error, .rde-stopped")) {
      if (shown.has(el)) continue;
      shown.add(el);
      const r = el.getBoundingClientRect();
      if (r.height && (r.top < 0 || r.bottom > window.innerHeight)) el.scrollIntoView({block: "center"});
    }
  };
  // Plotly charts take their box's width whenever it changes. gradio's gr.Plot draws a
  // figure responsive (it follows the window's resizes), but one drawn while its tab is
  // hidden takes Plotly's default 700 px and kept it when the tab was shown (no window
  // resize happens then): 700 px wide on a 400 px phone. Each chart's box is watched; when
  // its width and the drawn width differ, Plotly's own resize handler is run.
  const watched = new WeakSet();
  const charts = new ResizeObserver((entries) => {
    const stale = entries.some((e) => {
      const svg = e.target.querySelector(".main-svg");
      const w = e.contentRect.width;
      return w > 0 && svg && Math.abs(svg.getBoundingClientRect().width - w) > 1;
    });
    if (stale) window.dispatchEvent(new Event("resize"));
  });
  const watch = () => {
    for (const gd of document.querySelectorAll(".js-plotly-plot")) {
      if (!watched.has(gd)) { watched.add(gd); charts.observe(gd); }
    }
  };
  // When a run ends, its result is brought into view if none of it is (on a phone the outputs
  // lie below the inputs and the Run button). A run's outputs are the blocks whose progress
  // indicator showed; when the last of them hides, the topmost shown one is scrolled to,
  // unless one is already in view. (gradio's scroll_to_output scrolls when a run starts,
  // before the outputs have their height, and missed them.)
  const running = new Set();
  const settle = () => {
    for (const t of document.querySelectorAll('[data-testid="status-tracker"]:not(.hide)')) {
      const block = t.closest(".block");
      if (block && t.checkVisibility()) running.add(block);
    }
    if (!running.size) return;
    const busy = (b) => b.isConnected && b.querySelector('[data-testid="status-tracker"]:not(.hide)');
    if ([...running].some(busy)) return;
    const shown = [...running].filter((b) => b.isConnected && b.getBoundingClientRect().height > 0);
    running.clear();
    const seen = (b) => {  // enough of it to be noticed: 80 px, or all of a shorter one
      const r = b.getBoundingClientRect();
      return Math.min(r.bottom, window.innerHeight) - Math.max(r.top, 0) >= Math.min(80, r.height - 1);
    };
    if (!shown.length || shown.some(seen)) return;
    shown.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
    shown[0].scrollIntoView({block: "start"});
  };
  let queued = false;
  new MutationObserver(() => {
    if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; reveal(); watch(); settle(); }); }
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
}
"""


def launch_options(demo: gr.Blocks | None = None) -> dict:
    """What ``demo.launch`` needs besides host and port: theme, style, script, upload limit, errors, middleware.

    ``show_error`` is off: a ``gr.Error`` (every message written for visitors) is shown
    anyway, and anything else (gradio's own path messages, a bug's text) must not reach
    a visitor; ``ui.guard`` logs those and answers with one generic message. With
    ``demo`` (built by ``build_app``), the HTTP middleware of ``ui.server`` too: the upload
    budget per visitor, one refusal for any server path, 404 for an unknown endpoint.
    """
    options: dict = {"theme": THEME, "css": CSS, "js": PAGE_JS, "max_file_size": MAX_FILE_SIZE, "show_error": False}
    server.distrust_forwarded_headers()  # the visitor is the connection, or the trusted proxy's word
    if demo is not None:
        options["app_kwargs"] = {"middleware": server.middleware(demo)}
    return options


COMPILE_POLL_S = 5  # how often an open page asks whether graphs are still building (only while they are)


def compile_line(rt: Runtime) -> str:
    """The header's line on the compiled path while it is enabled: what builds now, what is in use."""
    return f"Compiled path: {rt.compile_status()}." if rt.compile_plan.enabled else ""


def compile_header(rt: Runtime, demo: gr.Blocks) -> None:
    """A header line that says when graphs are building (answers use the eager path meanwhile): set at
    each page load and refreshed every few seconds while a build is under way, then no more."""
    line = gr.Markdown(elem_id="compile-status")
    timer = gr.Timer(COMPILE_POLL_S, active=False)

    @runs_no_model
    def compile_state() -> tuple[str, gr.Timer]:
        return compile_line(rt), gr.Timer(active=bool(rt.cache.compiling()))

    for event in (demo.load, timer.tick):  # reads a status, runs no model: no gate, no queue
        event(compile_state, None, [line, timer], api_visibility="private", show_progress="hidden", queue=False)


def build_app(rt: Runtime, max_batch_images: int = 500, limits: Limits | None = None,
              trust_proxy: bool = False, health: str | None = None) -> gr.Blocks:
    """The whole page: a header, then each module of ``TABS`` in its own tab (id: its TITLE).

    ``limits``: what one visitor may ask (``zoo.limits``; default: none, as for a local
    app); ``trust_proxy``: read visitors' addresses from X-Forwarded-For (on a Space);
    ``health``: a line for the header (the self-check's, after preloading on a Space).
    Named endpoints listed in ``ui.mcp.TOOLS`` are described for MCP clients (served when
    launched with ``mcp_server=True``).
    Launch it with ``**launch_options(demo)``.
    """
    # Cached example results go to a folder of this process, removed when it exits:
    # gradio's default, ./.gradio/cached_examples, outlives the process and would serve
    # results computed by other weights or older code.
    if "GRADIO_EXAMPLES_CACHE" not in os.environ:
        examples = tempfile.mkdtemp(prefix="rde-examples-")
        atexit.register(shutil.rmtree, examples, ignore_errors=True)  # app.py turns SIGTERM into a normal exit
        os.environ["GRADIO_EXAMPLES_CACHE"] = examples
    # delete_cache: every CACHE_SWEEP_S, gradio drops its copies of served files and the
    # uploads older than OUTPUT_MAX_AGE_S; our own outputs follow the same rule (ui.server).
    with gr.Blocks(title="ResNet Depth Explorer", analytics_enabled=False,
                   delete_cache=(CACHE_SWEEP_S, OUTPUT_MAX_AGE_S)) as demo:
        ctx = Context.create(rt, demo, max_batch_images, Guard.create(limits, trust_proxy))
        demo.rde_context = ctx  # type: ignore[attr-defined]  # for ui.server's middleware and the tests
        pruning = server.start_pruning(ctx.outputs_dir, CACHE_SWEEP_S, OUTPUT_MAX_AGE_S)
        demo.rde_pruning = pruning  # type: ignore[attr-defined]  # set it to stop the pruning thread
        server.refuse_server_paths()
        gr.Markdown("# ResNet Depth Explorer\nClassify with an ImageNet ResNet of any depth, see where it looked, "
                    f"and what each depth costs. Device: `{rt.device}`, precision `{rt.precision}` "
                    f"({rt.precision_note}), "
                    f"compile `{rt.compile_plan.mode}`"
                    + (f" ({rt.compile_plan.note})" if rt.compile_plan.note else "")
                    + ". Each result says whether a compiled or the eager trunk produced it."
                    + (f"\n\n{health}" if health else ""), elem_id="page-header")
        compile_header(rt, demo)
        with gr.Tabs(overflow_behavior="wrap") as tabs:  # every tab's button in view, in a fixed place
            ctx.components["tabs"] = tabs  # lets a tab switch to another: gr.Tabs(selected=TITLE)
            for tab in TABS:
                with gr.Tab(tab.TITLE, id=tab.TITLE):
                    tab.build(ctx)
        mcp.describe_tools(demo, ctx.zoo.names)
    check_events(demo)  # no event runs a model outside the gate (ui.guard)
    return demo
