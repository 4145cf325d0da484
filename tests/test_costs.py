"""Issue 17, item 7: one source for the methods' defaults, limits and costs.

The page's sliders, the API's defaults, the CLI's options, the cost texts, the README and the
estimate all come from ``zoo.explain`` (``OCCLUSION_WINDOW``, ``OCCLUSION_STRIDE``, ``IG_STEPS``,
``MAX_OCCLUSION_POSITIONS``, each ``Method``'s ``cost`` and ``pass_cost``). How the estimate
follows what the network actually does is in tests/test_service.py.
"""

from __future__ import annotations

import inspect
import re

import httpx

from zoo.explain import (IG_STEPS, MAX_OCCLUSION_POSITIONS, METHODS, OCCLUSION_STRIDE, OCCLUSION_WINDOW,
                         PASS_COSTS, integrated_gradients, occlusion, occlusion_positions)
from zoo.features.classify import map_estimate

SLIDERS = {"occlusion-window": OCCLUSION_WINDOW, "occlusion-stride": OCCLUSION_STRIDE, "ig-steps": IG_STEPS}
DEFAULT_POSITIONS = occlusion_positions(OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default, 224)


def test_the_pages_sliders_are_zoos_settings(app):
    url, _ = app
    config = httpx.get(f"{url}/config", timeout=30).json()
    props = {c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("props", {}).get("elem_id")}
    for elem, setting in SLIDERS.items():
        p = props[elem]
        assert (p["minimum"], p["maximum"], p["value"], p["step"]) == (
            setting.low, setting.high, setting.default, setting.step), (elem, p)


def test_the_api_and_the_cli_use_the_same_defaults():
    from zoo.cli import build_parser
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    assert inspect.signature(integrated_gradients).parameters["steps"].default == IG_STEPS.default
    sig = inspect.signature(occlusion).parameters
    assert (sig["window"].default, sig["stride"].default) == (OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default)
    args = build_parser().parse_args(["explain", "x.png"])
    assert (args.window, args.stride, args.steps) == (OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default,
                                                      IG_STEPS.default)
    # What a call without parameters costs is what the defaults cost, everywhere.
    # The estimate the page shows, the ceiling checks and ZeroGPU sizes its slot by:
    explorer = Runtime(Zoo.load(None), "cpu")
    assert METHODS["occlusion"].passes() == DEFAULT_POSITIONS + 1 == map_estimate(explorer, ["resnet50"],
                                                                                  "occlusion").forwards - 1
    assert METHODS["integrated-gradients"].passes() == IG_STEPS.default
    assert map_estimate(explorer, ["resnet50"], "integrated-gradients").forwards == 1 + 3 * IG_STEPS.default


def test_the_cost_texts_name_the_same_numbers(repo_root):
    occl = METHODS["occlusion"].cost
    assert f"{DEFAULT_POSITIONS} by default" in occl and f"at most {MAX_OCCLUSION_POSITIONS}" in occl
    assert f"window {OCCLUSION_WINDOW.default}, stride {OCCLUSION_STRIDE.default}" in occl
    ig = METHODS["integrated-gradients"].cost
    assert f"default {IG_STEPS.default}, {IG_STEPS.low} to {IG_STEPS.high}" in ig
    # No other number sneaks in (the old texts said 169 and 128).
    assert set(re.findall(r"\d+", occl)) == {"1", "224", "2", str(DEFAULT_POSITIONS), str(OCCLUSION_WINDOW.default),
                                             str(OCCLUSION_STRIDE.default), str(MAX_OCCLUSION_POSITIONS)}
    assert set(re.findall(r"\d+", ig)) == {str(IG_STEPS.default), str(IG_STEPS.low), str(IG_STEPS.high)}
    readme = (repo_root / "README.md").read_text()
    assert f"`steps` forwards + backwards (default {IG_STEPS.default}, {IG_STEPS.low} to {IG_STEPS.high})" in readme
    w, s = OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default
    assert f"{DEFAULT_POSITIONS} by default (window {w}, stride {s} px), at most {MAX_OCCLUSION_POSITIONS}" in readme
    assert f"Integrated Gradients to {IG_STEPS.high}\n  steps" in readme
    # Every method carries its measured pass cost; CAM's map costs nothing.
    assert set(PASS_COSTS) == set(METHODS) and METHODS["cam"].measured_cost() == 0
    assert METHODS["occlusion"].measured_cost() == (DEFAULT_POSITIONS + 1) * PASS_COSTS["occlusion"]


def test_the_estimate_at_the_defaults(zoo):
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu")
    est = map_estimate(explorer, ["resnet18"], "occlusion")
    assert est.passes == 1 + DEFAULT_POSITIONS + 1 and est.forwards == est.passes
    est = map_estimate(explorer, ["resnet18"], "integrated-gradients")
    assert est.passes == 1 + IG_STEPS.default and est.forwards == 1 + 3 * IG_STEPS.default
    # Score-CAM: one pass per channel of the stage it reads, on this model.
    assert map_estimate(explorer, ["resnet18"], "scorecam").passes == 1 + 512 + 2
    assert map_estimate(explorer, ["resnet50"], "scorecam", {"layer": "layer2"}).passes == 1 + 512 + 2
