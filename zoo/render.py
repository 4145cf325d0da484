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
# A signed map (negative: evidence against the class) needs a colormap whose middle is
# neutral, centred on 0; jet would paint 0 a strong green and hide the sign.
DIVERGING = ("coolwarm",)
SIGNED_CMAP = "coolwarm"


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

    def centred(self) -> "Scale":
        """Symmetric about 0 and covering this range: 0 falls on a diverging colormap's middle."""
        m = max(abs(self.vmin), abs(self.vmax))
        return Scale(-m, m)


def map_style(raw: np.ndarray, cmap: str, scale: Scale | None, signed: bool) -> tuple[str, Scale | None]:
    """The colormap and scale to draw ``raw`` with: a signed map gets a diverging colormap
    (``SIGNED_CMAP`` unless ``cmap`` is one) and limits symmetric about 0."""
    if not signed:
        return cmap, scale
    if scale is None:
        finite = raw[np.isfinite(raw)]
        scale = Scale(float(finite.min()), float(finite.max())) if finite.size else Scale(-1.0, 1.0)
    return (cmap if cmap in DIVERGING else SIGNED_CMAP), scale.centred()


def _weights(coords: np.ndarray, n: int, crop: int) -> np.ndarray:
    """Bilinear weights (len(coords) x n) of ``n`` feature cells at crop coordinates ``coords``."""
    f = coords * (n / crop) - 0.5  # feature-pixel centres sit at i + 0.5
    i0 = np.clip(np.floor(f), 0, n - 1).astype(int)
    i1 = np.clip(i0 + 1, 0, n - 1)
    a = np.clip(f - i0, 0, 1)
    w = np.zeros((len(coords), n))
    rows = np.arange(len(coords))
    np.add.at(w, (rows, i0), 1 - a)
    np.add.at(w, (rows, i1), a)
    return w


def _sample(raw: np.ndarray, x: np.ndarray, y: np.ndarray, crop: int) -> np.ndarray:
    """Bilinear samples of ``raw`` on the grid of crop coordinates x (columns) by y (rows); NaN outside.

    Bilinear sampling on a grid is separable: rows' weights @ map @ columns' weights,
    two small matrix products instead of four gathers over every display pixel.
    """
    h, w = raw.shape
    out = _weights(y, h, crop) @ raw.astype(np.float64) @ _weights(x, w, crop).T
    out[:, (x < 0) | (x >= crop)] = np.nan
    out[(y < 0) | (y >= crop), :] = np.nan
    return out.astype(np.float32)


def heat_on_crop(raw: np.ndarray, crop: int, size: int | None = None) -> np.ndarray:
    """The map upsampled over the model's crop, ``size`` x ``size`` (default: crop)."""
    size = size or crop
    c = (np.arange(size) + 0.5) * (crop / size)
    return _sample(raw, c, c, crop)


def heat_on_image(raw: np.ndarray, geo: CropGeometry, size: tuple[int, int] | None = None) -> np.ndarray:
    """The map over the whole image (``size`` = display (w, h)); NaN where the model did not look."""
    W, H = geo.image_size
    dw, dh = size or (W, H)
    sx, sy = geo.scale
    # display pixel centre -> original pixel -> resized pixel -> crop pixel
    x = (np.arange(dw) + 0.5) * (W / dw) * sx - geo.left
    y = (np.arange(dh) + 0.5) * (H / dh) * sy - geo.top
    return _sample(raw, x, y, geo.crop)


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
        scale = Scale.of(heat) if valid.any() else Scale(0.0, 1.0)
    span = scale.vmax - scale.vmin
    # The colormap's own 256 colours, indexed as matplotlib indexes them (x * N, the top
    # value into the last bin), without its per-call float RGBA arrays.
    x = (heat - scale.vmin) * (256.0 / (span if span > 0 else 1.0))
    np.clip(x, 0, 255, out=x)
    x[~valid] = 0
    index = x.astype(np.uint8)
    return _lut(cmap)[index], valid


@functools.lru_cache(maxsize=None)
def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps[cmap](np.arange(256), bytes=True)[:, :3]


