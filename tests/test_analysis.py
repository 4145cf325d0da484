"""Depth lab: every number against plain torchvision (unfolded, fp32, with hooks) built in the test."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from browser import hover_point, open_page
from conftest import ARCHS, EXAMPLES, hook_count, plain_model, run_cli
from rest import call, upload
from zoo import analysis as za
from zoo.analysis import analyze, blocks, deletion_sets
from zoo.images import load_image, model_crop, to_tensor
from zoo.inference import classify
from zoo.models import build, load_model
from zoo.registry import ARCHITECTURES

IMAGE = EXAMPLES / "chelsea.png"


plain = plain_model


def plain_input(lm, path=IMAGE) -> torch.Tensor:
    pre = lm.spec.preprocessing
    return to_tensor(model_crop(load_image(path).image, pre), pre)


def plain_blocks(m: torch.nn.Module) -> list[torch.nn.Module]:
    return [b for stage in (m.layer1, m.layer2, m.layer3, m.layer4) for b in stage]


def last_bn(block: torch.nn.Module) -> torch.nn.Module:
    return block.bn3 if hasattr(block, "bn3") else block.bn2


def plain_probs(m: torch.nn.Module, x: torch.Tensor, deleted: set[int] = frozenset()) -> np.ndarray:
    """Softmax of the plain model with the residual branch of each block in ``deleted`` zeroed by a hook."""
    handles = [last_bn(b).register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
               for i, b in enumerate(plain_blocks(m)) if i in deleted]
    try:
        with torch.inference_mode():
            return torch.softmax(m(x), 1)[0].numpy()
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="module")
def r18(zoo, hosted):
    return load_model(zoo.get("resnet18"), "cpu", precision="fp32")


@pytest.fixture(scope="module")
def r50(zoo, hosted):
    return load_model(zoo.get("resnet50"), "cpu", precision="fp32")


@pytest.fixture(scope="module")
def r18_full(r18):
    return analyze(r18, IMAGE, lesion=True, deletions=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_block_counts_and_downsampling_flags(arch, zoo):
    """From the paper's layout (Table 1): a projection where the shape changes, nowhere else."""
    a = ARCHITECTURES[arch]
    expected = [(f"layer{s}.{j}", s, j == 0 and (s > 1 or a.block == "bottleneck"))
                for s, n in enumerate(a.blocks_per_stage, start=1) for j in range(n)]
    refs = blocks(build(zoo.get(arch), meta=True))
    assert [(r.name, r.stage, r.downsample) for r in refs] == expected
    assert len(refs) == {"resnet18": 8, "resnet34": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50}[arch]
    assert [r.index for r in refs] == list(range(len(refs)))


@pytest.mark.parametrize("fixture", ["r18", "r50"])
def test_statistics_equal_hooks_on_plain_torchvision(fixture, request, hosted):
    lm = request.getfixturevalue(fixture)
    arch = lm.spec.arch.name
    m, x = plain(arch, hosted), plain_input(lm)
    for mod in m.modules():  # torchvision adds in place: keep the tensors the hooks capture intact
        if isinstance(mod, torch.nn.ReLU):
            mod.inplace = False
    got = analyze(lm, IMAGE)
    pb = plain_blocks(m)
    responses, branches, shortcuts, inputs = {}, {}, {}, {}
    handles = []
    for i, b in enumerate(pb):
        handles.append(b.bn2.register_forward_hook(lambda _m, _i, out, i=i: responses.__setitem__(i, out.detach().clone())))
        handles.append(last_bn(b).register_forward_hook(lambda _m, _i, out, i=i: branches.__setitem__(i, out.detach().clone())))
        handles.append(b.register_forward_pre_hook(lambda _m, args, i=i: inputs.__setitem__(i, args[0])))
        if b.downsample is not None:
            handles.append(b.downsample.register_forward_hook(lambda _m, _i, out, i=i: shortcuts.__setitem__(i, out.detach().clone())))
    xg = x.clone().requires_grad_(True)
    logits = m(xg)[0]
    c = int(logits.argmax())
    grads = torch.autograd.grad(logits[c], [inputs[i] for i in range(len(pb))])
    for h in handles:
        h.remove()
    assert got.target.index == c and got.top1.index == c
    assert got.target.prob == pytest.approx(float(torch.softmax(logits.detach(), 0)[c]), abs=1e-4)
    assert len(got.blocks) == len(pb)
    for i, b in enumerate(got.blocks):
        std = float(responses[i].std(correction=0))
        s = shortcuts.get(i, inputs[i].detach())
        ratio = float(branches[i].norm() / s.norm())
        assert b.response_std == pytest.approx(std, rel=1e-4), b.name
        assert b.residual_ratio == pytest.approx(ratio, rel=1e-4), b.name
        assert b.grad_norm == pytest.approx(float(grads[i].norm()), rel=1e-3), b.name
        assert b.lesion is None
    assert got.deletions is None and "lesion" not in json.dumps(got.to_json())


