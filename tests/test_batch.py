"""Many images at once: labels, accuracy, skipped files, zip defences, parity, memory, front ends.

Expected figures come from plain torchvision in the test (the same safetensors file,
``weights.transforms()`` preprocessing, no code of ours), over generated images.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import io
import json
import os
import stat
import tempfile
import threading
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from browser import open_page
from conftest import run_cli
from rest import call, upload_many
from zoo import batch
from zoo import cancel
from zoo.batch import BatchInputError, LabelIndex
from zoo.inference import classify
from zoo.models import imagenet_labels, load_model
from zoo.registry import Preprocessing
from zoo.features import batch as batch_feature
from zoo.features import last
from zoo.runtime import Runtime

MODELS = ["resnet18", "resnet34"]
TABBY, TENCH = 281, 0  # n02123045 and n01440764, the first classes of the ImageNet validation layout


def batch_stream(rt, sources, models=None, progress=None, **kwargs):
    """``zoo.features.batch.run`` of a request made from keywords."""
    return batch_feature.run(rt, batch_feature.Request.create(rt, sources, models, **kwargs), progress)


def batch_run(rt, sources, models=None, progress=None, **kwargs) -> batch.BatchResult:
    return last(batch_stream(rt, sources, models, progress, **kwargs))


# --- generated images and the reference --------------------------------------------------

def make_image(i: int, rng: np.random.Generator, size: tuple[int, int] | None = None) -> Image.Image:
    """Stripes, checks, a disc or noise, in random colours, 64-160 px."""
    w, h = size or (int(x) for x in rng.integers(64, 161, 2))
    c1, c2 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    img = Image.new("RGB", (w, h), c1)
    d = ImageDraw.Draw(img)
    kind = i % 4
    if kind == 0:
        for x in range(0, w, 8):
            d.rectangle([x, 0, x + 3, h], fill=c2)
    elif kind == 1:
        for x in range(0, w, 16):
            for y in range((x // 16) % 2 * 16, h, 32):
                d.rectangle([x, y, x + 15, y + 15], fill=c2)
    elif kind == 2:
        d.ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=c2)
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return img


def write_images(folder: Path, n: int, seed: int = 0, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:03d}.png"
        make_image(i, rng).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def explorer(zoo, hosted) -> Runtime:
    return Runtime(zoo, "cpu", precision="fp32")


@pytest.fixture(scope="module")
def plain(hosted):
    """arch -> path -> (top-5 indices, full probabilities), from plain torchvision."""
    nets = {}
    for arch in MODELS:
        m = torchvision.models.get_model(arch, weights=None)
        m.load_state_dict(load_file(str(hosted[arch].path)))
        nets[arch] = m.eval()
    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()

    @functools.lru_cache(maxsize=None)
    def ref(arch: str, path: Path) -> tuple[list[int], np.ndarray]:
        with torch.no_grad():
            p = torch.softmax(nets[arch](tf(Image.open(path).convert("RGB")).unsqueeze(0))[0], 0)
        return torch.topk(p, 5).indices.tolist(), p.numpy()

    return ref


def expected_counts(plain, files: dict[str, int | None]) -> dict[str, tuple[int, int, int]]:
    """model -> (labelled, top-1 right, top-5 right), computed from the reference alone."""
    out = {}
    for arch in MODELS:
        top = {f: plain(arch, Path(f))[0] for f in files}
        labelled = [f for f, lab in files.items() if lab is not None]
        out[arch] = (len(labelled), sum(top[f][0] == files[f] for f in labelled),
                     sum(files[f] in top[f] for f in labelled))
    return out


def assert_counts(result, expected) -> None:
    for s in result.per_model:
        labelled, top1, top5 = expected[s.name]
        assert (s.labelled, s.top1_correct, s.top5_correct) == (labelled, top1, top5), s.name
        assert s.top1 == pytest.approx(top1 / labelled) and s.top5 == pytest.approx(top5 / labelled)


def class_folder(index: int) -> str:
    """A folder name for a class the way people write them: upper case, underscores."""
    labels = imagenet_labels()
    assert labels.count(labels[index]) == 1
    return labels[index].upper().replace(" ", "_")


# --- labels and accuracy --------------------------------------------------------------------

def test_imagefolder_labels_from_names_synonyms_and_wordnet_ids(explorer, plain, tmp_path):
    staging = write_images(tmp_path / "staging", 15, seed=1)
    c18, c34 = plain("resnet18", staging[0])[0][0], plain("resnet34", staging[0])[0][0]
    from timm.data import ImageNetInfo  # the maintained WordNet list, for the deeper net's class

    folders = {class_folder(c18): c18, ImageNetInfo().index_to_label_name(c34): c34, "n02123045": TABBY,
               "Tabby cat": TABBY, "holiday": None}
    root = tmp_path / "set"
    files: dict[str, int | None] = {}
    for i, path in enumerate(staging):
        name = list(folders)[i % len(folders)]
        dest = root / name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        files[str(dest)] = folders[name]

    result = batch_run(explorer, [root], MODELS, batch_size=4)
    assert result.n_images == 15 and result.n_labelled == 12 and not result.skipped
    assert {img.name: img.label for img in result.images} == files  # names: the paths as named
    assert_counts(result, expected_counts(plain, files))
    assert any("'holiday'" in n and "unlabelled" in n for n in result.notes)

    # Agreement: the share of images on which the two depths pick the same top-1.
    same = np.mean([plain("resnet18", Path(f))[0][0] == plain("resnet34", Path(f))[0][0] for f in files])
    np.testing.assert_allclose(result.agreement, [[1, same], [same, 1]])
    if c18 != c34:  # where only the deeper net is right, and where only the shallower one is
        reasons = {m.image.name: m.reason for m in result.mattered}
        for f, lab in files.items():
            if lab == c34:
                assert reasons[f] == "only resnet34 and deeper are right"
            elif lab == c18:
                assert reasons[f] == "only resnet18 and shallower are right"


def test_labels_from_a_csv(explorer, plain, tmp_path):
    paths = write_images(tmp_path / "flat", 6, seed=2)
    sub = write_images(tmp_path / "flat" / "n02123045", 1, seed=3, prefix="sub")  # a folder label the CSV overrides
    c18 = plain("resnet18", paths[0])[0][0]
    rows = [("file", "label"), ("img000.png", "Tabby"), ("img001.png", "tabby, tabby cat"),
            ("img002.png", "n01440764"), ("img003.png", str(c18)), ("n02123045/sub000.png", imagenet_labels()[c18]),
            ("img004.png", "tabby kat"), ("missing.png", "tabby")]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(buf.getvalue())

    result = batch_run(explorer, [tmp_path / "flat"], MODELS, labels_csv=labels_csv)
    by_name = {Path(img.name).name: img.label for img in result.images}
    assert by_name == {"img000.png": TABBY, "img001.png": TABBY, "img002.png": TENCH, "img003.png": c18,
                       "sub000.png": c18, "img004.png": None, "img005.png": None}
    assert any("'tabby kat'" in n for n in result.notes)
    assert any("1 row(s)" in n for n in result.notes)  # missing.png
    files = {str(p): by_name[p.name] for p in [*paths, *sub]}
    assert_counts(result, expected_counts(plain, files))


def test_label_index_names_synonyms_ids_and_ambiguity():
    index = LabelIndex(imagenet_labels())
    assert index.resolve("Tabby Cat") == (TABBY, None)
    assert index.resolve("n02123045") == (TABBY, None)
    assert index.resolve("golden_retriever") == (207, None)
    assert index.resolve("281") == (TABBY, None)
    idx, why = index.resolve("crane")  # a bird (134) and a machine (517)
    assert idx is None and "n02012849" in why and "n03126707" in why
    assert index.resolve("tabby kat")[0] is None


# --- damaged files ----------------------------------------------------------------------------

def test_a_damaged_file_in_the_middle_is_skipped_and_reported(explorer, plain, tmp_path):
    folder = tmp_path / "mixed"
    a, b = write_images(folder, 2, seed=4, prefix="a")
    jpeg = io.BytesIO()
    make_image(0, np.random.default_rng(5), (150, 120)).save(jpeg, format="JPEG")
    (folder / "b-truncated.jpg").write_bytes(jpeg.getvalue()[:400])
    (folder / "c-notes.jpg").write_text("not a photo\n" * 30)
    (d,) = write_images(folder, 1, seed=6, prefix="d")

    events = list(batch_stream(explorer, [folder], ["resnet18"], batch_size=2))
    result = events[-1]
    assert [Path(i.name).name for i in result.images] == [a.name, b.name, d.name]
    assert {Path(s.name).name: s.reason for s in result.skipped}.keys() == {"b-truncated.jpg", "c-notes.jpg"}
    reasons = " ".join(s.reason for s in result.skipped).lower()
    assert "truncated" in reasons and "not an image" in reasons
    for img in result.images:
        assert img.top1(0) == plain("resnet18", Path(img.name))[0][0]
    # Streamed in input order: a, a, skipped, skipped, d, then the result.
    kinds = [type(e).__name__ for e in events if not isinstance(e, batch.Progress)]
    assert kinds == ["ImageResult", "ImageResult", "Skipped", "Skipped", "ImageResult", "BatchResult"]


def test_nothing_classifiable_is_a_clear_error(explorer, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(batch.NoImagesError, match="None of the 1 file"):
        batch_run(explorer, [tmp_path / "notes.txt"], ["resnet18"])
    with pytest.raises(BatchInputError, match="does not exist"):
        batch_run(explorer, [tmp_path / "nowhere"], ["resnet18"])


# --- zips -------------------------------------------------------------------------------------

@pytest.fixture
def fresh_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's folder, redirected: anything a run writes to temporary files lands here."""
    d = tmp_path / "tempdir"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_a_zip_with_class_folders(explorer, plain, tmp_path, fresh_tmp):
    paths = write_images(tmp_path / "src", 4, seed=7)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, p in enumerate(paths):
            zf.write(p, f"set/{'n02123045' if i % 2 else 'holiday'}/{p.name}")
        zf.writestr("set/.DS_Store", b"\0\0")
        zf.writestr("__MACOSX/set/._img000.png", b"\0\0")
        zf.writestr("set/readme.txt", "not an image")
    result = batch_run(explorer, [archive], MODELS)
    assert [img.name for img in result.images] == [f"set/{'n02123045' if i % 2 else 'holiday'}/{p.name}"
                                                   for i, p in enumerate(paths)]
    assert [img.label for img in result.images] == [None, TABBY, None, TABBY]
    assert [s.name for s in result.skipped] == ["set/readme.txt"]
    for img, p in zip(result.images, paths):
        for m, arch in enumerate(MODELS):
            assert img.top1(m) == plain(arch, p)[0][0]
            np.testing.assert_allclose(img.probs[m, 0], plain(arch, p)[1][img.top1(m)], atol=1e-4)
    assert list(fresh_tmp.iterdir()) == []  # read in memory, never extracted