def blend(image: Image.Image, heat: np.ndarray, cmap: str = "jet", alpha: float = 0.5,
          scale: Scale | None = None) -> np.ndarray:
    """Overlay ``heat`` (same size as ``image``) on it; NaN areas are dimmed and hatched.

    Pillow's blend and composite (C, uint8) rather than float arrays: a third of the time.
    """
    base = image.convert("RGB")
    rgb, valid = colorize(heat, cmap, scale)
    out = Image.blend(base, Image.fromarray(rgb), float(np.clip(alpha, 0.0, 1.0)))
    if not valid.all():
        # Outside the crop: grey, darker, and diagonal hatching, so nobody reads it as "cold".
        grey = base.convert("L", (1 / 3, 1 / 3, 1 / 3, 0)).point(lambda v: v * 0.45 + 40).convert("RGB")
        yy, xx = np.ogrid[: heat.shape[0], : heat.shape[1]]
        hatch = Image.fromarray(((((xx + yy) % 12) < 2) * 255).astype(np.uint8))
        outside = Image.composite(Image.new("RGB", base.size, (200, 200, 200)), grey, hatch)
        out = Image.composite(out, outside, Image.fromarray(valid.astype(np.uint8) * 255))
    return np.asarray(out)


def overlay_crop(run, raw: np.ndarray, cmap: str = "jet", alpha: float = 0.5, scale: Scale | None = None,
                 size: int = 448, signed: bool = False) -> np.ndarray:
    """The map over exactly the crop the model saw (``run`` is a ``Classification``).

    ``signed``: the map's sign means something (``Method.signed``); see ``map_style``.
    """
    cmap, scale = map_style(raw, cmap, scale, signed)
    crop = run.crop.resize((size, size), Image.Resampling.BICUBIC)
    return blend(crop, heat_on_crop(raw, run.geometry.crop, size), cmap, alpha, scale)


def overlay_image(run, raw: np.ndarray, cmap: str = "jet", alpha: float = 0.5, scale: Scale | None = None,
                  limit: int = DISPLAY_MAX, signed: bool = False) -> np.ndarray:
    """The map over the whole photo, crop outlined, nothing painted outside it."""
    cmap, scale = map_style(raw, cmap, scale, signed)
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


