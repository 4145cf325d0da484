"""ui/views/zoo_table.py and ui/views/selfcheck.py without the page: the zoo table, its notes and charts
(checked against figures computed here), and zoo.features.zoo_table's request, JSON and downloads."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ui.views import zoo_table as view
from zoo.stats import Latency, zoo_row


def figure_texts(fig) -> str:
    layout = fig.layout
    return unwrapped(" ".join([layout.title.text or "", layout.xaxis.title.text or ""]
                              + [a.text for a in layout.annotations]))


def unwrapped(text: str) -> str:
    """A chart's text as one line: long texts are wrapped with <br> to fit a phone's chart."""
    return text.replace("<br>", " ")


def model_points(fig) -> list[tuple[str, float, float]]:
    """(model, x, y) of each model's point: one trace per model, named after it."""
    return [(t.name, t.x[0], t.y[0]) for t in fig.data if t.name]


def test_zoo_table_at_448_names_the_resolution_and_scales_the_paper_column(zoo):
    rows = [zoo_row(s, 448) for s in zoo]
    headers = view.zoo_headers(448)
    assert "GMACs at 448 px" in headers and "paper GMACs (at 224 px)" in headers and len(headers) == 13
    table = view.zoo_table(rows, {})
    paper = headers.index("paper GMACs (at 224 px)")
    assert table[0][paper] == f"1.8 (≈ {1.8 * (448 / 224) ** 2:.1f} at 448)"  # resnet18, Table 1: 1.8 G
    assert table[4][paper] == f"11.3 (≈ {11.3 * 4:.1f} at 448)"
    assert "448×448" in view.resolution_note(448) and "(448/224)² = 4.00" in view.resolution_note(448)
    assert view.zoo_table([zoo_row(zoo.get("resnet18"), 224)], {})[0][paper] == "1.8"  # as printed at 224


def test_plots_name_the_resolution_and_explain_empty_plots(zoo):
    rows = [zoo_row(s, 448) for s in zoo]
    fig = view.accuracy_vs(rows, "macs")
    assert unwrapped(fig.layout.xaxis.title.text) == "multiply-adds (G) at 448×448"
    points = model_points(fig)
    assert [p[0] for p in points] == [r.name for r in rows]
    assert [p[1] for p in points] == pytest.approx([r.macs / 1e9 for r in rows])
    assert [p[2] for p in points] == pytest.approx([r.top1 for r in rows])
    # Each tooltip names the depth and gives its values.
    tip = fig.data[1].hovertemplate
    assert "<b>ResNet-18</b>" in tip and "%{x:.2f} G" in tip and "%{y:.2f} %" in tip

    assert "tick 'Measure latency'" in figure_texts(view.accuracy_vs(rows, "latency"))
    timed = [dataclasses.replace(r, latency=Latency("cpu", 1, 10.0 * (i + 1), 9.0, 11.0, 100.0, 1))
             for i, r in enumerate(rows)]
    assert (unwrapped(view.accuracy_vs(timed, "latency").layout.xaxis.title.text)
            == "median latency (ms) at 448×448, batch 1, cpu")

    unknown = [dataclasses.replace(r, top1=None, top5=None) for r in rows]
    for x in ("macs", "latency"):
        text = figure_texts(view.accuracy_vs([dataclasses.replace(r, latency=t.latency) for r, t in zip(unknown, timed)],
                                        x))
        assert "no reported top-1" in text and "resnet152" in text
    partial = view.accuracy_vs(unknown[:2] + rows[2:], "macs")
    assert len(model_points(partial)) == 3
    assert "resnet18, resnet34" in partial.layout.title.text


# --- zoo.features.zoo_table: the request, the run, the one JSON -------------------------------

@pytest.fixture(scope="module")
def rt(zoo_file):
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    return Runtime(Zoo.load(zoo_file), "cpu", precision="fp32")


@pytest.mark.parametrize("resolution", ["224", True, 224.5, 16, [224]])
def test_the_request_refuses_a_resolution_that_is_not_a_size(rt, resolution):
    from zoo.errors import ZooError
    from zoo.features import zoo_table

    with pytest.raises(ZooError, match="resolution must be a whole number from 32 to 2048"):
        zoo_table.Request.create(rt, resolution)


