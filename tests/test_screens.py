"""Issue 31, the systematic part: every tab, at 1400 and 400 px, after its default action.

The tabs are read from the page (a new tab is covered without new code). In each, the test
gives the first example (or, in a tab without examples, an example photo to its first file
box), presses the first primary button, waits until every progress indicator of the run is
gone (DOM conditions only), and then measures the page (``AUDIT``):

* no element sticks out of the viewport unless a scrolling box holds it;
* no table cell breaks a word (a column narrower than its longest word must scroll instead);
* every chart is as wide as its box, its plotting area at least 200 px tall, no two of its
  tick labels overlap, none of its texts leaves the picture, its title is not under gradio's
  label badge;
* no text is clipped by its box (an element whose text is wider than it, overflow hidden);
* the run's result or its message is in view.

Screenshots of every tab at both widths go to ``test-artifacts/screens-<width>-<tab>.png``.
The app serves a zoo of two depths (ResNet-18 and -34): the layouts are those of any zoo, and
each default action then takes seconds on a CPU.
"""

from __future__ import annotations

import re

import pytest

from browser import open_page
import json

from conftest import EXAMPLES, zoo_toml

# Runs in the page with the tab's panel; returns a list of problems, each [kind, where, detail].
AUDIT = r"""panel => {
  const W = document.documentElement.clientWidth, H = window.innerHeight;
  const out = [];
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                       && getComputedStyle(e).visibility !== 'hidden' && e.checkVisibility(); };
  const name = e => {
    const id = e.closest('[id]');
    const text = (e.innerText || e.textContent || '').trim().slice(0, 40);
    return `${e.tagName.toLowerCase()}.${[...e.classList].slice(0, 2).join('.')} in #${id ? id.id : '?'} "${text}"`;
  };
  const clipsX = e => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(e).overflowX);
  // 1. Nothing wider than the viewport unless a scrolling box (itself in view) holds it.
  if (document.documentElement.scrollWidth > W + 1) out.push(['page scrolls sideways', '', document.documentElement.scrollWidth]);
  const wide = [];
  for (const e of panel.querySelectorAll('*')) {
    if (e.closest('svg') && e.tagName.toLowerCase() !== 'svg') continue;
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height || (r.left >= -1 && r.right <= W + 1)) continue;
    if (!shown(e) || wide.some(w => w.contains(e))) continue;
    let a = e.parentElement, held = false;
    for (; a && a !== panel.parentElement && !held; a = a.parentElement) {
      if (clipsX(a)) { const q = a.getBoundingClientRect(); held = q.left >= -1 && q.right <= W + 1; }
    }
    if (!held) { wide.push(e); out.push(['wider than the viewport', name(e), [Math.round(r.left), Math.round(r.right)]]); }
  }
  // 2. No table cell breaks a word (a hyphen or dash is a fair place to break).
  for (const cell of panel.querySelectorAll('td, th, .header-cell, .body-cell')) {
    const box = cell.getBoundingClientRect();
    if (!box.width || !box.height || !shown(cell)) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (const m of n.data.matchAll(/[^\s\-\u2013\u2014\/]+/g)) {
        const range = document.createRange();
        range.setStart(n, m.index); range.setEnd(n, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter(q => q.width > 0).map(q => Math.round(q.top)));
        if (lines.size > 1) out.push(['word broken in a table', name(cell), m[0]]);
      }
    }
  }
  // 3. Charts: Plotly figures and matplotlib pictures in a gr.Plot.
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const gd of panel.querySelectorAll('.js-plotly-plot')) {
    if (!shown(gd)) continue;
    const where = name(gd), box = gd.getBoundingClientRect();
    const svg = gd.querySelector('.main-svg');
    const s = svg.getBoundingClientRect();
    if (Math.abs(s.width - box.width) > 2 || s.left < box.left - 1) out.push(['chart not as wide as its box', where, [s.width, box.width]]);
    const areas = [...gd.querySelectorAll('.draglayer .nsewdrag')].map(d => d.getBoundingClientRect()).filter(q => q.height > 0);
    if (areas.length) {
      const top = Math.min(...areas.map(q => q.top)), bottom = Math.max(...areas.map(q => q.bottom));
      if (bottom - top < 200) out.push(['plotting area under 200 px tall', where, Math.round(bottom - top)]);
    } else if (!gd.querySelector('.gl-container, .annotation')) out.push(['chart without a plotting area', where, '']);
    for (const t of gd.querySelectorAll('.main-svg text, .infolayer text')) {
      if (t.closest('.hoverlayer') || !t.textContent.trim()) continue;
      const q = t.getBoundingClientRect();
      if (q.width && (q.left < s.left - 1 || q.right > s.right + 1 || q.top < s.top - 1 || q.bottom > s.bottom + 1))
        out.push(['chart text outside the picture', where, t.textContent.slice(0, 40)]);
    }
    for (const axis of ['xtick', 'ytick']) {
      const ticks = [...gd.querySelectorAll(`.${axis} text`)].filter(t => t.textContent.trim())
                        .map(t => [t.textContent, t.getBoundingClientRect()]).filter(([, q]) => q.width);
      for (let i = 0; i < ticks.length; i++) for (let j = i + 1; j < ticks.length; j++)
        if (overlap(ticks[i][1], ticks[j][1])) out.push(['tick labels overlap', where, ticks[i][0] + ' / ' + ticks[j][0]]);
    }
    const badge = gd.closest('.block') && gd.closest('.block').querySelector('[data-testid="block-label"]');
    const title = gd.querySelector('.gtitle');
    if (badge && title && shown(badge) && overlap(badge.getBoundingClientRect(), title.getBoundingClientRect()))
      out.push(['chart title under the label badge', where, title.textContent.slice(0, 40)]);
  }
  for (const img of panel.querySelectorAll('[data-testid="matplotlib"] img, .matplotlib img')) {
    if (!shown(img)) continue;
    const q = img.getBoundingClientRect(), box = img.parentElement.getBoundingClientRect();
    if (q.height < 200) out.push(['plotting area under 200 px tall', name(img), q.height]);
    if (q.right > box.right + 1) out.push(['chart wider than its box', name(img), [q.width, box.width]]);
  }
  // 4. No text clipped by its box.
  for (const e of panel.querySelectorAll('*')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.data.trim());
    const field = e.matches('input[type=text], input:not([type]), textarea');
    if ((!own && !field) || e.closest('svg') || !shown(e)) continue;
    const st = getComputedStyle(e);
    if (!field && st.overflowX === 'visible' && st.overflowY === 'visible') continue;
    if (e.scrollWidth > e.clientWidth + 1 && !e.matches('textarea'))
      out.push(['text clipped', name(e), field ? e.value.slice(0, 40) : '']);
  }
  return out;
}"""

