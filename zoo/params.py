"""One table of parameter rules: what every front end (tab, CLI, endpoint, MCP tool) accepts.

A feature's request (``zoo.features.*.Request.create``) validates through these functions, and
the CLI's choices and help texts read the same constants, so a rule is written once. Each
raises a ``ZooError`` subclass whose message says what to send instead. Sections below are
kept per concern; add a rule to its section rather than writing a check in a feature.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ZooError

# --- what runs where -------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "mps")  # zoo.models.resolve_device reads the same names
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")

# --- numbers ---------------------------------------------------------------------------------

SEED_MAX = 2 ** 32 - 1  # numpy's RandomState and torch.Generator both take it; one rule for every feature


def whole(value: Any, name: str, lo: int, hi: int, error: type[ZooError] = ZooError) -> int:
    """``value`` as a whole number in ``lo..hi``.

    A raw API call may send 3, 3.0, "3", True or a list: integers and integral floats pass (JSON
    has one number type), a bool, a string or a fraction is refused with the range to use.
    """
    ok = not isinstance(value, bool) and (
        isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()))
    if not ok or not lo <= int(value) <= hi:
        raise error(f"{name} must be a whole number from {lo} to {hi}, not {value!r}.")
    return int(value)


def seed(value: Any, error: type[ZooError] = ZooError) -> int:
    """A random seed: a whole number in 0..2**32-1 (every feature's seed follows this rule)."""
    return whole(value, "The seed", 0, SEED_MAX, error)


def top_k(value: Any, most: int = 1000) -> int:
    """How many classes to list: a whole number in 1..``most``."""
    return whole(value, "top_k", 1, most)


# --- models and classes ----------------------------------------------------------------------

def model_names(zoo: Any, models: Sequence[str] | None) -> list[str]:
    """``models`` without repeats, each known to ``zoo``; none: the built-in depths."""
    if isinstance(models, str):  # a raw call may send one name where a list is asked for
        models = [models]
    names = list(dict.fromkeys(models or [s.name for s in zoo.builtin_depths]))
    for name in names:
        zoo.get(name)  # UnknownModelError, with close matches
    return names


def target(spec: Any, value: int | str | None, default: int = 0) -> int:
    """A class index of ``spec``'s classes from an index, a digit string, a name, or None (``default``).

    Fails on an unknown class before any weights are fetched.
    """
    from .inference import resolve_target

    return resolve_target(spec.class_names, value, default)


# --- methods and their settings (zoo.explain.SETTINGS) ---------------------------------------

# The settings with a slider on the page and an option on the command line (ranges, defaults,
# steps and the limits on what a map may cost): the one source of each, kept with the runners'
# other rules in zoo.attribution.rules; the page, the CLI and these checks read them from here.
from .attribution.rules import (IG_STEPS, MAX_OCCLUSION_POSITIONS, OCCLUSION_STRIDE, OCCLUSION_WINDOW,  # noqa: E402
                                STAGES)

METHOD_ARGS = ("model", "run", "target")  # what every runner takes besides its settings (zoo.explain)


def method(name: Any) -> str:
    """A method of the table (``zoo.explain.METHODS``); an unknown one fails with the names to use."""
    from .explain import get_method

    return get_method(name).name


def method_names() -> list[str]:
    """Every method, in the table's order (the choices of every front end)."""
    from .explain import METHODS

    return list(METHODS)


def method_takes(name: str) -> tuple[str, ...]:
    """The settings ``name``'s runner takes: ``layer`` for stage methods, ``window``, ``steps`` ..."""
    import inspect

    from .explain import get_method

    return tuple(p for p in inspect.signature(get_method(name).fn).parameters if p not in METHOD_ARGS)


def method_params(name: str, raw: Mapping[str, Any] | None = None, spec: Any = None, *,
                  refuse_layer: bool = False) -> dict[str, Any]:
    """The settings of method ``name`` out of ``raw``, checked: what every front end sends a feature.

    A form (or the command line) sends every setting whatever the method: those ``name`` does
    not take are dropped, and a blank layer too. ``refuse_layer``: a layer given to a method of
    the input pixels is refused instead (one method named with its layer, as on the command
    line). A whole-number setting may come as an integral float (a slider's 32.0). With
    ``spec`` (the model's ``ModelSpec``): the layer is resolved (default: its last stage; CAM
    refuses any other) and the map's cost is checked against the limits, before any weights
    are fetched.
    """
    from .explain import SETTINGS, get_method, layer_param, model_params

    takes = method_takes(name)
    given = dict(raw or {})
    layer = given.pop("layer", None)
    out = {k: v for k, v in given.items() if k in takes and v is not None}
    for setting in SETTINGS.get(name, ()):
        v = out.get(setting.name)
        if isinstance(v, float) and v.is_integer():
            out[setting.name] = int(v)
    if layer is not None and str(layer).strip() and ("layer" in takes or refuse_layer):
        out["layer"] = layer
    if spec is not None:
        layer_param(name, out, spec.cam_layer)  # LayerError: an unknown stage, or one the method refuses
        crop = spec.preprocessing.crop
        get_method(name).passes(model_params(name, spec.arch, crop, out), crop)  # over the limits: refused now
    return out


# LRP's composites (zoo.lrp): the rules Zennit applies layer by layer. The first is Zennit's
# recommended default for image classifiers; the names are what --composite and the JSON say.
LRP_COMPOSITES = ("epsilon-plus-flat", "epsilon-gamma-box")


def composite(value: Any, error: type[ZooError] = ZooError) -> str:
    """An LRP composite's name (``LRP_COMPOSITES``); None or blank means the first."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return LRP_COMPOSITES[0]
    name = value.strip().lower().replace("_", "-") if isinstance(value, str) else value
    if name not in LRP_COMPOSITES:
        raise error(f"Unknown LRP composite {value!r}; choose one of {', '.join(LRP_COMPOSITES)}.")
    return name


# --- features' own settings (grids, severities, sample sizes) ---------------------------------

# --- sanity check: smooth MPRT (issue 34; zoo.mprt) --------------------------------------------

SMOOTH_SAMPLES_MAX = 50  # the paper's (and Quantus's) N on ImageNet: the most a check takes


def smooth_samples(value: Any, error: type[ZooError] = ZooError) -> int:
    """N of sMPRT: noisy copies averaged per map (the last without noise); 0: no sMPRT."""
    return whole(value, "The number of smooth MPRT samples", 0, SMOOTH_SAMPLES_MAX, error)


# zoo_table: the input side the architectures are measured at (the page offers 160..448; the
# command line any size a ResNet's five stride-2 stages still leave a pixel of).
RESOLUTION_MIN, RESOLUTION_MAX = 32, 2048


def resolution(value: Any) -> int:
    """The square input size, in pixels, that the zoo table measures the architectures at."""
    return whole(value, "The resolution", RESOLUTION_MIN, RESOLUTION_MAX)
# Depth lab, error surfaces, compare (zoo.features.analyze, .landscape, .compare)

GRID_MIN, GRID_MAX = 3, 51  # an error surface's points per axis: odd only, theta itself is the centre point
SPAN_MAX = 10.0  # alpha, beta in [-span, span]
DIMS = (1, 2)  # 1: a curve along delta; 2: a surface
LANDSCAPE_IMAGES_MAX = 256  # images a landscape averages over


def grid(value: Any, error: type[ZooError] = ZooError) -> int:
    """An error surface's points per axis: an odd whole number in GRID_MIN..GRID_MAX."""
    ok = not isinstance(value, bool) and (
        isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()))
    if not ok or not GRID_MIN <= int(value) <= GRID_MAX or int(value) % 2 == 0:
        raise error(f"The grid must be an odd number of points per axis from {GRID_MIN} to {GRID_MAX} "
                    f"(odd, so that the trained weights are the centre point), not {value!r}.")
    return int(value)


