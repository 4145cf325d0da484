"""Layer-wise relevance propagation (LRP) with Zennit, on a private copy of a torchvision ResNet.

LRP sends the target's logit back through the network layer by layer, each layer sharing what
reaches its output among its inputs by a rule; what arrives at the pixels is the map. Two of
Zennit's composites (``zoo.params.LRP_COMPOSITES``), each with Zennit's ``ResNetCanonizer``,
which routes every block's addition through a ``Sum`` module so that a rule can act there:

* ``epsilon-plus-flat`` (``EpsilonPlusFlat``): Flat for the first conv, z+ for every other conv,
  epsilon for fc; Zennit's recommended default for image classifiers.
* ``epsilon-gamma-box`` (``EpsilonGammaBox``): z^B for the first conv, bounded by the lowest and
  highest value the model's normalisation gives a pixel (0 and 1 per channel, normalised with
  the preprocessing's mean and std), gamma (0.25) for every other conv, epsilon for fc.

Both use Zennit's Norm rule at each ``Sum`` and at the average pool (what arrives is split in
proportion to each input's contribution to the output) and let relevance pass the ReLUs.

Why a private copy: Zennit's rules swap a layer's parameters for modified ones while the
backward runs (``zennit.core.ParamMod``) and the canonizer replaces each block's ``forward``,
while the shared model keeps serving other requests' forwards, which take no lock. So every
propagation runs on a deep copy of the model's fp32 module, made under the model's lock (no
other request's hooks come along) and dropped afterwards. That module is folded (BatchNorm
merged into the convs, ``zoo.models.fold_batchnorm``), so the canonizer's own merge finds
nothing to do, and the maps are what Zennit computes on plain torchvision (tests/test_lrp.py).
``attached`` still restores the module exactly after an error, whatever module it is given.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from . import params
from .cancel import check, holding
from .errors import ZooError
from .inference import Classification
from .models import LoadedModel
from .registry import Preprocessing


# What one map costs, in forward-pass equivalents: the forward, the plain backward (about two
# forwards), and each conv's rule run again in the backward: z+ runs the layer twice (positive
# and negative parts) and differentiates both, gamma five times (four parts and the plain layer).
FORWARDS = {"epsilon-plus-flat": 1 + 2 + 2 * 3, "epsilon-gamma-box": 1 + 2 + 5 * 3}
COST = {name: f"1 forward + 1 backward in which every conv runs again under its rule "
              f"({'z+: twice' if name == 'epsilon-plus-flat' else 'gamma: five times'}): about {n} forwards' worth"
        for name, n in FORWARDS.items()}
# Measured time per forward-pass equivalent, in batch-1 fp32 forwards of the same model:
# benchmarks/methods.py on a loaded 2-core CPU gave a map 13.9 / 12.3 forwards (epsilon-plus-flat)
# and 22.8 / 21.6 (epsilon-gamma-box) on ResNet-18 / 50 (README's method table), i.e. about
# 1.45 and 1.25 per equivalent: Zennit's hooks and the rules' clamped copies of every weight
# cost more than the arithmetic alone.
PASS_COST = {"epsilon-plus-flat": 1.45, "epsilon-gamma-box": 1.25}


class CompositeError(ZooError):
    """An LRP composite that does not exist."""


def composite_rules(name: str, pre: Preprocessing, device: torch.device) -> Any:
    """Zennit's composite ``name`` with a fresh ``ResNetCanonizer`` (one per propagation)."""
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    name = params.composite(name, CompositeError)
    if name == "epsilon-plus-flat":
        return EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    low, high = pixel_box(pre, device)
    return EpsilonGammaBox(low=low, high=high, canonizers=[ResNetCanonizer()])