# Starts watching the tab's progress indicators: a run has begun once one shows (recorded by a
# MutationObserver, so a short run is not missed) and has ended once none shows again.
WATCH = r"""panel => {
  window.rdeOutputs = new Set();
  const note = () => { for (const t of panel.querySelectorAll('[data-testid="status-tracker"]:not(.hide)'))
                         if (t.checkVisibility()) window.rdeOutputs.add(t.closest('.block') || t.parentElement); };
  window.rdeWatch && window.rdeWatch.disconnect();
  window.rdeWatch = new MutationObserver(note);
  window.rdeWatch.observe(panel, {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
}"""
DONE = r"""panel => window.rdeOutputs.size > 0
  && ![...panel.querySelectorAll('[data-testid="status-tracker"]:not(.hide)')].some(t => t.checkVisibility())
  && ![...panel.querySelectorAll('.progress-text, .eta-bar')].some(t => t.checkVisibility())"""
# The run's result or message in view: one of the outputs that showed progress, or an error or
# "Stopped." notice, intersects the viewport.
IN_VIEW = r"""panel => {
  const H = window.innerHeight;
  const seen = e => { const r = e.getBoundingClientRect();  // 80 px of it, or all of a shorter one
                      return r.height > 0 && Math.min(r.bottom, H) - Math.max(r.top, 0) >= Math.min(80, r.height - 1); };
  return [...window.rdeOutputs].some(e => e.isConnected && e.checkVisibility() && seen(e))
    || [...panel.querySelectorAll('.rde-error, .rde-stopped')].some(seen);
}"""