def _zip_with(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("set/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _png() -> bytes:
    buf = io.BytesIO()
    make_image(0, np.random.default_rng(0), (64, 64)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("case, match", [
    ("traversal", r"'\.\.' are refused"),
    ("absolute", r"absolute paths"),
    ("symlink", r"symbolic link"),
    ("bomb", r"zip bomb"),
    ("too-many", r"2001 files; the limit is 2000"),
    ("too-large", r"would expand to"),
])
def test_zip_defences(case, match, explorer, tmp_path, fresh_tmp, monkeypatch):
    png = _png()
    members: list[tuple[zipfile.ZipInfo | str, bytes]] = [("set/ok.png", png)]
    if case == "traversal":
        members.append(("set/../../evil.png", png))
    elif case == "absolute":
        members.append((str(tmp_path / "evil.png"), png))
    elif case == "symlink":
        members.append((_symlink(), b"/etc/passwd"))
    elif case == "bomb":
        members.append(("set/bomb.bmp", b"\0" * (64 << 20)))  # 64 MB of zeros: ~1000:1
    elif case == "too-many":
        members += [(f"set/{i}.png", b"x") for i in range(2000)]
    else:
        monkeypatch.setattr(batch.inputs, "MAX_ZIP_TOTAL", 100)
        members.append(("set/second.png", png))
    archive = _zip_with(tmp_path / "upload.zip", members)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BatchInputError, match=match):
        batch_run(explorer, [archive], ["resnet18"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(fresh_tmp.iterdir()) == []
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "evil.png").exists()


# --- parity, memory, cancelling -----------------------------------------------------------------

def test_batch_equals_one_image_classify(explorer, tmp_path):
    rng = np.random.default_rng(8)
    folder = tmp_path / "parity"
    folder.mkdir()
    for i in range(10):
        img = make_image(i, rng)
        if i == 3:
            img.convert("L").save(folder / f"{i}.png")
        elif i == 5:
            img.save(folder / f"{i}.jpg", quality=90)
        else:
            img.save(folder / f"{i}.png")
    result = batch_run(explorer, [folder], MODELS, batch_size=4)  # chunks of 4, 4 and 2
    assert result.n_images == 10 and result.precision == "fp32"
    for img in result.images:
        for m, name in enumerate(MODELS):
            one = classify(explorer.cache.get(explorer.zoo.get(name)), img.name, 5)
            assert img.top1(m) == one.predictions[0].index
            np.testing.assert_allclose(img.probs[m], [p.prob for p in one.predictions], atol=1e-4)
            # The same top-5 up to exact ties (these random nets put ~0 on ranks 2-5): each class the
            # batch ranks has the probability one-image classify gives it.
            np.testing.assert_allclose(one.probs[img.top[m]], img.probs[m], atol=1e-4)
            gaps = np.diff([p.prob for p in one.predictions])
            same = [p.index for p in one.predictions] == img.top[m].tolist()
            assert same or np.min(np.abs(gaps)) < 1e-4


def vm_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_does_not_grow_with_the_number_of_images(zoo, hosted, tmp_path):
    # 800x600 pictures (1.4 MB each decoded) that compress to a few kB: holding them would show at once.
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(9)
    for i in range(300):
        img = Image.new("RGB", (800, 600), tuple(int(v) for v in rng.integers(0, 256, 3)))
        ImageDraw.Draw(img).ellipse([100 + i % 50, 100, 500, 400], fill=(i % 256, 80, 160))
        img.save(folder / f"{i:03d}.png")
    # A small crop keeps the forwards cheap; decoding is what this test is about.
    spec = dataclasses.replace(zoo.get("resnet18"), preprocessing=Preprocessing(resize=64, crop=56))
    lm = load_model(spec, "cpu", precision="fp32")

    def peak_rss(n: int) -> float:
        inp = batch.gather([folder])
        inp.items = inp.items[:n]
        peak = [vm_rss_mb()]
        result = batch.run(inp, [lm], batch_size=16, thumbnails=56,
                           progress=lambda f, m: peak.append(vm_rss_mb()))
        assert result.n_images == n
        return max(peak)

    peak_rss(48)  # warm up: threads, allocator pools
    small = peak_rss(48)
    large = peak_rss(300)
    assert large - small < 60, (small, large)  # holding 252 more decoded images would add ~360 MB


def test_the_token_and_closing_the_stream_stop_the_work(explorer, tmp_path):
    folder = tmp_path / "stop"
    write_images(folder, 12, seed=10)
    token = cancel.Token()
    with cancel.running(token), pytest.raises(cancel.Cancelled, match=r"Stopped\. 4 of 12 images were done"):
        batch_run(explorer, [folder], ["resnet18"], batch_size=4,
                       progress=lambda f, m: token.cancel() if "8 of 12" in m else None)
    stream = batch_stream(explorer, [folder], ["resnet18"], batch_size=4)
    first = next(e for e in stream if isinstance(e, batch.ImageResult))
    stream.close()
    assert first.index == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("zoo-decode")]


def test_too_many_files(tmp_path):
    write_images(tmp_path / "five", 5)
    with pytest.raises(BatchInputError, match="5 given, and this app classifies at most 3"):
        batch.gather([tmp_path / "five"], max_images=3)


def test_progress_reports_each_model_with_eta(explorer, tmp_path):
    write_images(tmp_path / "p", 8, seed=11)
    for name in MODELS:  # loaded beforehand: their download progress is not what this test reads
        explorer.cache.get(explorer.zoo.get(name))
    messages = []
    batch_run(explorer, [tmp_path / "p"], MODELS, batch_size=4, progress=lambda f, m: messages.append((f, m)))
    texts = [m for _, m in messages]
    assert "resnet18: 4 of 8 images · ETA …" in texts
    assert any(t.startswith("resnet34: 8 of 8 images · ETA ") and t.endswith(" s") for t in texts)
    fractions = [f for f, _ in messages if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


# --- command line -------------------------------------------------------------------------------

def test_cli_json_lines_csv_and_summary(plain, zoo_file, hosted, tmp_path):
    folder = tmp_path / "cli"
    paths = write_images(folder, 5, seed=12)
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    c18 = plain("resnet18", paths[0])[0][0]
    (tmp_path / "labels.csv").write_text(f"img000.png,{c18}\nimg001.png,tabby\nimg002.png,n01440764\n")
    out = tmp_path / "results.csv"
    r = run_cli("batch", str(folder / "*.png"), "--models", *MODELS, "--labels", str(tmp_path / "labels.csv"),
                "--json", "--out", str(out), "--top", "3", "--batch-size", "2", "--device", "cpu",
                "--precision", "fp32", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    records, summary = lines[:-1], lines[-1]["summary"]
    assert len(records) == 5 * len(MODELS)
    assert "skipped" in r.stderr and "zz-broken.png" in r.stderr
    labels = {"img000.png": c18, "img001.png": TABBY, "img002.png": TENCH}
    for rec in records:
        name = Path(rec["file"]).name
        idx, probs = plain(rec["model"], folder / name)
        # The same name as `classify --json`'s top-k (issue 17, item 13).
        top = rec["predictions"]
        assert "top" not in rec and len(top) == 3 and top[0]["index"] == idx[0]
        np.testing.assert_allclose([t["prob"] for t in top], probs[[t["index"] for t in top]], atol=1e-4)
        assert rec["label_index"] == labels.get(name)
        assert rec["correct"] == (None if name not in labels else idx[0] == labels[name])
    expected = expected_counts(plain, {str(p): labels.get(p.name) for p in paths})
    for s in summary["models"]:
        assert (s["labelled"], s["top1_correct"], s["top5_correct"]) == expected[s["model"]]
    assert summary["images"] == 5 and [k["file"] for k in summary["skipped"]] == [str(folder / "zz-broken.png")]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and rows[0]["top3_label"] and rows[0]["model"] == "resnet18"


def test_cli_errors_are_messages(zoo_file, hosted, tmp_path):
    r = run_cli("batch", str(tmp_path / "nothing-here"), "--zoo", str(zoo_file))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    archive = _zip_with(tmp_path / "evil.zip", [("../evil.png", _png())])
    r = run_cli("batch", str(archive), "--zoo", str(zoo_file), "--models", "resnet18")
    assert r.returncode == 2 and "'..' are refused" in r.stderr and "Traceback" not in r.stderr


# --- the app: /batch, the cap, the browser ------------------------------------------------------

def test_batch_endpoint_with_gradio_client(client, app, plain, tmp_path):
    from gradio_client import handle_file

    paths = write_images(tmp_path / "up", 3, seed=13)
    broken = tmp_path / "up" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 50)
    out, csv_path = client.predict([handle_file(str(p)) for p in [paths[0], broken, *paths[1:]]],
                                   ["resnet18"], api_name="/batch")
    summary = out["summary"]  # the run's JSON: zoo.features.batch's to_json(), as `zoo batch --json`'s last line
    assert summary["images"] == 3 and [s["file"] for s in summary["skipped"]] == ["broken.png"]
    assert os.environ["GRADIO_TEMP_DIR"] not in json.dumps(summary)  # names, never server paths
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [p.name for p in paths]
    for row, p in zip(rows, paths):
        assert int(row["top1_index"]) == plain("resnet18", p)[0][0]


def test_batch_endpoint_over_raw_rest_with_a_zip(app, plain, tmp_path):
    url, _ = app
    paths = write_images(tmp_path / "z", 4, seed=14)
    c18 = plain("resnet18", paths[0])[0][0]
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, p in enumerate(paths):
            zf.write(p, f"{class_folder(c18) if i < 2 else 'n02123045'}/{p.name}")
    kind, out = call(url, "batch", [upload_many(url, [archive]), MODELS])
    assert kind == "complete", out
    run_json, csv_file = out
    summary = run_json["summary"]
    expected = expected_counts(plain, {str(p): c18 if i < 2 else TABBY for i, p in enumerate(paths)})
    for s in summary["models"]:
        assert (s["labelled"], s["top1_correct"], s["top5_correct"]) == expected[s["model"]]
    assert np.array(summary["agreement"]["matrix"]).shape == (2, 2)
    text = httpx.get(csv_file["url"], timeout=30).text
    assert len(list(csv.DictReader(io.StringIO(text)))) == 8


def test_batch_endpoint_refuses_paths_that_are_not_uploads(app):
    url, _ = app
    fake = {"path": "/etc/hostname", "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
    kind, out = call(url, "batch", [[fake], ["resnet18"]])
    assert kind == "error"
    assert httpx.get(url, timeout=30).status_code == 200


@pytest.fixture(scope="module")
def small_app(app):
    """A second app on the same explorer, allowing 4 images per batch."""
    from ui import build_app, launch_options

    demo = build_app(app[1], max_batch_images=4)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/")
    demo.close()


def test_the_app_caps_images_per_request(small_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    paths = write_images(tmp_path / "cap", 5, seed=15)
    with pytest.raises(AppError, match="at most 4 images per request"):
        Client(small_app, verbose=False).predict([handle_file(str(p)) for p in paths], ["resnet18"],
                                                 api_name="/batch")


@pytest.mark.browser
def test_browser_batch_tab(small_app, tmp_path, shots, monkeypatch):
    import gradio.routes
    from playwright.sync_api import expect

    paths = write_images(tmp_path / "browser", 3, seed=16)
    broken = tmp_path / "browser" / "broken.jpg"
    broken.write_text("not an image")
    with open_page(small_app, 1400, 1200) as page:
        page.get_by_role("tab", name="Batch").click()
        page.locator("#batch-files input[type=file]").set_input_files([str(x) for x in [*paths, broken]])
        expect(page.locator("#batch-files")).to_contain_text("broken", timeout=30_000)
        page.locator("#batch-run").click()
        expect(page.locator("#batch-status")).to_contain_text("classified by", timeout=240_000)
        expect(page.locator("#batch-status")).to_contain_text("broken.jpg")
        for path in paths:
            expect(page.locator("#batch-table")).to_contain_text(path.name)
        expect(page.locator("#batch-accuracy")).to_contain_text("resnet152")
        expect(page.locator("#batch-heatmap .js-plotly-plot").first).to_be_visible(timeout=30_000)
        expect(page.locator("#batch-downloads")).to_contain_text("batch-agreement")  # the heatmap's data, CSV
        expect(page.locator("#batch-decision")).to_contain_text("needs labels")  # what labels would add
        page.screenshot(path=str(shots / "browser-batch.png"), full_page=True)

        # A "where depth mattered" image opens in Compare depths, which runs on it.
        page.locator("#batch-mattered .thumbnail-item").first.click()
        expect(page.locator("#agreement")).to_contain_text("Maps show", timeout=240_000)
        expect(page.locator("#compare-gallery img")).to_have_count(5, timeout=30_000)
        page.screenshot(path=str(shots / "browser-batch-compare.png"), full_page=True)

        # Stop ends the work on the server (the stream is closed and its decoding threads end).
        # No race with the run's end, however fast the machine: the run's first forward is held
        # until the server has taken the Stop (gradio's /cancel has cancelled the event), so it
        # cannot finish first. The timeouts below only end a broken run.
        stop_taken, first_forward, forwards = threading.Event(), threading.Event(), []
        real_forward, real_cancel = batch.classify_batch, gradio.routes.cancel_tasks

        def held_forward(*args, **kwargs):
            forwards.append(args[0].spec.name)
            first_forward.set()
            stop_taken.wait(120)
            return real_forward(*args, **kwargs)

        async def cancel_tasks(task_ids):
            # Released once the event is cancelled: cancel_tasks cancels it before its first await.
            asyncio.get_running_loop().call_soon(stop_taken.set)
            return await real_cancel(task_ids)

        monkeypatch.setattr(batch.executor, "classify_batch", held_forward)
        monkeypatch.setattr(gradio.routes, "cancel_tasks", cancel_tasks)
        try:
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-run").click()
            expect(page.locator("#batch-status")).to_contain_text("images · ETA", timeout=120_000)
            assert first_forward.wait(120), "the run never reached its first forward"
            page.locator("#batch-stop").click()
            assert stop_taken.wait(120), "the server never took the Stop"
            for thread in decode_threads():
                thread.join(60)
            assert not decode_threads()
        finally:
            stop_taken.set()  # never leave a server thread held
        assert 1 <= len(forwards) < 5, forwards  # five depths were chosen: it stopped before the end
        expect(page.locator("#batch-status")).not_to_contain_text("classified by")  # it never finished
        expect(page.locator("#batch-status")).to_contain_text("Stopped.")  # said where the result would be


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("zoo-decode") and t.is_alive()]


def test_partial_results_stream_and_survive_a_stop(explorer, tmp_path):
    """Issue 17 item 6.8: the page shows the images done so far, and keeps them after Stop."""
    folder = tmp_path / "partial"
    write_images(folder, 8, seed=11)
    token = cancel.Token()
    partials = []
    with cancel.running(token), pytest.raises(cancel.Cancelled, match="4 of 8 images were done"):
        for event in batch_stream(explorer, [folder], ["resnet18"], batch_size=4, partial_every_s=0):
            if isinstance(event, batch.BatchResult):
                assert event.partial
                partials.append(event)
                token.cancel()  # Stop, right after the first partial result
    (first,) = partials
    assert first.n_images == 4 and len(first.images) == 4 and first.per_model[0].images == 4
    assert [Path(img.name).name for img in first.images] == sorted(p.name for p in folder.iterdir())[:4]


# --- issue 29 item 6: a resumed run never mixes two runs ----------------------------------------

def _resumable(tmp_path: Path, *extra: str, zoo_path: Path, model: str = "resnet18") -> list[str]:
    folder = tmp_path / "resume-images"
    if not folder.exists():
        write_images(folder, 3, seed=5)
    return ["batch", str(folder), "--zoo", str(zoo_path), "--models", model, "--precision", "fp32",
            "--out", str(tmp_path / "run.jsonl"), *extra]


def test_resume_refuses_other_labels(zoo_file, tmp_path, capsys):
    from zoo import cli

    tabby, bubble = tmp_path / "tabby.csv", tmp_path / "bubble.csv"
    tabby.write_text("".join(f"img{i:03d}.png,tabby\n" for i in range(3)))
    bubble.write_text("".join(f"img{i:03d}.png,bubble\n" for i in range(3)))
    assert cli.main(_resumable(tmp_path, "--labels", str(tabby), zoo_path=zoo_file)) == 0
    journal = (tmp_path / "run.jsonl").read_text()
    capsys.readouterr()
    assert cli.main(_resumable(tmp_path, "--labels", str(bubble), "--resume", zoo_path=zoo_file)) == 2
    err = capsys.readouterr().err
    assert "written by another run" in err and "labels differ" in err and "Traceback" not in err
    assert (tmp_path / "run.jsonl").read_text() == journal  # the file is left as it was
    assert cli.main(_resumable(tmp_path, "--labels", str(tabby), "--resume", zoo_path=zoo_file)) == 0


def test_resume_refuses_other_weights_under_the_same_name(tmp_path, capsys):
    """A model name that follows a moving target (a revision like ``main``, a local file) may
    name other bytes on the next run: the journal holds each model's weights sha256."""
    from conftest import make_weights
    from zoo import cli

    weights = tmp_path / "mine.safetensors"
    zoo_path = tmp_path / "zoo.toml"
    zoo_path.write_text(f'[[model]]\nname = "mine"\narch = "resnet18"\npath = "{weights}"\n')
    make_weights("resnet18", weights, seed=1)
    assert cli.main(_resumable(tmp_path, zoo_path=zoo_path, model="mine")) == 0
    header = json.loads((tmp_path / "run.jsonl").read_text().splitlines()[0])
    assert len(header["weights"]["mine"]["sha256"]) == 64 and len(header["labels"]) == 64
    make_weights("resnet18", weights, seed=2)  # new weights, same name
    capsys.readouterr()
    assert cli.main(_resumable(tmp_path, "--resume", zoo_path=zoo_path, model="mine")) == 2
    err = capsys.readouterr().err
    assert f"mine's weights sha256: {header['weights']['mine']['sha256'][:12]} in the file" in err


def test_a_journal_line_that_is_json_but_not_a_result_is_a_clear_error(zoo_file, tmp_path, capsys):
    from zoo import cli
    from zoo.batch.journal import Journal, JournalError

    assert cli.main(_resumable(tmp_path, zoo_path=zoo_file)) == 0
    path = tmp_path / "run.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    for bad in ('{"key": ["x.png"], "file": "x.png"}\n', '[1, 2, 3]\n', '17\n',
                lines[1].replace('"seconds": ', '"seconds": "soon", "x": ')):
        path.write_text("".join(lines[:2]) + bad + "".join(lines[2:]))
        with pytest.raises(JournalError, match=r"run.jsonl, line 3: not a result line of a journal"):
            Journal.open(path, command="batch", names=["resnet18"], labels=imagenet_labels(), precision="fp32",
                         keep_k=5, resume=True, targets=json.loads(lines[0])["labels"],
                         weights=json.loads(lines[0])["weights"])
        capsys.readouterr()
        assert cli.main(_resumable(tmp_path, "--resume", zoo_path=zoo_file)) == 2
        err = capsys.readouterr().err
        assert "line 3: not a result line" in err and "Traceback" not in err


def test_a_label_of_thousands_of_digits_is_no_class():
    """Issue 29 item 7: int() refuses over 4,300 digits; the label is reported, not a traceback."""
    index, why = LabelIndex(imagenet_labels()).resolve("9" * 5000)
    assert index is None and "5000 characters" in why


def test_a_batch_or_robustness_run_leaves_no_empty_temp_file(app, tmp_path):
    """Issue 29 item 7: gradio's ``File`` opened an empty temp file per uploaded file per run, never removed."""
    url, _ = app
    cache = Path(os.environ["GRADIO_TEMP_DIR"])

    def empty_files() -> set[Path]:
        return {p for p in cache.iterdir() if p.is_file() and p.stat().st_size == 0}

    files = upload_many(url, write_images(tmp_path / "leak", 2, seed=21))
    before = empty_files()
    assert call(url, "batch", [files, ["resnet18"]])[0] == "complete"
    assert call(url, "robustness", [files, ["resnet18"], ["fog"]])[0] == "complete"
    assert empty_files() == before


def test_the_cli_json_and_the_endpoint_json_are_one_object(client, zoo_file, tmp_path, capsys):
    """Issue 32: ``zoo batch --json``'s last line and ``/batch``'s JSON are the run's ``to_json()``,
    the same object for the same request (minus timings, file paths and the cost measured)."""
    from gradio_client import handle_file
    from zoo import cli

    paths = write_images(tmp_path / "same", 3, seed=22)
    (tmp_path / "same" / "zz.png").write_bytes(b"not an image")
    api, _ = client.predict([handle_file(str(p)) for p in [*paths, tmp_path / "same" / "zz.png"]], ["resnet18"],
                            api_name="/batch")
    capsys.readouterr()
    assert cli.main(["batch", *map(str, paths), str(tmp_path / "same" / "zz.png"), "--zoo", str(zoo_file),
                     "--models", "resnet18", "--json", "--decide", "--precision", api["summary"]["precision"]]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1])

    def same(x):  # file names as the visitor knows them; what this machine measured, dropped
        if isinstance(x, dict):
            return {k: same(v) for k, v in x.items()
                    if k not in ("seconds", "images_per_s", "cost", "precision_note", "batch_size")}
        if isinstance(x, list):
            return [same(v) for v in x]
        return Path(x).name if isinstance(x, str) and os.sep in x else x

    assert set(line) == {"summary", "decision"} == set(api)
    assert same(line) == same(api)


@pytest.mark.browser
def test_browser_which_depth_should_i_ship(app, tmp_path, shots):
    """Issue 33: a labelled zip of 30 images gives the decision section: a recommendation, its charts."""
    from playwright.sync_api import expect

    url, _ = app
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in write_images(tmp_path / "ship", 30, seed=31):
            zf.write(p, f"tabby/{p.name}")
    with open_page(url, 1400, 1200) as page:
        page.get_by_role("tab", name="Batch").click()
        for name in ("resnet50", "resnet101", "resnet152"):
            page.locator("#batch-models label", has_text=name).click()
        page.locator("#batch-files input[type=file]").set_input_files([str(archive)])
        expect(page.locator("#batch-files")).to_contain_text("labelled", timeout=30_000)
        page.locator("#batch-run").click()
        expect(page.locator("#batch-decision")).to_contain_text("Recommended:", timeout=240_000)
        expect(page.locator("#batch-decision")).to_contain_text("30 labelled images")
        expect(page.locator("#batch-decision-table")).to_contain_text("resnet34")
        # (every depth is wrong on every image with random weights: kappa is undefined, its chart stays hidden)
        for chart in ("#batch-tradeoff", "#batch-reliability"):
            expect(page.locator(f"{chart} .js-plotly-plot").first).to_be_visible(timeout=30_000)
        expect(page.locator("#batch-published")).to_contain_text("resnet18")
        page.locator("#batch-decision-section").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "browser-batch-decision.png"), full_page=True)
