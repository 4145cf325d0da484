"""One cost model: what a request will cost before it runs, from what ran here.

Every price the app shows, every ceiling it checks (``zoo.limits``) and the duration a
ZeroGPU call asks for come from here. A feature counts its forward-pass equivalents per
model (``zoo.features.*.estimate``); this module turns them into seconds with what this
machine measured: each model's recent forwards, each method's recent passes, and the
batched per-unit times that robustness and landscape runs leave behind.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Mapping

from .registry import Zoo

FAITHFULNESS = "faithfulness"  # the calibration key of scoring a map (``CostModel.pass_seconds``)
NOT_TIMED = "no forward timed on this device yet"
MIXED = "each model's forward measured here or scaled by multiply-adds"


@dataclass(frozen=True)
class Estimate:
    """What a request will cost before it runs: forward passes, and seconds on this device."""

    forwards: int  # forward-pass equivalents over all models: classification, map, score (a backward: two)
    seconds: float | None  # None until some model's forward has been timed on this device
    basis: str  # whose timing it rests on, for the user to judge it
    models: int = 1  # how many models it runs (a ZeroGPU call pays a fixed cost for each)
    passes: int = 0  # images through the network over all models, each counted once (as a forward hook sees)


def table_cost(key: str) -> float:
    """A method's (or scoring's) pass in forwards' worth, as the tables in explain/faithfulness give it."""
    from .explain import METHODS
    from .faithfulness import PASS_COST

    return PASS_COST if key == FAITHFULNESS else METHODS[key].pass_cost


