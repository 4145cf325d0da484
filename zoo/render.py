"""Turn raw maps into pictures, aligned with the pixels the model saw.

One sampler serves both views. A map covers the model's input crop; each output
pixel's centre is carried back to crop coordinates and the map is sampled there
bilinearly (the ``align_corners=False`` convention of ``F.interpolate``). Output
pixels outside the crop get NaN: the model never saw them, so they get no colour.
No torch here: numpy, Pillow and matplotlib's colormaps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ZooError
from .images import CropGeometry

DISPLAY_MAX = 896  # longest side of the whole-image view, in pixels
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma", "coolwarm", "gray")


@dataclass(frozen=True)
class Scale:
    """Value range mapped to the colormap's ends. ``shared`` ranges compare maps honestly."""

    vmin: float
    vmax: float

    @classmethod
    def of(cls, *maps: np.ndarray) -> "Scale":
        lo = min(float(np.nanmin(m)) for m in maps)
        hi = max(float(np.nanmax(m)) for m in maps)
        return cls(lo, hi)


def _sample(raw: np.ndarray, u: np.ndarray, v: np.ndarray, crop: int) -> np.ndarray:
    """Bilinear samples of ``raw`` at crop coordinates (u, v) in [0, crop); NaN outside."""
    h, w = raw.shape
    fx = u * (w / crop) - 0.5  # feature-pixel centres sit at i + 0.5
    fy = v * (h / crop) - 0.5
    x0 = np.clip(np.floor(fx), 0, w - 1).astype(int)
    y0 = np.clip(np.floor(fy), 0, h - 1).astype(int)
    x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
    ax = np.clip(fx - x0, 0, 1)
    ay = np.clip(fy - y0, 0, 1)
    r = raw.astype(np.float64)
    out = ((1 - ay) * ((1 - ax) * r[y0, x0] + ax * r[y0, x1]) + ay * ((1 - ax) * r[y1, x0] + ax * r[y1, x1]))
    outside = (u < 0) | (u >= crop) | (v < 0) | (v >= crop)
    out[outside] = np.nan
    return out.astype(np.float32)


def heat_on_crop(raw: np.ndarray, crop: int, size: int | None = None) -> np.ndarray:
    """The map upsampled over the model's crop, ``size`` x ``size`` (default: crop)."""
    size = size or crop
    c = (np.arange(size) + 0.5) * (crop / size)
    return _sample(raw, c[None, :], c[:, None], crop)


def heat_on_image(raw: np.ndarray, geo: CropGeometry, size: tuple[int, int] | None = None) -> np.ndarray:
    """The map over the whole image (``size`` = display (w, h)); NaN where the model did not look."""
    W, H = geo.image_size
    dw, dh = size or (W, H)
    sx, sy = geo.scale
    # display pixel centre -> original pixel -> resized pixel -> crop pixel
    x = (np.arange(dw) + 0.5) * (W / dw) * sx - geo.left
    y = (np.arange(dh) + 0.5) * (H / dh) * sy - geo.top
    return _sample(raw, x[None, :], y[:, None], geo.crop)


