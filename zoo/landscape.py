"""Error surfaces: the loss around a model's trained weights (Li et al., NeurIPS 2018).

"Visualizing the Loss Landscape of Neural Nets" (https://arxiv.org/abs/1712.09913) plots
L(theta + a*delta + b*eta) for two random directions delta, eta that are *filter-normalized*:
each filter of a direction is rescaled to the norm of the matching filter of theta, so the
picture does not depend on how the weights happen to be scaled (BatchNorm makes a network
invariant to the scale of each filter). As in the paper, BatchNorm parameters and biases
(every parameter with fewer than two dimensions) get a zero direction: they are left as
trained; so are BatchNorm's running statistics, which are buffers.

Here theta is the plain torchvision model (BatchNorm *not* folded), fp32, eval mode, built
privately from the same verified safetensors file the app loads: the shared, folded model
of ``zoo.models`` is never touched, and the directions are keyed by torchvision's own
parameter names, so anyone can recompute a point with plain torchvision from the file
``Landscape.save_directions`` writes. The grid is walked one point at a time, in place on
that private copy (each perturbed parameter is set to (theta + b*eta) + a*delta, computed
from theta itself at every point so that no rounding accumulates; theta is restored at the
end), with the
images batched at each point. ``zoo.cancel.check()`` runs before every point (and before
every block, inside the forward), so Stop ends a run between points.

L is the cross-entropy (natural log) of each image's target class, averaged over the
images: the class given, else the image's label (its folder or a labels CSV, as Batch
reads them), else the unperturbed model's top-1.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import batch as batching
from . import params as rules
from .cancel import check
from .errors import ImageError, ZooError
from .hub import ProgressFn
from .images import LoadedImage, load_image, model_crop, to_tensor
from .inference import resolve_target
from .models import block_forward, call, stem
from .private import private_copy
from .registry import ModelSpec

DEFAULT_GRID = 11  # points per axis: 11 x 11 = 121 points in 2-D, as the issue asks
DEFAULT_SPAN = 1.0  # alpha, beta in [-span, span]: the paper's [-1, 1]
DEFAULT_SEED = 0
DEFAULT_MAX_IMAGES = 8  # images averaged over, when a folder is given
CHUNK = 16  # images per forward; bounds activation memory whatever the number of images


class LandscapeError(ZooError):
    """Settings a landscape cannot be computed with (grid, span, dimensions, images)."""


@dataclass(frozen=True)
class ImageTarget:
    """One image of the average, and the class its loss is measured on."""

    name: str
    index: int
    label: str
    chosen: str  # "given" (--target), "label" (its folder or CSV), "top-1" (unperturbed model)
    center_loss: float  # its own cross-entropy at theta

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.index, "label": self.label, "chosen": self.chosen,
                "center_loss": self.center_loss}


@dataclass(frozen=True)
class Step:
    """Yielded before each grid point: a consumer that is a generator (a web handler) can stop there."""

    done: int  # grid points finished
    total: int
    message: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class Landscape:
    """L(theta + alphas[i] * delta + betas[j] * eta) for one model: ``loss[j][i]``.

    In 1-D (``dims`` 1) ``betas`` is ``[0.0]`` and ``loss`` has one row: the curve along delta.
    """

    model: str
    arch: str
    seed: int
    dims: int
    span: float
    alphas: list[float]
    betas: list[float]
    loss: list[list[float]]
    center_loss: float  # the unperturbed model's loss: equals the grid's centre point
    images: list[ImageTarget]
    device: str
    seconds: float  # the whole run: weights, directions, every point
    point_seconds: float  # median seconds of one grid point (perturb + forward of every image)
    forwards: int  # image forwards: (grid points + 1 centre pass) x images
    perturbed: int  # scalars perturbed (conv and fc weights); every other parameter is left as trained
    parameters: int  # all scalars of the model's parameters
    skipped: list[batching.Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    directions: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # "delta.<param>", "eta.<param>"

    @property
    def points(self) -> int:
        return len(self.alphas) * len(self.betas)

    def grid(self) -> np.ndarray:
        """The losses as an array: (len(betas), len(alphas))."""
        return np.asarray(self.loss, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "arch": self.arch, "seed": self.seed, "dims": self.dims, "span": self.span,
                "alphas": self.alphas, "betas": self.betas, "loss": self.loss, "center_loss": self.center_loss,
                "images": [i.to_json() for i in self.images], "device": self.device, "precision": "fp32",
                "normalization": "filter", "perturbed": self.perturbed, "parameters": self.parameters,
                "forwards": self.forwards, "seconds": round(self.seconds, 3),
                "point_seconds": round(self.point_seconds, 4),
                "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped], "notes": self.notes}

    def save_directions(self, path: str | os.PathLike) -> Path:
        """delta and eta as safetensors, keyed ``delta.<torchvision parameter name>`` (and ``eta.``).

        Parameters absent from the file have a zero direction (biases, BatchNorm). The
        metadata names the model, seed, span and grid, so a point is recomputed as
        ``p = theta[p] + alphas[i] * delta[p] + betas[j] * eta[p]`` for each key.
        """
        from safetensors.torch import save_file

        if self.directions is None:
            raise LandscapeError("This landscape kept no directions; run it with keep_directions=True.")
        path = Path(path)
        meta = {"model": self.model, "arch": self.arch, "seed": str(self.seed), "dims": str(self.dims),
                "span": repr(self.span), "grid": str(len(self.alphas)), "normalization": "filter",
                "zero_direction": "every parameter with fewer than 2 dimensions (biases, BatchNorm)"}
        save_file({k: v.detach().cpu().contiguous() for k, v in self.directions.items()}, str(path), metadata=meta)
        return path


# --- settings ------------------------------------------------------------------------------

def check_settings(grid: int, span: float, dims: int, seed: int) -> None:
    """Raise ``LandscapeError`` for settings that cannot run (before anything is loaded): zoo.params' rules."""
    rules.dims(dims, LandscapeError)
    rules.grid(grid, LandscapeError)
    rules.span(span, LandscapeError)
    rules.seed(seed, LandscapeError)


