"""LRP (zoo.lrp) and the relevance flow per block (zoo.relevance), checked against Zennit itself.

Each map is compared with Zennit called as its documentation shows (the ``Gradient``
attributor, the same composite and ``ResNetCanonizer``) on plain torchvision (unfolded,
fp32, contiguous) built from the same safetensors: Spearman's rho at the crop's resolution.
Everything runs at fp32. The relevance flow's totals are held to what Zennit's own Norm rule
hands down at each block's ``Sum``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from conftest import EXAMPLES, hook_count, plain_model, run_cli
from zoo import cancel, params
from zoo.explain import METHODS, PASS_COSTS, VALUE_UNITS, explain
from zoo.inference import classify
from zoo.lrp import FORWARDS, CompositeError, attached, composite_rules
from zoo.models import load_model, ready
from zoo.relevance import BlockRelevance, forwards, relevance_flow

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet normalisation
LRP = {"lrp-epsilon-plus-flat": "epsilon-plus-flat", "lrp-epsilon-gamma-box": "epsilon-gamma-box"}


@pytest.fixture(scope="module")
def models(zoo, hosted):
    return {arch: load_model(zoo.get(arch), "cpu", precision="fp32") for arch in ("resnet18", "resnet50")}


@pytest.fixture(scope="module")
def plains(hosted):
    return {arch: plain_model(arch, hosted) for arch in ("resnet18", "resnet50")}


def zennit_composite(name: str):
    """The composite as Zennit's documentation builds it, with the box written out here."""
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    if name == "epsilon-plus-flat":
        return EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    low, high = (torch.zeros(1, 3, 224, 224) - mean) / std, (torch.ones(1, 3, 224, 224) - mean) / std
    return EpsilonGammaBox(low=low, high=high, canonizers=[ResNetCanonizer()])


def zennit_relevance(model: torch.nn.Module, composite, x: torch.Tensor, target: int) -> torch.Tensor:
    """Zennit's input relevance for ``target``, starting from its logit."""
    from zennit.attribution import Gradient

    onehot = torch.eye(1000)[[target]]
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(x.clone(), lambda out: out * onehot)
    return relevance


def module_state(module: torch.nn.Module) -> tuple:
    """Everything LRP may change on a module: tensors, hooks, submodules, instance attributes."""
    tensors = {k: v.clone() for k, v in module.state_dict().items()}
    shape = [(name, type(m).__name__, sorted(vars(m))) for name, m in module.named_modules()]
    return tensors, hook_count(module), shape


def same_state(a: tuple, b: tuple) -> bool:
    return (a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
            and a[1:] == b[1:])


# --- the maps ----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("method", list(LRP))
def test_maps_match_zennit_on_plain_torchvision(arch, method, models, plains):
    lm, plain = models[arch], plains[arch]
    run = classify(lm, EXAMPLES / "coffee.png")
    target = run.predictions[1].index  # not the top-1: the target must be honoured
    before = module_state(lm.module)
    ex = explain(lm, run, method, target)
    ref = zennit_relevance(plain, zennit_composite(LRP[method]), run.input, target)[0].sum(0).numpy()
    assert ex.raw.shape == (224, 224) and ex.raw.dtype == np.float32 and np.isfinite(ex.raw).all()
    assert ex.layer is None and ex.target.index == target
    assert float(spearmanr(ex.raw.ravel(), ref.ravel()).statistic) >= 0.99
    assert np.abs(ex.raw).max() > 0
    # The conservation note: the map's sum against the logit it started from.
    total, logit = float(ex.raw.sum(dtype=np.float64)), float(run.logits[target])
    note = next(n for n in ex.notes if n.startswith("Conservation"))
    assert f"{total:.4g}" in note and f"{logit:.4g}" in note and f"{total / logit:.3f}" in note
    np.testing.assert_allclose(total, float(ref.sum(dtype=np.float64)), rtol=1e-3)
    # Ran on a private copy: the shared model is as it was, and answers as before.
    assert same_state(module_state(lm.module), before) and not lm.lock.locked()
    np.testing.assert_array_equal(classify(lm, EXAMPLES / "coffee.png").logits, run.logits)


def test_the_methods_are_in_the_table_with_their_costs():
    for name, composite in LRP.items():
        m = METHODS[name]
        assert m.signed and m.resolution == "input" and not m.backward and m.notes is not None
        assert m.forwards() == m.passes() == FORWARDS[composite] > 3
        assert name in PASS_COSTS and m.pass_cost == PASS_COSTS[name] > 0
        assert m.measured_cost() == pytest.approx(FORWARDS[composite] * PASS_COSTS[name])
        assert VALUE_UNITS[name] == "relevance (logit units)" and m.cost
        assert forwards(composite) == m.measured_cost()  # a relevance flow costs one map (its estimate)
    assert list(METHODS)[-2:] == list(LRP)  # appended: the order of the older methods is kept
    assert params.composite(None) == "epsilon-plus-flat" == params.composite(" Epsilon_Plus_Flat ")
    with pytest.raises(CompositeError, match="choose one of epsilon-plus-flat, epsilon-gamma-box"):
        composite_rules("alpha2-beta1", models_pre(), torch.device("cpu"))


