"""``--precision auto`` / ``--compile auto`` decided by measurement (zoo.autotune).

No test asserts on real wall-clock time: the decisions are tested on injected timings
(``autotune.time_paths`` replaced), and "measured again or not" by counting the trunk's
forwards. bf16 is made a candidate with ``cpu_bf16_native`` patched to True: autocast to
bf16 runs on every CPU (emulated where not native), so these tests pass on any CPU kind.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch

from conftest import EXAMPLES, explained, run_cli
from zoo import autotune, precision
from zoo.inference import classify
from zoo.models import ModelCache, load_model, precision_candidates

CPU = torch.device("cpu")


def record(ms: dict[str, float], change: dict[str, float] | None = None, batch: int = 1) -> dict:
    return {"key": {"batch": batch}, "ms": ms, "logit_change": change or {n: 0.003 for n in ms if n != "fp32"},
            "measured": "2026-01-01 00:00 UTC"}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder, bf16 a candidate, and a counter of the trunk's forwards that measure."""
    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_PRECISION", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    calls = {"n": 0}
    real = autotune.eager_forward

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(autotune, "eager_forward", counted)
    return calls


def timings(monkeypatch, ms: dict[str, float]) -> None:
    """Every later measurement "finds" these medians (the forwards still run, and are counted)."""
    real = autotune.time_paths

    def fake(paths, device, batch, warmup=0):
        real(paths, device, batch, warmup)
        return {name: ms[name] for name in paths}

    monkeypatch.setattr(autotune, "time_paths", fake)


# --- the decision, on given timings ------------------------------------------------------

def test_the_fastest_candidate_that_keeps_the_contract_wins_by_a_clear_margin():
    assert autotune.decide(record({"fp32": 160.0, "bf16": 100.0})) == (
        "bf16", "bf16: 1.6x faster than fp32 here, measured at load")
    # fp32 is the reference: a reduced precision must be at least MARGIN faster
    name, why = autotune.decide(record({"fp32": 105.0, "bf16": 100.0}))
    assert name == "fp32" and "bf16 was 1.05x as fast here" in why
    name, why = autotune.decide(record({"fp32": 100.0, "bf16": 120.0}, batch=32), fresh=False)
    assert name == "fp32" and "0.83x as fast here at batch 32" in why and "(cached)" in why
    # the fastest of several (CUDA: bf16 and fp16)
    assert autotune.decide(record({"fp32": 30.0, "bf16": 12.0, "fp16": 10.0}))[0] == "fp16"
    # one that moves the logits beyond the contract is out, however fast
    name, why = autotune.decide(record({"fp32": 30.0, "bf16": 12.0, "fp16": 10.0}, {"bf16": 0.004, "fp16": 0.02}))
    assert name == "bf16"
    name, why = autotune.decide(record({"fp32": 30.0, "bf16": 10.0}, {"bf16": 0.02}))
    assert name == "fp32" and "moved the logits by 2.0%" in why


