"""Classification: parity with plain torchvision code, preprocessing geometry, targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

from conftest import EXAMPLES, run_cli
from zoo.errors import UnknownClassError
from zoo.images import crop_geometry
from zoo.inference import classify, resolve_target
from zoo.models import imagenet_labels, load_model
from zoo.registry import Preprocessing


def reference_top5(arch: str, weights_path, image_path):
    """What a torchvision user would write, with no code of ours."""
    model = getattr(torchvision.models, arch)()
    model.load_state_dict(load_file(str(weights_path)))
    model.eval()
    tf = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.transforms()
    with torch.no_grad():
        probs = torch.softmax(model(tf(Image.open(image_path).convert("RGB")).unsqueeze(0))[0], 0)
    top = torch.topk(probs, 5)
    return top.indices.tolist(), top.values.tolist()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_cli_classify_matches_plain_torchvision(arch, hosted, zoo_file):
    image = EXAMPLES / "chelsea.png"
    # The CLI on one thread, the reference on this process's threads: the figures must agree
    # across thread counts and CPUs to the 1e-4 the project promises (summation order differs).
    # In fp32, as the reference: ``auto`` is bf16 on CPUs with native bf16 (tests/test_precision.py).
    r = run_cli("classify", str(image), "--model", arch, "--json", "--zoo", str(zoo_file), "--device", "cpu",
                "--precision", "fp32", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert out["model"] == arch and len(out["predictions"]) == 5
    idx, probs = reference_top5(arch, hosted[arch].path, image)
    assert [p["index"] for p in out["predictions"]] == idx
    np.testing.assert_allclose([p["prob"] for p in out["predictions"]], probs, atol=1e-4)
    labels = imagenet_labels()
    assert [p["label"] for p in out["predictions"]] == [labels[i] for i in idx]
    assert probs == sorted(probs, reverse=True)


def test_geometry_matches_torchvision_resize_and_crop():
    pre = Preprocessing()
    for size in [(451, 300), (300, 451), (224, 224), (1, 1), (640, 427), (257, 1000)]:
        geo = crop_geometry(size, pre)
        resized = torchvision.transforms.functional.resize(Image.new("RGB", size), [256])
        assert geo.resized == resized.size
        l, t, r, b = geo.box
        assert 0 <= l < r <= size[0] + 1e-6 and 0 <= t < b <= size[1] + 1e-6


def test_top_k_and_features(zoo, hosted):
    lm = load_model(zoo.get("resnet18"), "cpu")
    run = classify(lm, EXAMPLES / "coffee.png", top_k=3)
    assert len(run.predictions) == 3 and run.features.shape == (512, 7, 7)
    assert abs(run.probs.sum() - 1) < 1e-5
    assert run.crop.size == (224, 224) and run.geometry.image_size == (600, 400)


def test_resolve_target():
    labels = imagenet_labels()
    assert resolve_target(labels, None, default=7) == 7
    assert resolve_target(labels, "", default=7) == 7
    assert resolve_target(labels, 281, default=0) == 281
    assert resolve_target(labels, "281", default=0) == 281
    assert resolve_target(labels, "Tabby", default=0) == 281
    assert resolve_target(labels, "281: tabby", default=0) == 281
    with pytest.raises(UnknownClassError, match=r"Unknown class 'tabby kat'.*Close matches: tabby"):
        resolve_target(labels, "tabby kat", default=0)
    with pytest.raises(UnknownClassError, match="out of range"):
        resolve_target(labels, 1000, default=0)