def models_pre():
    from zoo.registry import Preprocessing

    return Preprocessing()


def test_explain_refuses_a_layer_for_lrp(models):
    from zoo.explain import LayerError

    run = classify(models["resnet18"], EXAMPLES / "rocket.jpg")
    with pytest.raises(LayerError, match="takes no layer"):
        explain(models["resnet18"], run, "lrp-epsilon-plus-flat", layer="layer3")


# --- restored afterwards, stopped between blocks ------------------------------------------

class Boom(RuntimeError):
    pass


def test_a_failure_in_the_backward_leaves_every_module_as_it_was(models, plains, monkeypatch):
    from zennit.core import BasicHook

    calls = []

    def failing(self, module, grad_input, grad_output):
        calls.append(type(self).__name__)
        raise Boom("failure half-way through the relevance")

    monkeypatch.setattr(BasicHook, "backward", failing)
    lm = models["resnet18"]
    run = classify(lm, EXAMPLES / "rocket.jpg")
    before = module_state(lm.module)
    with pytest.raises(Boom):
        explain(lm, run, "lrp-epsilon-gamma-box")
    assert calls and same_state(module_state(lm.module), before) and not lm.lock.locked()
    # ``attached`` itself, on plain torchvision, whose BatchNorms the canonizer merges into the convs.
    plain = copy.deepcopy(plains["resnet18"])
    before = module_state(plain)
    with pytest.raises(Boom), attached(plain, zennit_composite("epsilon-plus-flat")):
        assert hasattr(plain.layer1[0], "canonizer_sum") and plain.conv1.bias is not None  # bn1 merged
        plain(run.input.clone().requires_grad_(True))[0, 0].backward()
    assert same_state(module_state(plain), before) and not plain.training


def test_a_canonizer_failing_half_way_is_undone_too(plains, monkeypatch):
    from zennit.torchvision import ResNetBasicBlockCanonizer

    original = ResNetBasicBlockCanonizer._attribute_map.__func__
    seen = []

    def third_fails(cls, name, module):
        out = original(cls, name, module)
        if out is not None:
            seen.append(name)
            if len(seen) == 3:
                raise Boom("a canonizer failing after merging every BatchNorm and changing two blocks")
        return out

    monkeypatch.setattr(ResNetBasicBlockCanonizer, "_attribute_map", classmethod(third_fails))
    plain = copy.deepcopy(plains["resnet18"])
    before = module_state(plain)
    with pytest.raises(Boom), attached(plain, zennit_composite("epsilon-plus-flat")):
        pass
    assert len(seen) == 3 and same_state(module_state(plain), before)


def test_stop_ends_the_relevance_between_blocks(models, monkeypatch):
    from zennit.core import BasicHook

    lm = models["resnet18"]
    run = classify(lm, EXAMPLES / "rocket.jpg")
    before = module_state(lm.module)
    token, original, sums = cancel.Token(), BasicHook.backward, []

    def stop_after_the_last_blocks_sum(self, module, grad_input, grad_output):
        out = original(self, module, grad_input, grad_output)
        if type(module).__name__ == "Sum":
            sums.append(module)
            token.cancel()  # the visitor pressed Stop while the relevance was in layer4.1
        return out

    monkeypatch.setattr(BasicHook, "backward", stop_after_the_last_blocks_sum)
    with cancel.running(token), pytest.raises(cancel.Cancelled):
        explain(lm, run, "lrp-epsilon-plus-flat")
    assert len(sums) == 1  # stopped at the next block's input, not at the end of the backward
    assert same_state(module_state(lm.module), before)


# --- the relevance flow --------------------------------------------------------------------

def last_bn(block: torch.nn.Module) -> torch.nn.BatchNorm2d:
    return block.bn3 if hasattr(block, "bn3") else block.bn2


def test_the_generated_weights_have_non_zero_batchnorm_scales(plains):
    # timm's random init zeroes each branch's last BN scale (F(x) = 0 everywhere); torchvision's,
    # which tests/conftest.py saves, does not: otherwise every share below would be 0 trivially.
    for plain in plains.values():
        for m in plain.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert bool((m.weight != 0).all())


def loaded(zoo, plain: torch.nn.Module, arch: str):
    """A changed copy of ``plain`` made a LoadedModel the way the app makes one (folded, fp32)."""
    return ready(zoo.get(arch), plain, torch.device("cpu"))


