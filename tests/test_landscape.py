"""Error surfaces (issue 24): every value against plain torchvision, on the generated test weights."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from browser import open_page
from conftest import EXAMPLES, plain_model, run_cli
from zoo import landscape as zl
from zoo.cancel import Cancelled, Token, running
from zoo.errors import ZooError
from zoo.features import landscape
from zoo.images import load_image, model_crop, to_tensor
from zoo.runtime import Runtime

IMAGE = EXAMPLES / "chelsea.png"
SPAN = 0.2  # small: the random test weights give moderate losses there, not saturated 0 or 1e4


@pytest.fixture(scope="module")
def explorer(zoo, hosted) -> Runtime:
    return Runtime(zoo, "cpu", precision="fp32")


def surface_of(rt, sources, model, target=None, progress=None, **settings) -> zl.Landscape:
    """One model's error surface through the feature, as the tab and the command line run it."""
    return landscape.result(rt, landscape.Request.create(rt, sources, [model], target, **settings), progress)


@pytest.fixture(scope="module")
def surface(explorer) -> zl.Landscape:
    """resnet18, 3 x 3 around theta, directions kept."""
    return surface_of(explorer, IMAGE, "resnet18", grid=3, span=SPAN, dims=2, seed=7, keep_directions=True)


def plain_x(spec, paths=(IMAGE,)) -> torch.Tensor:
    pre = spec.preprocessing
    return torch.cat([to_tensor(model_crop(load_image(p).image, pre), pre) for p in paths])


def plain_ce(model, x, targets) -> float:
    with torch.inference_mode():
        return float(torch.nn.functional.cross_entropy(model(x), torch.tensor(targets)))


def test_the_test_weights_have_live_residual_branches(hosted):
    # timm-style init zeroes each block's last BN scale, which would make every residual
    # branch 0 and the landscape meaningless; the generated weights must not.
    state = load_file(str(hosted["resnet18"].path))
    last = [k for k in state if k.endswith(("bn2.weight",)) and k.startswith("layer")]
    assert last and all(state[k].abs().min() > 0 for k in last)


def test_the_centre_is_the_plain_cross_entropy_of_the_unperturbed_model(surface, zoo, hosted):
    spec = zoo.get("resnet18")
    m = plain_model("resnet18", hosted)
    x = plain_x(spec)
    with torch.inference_mode():
        top1 = int(m(x).argmax())
    assert surface.images[0].index == top1 and surface.images[0].chosen == "top-1"
    assert surface.center_loss == pytest.approx(plain_ce(m, x, [top1]), rel=1e-4)
    # The grid's centre point is theta itself, computed through the perturbation path.
    assert surface.alphas[1] == 0.0 and surface.betas[1] == 0.0
    assert surface.loss[1][1] == pytest.approx(surface.center_loss, rel=1e-6)
    assert surface.alphas == [-SPAN, 0.0, SPAN] and surface.forwards == (9 + 1) * 1
    # The surface is not flat: the directions do move the weights.
    assert len({round(v, 4) for row in surface.loss for v in row}) > 3


def test_a_point_recomputed_with_plain_torchvision_from_the_saved_directions(surface, zoo, hosted, tmp_path):
    path = surface.save_directions(tmp_path / "dirs.safetensors")
    saved = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["seed"] == "7" and meta["model"] == "resnet18" and meta["normalization"] == "filter"
    m = plain_model("resnet18", hosted)
    x = plain_x(zoo.get("resnet18"))
    target = [surface.images[0].index]
    for j, i in ((0, 2), (2, 0), (1, 0)):
        a, b = surface.alphas[i], surface.betas[j]
        moved = plain_model("resnet18", hosted)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                if f"delta.{name}" in saved:
                    p.copy_(dict(m.named_parameters())[name] + a * saved[f"delta.{name}"] + b * saved[f"eta.{name}"])
        assert surface.loss[j][i] == pytest.approx(plain_ce(moved, x, target), rel=1e-3, abs=1e-4), (a, b)