def display_size(size: tuple[int, int], limit: int = DISPLAY_MAX) -> tuple[int, int]:
    w, h = size
    s = min(1.0, limit / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def colorize(heat: np.ndarray, cmap: str = "jet", scale: Scale | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 of ``heat`` through ``cmap``, and the mask of valid (non-NaN) pixels."""
    from matplotlib import colormaps

    if cmap not in colormaps:
        raise ZooError(f"Unknown colormap {cmap!r}; try one of {', '.join(COLORMAPS)}.")
    valid = ~np.isnan(heat)
    if scale is None:
        scale = Scale.of(heat[valid]) if valid.any() else Scale(0.0, 1.0)
    span = scale.vmax - scale.vmin
    norm = (np.nan_to_num(heat, nan=scale.vmin) - scale.vmin) / (span if span > 0 else 1.0)
    rgba = colormaps[cmap](np.clip(norm, 0, 1), bytes=True)
    return rgba[..., :3], valid


def blend(image: Image.Image, heat: np.ndarray, cmap: str = "jet", alpha: float = 0.5,
          scale: Scale | None = None) -> np.ndarray:
    """Overlay ``heat`` (same size as ``image``) on it; NaN areas are dimmed and hatched."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    rgb, valid = colorize(heat, cmap, scale)
    a = float(np.clip(alpha, 0.0, 1.0))
    out = np.where(valid[..., None], (1 - a) * base + a * rgb, base)
    if not valid.all():
        # Outside the crop: grey, darker, and diagonal hatching, so nobody reads it as "cold".
        grey = base.mean(axis=2, keepdims=True) * 0.45 + 40
        yy, xx = np.mgrid[: heat.shape[0], : heat.shape[1]]
        hatch = ((xx + yy) % 12) < 2
        out = np.where(valid[..., None], out, np.where(hatch[..., None], 200.0, grey))
    return np.clip(out, 0, 255).astype(np.uint8)


def overlay_crop(run, raw: np.ndarray, cmap: str = "jet", alpha: float = 0.5, scale: Scale | None = None,
                 size: int = 448) -> np.ndarray:
    """The map over exactly the crop the model saw (``run`` is a ``Classification``)."""
    crop = run.crop.resize((size, size), Image.Resampling.BICUBIC)
    return blend(crop, heat_on_crop(raw, run.geometry.crop, size), cmap, alpha, scale)


def overlay_image(run, raw: np.ndarray, cmap: str = "jet", alpha: float = 0.5, scale: Scale | None = None,
                  limit: int = DISPLAY_MAX) -> np.ndarray:
    """The map over the whole photo, crop outlined, nothing painted outside it."""
    dw, dh = display_size(run.geometry.image_size, limit)
    img = run.image.resize((dw, dh), Image.Resampling.BICUBIC) if (dw, dh) != run.image.size else run.image
    out = Image.fromarray(blend(img, heat_on_image(raw, run.geometry, (dw, dh)), cmap, alpha, scale))
    W, H = run.geometry.image_size
    l, t, r, b = run.geometry.box
    k = dw / W, dh / H
    x0, y0 = l * k[0], t * k[1]
    x1, y1 = max(x0, r * k[0] - 1), max(y0, b * k[1] - 1)  # a 1-pixel image has a 1-pixel crop
    ImageDraw.Draw(out).rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=max(1, min(dw, dh) // 150))
    return np.asarray(out)


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=13)


def raw_figure(raw: np.ndarray, cmap: str = "jet", scale: Scale | None = None, title: str = "",
               cell: int | None = None) -> np.ndarray:
    """The raw map alone, one flat cell per value, with a labelled colour bar (RGB uint8).

    Drawn with Pillow: a matplotlib figure costs ~0.25 s per request on a small CPU.
    """
    scale = scale or Scale.of(raw)
    h, w = raw.shape
    cell = cell or max(1, 280 // max(h, w))
    rgb, _ = colorize(raw, cmap, scale)
    grid = Image.fromarray(rgb).resize((w * cell, h * cell), Image.Resampling.NEAREST)
    font = _font()
    bar_h = grid.height
    ramp = np.linspace(scale.vmax, scale.vmin, bar_h, dtype=np.float32)[:, None].repeat(16, axis=1)
    bar = Image.fromarray(colorize(ramp, cmap, scale)[0])
    top, left = 26, 10
    canvas = Image.new("RGB", (left + grid.width + 16 + bar.width + 80, top + bar_h + 12), "white")
    canvas.paste(grid, (left, top))
    bx = left + grid.width + 16
    canvas.paste(bar, (bx, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 5), title or f"raw map {h}x{w}", fill="black", font=font)
    for i in range(5):
        y = top + round(i * (bar_h - 1) / 4)
        value = scale.vmax - i * (scale.vmax - scale.vmin) / 4
        draw.line([(bx + bar.width, y), (bx + bar.width + 4, y)], fill="black")
        draw.text((bx + bar.width + 7, y - 7), f"{value:.3g}", fill="black", font=font)
    return np.asarray(canvas)


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write a PNG fast: light compression costs a few % in size and saves ~10x the time."""
    path = Path(path)
    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)
    return path


def save_jpeg(rgb: np.ndarray, path: str | Path, quality: int = 90) -> Path:
    """Write an on-screen picture: about 1/7 of the PNG's bytes and ~15x faster to encode.

    No chroma subsampling (4:4:4), so the colour map's edges stay sharp; at quality 90 it
    looks the same as the PNG. Downloads stay lossless PNG (``save_png``) and ``.npy``.
    """
    path = Path(path)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality, subsampling=0)
    return path