@pytest.mark.parametrize("arch, block", [("resnet18", "layer3.1"), ("resnet50", "layer2.2")])
def test_a_branch_that_outputs_zero_gets_no_relevance(zoo, plains, arch, block):
    plain = copy.deepcopy(plains[arch])
    bn = last_bn(plain.get_submodule(block))
    assert not bn.bias.any()  # with its scale zero, the branch's output is exactly zero: F(x) = 0
    with torch.no_grad():
        bn.weight.zero_()
    flow = relevance_flow(loaded(zoo, plain, arch), EXAMPLES / "chelsea.png")
    row = next(b for b in flow.blocks if b.name == block)
    assert row.branch == 0.0 and row.share_branch == 0.0 and row.shortcut != 0.0
    assert all(b.branch != 0.0 for b in flow.blocks if b.name != block)


def test_a_shortcut_that_outputs_zero_gets_no_relevance(zoo, plains):
    plain = copy.deepcopy(plains["resnet18"])
    projection = plain.layer2[0].downsample[1]  # the projection shortcut's BatchNorm
    with torch.no_grad():
        projection.weight.zero_()
        projection.bias.zero_()
    flow = relevance_flow(loaded(zoo, plain, "resnet18"), EXAMPLES / "chelsea.png", composite="epsilon-gamma-box")
    row = next(b for b in flow.blocks if b.name == "layer2.0")
    assert row.downsample and row.shortcut == 0.0 and row.share_branch == 1.0 and row.branch != 0.0


# Both composites and both kinds of block; gamma on ResNet-50 would cost the most for no more coverage.
@pytest.mark.parametrize("arch, composite", [("resnet18", "epsilon-gamma-box"), ("resnet50", "epsilon-plus-flat")])
def test_block_totals_equal_zennits_own_rule_at_each_sum(arch, composite, models, plains, monkeypatch):
    from zennit.rules import Norm

    lm, plain = models[arch], plains[arch]
    run = classify(lm, EXAMPLES / "coffee.png")
    target = run.predictions[1].index
    flow = relevance_flow(lm, EXAMPLES / "coffee.png", target, composite)
    # Zennit on plain torchvision: what its Norm rule returns at each block's Sum (the stacked input's relevance).
    handed, original = {}, Norm.backward

    def recording(self, module, grad_input, grad_output):
        out = original(self, module, grad_input, grad_output)
        handed[id(module)] = out[0].detach().double()
        return out

    monkeypatch.setattr(Norm, "backward", recording)
    from zennit.attribution import Gradient

    names = [f"{s}.{j}" for s in ("layer1", "layer2", "layer3", "layer4") for j in range(len(plain.get_submodule(s)))]
    onehot = torch.eye(1000)[[target]]
    with Gradient(model=plain, composite=zennit_composite(composite)) as attributor:
        sums = {name: id(plain.get_submodule(name).canonizer_sum) for name in names}
        attributor(run.input.clone(), lambda out: out * onehot)
    assert [b.name for b in flow.blocks] == names and flow.target.index == target
    for b in flow.blocks:
        ref = handed[sums[b.name]]
        scale = float(ref.abs().sum())  # what arrived at this block, in absolute terms
        assert abs(b.shortcut - float(ref[..., 0].sum())) <= 1e-3 * scale, b.name
        assert abs(b.branch - float(ref[..., 1].sum())) <= 1e-3 * scale, b.name
    assert flow.composite == composite and flow.logit == pytest.approx(float(run.logits[target]), rel=1e-4)


def test_the_flow_json(models):
    lm = models["resnet18"]
    flow = relevance_flow(lm, EXAMPLES / "rocket.jpg", "space shuttle")
    data = json.loads(json.dumps(flow.to_json()))
    assert data["target"]["label"] == "space shuttle" and len(data["blocks"]) == 8
    assert data["blocks"][0]["name"] == "layer1.0"
    assert set(flow.blocks[0].to_json()) == {"shortcut", "branch", "share_branch"}
    for b in flow.blocks:
        assert b.share_branch == pytest.approx(b.branch / (b.shortcut + b.branch))
    assert data["conservation"] == pytest.approx(data["input_relevance"] / data["logit"])
    assert BlockRelevance("x", 1, False, 0.0, 0.0).to_json()["share_branch"] is None
    with pytest.raises(CompositeError, match="Unknown LRP composite"):
        relevance_flow(lm, EXAMPLES / "rocket.jpg", composite="alpha-beta")
    assert hook_count(lm.module) == 0


def test_the_cli_explains_with_lrp(zoo_file, hosted):
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "lrp-epsilon-plus-flat", "--precision", "fp32", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "lrp-epsilon-plus-flat" and any(n.startswith("Conservation") for n in out["notes"])
