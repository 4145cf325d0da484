"""Loading: strict safetensors into torchvision ResNets, devices, and the model cache."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from zoo import models
from zoo.errors import ArchitectureMismatchError, CorruptWeightsError
from zoo.models import ModelCache, imagenet_labels, load_model, resolve_device


def test_labels_come_from_torchvision_metadata():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[281] == "tabby" and labels[0] == "tench"


def test_auto_device_is_cpu_here_and_explicit_missing_devices_are_errors():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(models.DeviceUnavailableError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_load_is_strict_eval_and_frozen(zoo, hosted):
    lm = load_model(zoo.get("resnet18"), "cpu")
    assert not lm.module.training and lm.device.type == "cpu"
    assert all(not p.requires_grad for p in lm.module.parameters())
    assert next(lm.module.parameters()).dtype == torch.float32  # the module stays fp32; autocast lowers it
    # BatchNorm is folded into the convolutions, names unchanged; weights channels-last.
    assert isinstance(lm.module.layer1[0].bn1, torch.nn.Identity) and lm.module.layer1[0].conv1.bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lm.module.modules())
    assert lm.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_truncated_safetensors_is_a_clear_error(zoo, hosted, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(hosted["resnet18"].path.read_bytes()[:100_000])
    spec = dataclasses.replace(zoo.get("resnet18"), repo=None, path=str(bad), sha256=None)
    with pytest.raises(CorruptWeightsError, match=r"resnet18: .*cut\.safetensors is not a readable safetensors"):
        load_model(spec, "cpu")


def test_weights_of_another_architecture_are_refused(zoo, hosted):
    spec = dataclasses.replace(zoo.get("resnet34"), arch=zoo.get("resnet50").arch)  # wrong 'arch'
    with pytest.raises(ArchitectureMismatchError, match=r"resnet34: the weights .* do not fit resnet50.*Check 'arch'"):
        load_model(spec, "cpu")


def test_cache_loads_each_model_once_under_concurrency(zoo, hosted):
    cache = ModelCache(capacity=2, device="cpu")
    spec = zoo.get("resnet18")
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(spec))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == {"resnet18": 1} and len({id(g) for g in got}) == 1
    cache.get(zoo.get("resnet34"))
    cache.get(zoo.get("resnet50"))  # capacity 2: resnet18 is evicted
    assert cache.loaded() == ["resnet34", "resnet50"]