def test_directions_are_filter_normalized_and_leave_biases_and_batchnorm_alone(surface, hosted):
    m = plain_model("resnet18", hosted)
    dirs = surface.directions
    params = dict(m.named_parameters())
    perturbed = {n for n, p in params.items() if p.dim() > 1}
    assert {k.split(".", 1)[1] for k in dirs} == perturbed
    assert not any("bn" in k or k.endswith("bias") or "downsample.1" in k for k in dirs)
    for key, d in dirs.items():
        theta = params[key.split(".", 1)[1]]
        assert d.shape == theta.shape
        torch.testing.assert_close(d.reshape(d.shape[0], -1).norm(dim=1), theta.reshape(theta.shape[0], -1).norm(dim=1),
                                   rtol=1e-5, atol=1e-7)
    assert surface.perturbed == sum(params[n].numel() for n in perturbed)
    # Seeded: the same seed draws the same directions, another seed others.
    again = zl.filter_normalized(m, torch.Generator().manual_seed(7))
    other = zl.filter_normalized(m, torch.Generator().manual_seed(8))
    torch.testing.assert_close(again["fc.weight"], dirs["delta.fc.weight"])
    assert not torch.allclose(other["fc.weight"], dirs["delta.fc.weight"])


def shared_outputs(explorer, x):
    lm = explorer.cache.get(explorer.zoo.get("resnet18"))
    with torch.inference_mode():
        return lm.forward(lm.to_input(x))[1].clone()


def test_the_shared_model_is_unchanged_during_and_after_a_run(explorer, zoo):
    x = plain_x(zoo.get("resnet18"))
    lm = explorer.cache.get(zoo.get("resnet18"))
    before = shared_outputs(explorer, x)
    state = {k: v.clone() for k, v in lm.module.state_dict().items()}
    during = []

    def progress(fraction, message):
        if "point" in message:
            during.append(shared_outputs(explorer, x))

    surface_of(explorer, IMAGE, "resnet18", grid=3, span=1.0, dims=1, progress=progress)
    assert len(during) == 3
    for out in during + [shared_outputs(explorer, x)]:
        assert torch.equal(out, before)
    assert all(torch.equal(v, state[k]) for k, v in lm.module.state_dict().items())
    assert explorer.cache.get(zoo.get("resnet18")) is lm


def test_stop_ends_a_run_between_points(explorer, zoo):
    x = plain_x(zoo.get("resnet18"))
    before = shared_outputs(explorer, x)
    token = Token()
    points = []

    def progress(fraction, message):
        if "point" in message:
            points.append(message)
            if len(points) == 2:
                token.cancel()

    with running(token), pytest.raises(Cancelled, match="Stopped"):
        surface_of(explorer, IMAGE, "resnet18", grid=5, dims=2, progress=progress)
    assert len(points) == 2  # the second point's forward stopped within a block; no third began
    assert torch.equal(shared_outputs(explorer, x), before)
    # A generator consumer (the app) stops by closing the stream at a Step.
    stream = landscape.run(explorer, landscape.Request.create(explorer, IMAGE, ["resnet18"], grid=5, dims=2))
    steps = [next(stream) for _ in range(3)]
    assert all(isinstance(s, zl.Step) for s in steps) and steps[-1].done == 2
    stream.close()


