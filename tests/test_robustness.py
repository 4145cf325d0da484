"""Robustness lab (issue 19): corruptions, seeds, the sweep, a folder's accuracy/CE/mCE, Stop, limits.

References are written here from their sources, never from zoo's code: the ImageNet-C
formulas from Hendrycks' ``imagenet_c/corruptions.py`` (hendrycks/robustness), plain
torchvision on the saved PNGs, and accuracy/CE/mCE counted from the CLI's JSON lines.
"""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

from conftest import run_cli
from zoo import cancel
from zoo import robustness as rb
from zoo import robustness_sweep as rs
from zoo.features import robustness as feature
from zoo.errors import ZooError
from zoo.limits import Gate, LimitError, Limits
from zoo.runtime import Runtime


def run_sweep(rt, image, models, progress=None, **kw):
    """The sweep's events (``zoo.features.robustness``)."""
    return feature.run(rt, feature.SweepRequest.create(rt, image, models, **kw), progress)


def run_live(rt, image, corruption, severity, models, **kw):
    return feature.result(rt, feature.LiveRequest.create(rt, image, models, corruption, severity, **kw))


def price(rt, models, corruptions=None, severities=None, sources=None):
    if sources is None:
        return feature.estimate(rt, feature.SweepRequest.create(rt, None, models, corruptions, severities))
    return feature.estimate(rt, feature.Request.create(rt, sources, models, corruptions, severities))

FAST = ("gaussian_noise", "impulse_noise", "contrast", "jpeg_compression", "pixelate", "fog")


def crop(seed: int = 0) -> np.ndarray:
    """A 224 x 224 uint8 crop with edges, flat areas and noise (what a model would see)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((224, 224, 3), dtype=np.uint8)
    x[:, :112] = rng.integers(0, 256, 3, dtype=np.uint8)
    x[:, 112:] = rng.integers(0, 256, 3, dtype=np.uint8)
    x[60:160, 60:160] = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    return x


def library_output(x: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """corrupt-tta itself, seeded as its README says (NumPy's global generator), as uint8."""
    import corrupt_tta

    rb.library()  # impulse noise: the unseeded scikit-image call draws its seed from NumPy's generator too
    np.random.seed(seed)
    return np.uint8(np.clip(corrupt_tta.corrupt(x, severity=severity, corruption_name=name), 0, 255))


# --- the corruptions --------------------------------------------------------------------------

def test_the_table_has_the_19_corruptions_of_the_library():
    import corrupt_tta

    assert {c.name for c in rb.CORRUPTIONS} == set(corrupt_tta.corruption_dict)
    assert sum(c.imagenet_c for c in rb.CORRUPTIONS) == 15
    assert rb.get_corruption("JPEG").name == "jpeg_compression" and rb.get_corruption("Gaussian noise").seeded
    with pytest.raises(rb.UnknownCorruptionError, match="choose from"):
        rb.get_corruption("rain")
    with pytest.raises(rb.UnknownCorruptionError, match="from 1 to 5"):
        rb.severity_list([6])


@pytest.mark.parametrize("name", ["contrast", "brightness", "jpeg_compression", "pixelate", "defocus_blur", "zoom_blur",
                                  "saturate", "gaussian_blur"])
def test_deterministic_corruptions_equal_the_library_exactly(name):
    x = crop(1)
    for severity in (1, 3, 5):
        ours = rb.corrupt_array(x, name, severity, seed=rb.sample_seed(0, "a", name, severity))
        assert ours.dtype == np.uint8 and ours.shape == x.shape
        np.testing.assert_array_equal(ours, library_output(x, name, severity, seed=12345))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog", "frost",
                                  "snow", "spatter", "elastic_transform", "speckle_noise", "glass_blur"])
def test_seeded_corruptions_equal_the_library_with_the_same_seed_and_reproduce(name):
    x = crop(2)
    seed = rb.sample_seed(7, "cat.png", name, 3)
    ours = rb.corrupt_array(x, name, 3, seed)
    np.testing.assert_array_equal(ours, library_output(x, name, 3, seed))
    np.testing.assert_array_equal(ours, rb.corrupt_array(x, name, 3, seed))  # reproduces
    assert (ours != rb.corrupt_array(x, name, 3, seed + 1)).any()  # and the seed matters