@pytest.fixture(scope="module")
def small_app(hosted, tmp_path_factory):
    """The app serving ResNet-18 and -34 of the loopback Hub, fp32; yields its URL."""
    from ui import build_app, launch_options
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    path = tmp_path_factory.mktemp("screens") / "zoo.toml"
    path.write_text(zoo_toml(hosted))
    full = Zoo.load(path)
    demo = build_app(Runtime(Zoo([full.get("resnet18"), full.get("resnet34")]), "cpu", precision="fp32"))
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/")
    demo.close()


def run_default_action(page, panel, timeout: float) -> list:
    """The first example (else an example photo in the first file box), then the first primary button;
    returns what went wrong."""
    examples = panel.locator("div.gallery > button.gallery-item").filter(visible=True)  # gr.Examples
    if examples.count():
        examples.first.click()
        page.wait_for_function("p => p.querySelector('[data-testid=image] img')", arg=panel.element_handle())
    elif panel.locator("input[type=file]").count():
        panel.locator("input[type=file]").first.set_input_files(str(EXAMPLES / "chelsea.png"))
        page.wait_for_function("p => !p.querySelector('.uploading')", arg=panel.element_handle())
    button = panel.locator("button.primary").filter(visible=True)
    if not button.count():
        return []
    panel.evaluate(WATCH)
    button.first.click()
    page.wait_for_function(DONE, arg=panel.element_handle(), timeout=timeout, polling=100)
    try:  # gradio scrolls smoothly to the outputs
        page.wait_for_function(IN_VIEW, arg=panel.element_handle(), timeout=5_000)
    except Exception:
        return ["neither the result nor a message is in view after the run"]
    return []


@pytest.mark.browser
def test_every_tab_at_every_width(small_app, shots):
    from playwright.sync_api import expect

    problems: dict[str, list] = {}
    for width, height in ((1400, 900), (400, 850)):
        with open_page(small_app, width, height) as page:
            tabs = page.get_by_role("tab")
            expect(tabs.first).to_be_visible(timeout=30_000)
            names = [t.inner_text().strip() for t in tabs.all()]
            assert len(names) >= 10, names
            for name in names:
                button = page.get_by_role("tab", name=name, exact=True)
                button.click()
                expect(button).to_have_attribute("aria-selected", "true")
                panel = page.locator("[role=tabpanel]").filter(visible=True).first  # nested tabs come after
                expect(panel).to_be_visible()
                found = run_default_action(page, panel, timeout=240_000)
                # Charts settle at their box's width (ui/app.py resizes them when their box changes).
                page.wait_for_function(
                    "p => [...p.querySelectorAll('.js-plotly-plot')].filter(g => g.checkVisibility()).every(g =>"
                    " Math.abs(g.querySelector('.main-svg').getBoundingClientRect().width - g.getBoundingClientRect().width) <= 2)",
                    arg=panel.element_handle(), timeout=10_000)
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                page.screenshot(path=str(shots / f"screens-{width}-{slug}.png"), full_page=True)
                found += panel.evaluate(AUDIT)
                if found:
                    problems[f"{width} {name}"] = found
    (shots / "screens-problems.json").write_text(json.dumps(problems, indent=1))
    assert not problems, "\n".join(f"{k}: {p}" for k, v in problems.items() for p in v)