def test_a_named_target_and_its_gradients(r18, hosted):
    m, x = plain(r18.spec.arch.name, hosted), plain_input(r18)
    got = analyze(r18, IMAGE, target="tabby")
    assert got.target.index == 281 and got.target.label == "tabby"
    inputs = []
    handle = m.layer3[1].register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    logits = m(x.clone().requires_grad_(True))[0]
    handle.remove()
    (g,) = torch.autograd.grad(logits[281], inputs)
    assert got.blocks[5].name == "layer3.1"
    assert got.blocks[5].grad_norm == pytest.approx(float(g.norm()), rel=1e-3)
    assert got.target.prob == pytest.approx(float(torch.softmax(logits.detach(), 0)[281]), abs=1e-4)


def test_each_lesion_equals_plain_torchvision_with_that_branch_zeroed(r18, r18_full, hosted):
    m, x = plain("resnet18", hosted), plain_input(r18)
    c = r18_full.target.index
    for i, b in enumerate(r18_full.blocks):
        ref = plain_probs(m, x, {i})
        assert b.lesion.prob == pytest.approx(float(ref[c]), abs=1e-4), b.name
        assert b.lesion.top1.index == int(ref.argmax()), b.name
        assert b.lesion.top1.label == r18.labels[int(ref.argmax())]
    # Deleting nothing is the plain model; k = 0 of the curve and the baseline say so.
    ref = plain_probs(m, x)
    assert r18_full.baseline_prob == pytest.approx(float(ref[c]), abs=1e-4)
    assert r18_full.deletions[0].k == 0 and r18_full.deletions[0].prob_mean == pytest.approx(float(ref[c]), abs=1e-4)


def test_lesions_of_a_bottleneck_network(r50, hosted):
    got = analyze(r50, IMAGE, lesion=True)
    m, x = plain("resnet50", hosted), plain_input(r50)
    c = got.target.index
    for i in (0, 1, 3, 7, 12, 15):  # both kinds of block, in every stage
        ref = plain_probs(m, x, {i})
        assert got.blocks[i].lesion.prob == pytest.approx(float(ref[c]), abs=1e-4), got.blocks[i].name
    # Logits: against the plain model's logits, not its probabilities.
    handle = m.layer2[2].bn3.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    with torch.inference_mode():
        z = m(x)[0]
    handle.remove()
    assert got.blocks[5].name == "layer2.2"
    assert got.blocks[5].lesion.logit == pytest.approx(float(z[c]), rel=1e-4, abs=1e-3)


def test_cumulative_deletions_equal_plain_torchvision(r18, r18_full, hosted):
    refs = blocks(r18.module)
    drawn = deletion_sets(refs)
    identity = {r.index for r in refs if not r.downsample}
    assert [k for k, _ in drawn] == [1, 2, 4, 5]  # resnet18 has 5 identity-shortcut blocks
    assert all(s <= identity and len(s) == k for k, draw in drawn for s in draw)
    assert deletion_sets(refs) == drawn  # seeded: reproducible
    m, x = plain("resnet18", hosted), plain_input(r18)
    c, top = r18_full.target.index, int(plain_probs(m, x).argmax())
    for (k, draw), d in zip(drawn, r18_full.deletions[1:]):
        probs = [plain_probs(m, x, set(s)) for s in draw]
        assert (d.k, d.draws) == (k, len(draw)) and d.draws == (1 if k == 5 else za.DELETION_DRAWS)
        assert d.prob_mean == pytest.approx(float(np.mean([p[c] for p in probs])), abs=1e-4)
        assert d.top1_kept == pytest.approx(float(np.mean([int(p.argmax()) == top for p in probs])))