def axis(grid: int, span: float) -> list[float]:
    """``grid`` evenly spaced values in [-span, span], with the middle one exactly 0."""
    half = (grid - 1) // 2
    return [span * (i - half) / half for i in range(grid)]


def grid_points(grid: int, dims: int) -> int:
    return grid * grid if dims == 2 else grid


# --- images and targets --------------------------------------------------------------------

@dataclass
class Images:
    """The decoded images a landscape averages over, with their optional labels."""

    names: list[str]
    images: list[LoadedImage]
    items: list[batching.Item | None]  # where each came from (for folder / CSV labels); None: given directly
    skipped: list[batching.Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def gather_images(sources: Any, *, max_images: int = DEFAULT_MAX_IMAGES, names: Sequence[str] | None = None,
                  labels_csv: str | os.PathLike | None = None, globs: bool = False) -> Images:
    """One image (a ``LoadedImage``, a path, bytes...) or several paths (files, folders, globs, a zip).

    Several paths are read as the Batch tab reads them (``zoo.batch.gather``); the first
    ``max_images`` files that decode are used, and the rest is noted, not refused: a
    landscape is an average over a sample.
    """
    max_images = rules.image_count(max_images, LandscapeError)
    if isinstance(sources, LoadedImage):
        return Images(["the image"], [sources], [None])
    if isinstance(sources, (str, os.PathLike)):
        p = Path(sources)
        if not (p.is_dir() or p.suffix.lower() == ".zip" or (globs and any(c in str(sources) for c in "*?["))):
            name = names[0] if names else str(sources)
            return Images([name], [load_image(sources, name=name)], [None])
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        return Images(["the image"], [load_image(sources)], [None])
    inp = batching.gather(list(sources), names=names, labels_csv=labels_csv, globs=globs)
    out = Images([], [], [], list(inp.skipped), list(inp.notes))
    with batching.Reader() as reader:
        for n, item in enumerate(inp.items):
            if len(out) == max_images:
                out.notes.append(f"Averaged over the first {max_images} image(s); {len(inp.items) - n} more "
                                 "file(s) not used (raise the limit to use more: each image costs one forward "
                                 "per grid point).")
                break
            try:
                out.images.append(load_image(reader.read(item), name=item.name))
            except ImageError as e:
                out.skipped.append(batching.Skipped(item.name, str(e)))
                continue
            out.names.append(item.name)
            out.items.append(item)
    if not out.images:
        why = "; ".join(f"{s.name}: {s.reason}" for s in out.skipped[:3])
        raise batching.NoImagesError(f"None of the files could be used ({why}).")
    return out


# --- the private model and the directions --------------------------------------------------

def private_model(spec: ModelSpec, device: torch.device, *, progress: ProgressFn | None = None,
                  cache_dir: str | os.PathLike | None = None) -> nn.Module:
    """``zoo.private.private_copy`` (fp32, BatchNorm unfolded), in eval mode on ``device``."""
    model = private_copy(spec, progress=progress, cache_dir=cache_dir)
    model.eval().requires_grad_(False)
    return model.to(device, memory_format=torch.channels_last)


def is_perturbed(param: torch.Tensor) -> bool:
    """Convolution and fc weights; biases and BatchNorm (1-D) get a zero direction, as in the paper."""
    return param.dim() > 1


def filter_normalized(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random Gaussian direction, each filter rescaled to the norm of the same filter of theta.

    A filter is one output unit: ``w[i]`` of a conv weight (out, in, k, k) or of fc's (out, in).
    Drawn on the CPU from ``generator`` in ``named_parameters`` order, so a seed gives the same
    direction on every device. Only perturbed parameters appear.
    """
    out = {}
    for name, p in model.named_parameters():
        if not is_perturbed(p):
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        theta = p.detach().float().cpu().reshape(p.shape[0], -1)
        flat = d.reshape(d.shape[0], -1)
        # The paper's code divides by (norm + 1e-10); a Gaussian filter's norm is never 0 in practice.
        flat.mul_(theta.norm(dim=1, keepdim=True) / (flat.norm(dim=1, keepdim=True) + 1e-10))
        out[name] = d
    return out


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward, module by module: no hook runs, and a Stop ends it within a block."""
    x = stem(model, x)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            x = block_forward(block, x)
    return call(model.fc, torch.flatten(call(model.avgpool, x), 1))


def mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> float:
    """Cross-entropy of each image's target at the model's current weights, averaged (natural log)."""
    total = 0.0
    for x, t in batches:
        total += float(nn.functional.cross_entropy(logits_of(model, x), t, reduction="sum"))
    return total / n


# --- the landscape -------------------------------------------------------------------------

def _chunks(spec: ModelSpec, images: Images, device: torch.device) -> list[torch.Tensor]:
    """The images, cropped as this model's recipe says, in chunks of ``CHUNK`` on ``device``."""
    pre = spec.preprocessing
    xs = torch.cat([to_tensor(model_crop(im.image, pre), pre) for im in images.images])
    return [xs[i:i + CHUNK].to(device).contiguous(memory_format=torch.channels_last)
            for i in range(0, xs.shape[0], CHUNK)]


def _targets(given: int, folder_labels: list[Any], center_logits: torch.Tensor) -> tuple[list[int], list[str]]:
    """Each image's class and why: the one given, else its label (folder, CSV), else the unperturbed top-1."""
    targets, chosen = [], []
    for i in range(center_logits.shape[0]):
        if given >= 0:
            targets.append(given), chosen.append("given")
        elif folder_labels[i] is not None:
            targets.append(int(folder_labels[i])), chosen.append("label")
        else:
            targets.append(int(center_logits[i].argmax())), chosen.append("top-1")
    return targets, chosen


@torch.no_grad()
def _move(perturbed: list[tuple[nn.Parameter, str]], theta: dict[str, torch.Tensor], row: dict[str, torch.Tensor],
          d_dev: dict[str, torch.Tensor], new_row: dict[str, torch.Tensor] | None, a: float, b: float) -> None:
    """The weights to the point (a, b), in place, from theta itself (no rounding accumulates).

    ``new_row``: eta at the first point of a 2-D row, where row = theta + b * eta is computed once.
    """
    if new_row is not None:
        for _, name in perturbed:
            torch.add(theta[name], new_row[name], alpha=b, out=row[name])
    for p, name in perturbed:  # p = (theta + b * eta) + a * delta
        torch.add(row[name], d_dev[name], alpha=a, out=p)


def _overflow_note(loss: list[list[float]]) -> list[str]:
    nonfinite = sum(1 for row in loss for v in row if not math.isfinite(v))
    return [f"{nonfinite} grid point(s) gave a non-finite loss (the perturbed network overflowed); "
            "try a smaller span."] if nonfinite else []


def _center(spec: ModelSpec, model: nn.Module, images: Images, given: int, device: torch.device,
            progress: ProgressFn | None) -> tuple[list[int], list[str], list[float], list[str], list[Any]]:
    """The centre pass: the unperturbed model's top-1 (the target of unlabelled images) and its loss.
    Returns each image's target, how it was chosen, its loss, the labels' notes, and the (input,
    target) batches every grid point runs."""
    chunks = _chunks(spec, images, device)
    check()
    if progress:
        progress(0.0, f"{spec.name}: the unperturbed model on {len(images)} image(s)")
    with torch.inference_mode():
        center_logits = torch.cat([logits_of(model, x) for x in chunks])
    folder_labels, label_notes = batching.resolve_labels([it or batching.Item(nm, Path(nm)) for it, nm in
                                                          zip(images.items, images.names)], spec.class_names)
    targets, chosen = _targets(given, folder_labels, center_logits)
    t = torch.tensor(targets, device=device)
    per_image = nn.functional.cross_entropy(center_logits, t, reduction="none").cpu().tolist()
    return targets, chosen, per_image, label_notes, [(x, t[i * CHUNK:(i + 1) * CHUNK]) for i, x in enumerate(chunks)]


def stream(spec: ModelSpec, images: Images, *, device: torch.device | str = "cpu", target: int | str | None = None,
           grid: int = DEFAULT_GRID, span: float = DEFAULT_SPAN, dims: int = 2, seed: int = DEFAULT_SEED,
           keep_directions: bool = False, progress: ProgressFn | None = None,
           cache_dir: str | os.PathLike | None = None) -> Iterator[Step | Landscape]:
    """Yields a ``Step`` before each grid point, then the ``Landscape``. Closing the generator stops it."""
    check_settings(grid, span, dims, seed)
    labels = spec.class_names
    given = resolve_target(labels, target, default=-1)  # -1: none given; a typo fails before any work
    device = torch.device(device)
    t_start = time.perf_counter()
    model = private_model(spec, device, progress=progress, cache_dir=cache_dir)
    if progress:
        progress(0.0, f"{spec.name}: drawing two filter-normalized directions (seed {seed})")
    check()
    gen = torch.Generator().manual_seed(int(seed))
    deltas = filter_normalized(model, gen)
    etas = filter_normalized(model, gen) if dims == 2 else {}
    params = dict(model.named_parameters())
    perturbed = [(params[n], n) for n in deltas]  # conv and fc weights, in parameter order
    theta = {n: p.detach().clone() for p, n in perturbed}  # clone keeps channels-last
    fmt = {n: (torch.channels_last if params[n].dim() == 4 else torch.contiguous_format) for n in deltas}
    d_dev = {n: d.to(device).contiguous(memory_format=fmt[n]) for n, d in deltas.items()}
    e_dev = {n: e.to(device).contiguous(memory_format=fmt[n]) for n, e in etas.items()}
    directions = None
    if keep_directions:  # as drawn (contiguous, on the CPU), for save_directions
        directions = {f"delta.{k}": v for k, v in deltas.items()} | {f"eta.{k}": v for k, v in etas.items()}
    del deltas, etas  # otherwise a second copy of each direction (channels-last above) stays in memory
    # Each point costs one pass over the weights: a row's theta + b * eta is computed once
    # per row (one more copy of the weights in 2-D), then p = row + a * delta per point.
    row = {n: torch.empty_like(v) for n, v in theta.items()} if dims == 2 else theta

    n = len(images)
    targets, chosen, per_image, label_notes, batches = _center(spec, model, images, given, device, progress)
    center_loss = float(sum(per_image) / n)

    alphas = axis(grid, float(span))
    betas = axis(grid, float(span)) if dims == 2 else [0.0]
    total = len(alphas) * len(betas)
    loss = [[math.nan] * len(alphas) for _ in betas]
    times: list[float] = []
    done = 0
    try:
        for j, b in enumerate(betas):
            for i, a in enumerate(alphas):
                msg = f"{spec.name}: point {done + 1} of {total} (alpha {a:+.2f}, beta {b:+.2f})"
                yield Step(done, total, msg)
                check()  # Stop takes effect here, between two points (zoo.cancel)
                if progress:
                    progress(done / total, msg)
                t0 = time.perf_counter()
                _move(perturbed, theta, row, d_dev, e_dev if i == 0 and dims == 2 else None, a, b)
                with torch.inference_mode():
                    loss[j][i] = mean_loss(model, batches, n)
                times.append(time.perf_counter() - t0)
                done += 1
    finally:
        with torch.no_grad():  # theta back, exactly (the model is private, but leave it as found)
            for p, name in perturbed:
                p.copy_(theta[name])
    if progress:
        progress(1.0, f"{spec.name}: done")
    notes = list(images.notes) + label_notes + _overflow_note(loss)
    yield Landscape(
        model=spec.name, arch=spec.arch.name, seed=int(seed), dims=dims, span=float(span), alphas=alphas,
        betas=betas, loss=loss, center_loss=center_loss,
        images=[ImageTarget(images.names[i], targets[i], labels[targets[i]], chosen[i], per_image[i])
                for i in range(n)],
        device=str(device), seconds=time.perf_counter() - t_start,
        point_seconds=float(np.median(times)) if times else 0.0, forwards=(total + 1) * n,
        perturbed=sum(p.numel() for p, _ in perturbed), parameters=sum(p.numel() for p in params.values()),
        skipped=list(images.skipped), notes=notes, directions=directions)


def landscape(spec: ModelSpec, images: Images, **kwargs: Any) -> Landscape:
    """``stream`` to the end: the ``Landscape``."""
    result = None
    for result in stream(spec, images, **kwargs):
        pass
    assert isinstance(result, Landscape)
    return result