def test_one_d_curves_json_targets_and_labels(explorer, tmp_path):
    folder = tmp_path / "set"
    (folder / "tabby").mkdir(parents=True)
    shutil.copy(IMAGE, folder / "tabby" / "cat.png")
    shutil.copy(EXAMPLES / "rocket.jpg", folder / "rocket.jpg")
    (folder / "notes.txt").write_text("not an image")
    r = surface_of(explorer, [folder], "resnet18", grid=3, span=SPAN, dims=1)
    out = json.loads(json.dumps(r.to_json()))
    assert {"model", "seed", "dims", "alphas", "betas", "loss", "center_loss", "images"} <= set(out)
    assert out["dims"] == 1 and out["betas"] == [0.0] and len(out["loss"]) == 1 and len(out["loss"][0]) == 3
    by_name = {i["name"].split("/")[-1]: i for i in out["images"]}
    assert by_name["cat.png"]["chosen"] == "label" and by_name["cat.png"]["label"] == "tabby"
    assert by_name["rocket.jpg"]["chosen"] == "top-1"
    assert [s["name"].split("/")[-1] for s in out["skipped"]] == ["notes.txt"]
    assert out["center_loss"] == pytest.approx(sum(i["center_loss"] for i in out["images"]) / 2, rel=1e-6)
    assert out["loss"][0][1] == pytest.approx(out["center_loss"], rel=1e-6)
    # A given class wins over labels; max_images keeps the first files and says so.
    given = surface_of(explorer, [folder], "resnet18", "goldfish", grid=3, dims=1, max_images=1)
    assert [i.chosen for i in given.images] == ["given"] and given.images[0].index == 1
    assert any("first 1 image(s); 1 more file(s) not used" in n for n in given.notes)


def test_settings_are_checked_before_any_work(explorer):
    for kwargs, match in (({"grid": 4}, "odd"), ({"grid": 101}, "odd"), ({"span": 0}, "span"),
                          ({"dims": 3}, "dims"), ({"span": math.inf}, "span"), ({"seed": -1}, "seed")):
        with pytest.raises(ZooError, match=match):
            surface_of(explorer, IMAGE, "resnet18", **kwargs)
    with pytest.raises(ZooError, match="Unknown class"):
        surface_of(explorer, IMAGE, "resnet18", "not a class at all")


def test_the_estimate_counts_points_times_images_and_learns_from_a_run(zoo, hosted):
    fresh = Runtime(zoo, "cpu", precision="fp32")

    def price(models, **settings):
        return landscape.estimate(fresh, landscape.Request.create(fresh, None, models, **settings))

    est = price(["resnet18", "resnet34"], unread=2, grid=3, dims=2)
    assert est.forwards == 2 * (9 + 1) * 2 and est.seconds is None
    assert price(["resnet18"], grid=5, dims=1).forwards == 6
    r = surface_of(fresh, IMAGE, "resnet18", grid=3, dims=1)
    est = price(["resnet18"], grid=3, dims=1)
    assert est.seconds == pytest.approx(4 * r.point_seconds) and "landscape" in est.basis
    with pytest.raises(ZooError, match="odd"):
        price(["resnet18"], grid=8)