def span(value: Any, error: type[ZooError] = ZooError) -> float:
    """How far an error surface reaches: a number in (0, SPAN_MAX]."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not 0 < value <= SPAN_MAX:
        raise error(f"The span must be a number in (0, {SPAN_MAX:g}]: the grid covers "
                    f"alpha, beta in [-span, span]. Got {value!r}.")
    return float(value)


def dims(value: Any, error: type[ZooError] = ZooError) -> int:
    """1 (a curve along one direction) or 2 (a surface)."""
    if isinstance(value, bool) or value not in DIMS:
        raise error(f"dims must be 1 (a curve along one direction) or 2 (a surface), not {value!r}.")
    return int(value)


def image_count(value: Any, error: type[ZooError] = ZooError) -> int:
    """How many images a landscape averages over: 1..LANDSCAPE_IMAGES_MAX."""
    return whole(value, "The number of images to average over", 1, LANDSCAPE_IMAGES_MAX, error)


def blank_target(value: Any) -> Any:
    """A form's blank target ("" or spaces) as None: each front end's "no class given"."""
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def targets(specs: Sequence[Any], value: Any) -> Any:
    """``value`` checked against every model's classes (``target``), before any weights are fetched;
    returned as given (None for a blank), since each model resolves it against its own classes."""
    value = blank_target(value)
    for spec in specs:
        target(spec, value)
    return value


# batch and its decision ("Which depth should I ship?", zoo.decision)

DECISION_LEVEL = 0.05  # McNemar's significance level for "not significantly below the best"
MAX_BATCH_SIZE = 4096


def batch_size(value: Any) -> int | None:
    """Images per forward: a whole number in 1..4096, or None (the device's default)."""
    return None if value is None else whole(value, "The batch size", 1, MAX_BATCH_SIZE)


def max_ms(value: Any) -> float | None:
    """A latency budget in milliseconds per image at batch 1: a positive number, or None (none)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ZooError(f"The latency budget (--max-ms) must be a positive number of milliseconds, not {value!r}.")
    return float(value)


def level(value: Any) -> float:
    """A significance level strictly between 0 and 0.5 (0.05: the usual 5 %)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 < float(value) < 0.5:
        raise ZooError(f"The significance level (--level) must be a number between 0 and 0.5, such as 0.05, "
                       f"not {value!r}.")
    return float(value)


def corruptions(names: Sequence[str] | None, severities: Sequence[Any] | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The decision's optional corruptions (the Robustness lab's names) and severities 1-5 (default 3).

    No corruptions named: none (severities are then ignored), unlike a robustness run's "all 19".
    """
    if not names:
        return (), (3,)
    from .robustness import corruption_names, severity_list

    return corruption_names(names), severity_list(severities or [3])