def test_where_bf16_is_not_native_it_is_no_candidate(monkeypatch):
    """As on a CPU without AMX or AVX-512 BF16 (ZOO_TEST_NO_NATIVE_BF16=1 runs the whole suite so)."""
    monkeypatch.delenv("ZOO_PRECISION", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    assert precision_candidates("auto", CPU) == ["fp32"]
    candidates, why = precision.precision_plan(None, CPU)
    assert candidates == ["fp32"] and "only precision it runs natively" in why
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    assert precision_candidates("auto", CPU) == ["fp32", "bf16"]


# --- measuring once, and the cache -------------------------------------------------------

def test_measured_once_then_decided_from_the_cache(fresh, monkeypatch, zoo, hosted):
    timings(monkeypatch, {"fp32": 100.0, "bf16": 60.0})
    lm = load_model(zoo.get("resnet18"), "cpu")
    assert lm.precision is torch.bfloat16 and lm.precision_note == "bf16: 1.7x faster than fp32 here, measured at load"
    measured = fresh["n"]
    assert measured >= 2 * (1 + autotune.ROUNDS)  # the contract's forwards, then the timed rounds
    again = load_model(zoo.get("resnet18"), "cpu")  # a later start: no forward measures anything
    assert fresh["n"] == measured
    assert again.precision is torch.bfloat16 and "(cached)" in again.precision_note
    files = list((autotune.record_path(autotune.key(lm, 1, ["fp32", "bf16"]))).parent.iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text())["ms"] == {"fp32": 100.0, "bf16": 60.0}


def test_the_key_changes_with_threads_torch_and_batch(monkeypatch, zoo, hosted):
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")
    base = autotune.record_path(autotune.key(lm, 1, ["fp32", "bf16"]))
    assert autotune.record_path(autotune.key(lm, 32, ["fp32", "bf16"])) != base
    assert autotune.record_path(autotune.key(lm, 1, ["fp32"])) != base
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    assert autotune.record_path(autotune.key(lm, 1, ["fp32", "bf16"])) != base
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert autotune.record_path(autotune.key(lm, 1, ["fp32", "bf16"])) != base


@pytest.mark.parametrize("damage", ["not json {", '{"key": 1}', "truncate", "wrong ms"])
def test_a_damaged_cache_file_is_ignored_and_measured_again(fresh, monkeypatch, zoo, hosted, damage):
    timings(monkeypatch, {"fp32": 100.0, "bf16": 200.0})
    lm = load_model(zoo.get("resnet18"), "cpu")
    assert lm.precision is None and "bf16 was 0.50x as fast" in lm.precision_note
    path = autotune.record_path(autotune.key(lm, 1, ["fp32", "bf16"]))
    text = path.read_text()
    broken = {"truncate": text[: len(text) // 2],
              "wrong ms": text.replace('"fp32": 100.0', '"fp32": -1')}.get(damage, damage)
    path.write_text(broken)
    before = fresh["n"]
    timings(monkeypatch, {"fp32": 100.0, "bf16": 50.0})
    again = load_model(zoo.get("resnet18"), "cpu")
    assert fresh["n"] > before and again.precision is torch.bfloat16 and "measured at load" in again.precision_note
    assert json.loads(path.read_text())["ms"]["bf16"] == 50.0  # replaced by the new measurement


def test_an_explicit_precision_is_obeyed_unmeasured(fresh, monkeypatch, zoo, hosted):
    timings(monkeypatch, {"fp32": 100.0, "bf16": 10.0})  # bf16 would win by far
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")
    assert lm.precision is None and lm.precision_note == "fp32: asked for (--precision fp32)"
    monkeypatch.setenv("ZOO_PRECISION", "fp32")
    assert load_model(zoo.get("resnet18"), "cpu").precision_note == "fp32: asked for (ZOO_PRECISION=fp32)"
    assert fresh["n"] == 0
    assert ModelCache(1, "cpu", precision="bf16").get(zoo.get("resnet18")).precision is torch.bfloat16
    assert fresh["n"] == 0


# --- while measuring: fp32 --------------------------------------------------------------

def test_requests_run_fp32_while_the_precision_is_measured(fresh, monkeypatch, zoo, hosted):
    go = threading.Event()
    real = autotune.measure

    def held(*args, **kwargs):
        assert go.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(autotune, "measure", held)
    timings(monkeypatch, {"fp32": 100.0, "bf16": 60.0})
    cache = ModelCache(1, "cpu")
    cache.tune_in_background()
    lm = cache.get(zoo.get("resnet18"))  # returns at once: measuring goes on in a thread
    assert not lm.tuned.is_set()
    run = classify(lm, EXAMPLES / "chelsea.png")
    assert run.precision == "fp32" and "while bf16 is measured" in run.precision_note
    assert cache.precision_label() == "fp32" and "while bf16 is measured" in cache.precision_note()
    go.set()
    assert lm.tuned.wait(120)
    run = classify(lm, EXAMPLES / "chelsea.png")
    assert run.precision == "bf16" and run.to_json()["precision_note"] == "bf16: 1.7x faster than fp32 here, measured at load"


# --- what the answers say ---------------------------------------------------------------

def test_json_answers_and_the_header_say_why(fresh, monkeypatch, zoo, zoo_file, hosted):
    timings(monkeypatch, {"fp32": 100.0, "bf16": 60.0})
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu")
    assert explorer.precision == "auto" and "measured per model when it loads" in explorer.precision_note
    result = explained(explorer, EXAMPLES / "chelsea.png", "resnet18")
    assert result.run.to_json()["precision"] == "bf16"
    assert explorer.precision == "bf16" and explorer.precision_note == "bf16: 1.7x faster than fp32 here, measured at load"
    from ui import build_app

    demo = build_app(explorer)
    header = next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "page-header")
    assert "precision `bf16` (bf16: 1.7x faster than fp32 here, measured at load)" in header
    # the CLI, a later start: decided from the same cache, and says so
    out = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--json", "--zoo", str(zoo_file),
                  "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["precision"] == "fp32" and answer["precision_note"] == "fp32: asked for (--precision fp32)"


# --- compiled or eager ------------------------------------------------------------------

class FakeCompiled:
    """Stands in for a compiled trunk (zoo.compiled.CompiledTrunk): the eager trunk, counted."""

    graphs = {"one": None}

    def __init__(self, lm):
        self.lm, self.calls = lm, 0

    def accepts(self, x):
        return x.shape[0] == 1

    def __call__(self, x):
        self.calls += 1
        return self.lm.trunk(x).float()


def test_eager_wins_over_a_slower_compiled_trunk_and_later_starts_skip_the_build(fresh, monkeypatch, zoo, hosted):
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")
    lm.compiled, lm.compile_note = FakeCompiled(lm), "compiled (batch 1): built in 12 s"
    timings(monkeypatch, {"eager": 80.0, "compiled": 100.0})
    autotune.check_compiled(lm)
    assert lm.compiled.calls > 0 and not lm.use_compiled
    assert lm.compile_note.endswith("runs eager: 1.2x faster than the compiled trunk here, measured at load")
    assert lm.run(lm.to_input(torch.zeros(1, 3, 224, 224)))[2] == "eager"
    again = load_model(zoo.get("resnet18"), "cpu", precision="fp32")
    assert "(cached)" in autotune.compile_lost(again)
    # faster compiled (or within the margin): kept
    other = load_model(zoo.get("resnet34"), "cpu", precision="fp32")
    other.compiled = FakeCompiled(other)
    timings(monkeypatch, {"eager": 100.0, "compiled": 105.0})
    autotune.check_compiled(other)
    assert other.use_compiled and autotune.compile_lost(other) is None