def test_cli_json_and_directions_file(zoo_file, hosted, tmp_path):
    out = tmp_path / "d.safetensors"
    r = run_cli("--zoo", str(zoo_file), "landscape", str(IMAGE), "--model", "resnet18", "--grid", "3", "--dims", "1",
                "--span", "0.2", "--seed", "3", "--device", "cpu", "--directions-out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "resnet18" and data["seed"] == 3 and data["dims"] == 1 and len(data["loss"][0]) == 3
    assert data["loss"][0][1] == pytest.approx(data["center_loss"], rel=1e-6)
    saved = load_file(str(out))
    assert "delta.fc.weight" in saved and not any(k.startswith("eta.") for k in saved)  # 1-D: delta only
    text = run_cli("--zoo", str(zoo_file), "landscape", str(IMAGE), "--model", "resnet18", "--grid", "3",
                   "--device", "cpu")
    assert text.returncode == 0, text.stderr
    assert "loss at the trained weights" in text.stdout and "b \\ a" in text.stdout
    bad = run_cli("--zoo", str(zoo_file), "landscape", str(IMAGE), "--model", "resnet18", "--grid", "4")
    assert bad.returncode == 2 and "odd" in bad.stderr


def test_the_endpoint(client):
    from gradio_client import handle_file

    fig, summary, details = client.predict(handle_file(str(IMAGE)), "resnet18", api_name="/landscape")
    assert details["model"] == "resnet18" and details["dims"] == 2 and len(details["loss"]) == 7
    assert details["loss"][3][3] == pytest.approx(details["center_loss"], rel=1e-6)
    assert "resnet18" in summary


def test_the_tab_averages_over_extra_files_as_batch_reads_them(app, tmp_path):
    """The page's own event, called raw: the image plus a zip whose folder names the class."""
    import zipfile

    import httpx

    from rest import upload, upload_many

    url, _ = app
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(EXAMPLES / "rocket.jpg", "goldfish/rocket.jpg")
        z.writestr("readme.txt", "not an image")
    config = httpx.get(f"{url}/config", timeout=30).json()
    comps = {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}
    run = next(d for d in config["dependencies"] if [comps["landscape-run"]["id"], "click"] in d["targets"])
    image = upload(url, IMAGE)
    (more,) = upload_many(url, [archive])
    session = "landscape-more"
    data = [image, ["resnet18"], "", 1, 3, 0.2, 0, [more]]
    httpx.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": run["id"], "session_hash": session,
                                                    "trigger_id": comps["landscape-run"]["id"], "event_data": None},
               timeout=30).raise_for_status()
    last = None
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=300) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    last = msg
                    break
    assert last and last["success"], last
    details = last["output"]["data"][2]["models"][0]
    chosen = {i["name"].split("/")[-1]: i["chosen"] for i in details["images"]}
    assert chosen == {"chelsea.png": "top-1", "rocket.jpg": "label"}
    assert [s["name"].split("/")[-1] for s in details["skipped"]] == ["readme.txt"]
    assert "Skipped: " in last["output"]["data"][1]


def test_the_tab_bounds_the_grid_and_its_stop_button_cancels_the_run(app):
    import httpx

    url, _ = app
    config = httpx.get(f"{url}/config", timeout=30).json()
    comps = {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}
    grid = comps["landscape-grid"]["props"]
    assert grid["maximum"] <= 15 and grid["value"] == 7 and grid["minimum"] == 3  # gr.Slider holds on the server

    def deps_of(elem: str) -> list[dict]:
        return [d for d in config["dependencies"] if [comps[elem]["id"], "click"] in d["targets"]]

    (run,) = deps_of("landscape-run")
    assert [d["cancels"] for d in deps_of("landscape-stop") if d["cancels"]] == [[run["id"]]]


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 400])
def test_the_plot_in_the_page(app, shots, width):
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, width, 1000) as page:
        tab = page.get_by_role("tab", name="Error surfaces").or_(
            page.get_by_role("button", name="Error surfaces", exact=True)).first
        expect(tab).to_be_visible()
        tab.click()
        page.locator("#landscape-image input[type=file]").set_input_files(str(IMAGE))
        for name in ("resnet50", "resnet101", "resnet152"):  # two depths keep the test short
            page.locator("#landscape-models").get_by_label(name).uncheck()
        page.locator("#landscape-grid input[type=number]").fill("3")
        page.locator("#landscape-grid input[type=number]").press("Enter")
        expect(page.locator("#landscape-estimate")).to_contain_text("forward passes", timeout=30_000)
        expect(page.locator("#landscape-estimate")).to_contain_text("20 forward", timeout=30_000)
        page.locator("#landscape-run").click()
        expect(page.locator("#landscape-summary")).to_contain_text("2 of 2 depths", timeout=240_000)
        img = page.locator("#landscape-plot img")
        expect(img).to_be_visible(timeout=30_000)
        box = img.bounding_box()
        assert box["width"] >= (0.75 if width < 640 else 0.5) * width, box  # readable: most of the width
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, box
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1  # no sideways scroll
        page.screenshot(path=str(shots / f"landscape-{width}.png"), full_page=True)
