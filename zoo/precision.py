"""What runs where: the device a model runs on and the precision its trunk runs at.

``resolve_device`` (``--device``), the precisions a device runs natively and what
``--precision`` resolves to (``zoo.autotune`` measures ``auto``'s candidates), and the autocast
and input layout every forward uses.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ZooError
from .params import DEVICES, PRECISIONS


class DeviceUnavailableError(ZooError):
    """The device asked for is not present on this machine."""


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU: one code path for all three."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("CUDA was asked for but no CUDA GPU is available here; use --device auto or cpu.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError("MPS was asked for but Apple's Metal backend is not available; use --device auto or cpu.")
    if name not in DEVICES:
        raise DeviceUnavailableError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    return torch.device(name)


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class PrecisionUnavailableError(ZooError):
    """A reduced precision was asked for on hardware that does not run it natively."""


def cpu_bf16_native() -> bool:
    """True on CPUs that run bf16 matrix maths natively (AMX tiles or AVX-512 BF16).

    Elsewhere oneDNN emulates bf16 and it is *slower* than fp32, so ``auto`` stays fp32.
    """
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def _requested(name: str | None) -> tuple[str, str]:
    """(precision asked for, where it was asked): --precision, else $ZOO_PRECISION, else auto."""
    if name:
        return name.lower(), f"--precision {name.lower()}"
    env = os.environ.get("ZOO_PRECISION")
    return ((env.lower(), f"ZOO_PRECISION={env.lower()}") if env else ("auto", "auto"))


def precision_candidates(name: str | None, device: torch.device) -> list[str]:
    """The precisions ``name`` allows on ``device``: an explicit one alone, or for ``auto`` fp32 (the
    reference, always first) and the reduced ones the device runs natively (``zoo.autotune`` measures
    which is fastest here): CUDA bf16 (where supported) and fp16, Apple MPS fp16, CPUs with AMX /
    AVX-512 BF16 bf16. Asking explicitly for a precision the device cannot run is an error, never a
    silent fallback.
    """
    name, _ = _requested(name)
    if name not in PRECISIONS:
        raise PrecisionUnavailableError(f"Unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}.")
    kind = device.type
    if name == "auto":
        if kind == "cuda":
            return ["fp32", *(["bf16"] if torch.cuda.is_bf16_supported() else []), "fp16"]
        if kind == "mps":
            return ["fp32", "fp16"]
        return ["fp32", "bf16"] if cpu_bf16_native() else ["fp32"]
    dtype = _DTYPES[name]
    if kind == "cpu" and dtype is not None and not (dtype == torch.bfloat16 and cpu_bf16_native()):
        why = ("this CPU has neither AMX nor AVX-512 BF16, so bf16 would be emulated and slower than fp32"
               if dtype == torch.bfloat16 else "CPUs do not run fp16 convolutions natively")
        raise PrecisionUnavailableError(f"--precision {name} is not available on the CPU here: {why}. "
                                        "Use --precision fp32 or auto.")
    if kind == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise PrecisionUnavailableError("This GPU does not support bf16; use --precision fp16, fp32 or auto.")
    if kind == "mps" and dtype == torch.bfloat16:
        raise PrecisionUnavailableError("Apple MPS runs fp16, not bf16; use --precision fp16, fp32 or auto.")
    return [name]


def resolve_precision(name: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a model starts at for ``name`` on ``device``; None means plain fp32.

    An explicit precision is itself (checked as in ``precision_candidates``); ``auto`` starts
    at fp32, and each model loaded at ``auto`` then runs what ``zoo.autotune`` measured fastest.
    """
    candidates = precision_candidates(name, device)
    return _DTYPES[candidates[0]] if len(candidates) == 1 else None


def precision_plan(name: str | None, device: torch.device) -> tuple[list[str], str]:
    """(candidates, why) for ``name`` on ``device``: one candidate and its note when nothing is to measure."""
    candidates = precision_candidates(name, device)
    asked, where = _requested(name)
    if asked != "auto":
        return candidates, f"{asked}: asked for ({where})"
    if len(candidates) == 1:
        return candidates, ("fp32: this CPU has neither AMX nor AVX-512 BF16, so fp32 is the only precision "
                            "it runs natively" if device.type == "cpu" else "fp32: the only candidate here")
    return candidates, ""


def precision_name(dtype: torch.dtype | None) -> str:
    return _NAMES[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op for fp32."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def to_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to ``device`` in channels-last layout, which the models use on every device."""
    return batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