def test_the_request_takes_json_numbers_and_known_models_once(rt):
    from zoo.errors import UnknownModelError
    from zoo.features import zoo_table

    req = zoo_table.Request.create(rt, 320.0, 1, ["resnet50", "resnet18", "resnet50"])
    assert req == zoo_table.Request(320, True, ("resnet50", "resnet18"))
    with pytest.raises(UnknownModelError, match="resnet51"):
        zoo_table.Request.create(rt, 224, models=["resnet51"])


def test_the_table_is_one_json_with_every_old_field(rt, monkeypatch):
    """/zoo's models and cached, plus what `list --json` printed (repo, revision, cached per row)."""
    from zoo.features import zoo_table

    monkeypatch.setattr(zoo_table, "cached_path", lambda spec: "x" if spec.name == "resnet34" else None)
    events = list(zoo_table.run(rt, zoo_table.Request.create(rt, 160)))
    table = events[-1]
    assert [e.row.name for e in events[:-1]] == rt.zoo.names == [e.row.name for e in table.entries]
    out = json.loads(json.dumps(table.to_json()))
    assert out["resolution"] == 160 and out["cached"] == {n: n == "resnet34" for n in rt.zoo.names}
    first = out["models"][0]
    assert first == {**zoo_row(rt.zoo.get("resnet18"), 160).to_json(), "repo": rt.zoo.get("resnet18").repo,
                     "revision": rt.zoo.get("resnet18").revision, "cached": False}
    assert [m["cached"] for m in out["models"]] == [False, True, False, False, False]
    cells = view.table_rows(table)
    assert [row[-1] for row in cells] == ["no", "yes", "no", "no", "no"]
    assert cells == view.zoo_table(table.rows, table.cached)


def test_a_download_refreshes_cached_and_keeps_the_latency(rt, monkeypatch):
    from zoo.features import zoo_table

    lat = Latency("cpu", 1, 12.5, 12.0, 13.0, 80.0, 1)
    monkeypatch.setattr(zoo_table, "cached_path", lambda spec: None)
    table = zoo_table.result(rt, zoo_table.Request.create(rt, 224))
    table = dataclasses.replace(table, entries=tuple(dataclasses.replace(e, row=dataclasses.replace(e.row, latency=lat))
                                                     for e in table.entries))
    monkeypatch.setattr(zoo_table, "cached_path", lambda spec: "x" if spec.name == "resnet18" else None)
    after = table.with_cached(rt.zoo)
    assert after.cached["resnet18"] and not after.cached["resnet50"]
    assert all(r.latency == lat for r in after.rows)


def test_the_estimate_counts_timing_forwards_only_when_latency_is_asked(rt):
    from zoo.features import zoo_table

    assert zoo_table.estimate(rt, zoo_table.Request.create(rt, 224)).forwards == 0
    timed = zoo_table.estimate(rt, zoo_table.Request.create(rt, 448, latency=True))
    assert timed.forwards == 13 * len(rt.zoo.names)  # 3 warm-up and 10 timed forwards per model


def test_a_stopped_run_ends_between_models(rt):
    from zoo.cancel import Cancelled, Token, running
    from zoo.features import zoo_table

    token = Token()
    events = zoo_table.run(rt, zoo_table.Request.create(rt, 224))
    with running(token):
        next(events)
        token.cancel()
        with pytest.raises(Cancelled):
            next(events)


def test_download_needs_a_name_and_reports_each_file(rt, monkeypatch, tmp_path):
    from zoo.errors import ZooError
    from zoo.features import zoo_table

    with pytest.raises(ZooError, match="--all"):
        zoo_table.download(rt.zoo, [])
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"0" * 2_000_000)
    monkeypatch.setattr(zoo_table, "fetch_weights", lambda spec, progress=None: weights)
    told = []
    done = zoo_table.download(rt.zoo, ["resnet18", "resnet34"], each=lambda spec, path: told.append(spec.name))
    assert told == ["resnet18", "resnet34"] and [s.name for s, _ in done] == told
    assert view.downloaded(done) == "resnet18: 2 MB, verified\n\nresnet34: 2 MB, verified"
    assert view.downloaded([]) == "Pick at least one model."
    assert [s.name for s, _ in zoo_table.download(rt.zoo, every=True)] == rt.zoo.names