@functools.cache
def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # DejaVu Sans (shipped with matplotlib): Pillow's default font has no "–", drawn as a box ("r ⊠").
    from matplotlib import font_manager

    try:
        # 12 px: DejaVu is wider than Pillow's default at 13, and a raw map's title must end left of
        # the buttons gradio draws over the picture's top right (tests/test_first_use.py).
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except OSError:
        return ImageFont.load_default(size=size)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """At most ``n`` round values (steps of 1, 2, 2.5 or 5 times a power of ten) within [lo, hi]."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return [float(lo)] if np.isfinite(lo) else []
    raw_step = (hi - lo) / max(1, n - 1)
    power = 10.0 ** np.floor(np.log10(raw_step))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw_step * (1 - 1e-9))
    first = np.ceil(lo / step - 1e-9) * step
    count = int(np.floor((hi - first) / step + 1e-9)) + 1
    return [float(round(first + i * step, 12)) or 0.0 for i in range(count)]  # "or 0.0": no -0


def tick_labels(ticks: list[float]) -> list[str]:
    """The ticks as text, all with the decimals their step needs (0.25, 0.50, 0.75), no float noise."""
    if not ticks:
        return []
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(ticks[0]) or 1.0
    top = max(abs(t) for t in ticks)
    if top >= 1e5 or (top > 0 and step < 1e-4):
        return [f"{t:.2g}" if t else "0" for t in ticks]
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, step):
        decimals += 1
    return [f"{t:.{decimals}f}" for t in ticks]


def raw_figure(raw: np.ndarray, cmap: str = "jet", scale: Scale | None = None, title: str = "",
               cell: int | None = None, signed: bool = False, unit: str = "") -> np.ndarray:
    """The raw map alone, one flat cell per value, with a colour bar (RGB uint8).

    The bar's ticks sit at round values; ``unit`` (what the values are, e.g. "class
    evidence (logit units)") is written along it. ``signed`` as in ``map_style``.
    Drawn with Pillow: a matplotlib figure costs ~0.25 s per request on a small CPU.
    """
    cmap, scale = map_style(raw, cmap, scale, signed)
    scale = scale or Scale.of(raw)
    h, w = raw.shape
    cell = cell or max(1, 280 // max(h, w))
    rgb, _ = colorize(raw, cmap, scale)
    grid = Image.fromarray(rgb).resize((w * cell, h * cell), Image.Resampling.NEAREST)
    font = _font()
    bar_h = grid.height
    ramp = np.linspace(scale.vmax, scale.vmin, bar_h, dtype=np.float32)[:, None].repeat(16, axis=1)
    bar = Image.fromarray(colorize(ramp, cmap, scale)[0])
    ticks = nice_ticks(scale.vmin, scale.vmax)
    labels = tick_labels(ticks)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((probe.textlength(t, font=font) for t in labels), default=0)
    unit_h = 18 if unit else 0  # the unit, written along the bar (rotated), beside the tick labels
    lines = (title or "").count("\n") + 1  # a long title comes in lines: it must not run off the picture
    top, left = 30 + 16 * (lines - 1), 10  # the title's lines, and room for the top tick's label under them
    bx = left + grid.width + 16
    canvas = Image.new("RGB", (bx + bar.width + 8 + int(label_w) + 6 + unit_h + 6, top + bar_h + 12), "white")
    canvas.paste(grid, (left, top))
    canvas.paste(bar, (bx, top))
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text((left, 5), title or f"raw map {h}x{w}", fill="black", font=font, spacing=3)
    span = scale.vmax - scale.vmin
    for value, text in zip(ticks, labels):
        # The ramp's row i holds vmax - i * span / (bar_h - 1).
        y = top + (round((scale.vmax - value) / span * (bar_h - 1)) if span > 0 else 0)
        draw.line([(bx + bar.width, y), (bx + bar.width + 4, y)], fill="black")
        draw.text((bx + bar.width + 7, y - 7), text, fill="black", font=font)
    if unit:
        length = int(probe.textlength(unit, font=font)) + 4
        strip = Image.new("RGB", (length, unit_h), "white")
        ImageDraw.Draw(strip).text((2, 1), unit, fill="black", font=font)
        strip = strip.rotate(90, expand=True)  # reads bottom to top, as an axis label
        if strip.height > bar_h:  # a long unit on a small bar: shrink it rather than cut it
            strip = strip.resize((max(1, strip.width * bar_h // strip.height), bar_h), Image.Resampling.LANCZOS)
        canvas.paste(strip, (canvas.width - unit_h - 6, top + (bar_h - strip.height) // 2))
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


def strip(crop: Image.Image, heats: list[np.ndarray], titles: list[str], notes: list[str] | None = None,
          cmap: str = "inferno", cell: int = 112, per_row: int = 12, heading: str = "",
          font_size: int = 13) -> np.ndarray:
    """The sanity check's picture (Adebayo et al. 2018, Fig. 2): the crop, then each map, left to right.

    Each map is drawn as the similarity sees it (|map| scaled to its own largest value,
    ``zoo.sanity.unit_abs``), titled above (the step) and noted below (its similarity);
    long runs (every block of a ResNet-152) wrap after ``per_row`` cells. A picture shown
    scaled down (a phone) wants fewer cells per row and a larger ``font_size``.
    """
    notes = notes or [""] * len(heats)
    font = _font(font_size)
    cells = [("input", "", crop.convert("RGB").resize((cell, cell), Image.Resampling.BICUBIC))]
    for heat, title, note in zip(heats, titles, notes):
        a = np.abs(np.nan_to_num(heat.astype(np.float64)))
        peak = a.max() if a.size else 0.0
        rgb, _ = colorize((a / peak if peak > 0 else a).astype(np.float32), cmap, Scale(0.0, 1.0))
        cells.append((title, note, Image.fromarray(rgb).resize((cell, cell), Image.Resampling.BILINEAR)))
    gap, top, bottom = 6, font_size + 5, font_size + 5
    head = font_size + 9 if heading else 0
    cols = min(per_row, len(cells))
    rows = -(-len(cells) // cols)
    canvas = Image.new("RGB", (cols * (cell + gap) + gap, head + rows * (top + cell + bottom) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    if heading:
        draw.text((gap, 4), heading, fill="black", font=font)
    for i, (title, note, picture) in enumerate(cells):
        x = gap + (i % cols) * (cell + gap)
        y = head + (i // cols) * (top + cell + bottom)
        canvas.paste(picture, (x, y + top))
        draw.text((x, y + 2), title, fill="black", font=font)
        if note:
            draw.text((x, y + top + cell + 2), note, fill="#333333", font=font)
    return np.asarray(canvas)


def stack(pictures: list[np.ndarray], gap: int = 8, top: int = 0) -> np.ndarray:
    """RGB pictures one under another on white, left-aligned (the sanity check's rows), below
    ``top`` white rows."""
    width = max(p.shape[1] for p in pictures)
    canvas = Image.new("RGB", (width, top + sum(p.shape[0] for p in pictures) + gap * (len(pictures) - 1)), "white")
    y = top
    for p in pictures:
        canvas.paste(Image.fromarray(p), (0, y))
        y += p.shape[0] + gap
    return np.asarray(canvas)