def pixel_box(pre: Preprocessing, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) normalised value of each channel, (1, 3, 1, 1): pixels 0 and 1 normalised."""
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


# --- the module, as it was, afterwards ---------------------------------------------------------

@dataclass
class _Saved:
    """What Zennit may change on one module: hooks, instance attributes, children, tensors."""

    module: nn.Module
    hooks: dict[str, dict]
    attributes: frozenset[str]
    children: dict[str, nn.Module | None]
    parameters: dict[str, nn.Parameter | None]
    buffers: dict[str, torch.Tensor | None]
    data: dict[str, torch.Tensor]  # each parameter's and buffer's tensor (a merged BatchNorm swaps them)

    @classmethod
    def of(cls, m: nn.Module) -> "_Saved":
        hooks = {k: dict(v) for k, v in vars(m).items() if k.startswith("_") and "hook" in k and isinstance(v, dict)}
        tensors = {**{f"p.{k}": p for k, p in m._parameters.items() if p is not None},
                   **{f"b.{k}": b for k, b in m._buffers.items() if b is not None}}
        return cls(m, hooks, frozenset(vars(m)), dict(m._modules), dict(m._parameters), dict(m._buffers),
                   {k: t.data for k, t in tensors.items()})

    def restore(self) -> None:
        m = self.module
        for key in set(vars(m)) - self.attributes:  # e.g. the canonizer's ``forward`` (its ``Sum``: a child)
            delattr(m, key)
        for key, hooks in self.hooks.items():
            current = getattr(m, key)
            current.clear()
            current.update(hooks)
        for now, saved in ((m._modules, self.children), (m._parameters, self.parameters), (m._buffers, self.buffers)):
            now.clear()
            now.update(saved)
        for key, data in self.data.items():  # the original storage back (a merge assigned new tensors)
            (m._parameters if key[0] == "p" else m._buffers)[key[2:]].data = data


@contextlib.contextmanager
def attached(module: nn.Module, composite: Any) -> Iterator[nn.Module]:
    """``module`` with ``composite``'s canonizers and rules registered; afterwards exactly as before.

    Zennit's own ``composite.context`` removes what it registered, but not what a canonizer
    had half-applied when registering failed; so every submodule's hooks, attributes,
    children and tensors are saved first and put back in ``finally``, after an error too
    (as TorchCAM's extractors do with ``with``). The same module then gives the same logits.
    """
    saved = [_Saved.of(m) for m in module.modules()]
    training = module.training
    try:
        composite.register(module)
        yield module
    finally:
        try:
            composite.remove()
        finally:
            for s in saved:
                s.restore()
            module.train(training)


# --- cancellation ------------------------------------------------------------------------------

def _check_grad(_grad: torch.Tensor) -> None:
    check()  # returns None: the gradient (the relevance) is left as it is


def _before(_module: nn.Module, args: tuple[Any, ...]) -> None:
    check()
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.requires_grad:
        x.register_hook(_check_grad)  # the relevance reaching this block's input: checked on the way back


def cancellable(module: nn.Module) -> None:
    """Check the request's token (``zoo.cancel``) before the stem and each residual block, both ways.

    Forward: a pre-hook on the model and on every block. Backward: a hook on each block's
    input, which runs when the relevance has come back down to it. Call inside ``attached``,
    which removes them.
    """
    module.register_forward_pre_hook(_before)
    for child in module.modules():
        if isinstance(child, (BasicBlock, Bottleneck)):
            child.register_forward_pre_hook(_before)


# --- one propagation -----------------------------------------------------------------------

@dataclass(frozen=True)
class Relevance:
    """One propagation: the relevance at the input pixels and what it started from."""

    input: torch.Tensor  # (1, 3, H, W), detached
    target: int
    logit: float  # the target's logit in this fp32 pass
    seed: float  # the relevance put on the target's logit: the logit itself unless given
    logits: torch.Tensor  # (num_classes,) of this pass, detached

    @property
    def prob(self) -> float:
        """The target's softmax probability in this pass."""
        return float(torch.softmax(self.logits.double(), 0)[self.target])

    @property
    def total(self) -> float:
        """The input relevance summed over pixels and channels."""
        return float(self.input.double().sum())

    @property
    def conservation(self) -> float:
        """``total`` over ``seed``: 1 when nothing was lost or added on the way (nan for a 0 seed)."""
        return self.total / self.seed if self.seed else float("nan")


def private_copy(model: LoadedModel) -> nn.Module:
    """A deep copy of ``model``'s fp32 module, nobody else's: made under its lock, so no hook of a
    request running on the shared module (or a stage Ablation-CAM swapped) comes along."""
    with holding(model.lock):
        return copy.deepcopy(model.module)


def propagate(module: nn.Module, x: torch.Tensor, target: int | None, composite: str, pre: Preprocessing, *,
              seed: float | None = None, taps: Callable[[nn.Module], None] | None = None) -> Relevance:
    """LRP of ``target``'s logit (None: the top-1) through ``module`` by ``composite``.

    ``module`` is changed while this runs (see the module's docstring): give it a private
    one (``private_copy``). ``x``: a prepared (1, 3, H, W) input on its device. ``seed``: the
    relevance to start from (default: the logit, so the map is in logit units). ``taps(module)``
    may add hooks once the canonizer is in place (``zoo.relevance`` reads each ``Sum``); they are
    removed with the rest.
    """
    rules = composite_rules(composite, pre, x.device)
    with attached(module, rules), torch.enable_grad():
        cancellable(module)
        if taps is not None:
            taps(module)
        x = x.detach().float().clone().requires_grad_(True)
        logits = module(x)
        c = int(logits[0].argmax()) if target is None else int(target)
        z = logits[0, c]
        start = float(z.detach()) if seed is None else float(seed)
        (rel,) = torch.autograd.grad(z, x, grad_outputs=torch.tensor(start, dtype=z.dtype, device=z.device))
    return Relevance(rel.detach(), c, float(z.detach()), start, logits[0].detach())


# --- the methods of zoo.explain's table ----------------------------------------------------------

def lrp_map(model: LoadedModel, run: Classification, target: int, composite: str) -> np.ndarray:
    """The (H, W) input relevance (summed over colour channels) for ``target`` by ``composite``.

    It starts from the classification's logit for ``target``, so ``conservation_notes`` can
    read the share that arrived from the map alone. Signed: negative pixels count against.
    """
    rel = propagate(private_copy(model), model.to_input(run.input.clone()), target, composite,
                    model.spec.preprocessing, seed=float(run.logits[target]))
    return rel.input[0].sum(0).float().cpu().numpy().astype(np.float32)


def epsilon_plus_flat(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    """LRP with Zennit's EpsilonPlusFlat composite and ResNetCanonizer."""
    return lrp_map(model, run, target, "epsilon-plus-flat")


def epsilon_gamma_box(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    """LRP with Zennit's EpsilonGammaBox composite (the box: the preprocessing's pixel range) and ResNetCanonizer."""
    return lrp_map(model, run, target, "epsilon-gamma-box")


def conservation(raw: np.ndarray, run: Classification, target: int) -> tuple[float, float, float]:
    """(input relevance, target logit, their ratio) of an LRP map from ``lrp_map``."""
    total, logit = float(raw.sum(dtype=np.float64)), float(run.logits[target])
    return total, logit, (total / logit if logit else float("nan"))


def conservation_notes(raw: np.ndarray, run: Classification, target: int) -> list[str]:
    """The sentence every LRP map carries: how much of the logit reached the pixels."""
    total, logit, ratio = conservation(raw, run, target)
    return [f"Conservation: the input relevance sums to {total:.4g} against the target logit {logit:.4g} it "
            f"started from, a ratio of {ratio:.3f} (1 would keep it all; the epsilon rule's stabiliser and the "
            "layers' biases absorb the rest, or add to it)."]
