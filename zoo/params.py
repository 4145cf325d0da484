"""One table of parameter rules: what every front end (tab, CLI, endpoint, MCP tool) accepts.

A feature's request (``zoo.features.*.Request.create``) validates through these functions, and
the CLI's choices and help texts read the same constants, so a rule is written once. Each
raises a ``ZooError`` subclass whose message says what to send instead. Sections below are
kept per concern; add a rule to its section rather than writing a check in a feature.
"""

from __future__ import annotations

from typing import Any, Sequence

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
