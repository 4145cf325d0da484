"""A forward that no hook can reach: the ResNet walked block by block through each module's ``forward``.

Classification, batches and the Depth lab walk the network through each module's
``forward``, never ``module(x)``: hooks that an explanation (Captum, TorchCAM) has put on
this shared module for a moment, or process-wide module hooks of another thread, must
not run inside (and corrupt) another request's forward.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .cancel import check


def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` through ``forward``, so that no hook of anyone runs inside the analysis.

    ``module(x)`` would also run process-wide module hooks that another thread may have
    installed for a moment (torch's ``FlopCounterMode``, behind the Model zoo tab, does),
    and those break ``torch.autograd.grad`` here. A ``Sequential`` is walked layer by layer.
    """
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = call(layer, x)
        return x
    return module.forward(x)


def stem(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """conv1, bn1, relu, maxpool: the input of ``layer1.0``."""
    check()  # a stopped request ends here, before the next block (zoo.cancel)
    return call(m.maxpool, call(m.relu, call(m.bn1, call(m.conv1, x))))


def residual_branch(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x), bn2's output): the residual branch after its last BN, and the 3x3 layer's response.

    In a basic block the last BN is ``bn2``, so the two are one tensor; in a bottleneck
    ``bn2`` follows the only 3x3 conv and F ends at ``bn3``.
    """
    out = call(block.relu, call(block.bn1, call(block.conv1, x)))
    response = call(block.bn2, call(block.conv2, out))
    if isinstance(block, Bottleneck):
        return call(block.bn3, call(block.conv3, call(block.relu, response))), response
    return response, response


def shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The identity, or the projection (1x1 conv + BN) of a downsampling block."""
    return x if block.downsample is None else call(block.downsample, x)


def block_forward(block: nn.Module, x: torch.Tensor, lesioned: bool = False) -> torch.Tensor:
    """ReLU(F(x) + shortcut(x)) as torchvision computes it; with ``lesioned``, F is deleted."""
    check()  # a stopped request ends within one block (zoo.cancel)
    if lesioned:
        # x is already non-negative for an identity block, so this is x itself there.
        return call(block.relu, shortcut(block, x))
    return call(block.relu, residual_branch(block, x)[0] + shortcut(block, x))