def test_seeds_hold_across_threads_and_leave_numpy_alone():
    """Each call has its own generator: in a pool, in any order, the same crops; NumPy's global
    generator is neither read nor moved by them."""
    x = crop(3)
    jobs = [(n, s) for n in ("gaussian_noise", "impulse_noise", "fog", "spatter") for s in (1, 2, 3, 4, 5)]
    alone = [rb.corrupt_array(x, n, s, rb.sample_seed(0, "x", n, s)) for n, s in jobs]
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    with ThreadPoolExecutor(4) as pool:
        pooled = list(pool.map(lambda job: rb.corrupt_array(x, job[0], job[1], rb.sample_seed(0, "x", *job)),
                               jobs[::-1]))[::-1]
    assert (np.random.get_state()[1] == before).all()
    for a, b in zip(alone, pooled):
        np.testing.assert_array_equal(a, b)


def test_sample_seeds_depend_on_every_part():
    base = rb.sample_seed(0, "a.png", "fog", 2)
    assert base == rb.sample_seed(0, "a.png", "fog", 2)
    others = {rb.sample_seed(1, "a.png", "fog", 2), rb.sample_seed(0, "b.png", "fog", 2),
              rb.sample_seed(0, "a.png", "snow", 2), rb.sample_seed(0, "a.png", "fog", 3)}
    assert base not in others and len(others) == 4


# --- the published formulas (Hendrycks' imagenet_c/corruptions.py, written out here) -------------

def test_gaussian_and_shot_noise_follow_imagenet_c():
    x = crop(4)
    for s, (c_gauss, c_shot) in enumerate(zip([.08, .12, 0.18, 0.26, 0.38], [60, 25, 12, 5, 3]), start=1):
        seed = 1000 + s
        rs = np.random.RandomState(seed)
        ref = np.clip(x / 255. + rs.normal(size=x.shape, scale=c_gauss), 0, 1) * 255
        np.testing.assert_array_equal(rb.corrupt_array(x, "gaussian_noise", s, seed), np.uint8(ref))
        rs = np.random.RandomState(seed)
        ref = np.clip(rs.poisson(x / 255. * c_shot) / float(c_shot), 0, 1) * 255
        np.testing.assert_array_equal(rb.corrupt_array(x, "shot_noise", s, seed), np.uint8(ref))


def test_contrast_jpeg_and_pixelate_follow_imagenet_c():
    x = crop(5)
    for s in (1, 2, 3, 4, 5):
        c = [0.4, .3, .2, .1, .05][s - 1]
        y = x / 255.
        means = np.mean(y, axis=(0, 1), keepdims=True)
        np.testing.assert_array_equal(rb.corrupt_array(x, "contrast", s, 0),
                                      np.uint8(np.clip((y - means) * c + means, 0, 1) * 255))
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "JPEG", quality=[25, 18, 15, 10, 7][s - 1])
        np.testing.assert_array_equal(rb.corrupt_array(x, "jpeg_compression", s, 0), np.asarray(Image.open(buf)))
        c = [0.6, 0.5, 0.4, 0.3, 0.25][s - 1]
        small = Image.fromarray(x).resize((int(224 * c), int(224 * c)), Image.BOX).resize((224, 224), Image.BOX)
        np.testing.assert_array_equal(rb.corrupt_array(x, "pixelate", s, 0), np.asarray(small))