def test_batches_of_any_size_give_the_same_logits(r50):
    """Variants travel in batches; chunking and reordering must not change any of them."""
    x = za.prepare(r50, IMAGE)
    logits, inputs = za.clean_inputs(r50, x)
    refs = blocks(r50.module)
    sets = [frozenset({r.index}) for r in refs] + [frozenset({2, 9}), frozenset({5}), frozenset({1, 4, 14})]
    seen = []
    full = za.lesioned_logits(r50, inputs, sets, progress=lambda f, msg: seen.append((f, msg)))
    small = za.lesioned_logits(r50, inputs, sets, max_batch=3)
    one = torch.stack([za.lesioned_logits(r50, inputs, [s])[0] for s in sets])
    torch.testing.assert_close(full, one, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(small, one, rtol=1e-4, atol=1e-3)
    assert seen[-1][0] == pytest.approx(1.0) and seen[-1][1] == "block 16 of 16"
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    with torch.inference_mode():
        torch.testing.assert_close(logits, r50.forward(x)[1][0])


def test_reduced_precision_lesions_keep_fp32_statistics(r18, r18_full):
    """At bf16 (as on a GPU or an AMX CPU) lesions run at the model's precision, statistics stay fp32."""
    fast = dataclasses.replace(r18, precision=torch.bfloat16, lock=threading.Lock())
    got = analyze(fast, IMAGE, lesion=True, deletions=True)
    assert got.precision == "bf16" and got.to_json()["precision"] == "bf16"
    for a, b in zip(got.blocks, r18_full.blocks):
        assert (a.response_std, a.residual_ratio, a.grad_norm) == (b.response_std, b.residual_ratio, b.grad_norm)
        assert a.lesion.prob == pytest.approx(b.lesion.prob, abs=0.05)
    assert got.baseline_prob == pytest.approx(r18_full.baseline_prob, abs=0.05)


def test_json_schema(r18_full):
    j = r18_full.to_json()
    assert set(j) == {"model", "target", "precision", "blocks", "deletions"}
    assert set(j["target"]) == {"index", "label", "prob"} and j["precision"] == "fp32"
    for b in j["blocks"]:
        assert set(b) == {"name", "stage", "downsample", "response_std", "residual_ratio", "grad_norm", "lesion"}
        assert set(b["lesion"]) == {"prob", "logit", "top1"} and set(b["lesion"]["top1"]) == {"index", "label"}
    for d in j["deletions"]:
        assert set(d) == {"k", "draws", "prob_mean", "top1_kept"}
    json.dumps(j)


def test_model_restored_after_a_failure_half_way(r18, monkeypatch):
    before = classify(r18, IMAGE)

    class Boom(RuntimeError):
        pass

    original = za.block_forward
    calls = []

    def fail_in_the_sweep(block, x, lesioned=False):
        calls.append(lesioned)
        if sum(calls) == 3:  # the third lesioned block, half-way through the study
            r18.module.layer2[1].register_forward_hook(lambda *a: None)  # a hook nobody removes
            r18.module.layer3.train()
            raise Boom("failure in the middle of a lesion study")
        return original(block, x, lesioned)

    monkeypatch.setattr(za, "block_forward", fail_in_the_sweep)
    with pytest.raises(Boom):
        analyze(r18, IMAGE, lesion=True)
    assert hook_count(r18.module) == 0
    assert not r18.lock.locked()
    assert not any(m.training for m in r18.module.modules())
    assert all(not p.requires_grad for p in r18.module.parameters())

    def fail_in_the_backward(*a, **k):
        raise Boom("failure during the gradients")

    monkeypatch.setattr(za, "block_forward", original)
    monkeypatch.setattr(torch.autograd, "grad", fail_in_the_backward)
    with pytest.raises(Boom):
        analyze(r18, IMAGE)
    monkeypatch.undo()
    assert not r18.lock.locked() and hook_count(r18.module) == 0
    np.testing.assert_array_equal(classify(r18, IMAGE).logits, before.logits)


def test_no_other_request_sees_a_lesioned_model(r18, r18_full):
    """A classification run while a lesion study is half-way answers as on a quiet server."""
    quiet = {p: classify(r18, p).logits for p in (IMAGE, EXAMPLES / "rocket.jpg")}
    during, errors = {}, []

    def other_request():
        try:
            for p in quiet:
                during[p] = classify(r18, p).logits
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def progress(_fraction, message):
        if message.endswith("block 4 of 8") and not during:
            t = threading.Thread(target=other_request)
            t.start()
            t.join(timeout=120)  # classify takes no lock: it must finish while the study waits here
            assert not t.is_alive()

    got = analyze(r18, IMAGE, lesion=True, deletions=True, progress=progress)
    assert not errors and set(during) == set(quiet)
    for p in quiet:
        np.testing.assert_array_equal(during[p], quiet[p])
    assert got.to_json() == r18_full.to_json()
    free = threading.Thread(target=other_request)  # and freely overlapping, for good measure
    free.start()
    analyze(r18, EXAMPLES / "rocket.jpg", lesion=True)
    free.join()
    for p in quiet:
        np.testing.assert_array_equal(during[p], quiet[p])


def test_process_wide_module_hooks_do_not_reach_the_analysis(r18, r18_full):
    """FlopCounterMode (the Model zoo tab) installs module hooks for every thread while it counts.

    They must neither run inside an analysis nor break its backward pass (they did: torch's
    module tracker cannot handle a leaf tensor under ``torch.autograd.grad``).
    """
    from torch.nn.modules.module import register_module_forward_hook
    from torch.utils.module_tracker import ModuleTracker

    ours = set(r18.module.modules())
    seen = []
    handle = register_module_forward_hook(lambda mod, _i, _o: seen.append(mod) if mod in ours else None)
    try:
        with ModuleTracker():
            got = analyze(r18, IMAGE, lesion=True, deletions=True)
    finally:
        handle.remove()
    assert not seen
    assert got.to_json() == r18_full.to_json()


def test_progress_names_the_model_and_the_block(r18):
    seen = []
    analyze(r18, IMAGE, lesion=True, progress=lambda f, msg: seen.append(msg))
    assert seen[0].startswith("resnet18: signal analysis")
    assert "resnet18: lesion study, block 8 of 8" in seen and seen[-1] == "resnet18: done"


def test_cli_json_schema_and_text(zoo_file, hosted):
    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--lesion", "--deletions", "--json", "--device", "cpu",
                "--precision", "fp32", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert set(j) == {"model", "target", "precision", "blocks", "deletions"} and j["model"] == "resnet18"
    assert [b["name"] for b in j["blocks"]][:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert set(j["blocks"][0]) == {"name", "stage", "downsample", "response_std", "residual_ratio", "grad_norm",
                                   "lesion"}
    assert [d["k"] for d in j["deletions"]] == [0, 1, 2, 4, 5]
    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--target", "tabby", "--lesion", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    assert "target 'tabby' (class 281" in r.stdout and "p deleted" in r.stdout
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("layer")]) == 8
    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--target", "tabby kat", "--zoo", str(zoo_file))
    assert r.returncode == 2 and "Unknown class" in r.stderr and "Traceback" not in r.stderr


def test_charts_are_labelled_and_name_each_block_in_their_tooltips(r18_full, tmp_path):
    """Plotly charts: a title, axis titles and a legend entry per depth; each point's tooltip names its
    block, the depth and the value; crosses mark the downsampling blocks; log axes where asked; the CSV
    holds every point."""
    import csv

    from ui import charts
    from ui.views.depth_lab import lab_charts

    signal_only = dataclasses.replace(r18_full, blocks=[dataclasses.replace(b, lesion=None) for b in r18_full.blocks],
                                      deletions=None)
    figures = lab_charts([r18_full, signal_only])
    assert all(f is not None for f in figures)
    assert lab_charts([signal_only])[4:] == [None, None]
    for fig in figures:
        assert fig.layout.title.text
        layout = fig.to_dict()["layout"]
        titles = {k[0]: layout[k].get("title", {}).get("text") for k in sorted(layout, reverse=True)
                  if k[1:5] == "axis" and layout[k].get("title", {}).get("text")}
        assert titles.get("x") and titles.get("y")
        assert {t.name for t in fig.data if t.showlegend is not False} >= {"resnet18 (8 blocks)"}
        assert json.loads(fig.to_json())["config"]["toImageButtonOptions"]["filename"].startswith("depth-lab-")
    response, _, ratio, grad, lesion, _ = figures
    assert response.layout.yaxis.type == grad.layout.yaxis.type == "log" and ratio.layout.yaxis.type is None
    line = response.data[0]
    assert "<b>ResNet-18</b>" in line.hovertemplate and "%{customdata[0]}" in line.hovertemplate
    assert "%{y:.3g}" in line.hovertemplate
    assert [c[0] for c in line.customdata] == [b.name for b in r18_full.blocks]  # "layer1.0" ... "layer4.1"
    assert list(line.y) == pytest.approx([b.response_std for b in r18_full.blocks])
    downs = [b.name for b in r18_full.blocks if b.downsample]
    crosses = [c[0] for c, s in zip(lesion.data[0].customdata, lesion.data[0].marker.symbol) if s == "x"]
    assert crosses == downs and len(downs) == 3
    rows = list(csv.reader(open(charts.csv_file(lesion, tmp_path), encoding="utf-8")))
    assert rows[0][:3] == ["series", "relative depth (block number / number of blocks)",
                           "p(target) with that block deleted"] and "block" in rows[0]
    assert len([r for r in rows if r[0] == "resnet18 (8 blocks)"]) == 8
    assert [p.rsplit("/", 1)[-1] for p in charts.csv_files(figures, tmp_path)] == [
        "depth-lab-response-std.csv", "depth-lab-response-sorted.csv", "depth-lab-residual-ratio.csv",
        "depth-lab-gradient.csv", "depth-lab-lesion.csv", "depth-lab-deletions.csv"]


# --- the app: /analyze as gradio_client and as an anonymous REST caller use it, and the tab in a browser ---

def assert_same_json(got: dict, expected: dict) -> None:
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_analyze_endpoint_with_gradio_client(client, app):
    from gradio_client import handle_file

    _, explorer = app
    *figures, text, details = client.predict(handle_file(str(IMAGE)), "resnet18", "", api_name="/analyze")
    direct = analyze(explorer.cache.get(explorer.zoo.get("resnet18")), IMAGE, lesion=True, deletions=True)
    relevance = details.pop("relevance")  # /analyze carries the relevance flow (epsilon-plus-flat) too
    assert relevance["composite"] == "epsilon-plus-flat" and relevance["target"]["index"] == details["target"]["index"]
    assert all(set(b.pop("relevance")) == {"shortcut", "branch", "share_branch"} for b in details["blocks"])
    assert_same_json(details, direct.to_json())
    assert len(figures) == 7 and all(f and f.get("plot") for f in figures)
    assert "resnet18" in text and "median response std" in text


def test_analyze_endpoint_over_raw_rest(app):
    url, explorer = app
    event, data = call(url, "analyze", [upload(url, EXAMPLES / "rocket.jpg"), "resnet18", "281: tabby"])
    assert event == "complete", data
    details = data[-1]
    direct = analyze(explorer.cache.get(explorer.zoo.get("resnet18")), EXAMPLES / "rocket.jpg", "tabby",
                     lesion=True, deletions=True)
    assert details["target"]["label"] == "tabby" and len(details["blocks"]) == 8
    assert details.pop("relevance")["composite"] == "epsilon-plus-flat"  # /analyze carries the relevance flow
    assert all(set(b.pop("relevance")) == {"shortcut", "branch", "share_branch"} for b in details["blocks"])
    assert_same_json(details, direct.to_json())
    event, message = call(url, "analyze", [upload(url, IMAGE), "resnet51", ""])
    assert event == "error" and "Unknown model 'resnet51'" in json.dumps(message)
    event, message = call(url, "analyze", [upload(url, IMAGE), "resnet18", "tabby kat"])
    assert event == "error" and "Unknown class" in json.dumps(message)


@pytest.mark.browser
def test_browser_depth_lab(app, shots):
    from playwright.sync_api import expect

    url, explorer = app
    with open_page(url, 1500, 1200) as page:
        page.get_by_role("tab", name="Depth lab").click()
        page.locator("#lab-image input[type=file]").set_input_files(str(IMAGE))
        summary = page.locator("#lab-summary")

        # Stop: a lesion study of every depth, stopped once the first depth is in; no other depth follows.
        page.locator("#lab-lesion-button").click()
        expect(summary).to_contain_text("resnet18", timeout=180_000)
        page.locator("#lab-stop").click()
        page.wait_for_timeout(5000)
        expect(summary).not_to_contain_text("resnet34")

        # Only resnet18 from here on, to keep it quick. A signal analysis clears the lesion charts.
        for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
            page.get_by_label(name, exact=True).uncheck()
        page.locator("#lab-signal-button").click()
        # The summary first: the stopped run may have left no lesion chart, so an empty one proves nothing.
        expect(summary).to_contain_text("median response std", timeout=180_000)
        expect(page.locator("#lab-plot-lesion .js-plotly-plot")).to_have_count(0)
        expect(summary).not_to_contain_text("a downsampling block deleted")
        for plot in ("response", "sorted", "ratio", "grad"):
            expect(page.locator(f"#lab-plot-{plot} .js-plotly-plot")).to_be_visible(timeout=30_000)
        # Hover the third block of ResNet-18 (layer2.0, a downsampling block): its tooltip names it.
        tip = hover_point(page, "#lab-plot-response", point=2)
        assert "ResNet-18" in tip and "layer2.0" in tip and "downsampling block" in tip, tip
        r18 = explorer.cache.get(explorer.zoo.get("resnet18"))
        std = analyze(r18, IMAGE).blocks[2].response_std
        assert f"{std:.3g}" in tip, tip
        expect(page.locator("#lab-data")).to_contain_text("depth-lab-response-std")
        # The PNG: drawn by the browser from the chart's modebar (camera icon), named after the chart.
        with page.expect_download() as saved:
            page.locator("#lab-plot-response .modebar-btn[data-title='Download plot as a PNG']").click()
        assert saved.value.suggested_filename == "depth-lab-response-std.png"
        assert saved.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page.screenshot(path=str(shots / "browser-depth-lab-signal.png"), full_page=True)

        page.locator("#lab-lesion-button").click()
        expect(page.locator("#lab-plot-lesion .js-plotly-plot")).to_be_visible(timeout=180_000)
        expect(page.locator("#lab-plot-deletions .js-plotly-plot")).to_be_visible(timeout=30_000)
        expect(summary).to_contain_text("a downsampling block deleted")
        expect(summary).to_contain_text("of 8")
        page.screenshot(path=str(shots / "browser-depth-lab-lesion.png"), full_page=True)


def test_cli_relevance_per_block_equals_relevance_flow_called_directly(zoo_file, r18):
    """Issue 34: ``analyze --relevance``: each block's JSON gains the relevance flow's split, the same
    numbers as ``zoo.relevance.relevance_flow`` on the same model, image, class and composite."""
    from zoo.relevance import relevance_flow

    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--relevance", "--composite", "epsilon-gamma-box",
                "--json", "--device", "cpu", "--precision", "fp32", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    direct = relevance_flow(r18, IMAGE, j["target"]["index"], "epsilon-gamma-box")
    assert [b["name"] for b in j["blocks"]] == [b.name for b in direct.blocks]
    for got, want in zip(j["blocks"], direct.blocks):
        assert set(got["relevance"]) == {"shortcut", "branch", "share_branch"}
        assert got["relevance"]["shortcut"] == pytest.approx(want.shortcut, rel=1e-4, abs=1e-6)
        assert got["relevance"]["branch"] == pytest.approx(want.branch, rel=1e-4, abs=1e-6)
    assert j["relevance"]["composite"] == "epsilon-gamma-box"
    assert j["relevance"]["conservation"] == pytest.approx(direct.conservation, rel=1e-4)
    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--relevance", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    assert "R branch" in r.stdout and "epsilon-plus-flat" in r.stdout
    r = run_cli("analyze", str(IMAGE), "--model", "resnet18", "--relevance", "--composite", "alpha",
                "--zoo", str(zoo_file))
    assert r.returncode == 2 and "Traceback" not in r.stderr
