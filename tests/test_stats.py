"""Complexity figures measured from the architectures, against torchvision and the paper."""

from __future__ import annotations

import pytest

from zoo.registry import ARCHITECTURES, BUILTIN
from zoo.stats import NOTES, model_stats, stage_stats, torchvision_meta, zoo_row

PARAMS = {"resnet18": 11689512, "resnet34": 21797672, "resnet50": 25557032, "resnet101": 44549160,
          "resnet152": 60192808}
TV_GFLOPS = {"resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_totals_match_torchvision(arch):
    s = model_stats(arch)
    assert s.params == PARAMS[arch] == torchvision_meta(arch)["num_params"]
    assert abs(s.macs / 1e9 - TV_GFLOPS[arch]) / TV_GFLOPS[arch] < 0.01
    assert s.flops == 2 * s.macs
    assert s.layers == ARCHITECTURES[arch].depth  # counted as the paper counts


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_stages_add_up_and_match_table_1(arch):
    stages = stage_stats(arch)
    assert [st.stage for st in stages] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    assert [st.output_size for st in stages] == [112, 56, 28, 14, 7, 1]
    s = model_stats(arch)
    assert sum(st.params for st in stages) == s.params
    assert sum(st.macs for st in stages) == s.macs
    assert abs(sum(st.share for st in stages) - 1) < 1e-9
    n = ARCHITECTURES[arch].blocks_per_stage
    assert stages[1].layout.endswith(f"x {n[0]}") and stages[4].layout.endswith(f"x {n[3]}")


def test_paper_layouts():
    assert stage_stats("resnet50")[2].layout == "[1x1, 128; 3x3, 128; 1x1, 512] x 4"
    assert stage_stats("resnet34")[1].layout == "3x3 max pool, stride 2; [3x3, 64; 3x3, 64] x 3"


@pytest.mark.parametrize("arch", ["resnet18", "resnet152"])
def test_macs_grow_with_resolution_squared(arch):
    base = model_stats(arch, 224)
    fc = base.stages[-1].macs  # the fc layer does not grow with the image
    for res in (160, 320, 448):
        s = model_stats(arch, res)
        expected = (base.macs - fc) * (res / 224) ** 2 + fc
        assert abs(s.macs - expected) / expected < 0.01
        assert s.params == base.params
        assert s.stages[-2].output_size == res // 32


def test_rows_carry_registry_and_paper_figures():
    row = zoo_row(BUILTIN[2])
    assert (row.name, row.top1, row.top5, row.paper_flops) == ("resnet50", 76.13, 92.86, 3.8e9)
    assert row.torchvision_gflops == 4.089 and row.size_bytes == 102469840
    assert row.latency is None
    assert any("multiply-adds" in n for n in NOTES) and any("v1.5" in n for n in NOTES)


def test_cached_and_cheap():
    model_stats.cache_clear()
    model_stats("resnet101")
    model_stats("resnet101")
    assert model_stats.cache_info().hits >= 1


def test_stage_counts_ignore_other_threads_forward_passes(zoo, hosted):
    """The app computes these tables while other users' requests run forward passes."""
    import threading

    import torch

    from zoo.models import load_model

    lm = load_model(zoo.get("resnet50"), "cpu")
    stop = threading.Event()

    def busy() -> None:
        x = torch.randn(1, 3, 224, 224)
        with torch.inference_mode():
            while not stop.is_set():
                lm.module(x)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        model_stats.cache_clear()
        for arch in ("resnet101", "resnet152"):
            s = model_stats(arch)
            assert sum(st.macs for st in s.stages) == s.macs
            assert abs(s.macs / 1e9 - TV_GFLOPS[arch]) / TV_GFLOPS[arch] < 0.01
    finally:
        stop.set()
        worker.join()
        model_stats.cache_clear()