def test_stages_and_charts_of_a_table(rt):
    from zoo.features import zoo_table

    rows = zoo_table.stages(rt.zoo, "resnet50", 224)
    assert [r[0] for r in view.stage_table(rows)] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    macs, latency = view.charts(zoo_table.result(rt, zoo_table.Request.create(rt, 224)))
    assert len(model_points(macs)) == 5 and "tick 'Measure latency'" in figure_texts(latency)


def test_selfcheck_markdown_names_each_model_and_its_diagnosis():
    from ui.views.selfcheck import selfcheck_markdown
    from zoo.selfcheck import InputFit, ModelCheck, PhotoCheck, SelfCheck

    photo = PhotoCheck("chelsea.png", "a tabby", ["281 tabby"], [{"index": 281, "label": "tabby", "prob": 0.9}],
                       InputFit("ok"), True, True)
    good = ModelCheck("resnet18", "commit abc", True, "sha ok", True, [photo], True, "answers as ImageNet expects")
    bad = ModelCheck("resnet50", "main (not pinned)", False, "sha mismatch", False, [], False, "the file differs")
    text = selfcheck_markdown(SelfCheck([good, bad], "cpu", "fp32"))
    assert text.startswith("**Self-check: 1 of 2 models pass; resnet50 fails.**")
    assert "| resnet18 | passes | commit abc | sha ok | chelsea.png: pass, tabby 0.90 |" in text
    assert "| resnet50 | **fails** |" in text and "* **resnet50**: the file differs" in text
    assert selfcheck_markdown(SelfCheck([good], "cpu", "fp32")).startswith("**Self-check: the model passes")


def test_the_about_credits_are_the_examples_credits_without_their_heading():
    from ui.common import EXAMPLES
    from ui.views.about import credits_markdown

    text = credits_markdown()
    source = (EXAMPLES / "CREDITS.md").read_text(encoding="utf-8").splitlines()
    assert "Stefan van der Walt" in text and not any(ln.startswith("# ") for ln in text.splitlines())
    assert all(ln in text for ln in source if ln.strip() and not ln.startswith("# "))


def test_the_published_references_are_their_own_table_labelled_published_with_their_source(zoo):
    from zoo.published import BUILTIN

    # The test zoo's entries are loopback copies: give them the built-in weights' figures, as ZooRow does.
    rows = [dataclasses.replace(zoo_row(s, 224), published=BUILTIN[s.arch.name].to_json()) for s in zoo
            if s.arch.name in BUILTIN]
    table = view.published_table(rows)
    assert view.PUBLISHED_TITLE == "Published, ImageNet variants, not your data"
    assert len(view.PUBLISHED_HEADERS) == len(view.PUBLISHED_COLUMN_WIDTHS) == len(table[0]) == 7
    assert sum(view.PUBLISHED_COLUMN_WIDTHS) < 1214  # the zoo table's box at 1400 px
    by_name = {r[0]: r[1:] for r in table}
    # Each built-in depth's figures as the registry holds them, in the headers' order; "–" where none.
    r50 = BUILTIN["resnet50"]
    assert by_name["resnet50"] == [f"{r50.imagenet_v2:.2f}", f"{r50.imagenet_real:.2f}", f"{r50.imagenet_r:.2f}",
                                   f"{r50.imagenet_sketch:.2f}", "–", "76.70"]
    assert by_name["resnet18"][-1] == "–" and by_name["resnet18"][0] == f"{BUILTIN['resnet18'].imagenet_v2:.2f}"
    # Nothing published is mixed into the measured table.
    assert not any("ImageNet-V2" in h for h in view.zoo_headers(224))
    note = view.published_note(rows)
    assert "not measured here" in note and "resnet50.tv_in1k" in note and "Hendrycks" in note
    assert "no resnet50.tv_in1k row" in note  # the registry's note on the missing ImageNet-A figure


def test_a_model_without_published_figures_has_no_row_and_no_note(zoo):
    rows = [dataclasses.replace(zoo_row(zoo.get("resnet18"), 224), published=None)]
    assert view.published_table(rows) == [] and view.published_note(rows) == view.NO_PUBLISHED
    custom = dataclasses.replace(rows[0], name="mine", published={"imagenet_v2": 50.0, "source": "my paper"})
    assert view.published_table([custom]) == [["mine", "50.00", "–", "–", "–", "–", "–"]]
    assert "* mine: my paper" in view.published_note([custom])