def test_brightness_follows_imagenet_c_within_one_level():
    """ImageNet-C converts with scikit-image's HSV in float64; corrupt-tta with OpenCV's in float32."""
    from skimage.color import hsv2rgb, rgb2hsv

    x = crop(6)
    for s in (1, 3, 5):
        hsv = rgb2hsv(x / 255.)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + [.1, .2, .3, .4, .5][s - 1], 0, 1)
        ref = np.uint8(np.clip(hsv2rgb(hsv), 0, 1) * 255)
        diff = np.abs(rb.corrupt_array(x, "brightness", s, 0).astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.9


# --- runs through the models --------------------------------------------------------------------

MODELS = ["resnet18", "resnet34"]
SWEEP = ("gaussian_noise", "fog")


@pytest.fixture(scope="module")
def explorer(zoo, hosted) -> Runtime:
    return Runtime(zoo, "cpu", precision="fp32")  # compared with fp32 torchvision below


@pytest.fixture(scope="module")
def nets(hosted):
    out = {}
    for arch in MODELS:
        m = torchvision.models.get_model(arch, weights=None)
        m.load_state_dict(load_file(str(hosted[arch].path)))
        out[arch] = m.eval()
    return out


def photo(seed: int, size=(200, 150)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.zeros((h, w, 3), dtype=np.uint8)
    x[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    x[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
    return Image.fromarray(x)


def plain_probs(net, crops: list[Image.Image]) -> np.ndarray:
    """torchvision on 224 crops as they are: ToTensor + Normalize, nothing of zoo; (N, 1000)."""
    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                         torchvision.transforms.Normalize([0.485, 0.456, 0.406],
                                                                          [0.229, 0.224, 0.225])])
    with torch.no_grad():
        return torch.softmax(net(torch.stack([tf(c.convert("RGB")) for c in crops])), 1).numpy()


def test_sweep_equals_plain_torchvision_on_the_library_crops(explorer, nets):
    img = photo(1)
    events = list(run_sweep(explorer, img, MODELS, corruptions=SWEEP, seed=5, batch_size=8))
    progress = [e for e in events if isinstance(e, rs.SweepProgress)]
    sweeps = [e for e in events if isinstance(e, rs.Sweep)]
    final = sweeps[-1]
    assert not final.partial and final.done == final.total == 10 and any(s.partial for s in sweeps)
    assert any("Fog, severity" in p.message for p in progress)  # progress names the corruption running
    clean = torchvision.transforms.CenterCrop(224)(torchvision.transforms.Resize(256)(img))
    cells = [(c, s) for c in range(len(SWEEP)) for s in range(5)]
    crops = [clean] + [Image.fromarray(library_output(np.asarray(clean), SWEEP[c], s + 1,
                                                      rb.sample_seed(5, "image", SWEEP[c], s + 1))) for c, s in cells]
    for m, arch in enumerate(MODELS):
        p = plain_probs(nets[arch], crops)
        assert final.clean_top1[m] == p[0].argmax()
        for j, (c, s) in enumerate(cells, start=1):
            assert final.top1[m, c, s] == p[j].argmax()
            assert final.target_p[m, c, s] == pytest.approx(p[j, final.target], abs=1e-4)
    # The breaking points and the sentence say what the arrays say.
    bps = final.breaking_points()
    for m in range(2):
        for c in range(2):
            changed = [s for i, s in enumerate((1, 2, 3, 4, 5)) if final.top1[m, c, i] != final.clean_top1[m]]
            assert bps[m, c] == (changed[0] if changed else 0)
    data = final.to_json()
    assert json.loads(json.dumps(data))["target"]["label"] == final.target_label
    # The same seed reproduces (to float noise: another batch composition); the crops' own
    # reproduction, bit for bit, is tested above.
    again = [e for e in run_sweep(explorer, img, MODELS[:1], corruptions=["fog"],
                                                  seed=5, target=final.target) if isinstance(e, rs.Sweep)][-1]
    np.testing.assert_array_equal(again.top1[0, 0], final.top1[0, 1])
    np.testing.assert_allclose(again.target_p[0, 0], final.target_p[0, 1], atol=1e-5)


def test_live_is_the_sweeps_cell_and_maps_the_corrupted_crop(explorer):
    img = photo(2)
    live = run_live(explorer, img, "fog", 3, MODELS, method="cam", seed=5)
    sweep = [e for e in run_sweep(explorer, img, MODELS, corruptions=["fog"], severities=[3], seed=5)
             if isinstance(e, rs.Sweep)][-1]
    clean = np.asarray(torchvision.transforms.CenterCrop(224)(torchvision.transforms.Resize(256)(img)))
    np.testing.assert_array_equal(np.asarray(live.crop), library_output(clean, "fog", 3,
                                                                        rb.sample_seed(5, "image", "fog", 3)))
    assert live.target == sweep.target and live.method == "cam"
    for m, r in enumerate(live.results):
        assert r.run.predictions[0].index == sweep.top1[m, 0, 0]
        assert float(r.run.probs[sweep.target]) == pytest.approx(sweep.target_p[m, 0, 0], abs=1e-5)
        assert r.explanation.target.index == live.target and r.run.crop is live.crop or m > 0
    zero = run_live(explorer, img, "fog", 0, MODELS[:1])
    np.testing.assert_array_equal(np.asarray(zero.crop), clean)


def test_verdict_sentence_from_breaking_points():
    labels = tuple(f"class{i}" for i in range(3))
    top1 = np.array([[[0, 1, 1, 1, 1]], [[0, 0, 0, 0, 2]]])  # (M=2, C=1, S=5)
    sweep = rs.Sweep(("resnet18", "resnet152"), (18, 152), ("fog",), (1, 2, 3, 4, 5), labels, 0, 0, "consensus",
                     np.array([0, 0]), np.array([0.9, 0.9]), np.array([0.9, 0.9]), top1, np.zeros((2, 1, 5)),
                     np.zeros((2, 1, 5)), 5, 5)
    assert sweep.breaking_point("resnet18", "fog") == 2 and sweep.breaking_point(1, 0) == 5
    v = sweep.verdict()
    assert (v.best, v.best_kept_through, v.best_lost_at, v.worst, v.worst_lost_at) == ("resnet152", 4, 5,
                                                                                       "resnet18", 2)
    assert v.sentence() == ("resnet152 kept class0 through fog 4 and lost it at 5; resnet18 lost it at fog 2.")


def test_stop_ends_a_sweep_between_batches(explorer):
    token = cancel.Token()
    seen = []

    def progress(fraction, message):
        if " crops" in message:  # the forwards' progress (not a download's)
            seen.append(message)
            if len(seen) == 3:
                token.cancel()

    with cancel.running(token), pytest.raises(cancel.Cancelled, match="Stopped"):
        for _ in run_sweep(explorer, photo(3), MODELS[:1], corruptions=SWEEP, batch_size=4,
                                           progress=progress):
            pass
    assert len(seen) == 3  # no forward after the Stop
    assert not [t for t in threading.enumerate() if t.name.startswith("zoo-prepare")]


def test_estimate_counts_forwards_prices_measurements_and_the_gate_refuses_over_the_ceiling(zoo, tmp_path):
    explorer = Runtime(zoo, "cpu", precision="fp32")  # nothing measured yet
    est = price(explorer, MODELS, ["fog", "glass_blur"], [1, 2])
    assert est.forwards == 2 * (1 + 2 * 2) and est.models == 2 and est.seconds is None
    for i in (4, 5):
        photo(i).save(tmp_path / f"{i}.png")
    folder = price(explorer, MODELS, sources=[tmp_path])
    # every crop of both images through both depths (decoding two small PNGs: well under a forward's worth)
    assert folder.passes == folder.forwards == 2 * 2 * (1 + 19 * 5)
    run_live(explorer, photo(4), "fog", 1, MODELS)  # times single forwards here
    glass = price(explorer, MODELS, ["glass_blur"], [5])
    cheap = price(explorer, MODELS, ["pixelate"], [5])
    assert glass.seconds - cheap.seconds == pytest.approx(  # the table's measured costs
        rb.get_corruption("glass_blur").seconds - rb.get_corruption("pixelate").seconds)
    assert "in the table" in glass.basis
    # After a sweep, its own batched forwards and corruption times price the next one.
    sweep = [e for e in run_sweep(explorer, photo(4), MODELS, corruptions=["fog", "contrast"], severities=[1])
             if isinstance(e, rs.Sweep)][-1]
    assert sweep.forward_s.shape == (2,) and (sweep.forward_s > 0).all() and sweep.corrupt_ratio > 0
    again = price(explorer, MODELS, ["fog", "contrast"], [1])
    table = rb.get_corruption("fog").seconds + rb.get_corruption("contrast").seconds
    assert again.seconds == pytest.approx(3 * sweep.forward_s.sum() + table * sweep.corrupt_ratio)
    assert "earlier sweep" in again.basis and "as measured here" in again.basis
    whole = price(explorer, ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
    with pytest.raises(LimitError, match=r"this server allows 10 s per request"):
        Gate(Limits(max_request_seconds=10)).check(whole.forwards, whole.seconds, "This sweep")
    with pytest.raises(rb.UnknownCorruptionError):
        price(explorer, MODELS, ["rain"])


def test_cli_lines_saved_crops_and_summary(nets, zoo_file, hosted, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    photo(6).save(folder / "a.png")
    photo(7, (160, 240)).save(folder / "b.png")
    clean_a = torchvision.transforms.CenterCrop(224)(torchvision.transforms.Resize(256)(photo(6)))
    label_a = int(plain_probs(nets["resnet18"], [clean_a])[0].argmax())  # right on the clean crop, for resnet18
    (tmp_path / "labels.csv").write_text(f"a.png,{label_a}\nb.png,tabby\n")
    corruptions = ["gaussian_noise", "jpeg_compression"]
    r = run_cli("robustness", str(folder), "--models", *MODELS, "--corruptions", *corruptions,
                "--labels", str(tmp_path / "labels.csv"), "--seed", "3", "--save-dir", str(tmp_path / "crops"),
                "--json", "--batch-size", "8", "--device", "cpu", "--precision", "fp32", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    records, summary = lines[:-1], lines[-1]["summary"]
    assert len(records) == 2 * len(MODELS) * (1 + 2 * 5)
    for m in MODELS:
        mine = [rec for rec in records if rec["model"] == m]
        pngs = [rb.crop_path(tmp_path / "crops", rec["file"], rec["corruption"], rec["severity"]) for rec in mine]
        assert all(p.is_relative_to(tmp_path / "crops") for p in pngs)
        probs = plain_probs(nets[m], [Image.open(p) for p in pngs])  # what the model saw, saved losslessly
        for rec, p in zip(mine, probs):
            assert rec["predictions"][0]["index"] == p.argmax()
            np.testing.assert_allclose([t["prob"] for t in rec["predictions"]],
                                       p[[t["index"] for t in rec["predictions"]]], atol=1e-4)
            if rec["severity"]:
                assert rec["seed"] == rb.sample_seed(3, rec["file"], rec["corruption"], rec["severity"])
    # Accuracy, CE and mCE counted here from the lines alone.
    err = {}
    for m in MODELS:
        for c in corruptions:
            for s in range(1, 6):
                rows = [x for x in records if (x["model"], x["corruption"], x["severity"]) == (m, c, s)]
                acc = sum(x["correct"] for x in rows) / len(rows)
                assert summary["accuracy"][m][c][str(s)] == pytest.approx(acc)
                err[m, c, s] = 1 - acc
        clean = [x for x in records if x["model"] == m and x["corruption"] == "clean"]
        assert summary["clean_accuracy"][m] == pytest.approx(sum(x["correct"] for x in clean) / 2)
    assert summary["reference"] == "resnet18"
    alexnet = {"gaussian_noise": 0.886428, "jpeg_compression": 0.606500}  # the paper's
    for m in MODELS:
        ces, ces_a = [], []
        for c in corruptions:
            ref = sum(err["resnet18", c, s] for s in range(1, 6))
            ce = sum(err[m, c, s] for s in range(1, 6)) / ref if ref else None
            assert summary["ce"][m][c] == (pytest.approx(ce) if ce is not None else None)
            ces += [ce] if ce is not None else []
            ces_a.append(sum(err[m, c, s] for s in range(1, 6)) / 5 / alexnet[c])
            assert summary["ce_alexnet"][m][c] == pytest.approx(ces_a[-1])
        assert summary["mce"][m] == pytest.approx(np.mean(ces))
        clean_top1 = {x["file"]: x["predictions"][0]["index"] for x in records
                      if x["model"] == m and x["corruption"] == "clean"}
        for c in corruptions:
            for s in range(1, 6):
                rows = [x for x in records if (x["model"], x["corruption"], x["severity"]) == (m, c, s)]
                changed = sum(x["predictions"][0]["index"] != clean_top1[x["file"]] for x in rows) / len(rows)
                assert summary["top1_changed"][m][c][str(s)] == pytest.approx(changed)
        assert summary["mce_alexnet"][m] == pytest.approx(np.mean(ces_a))


def test_cli_refuses_an_unknown_corruption_with_a_message(zoo_file, hosted, tmp_path):
    photo(8).save(tmp_path / "a.png")
    r = run_cli("robustness", str(tmp_path / "a.png"), "--corruptions", "rain", "--zoo", str(zoo_file))
    assert r.returncode == 2 and "Unknown corruption 'rain'" in r.stderr and "Traceback" not in r.stderr


def test_one_seed_rule_for_every_feature(zoo):
    """Issue 32: robustness, sanity and landscape take the same seeds (zoo.params.seed): whole numbers
    0..2**32-1, integral floats too (JSON has one number type), never a bool."""
    from zoo import landscape, sanity
    from zoo.features import sanity as sanity_feature

    rt = Runtime(zoo, "cpu", precision="fp32")
    assert feature.LiveRequest.create(rt, None, ["resnet18"], "fog", 3, seed=3.0).seed == 3
    assert feature.SweepRequest.create(rt, None, ["resnet18"], seed=2 ** 32 - 1).seed == 2 ** 32 - 1
    assert sanity_feature.Request.create(rt, None, ["resnet18"], ["cam"], seed=7.0).seed == 7
    for bad in (2 ** 32, -1, True, 2.5, "3"):
        with pytest.raises(ZooError, match="seed must be a whole number from 0 to 4294967295"):
            feature.Request.create(rt, [], ["resnet18"], seed=bad)
        with pytest.raises(sanity.SanityError, match="seed must be a whole number from 0 to 4294967295"):
            sanity_feature.Request.create(rt, None, ["resnet18"], ["cam"], seed=bad)
        with pytest.raises(landscape.LandscapeError, match="seed must be a whole number from 0 to 4294967295"):
            landscape.check_settings(3, 0.5, 2, bad)
