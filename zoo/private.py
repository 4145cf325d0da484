"""A private fp32 copy of a model's weights, for the analyses that change or perturb them.

The sanity check (zoo.sanity) re-initialises layers and the error surfaces (zoo.landscape)
move every weight; neither may touch the shared, folded model of the cache (zoo.models).
Both build their copy here, the one way: read again from the verified safetensors file
(``fetch_weights`` checks its hash; never ``torch.load``), into torchvision's own module with
BatchNorm unfolded, so it shares no memory with anyone.
"""

from __future__ import annotations

import os

from torch import nn

from .hub import ProgressFn, fetch_weights
from .models import assigned, read_state_dict
from .registry import ModelSpec


def private_copy(spec: ModelSpec, *, progress: ProgressFn | None = None,
                 cache_dir: str | os.PathLike | None = None) -> nn.Module:
    """torchvision's module of ``spec``, fp32, BatchNorm unfolded, with its verified weights; nobody else's."""
    path = fetch_weights(spec, progress=progress, cache_dir=cache_dir)
    state = read_state_dict(path, spec)  # fresh tensors: this copy shares no memory with the app's model
    return assigned(spec, state)  # strict, as load_model loads; BatchNorm stays unfolded
