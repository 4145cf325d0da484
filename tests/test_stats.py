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


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_totals_equal_flop_counter_mode(arch):
    """Our counter sums torch.utils.flop_counter's formulas; the totals must be FlopCounterMode's."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    for res, classes in ((224, 1000), (448, 3)):
        with torch.device("meta"):
            model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(torch.empty(1, 3, res, res))
        assert model_stats(arch, res, classes).flops == counter.get_total_flops()


RESOLUTIONS = (160, 224, 320, 448)  # the Model zoo tab's choices


def _all_stats() -> dict[tuple[str, int], dict]:
    from dataclasses import asdict

    model_stats.cache_clear()
    try:
        return {(a, r): asdict(model_stats(a, r)) for a in ARCHITECTURES for r in RESOLUTIONS}
    finally:
        model_stats.cache_clear()


def test_tables_are_independent_of_what_other_threads_run():
    """The app computes these tables while other requests classify, explain and load models.

    Loading a model traces it with torch.fx (create_feature_extractor), which patches
    nn.Module.__call__ for the whole process while it runs; FlopCounterMode's module
    tracking adds process-wide module hooks. Neither may fail, or change, the counts.
    """
    import threading

    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.feature_extraction import create_feature_extractor

    quiet = _all_stats()
    net = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    stop = threading.Event()
    errors: list[BaseException] = []
    rounds = [0]

    def others() -> None:
        # One thread, one thing at a time: a fx trace breaks forwards in other threads too
        # (that is the model loader's concern); here only the tables are on trial.
        try:
            while not stop.is_set():
                with torch.no_grad():
                    net(x)  # plain inference
                    with FlopCounterMode(display=False):  # global module hooks
                        net(x)
                create_feature_extractor(net, {"layer4": "features", "fc": "logits"})  # loading a model
                rounds[0] += 1
                stop.wait(0.01)  # let the tables through the GIL now and then
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=others)
    worker.start()
    try:
        while rounds[0] == 0 and not errors:
            stop.wait(0.01)
        busy = _all_stats()
    finally:
        stop.set()
        worker.join()
    assert not errors and rounds[0] > 1, errors
    assert busy == quiet