class CostModel:
    """Recent timings on this machine (shared like the model cache: a measurement of the
    machine, not anyone's request), and prices derived from them. Thread-safe."""

    def __init__(self, zoo: Zoo):
        self.zoo = zoo
        self._lock = threading.Lock()
        self._forward_s: dict[str, deque[float]] = {}  # classification seconds per model
        # Passes of each method (and of scoring): (seconds per pass per multiply-add of the model,
        # that pass over the table's cost x the forward then).
        self._pass_s: dict[str, deque[tuple[float, float | None]]] = {}
        # Per-unit seconds a feature measured itself, per (feature, model): a robustness crop
        # in a batch, a landscape's image-forward.
        self._unit_s: dict[tuple[str, str], deque[float]] = {}
        self._ratios: dict[str, deque[float]] = {}  # measured/table ratios per kind (corrupting)

    # --- what ran -------------------------------------------------------------------------

    def timed(self, run: Any) -> Any:
        """Remember a classification's seconds (``run.model``, ``run.seconds``); returns ``run``."""
        with self._lock:
            self._forward_s.setdefault(run.model, deque(maxlen=5)).append(run.seconds)
        return run

    def calibrate(self, key: str, model: str, seconds: float, passes: int) -> None:
        """Remember what one pass of ``key`` (a method, or ``FAITHFULNESS``) took here on ``model``."""
        if passes <= 0 or seconds <= 0 or table_cost(key) <= 0:
            return
        per_pass = seconds / passes
        timed = self.forward_seconds(model)
        off = per_pass / (table_cost(key) * timed[0]) if timed else None
        with self._lock:
            self._pass_s.setdefault(key, deque(maxlen=5)).append((per_pass / self.macs(model), off))

    def remember(self, kind: str, model: str, seconds: float) -> None:
        """Remember one unit of ``kind`` (a feature's own measure, e.g. a batched crop) on ``model``."""
        if seconds > 0:
            with self._lock:
                self._unit_s.setdefault((kind, model), deque(maxlen=5)).append(float(seconds))

    def remember_ratio(self, kind: str, ratio: float) -> None:
        """Remember how far a run here was from ``kind``'s table (e.g. corrupting crops)."""
        if ratio:
            with self._lock:
                self._ratios.setdefault(kind, deque(maxlen=5)).append(float(ratio))

    # --- what it tells ------------------------------------------------------------------

    def macs(self, model: str) -> int:
        from .stats import model_stats

        spec = self.zoo.get(model)
        return model_stats(spec.arch.name, spec.preprocessing.crop).macs

    def forward_seconds(self, model: str) -> tuple[float, str] | None:
        """One forward of ``model`` here: the median of its recent runs, else another model's
        scaled by multiply-adds; None before any model ran. With the model whose time it rests on."""
        with self._lock:
            measured = {name: statistics.median(times) for name, times in self._forward_s.items()}
        if model in measured:
            return measured[model], f"{model}'s forward measured here"
        if not measured:
            return None
        other = min(measured, key=lambda n: abs(self.macs(n) - self.macs(model)))  # the closest scales best
        return (measured[other] * self.macs(model) / self.macs(other),
                f"{other}'s forward measured here, scaled by multiply-adds")

    def pass_seconds(self, key: str, model: str, forward_s: float) -> tuple[float, bool]:
        """One pass of ``key`` on ``model`` here, and whether it was measured.

        Once the method (or scoring) has run here: its passes' median time, scaled by
        multiply-adds. Before that: the table's multiple of ``forward_s`` (the measured
        forward), times the median of how far the methods that did run were from the table
        on this device (batching and backward speed vary with the machine and precision).
        """
        with self._lock:
            own = [per_mac for per_mac, _ in self._pass_s.get(key, ())]
            offs = [off for runs in self._pass_s.values() for _, off in runs if off is not None]
        if own:
            return statistics.median(own) * self.macs(model), True
        return table_cost(key) * forward_s * (statistics.median(offs) if offs else 1.0), False

    def measured(self, kind: str) -> dict[str, float]:
        """Median per-unit seconds of ``kind`` per model, from recent runs here."""
        with self._lock:
            return {m: statistics.median(v) for (k, m), v in self._unit_s.items() if k == kind}

    def ratio(self, kind: str) -> float | None:
        with self._lock:
            r = self._ratios.get(kind)
            return statistics.median(r) if r else None

    # --- prices ---------------------------------------------------------------------------

    def priced(self, passes: Mapping[str, float], *, unit: str | None = None, unit_basis: str = "",
               passes_count: int | None = None) -> Estimate:
        """An ``Estimate`` from forward-pass equivalents per model.

        Each model's passes cost its ``unit`` time measured here (``remember``) when there is
        one, else its ``forward_seconds``; None seconds before any forward was timed.
        """
        forwards = sum(passes.values())
        units = self.measured(unit) if unit else {}
        seconds: float | None = 0.0
        bases = []
        for name, n in passes.items():
            if name in units:
                seconds += n * units[name]  # type: ignore[operator]
                bases.append(unit_basis)
                continue
            timed = self.forward_seconds(name)
            if timed is None:
                seconds = None
                break
            seconds += n * timed[0]  # type: ignore[operator]
            bases.append(timed[1])
        count = math.ceil(forwards)
        if seconds is None:
            return Estimate(count, None, NOT_TIMED, len(passes), passes=passes_count or 0)
        basis = bases[0] if len(set(bases)) == 1 else MIXED
        return Estimate(count, seconds, basis, len(passes), passes=passes_count or 0)

    def latency_estimate(self, resolution: int, repeats: int = 10, warmup: int = 3) -> Estimate:
        """The cost of timing every model (``stats.measure_latency``) at ``resolution``."""
        n = warmup + repeats
        forwards, seconds = n * len(self.zoo.names), 0.0
        for spec in self.zoo:
            timed = self.forward_seconds(spec.name)
            if timed is None:
                return Estimate(forwards, None, NOT_TIMED)
            seconds += n * timed[0] * (resolution / spec.preprocessing.crop) ** 2  # cost grows with the pixels
        return Estimate(forwards, seconds, MIXED)


def with_decoding(est: Estimate, decode_s: float) -> Estimate:
    """``est`` plus decoding its inputs (``decode_s``, priced from their headers): in seconds, and
    in the forward-pass equivalents the gate prices before any forward has been timed here."""
    from .limits import ASSUMED_FORWARD_S

    if decode_s <= 0:
        return est
    # Rounded, not ceiled: decoding a few small images (well under a forward) adds no pass to the count;
    # 140 photos of 40 MP add about 200.
    return replace(est, forwards=est.forwards + round(decode_s / ASSUMED_FORWARD_S),
                   seconds=None if est.seconds is None else est.seconds + decode_s,
                   basis=est.basis + "; decoding the images priced by their pixels")
