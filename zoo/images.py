"""Decode user images safely, and preprocess them exactly as torchvision does.

``load_image`` turns anything a user can hand us (a path, bytes, a PIL image, an
array) into an upright RGB PIL image, or raises ``ImageError`` with a message.
``preprocess`` applies the registry's recipe with torchvision's own functional ops
(the same calls as ``ResNet50_Weights.IMAGENET1K_V1.transforms()``), and returns the
geometry of the crop so explanations can be drawn where the model actually looked.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError
from .files import NotRegularFileError, open_regular
from .registry import Preprocessing

# Decoding cost is what a hostile upload attacks: refuse huge canvases before decoding
# (Pillow reads only the header on open), and shapes that would blow up on resize.
MAX_PIXELS = 40_000_000
MAX_ASPECT = 25.0
# The formats we promise, and the only decoders Pillow may try: the others are never
# consulted (EPS would launch Ghostscript on the upload; dozens more are rarely audited).
# JPEG includes MPO, the multi-picture JPEG many phone cameras write.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"


# What decoding a file and resizing it to the model's input costs, per pixel of its canvas
# (``load_image`` + ``model_crop`` in one thread, a 2-core EPYC shared with other jobs: PNG
# 60 ns at 40 MP, flat or noisy; WebP 30; JPEG 15-23). Taken at about two thirds: loader
# threads overlap decoding with the forwards, and an idle machine is faster. An estimate
# prices a batch's decoding from its files' headers (``header``), before decoding any.
DECODE_NS_PER_PIXEL: dict[str, float] = {"JPEG": 15.0, "MPO": 15.0, "WEBP": 25.0}
DECODE_NS_OTHER = 40.0  # PNG, TIFF, BMP, GIF: lossless, the dearest


def decode_seconds(fmt: str | None, pixels: int) -> float:
    """Seconds to decode and resize an image of ``pixels`` in format ``fmt`` (``DECODE_NS_PER_PIXEL``)."""
    return min(int(pixels), MAX_PIXELS) * DECODE_NS_PER_PIXEL.get(fmt or "", DECODE_NS_OTHER) * 1e-9


def header(fp: BinaryIO) -> tuple[str, int] | None:
    """(format, pixels) of an image file from its header (Pillow's lazy open: nothing is decoded);
    None for what ``load_image`` would refuse to open anyway."""
    try:
        with Image.open(fp, formats=FORMATS) as img:
            w, h = img.size
            return str(img.format), int(w) * int(h)
    except Exception:  # noqa: BLE001 - not an image, damaged, a bomb: it costs no decoding
        return None


@dataclass
class LoadedImage:
    """An upright RGB image and what was done to get it."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)


def load_image(source: Any, *, name: str | None = None) -> LoadedImage:
    """Decode ``source`` (path, bytes, PIL image or HxWxC array) to upright RGB.

    Files are opened only if regular (never a FIFO or device) and decoded only as one
    of ``FORMATS``; the canvas size is checked from the header, before any decoding.
    Raises ``ImageError`` (``ImageTooLargeError`` for what would not fit in memory).
    """
    notes: list[str] = []
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "the image")
    with contextlib.ExitStack() as files:
        if isinstance(source, Image.Image):
            img = source
        elif isinstance(source, np.ndarray):
            arr = source
            if arr.ndim not in (2, 3) or arr.size == 0:
                raise ImageError(f"Expected an HxW or HxWxC image array, got shape {arr.shape}.")
            if arr.dtype != np.uint8:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
        else:
            img = _open(source, name, files)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageTooLargeError(f"{label} is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels. "
                                     "Downscale it first.")
        if min(w, h) < 1 or max(w, h) / min(w, h) > MAX_ASPECT:
            raise ImageError(f"{label} is {w}x{h}: an aspect ratio beyond {MAX_ASPECT:.0f}:1. The model sees a "
                             "square center crop, so crop the part you care about first.")
        try:
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                img.seek(0)
                notes.append(f"animated image: used the first of {n_frames} frames")
            img.load()
            if _exif_orientation(img) not in (None, 1):
                notes.append("rotated upright from its EXIF orientation")
            img = _to_rgb(ImageOps.exif_transpose(img), notes)
        except MemoryError:
            # A file can be small and its header within limits, yet decode into far more
            # (frames, tiles, layers). Refuse this image; the process carries on.
            raise ImageTooLargeError(
                f"{label} ({w}x{h}) needs more memory to decode than is available. Send a smaller image, "
                "e.g. a single-frame JPEG or PNG of a few megapixels.") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ImageError(f"{label} could not be decoded ({e}). It may be truncated or damaged.") from None
    return LoadedImage(img, notes)


def _open(source: Any, name: str | None, files: contextlib.ExitStack) -> Image.Image:
    """Pillow's lazy open (header only) of bytes or a regular file, for ``FORMATS`` only."""
    fp: BinaryIO
    if isinstance(source, (bytes, bytearray)):
        label = name or "the upload"
        fp = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        try:
            fp = files.enter_context(open_regular(path))
        except FileNotFoundError:
            raise ImageError(f"Image file {path} does not exist.") from None
        except NotRegularFileError as e:
            raise ImageError(f"{label} is {e.kind}, not a regular file. Give the path of an image file.") from None
        except OSError as e:
            raise ImageError(f"{label} cannot be read ({e.strerror or e}).") from None
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    head = fp.read(2048)
    fp.seek(0)
    if not head:
        raise ImageError(f"{label} is empty (0 bytes).")
    if head.lstrip().startswith((b"<?xml", b"<svg", b"<!DOCTYPE svg")) or b"<svg" in head[:1024]:
        raise ImageError(f"{label} is an SVG drawing; vector images are not supported. Export it as PNG or JPEG.")
    try:
        return Image.open(fp, formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{label} declares a canvas too large to decode safely (a decompression bomb?).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image in a format accepted here ({FORMAT_NAMES}). "
                         "Convert it to one of these.") from None
    except MemoryError:
        raise ImageTooLargeError(f"{label} needs more memory to open than is available. Send a smaller image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label} could not be opened ({e}).") from None


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except (OSError, ValueError, SyntaxError):
        return None


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit: Pillow's convert("RGB") clips to 255 (all white); rescale instead.
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        notes.append("16-bit image scaled to 8 bits")
        return Image.fromarray((arr / top * 255).round().astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent areas shown on white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, P, CMYK, YCbCr, 1, ...


# --- preprocessing -------------------------------------------------------------------

@dataclass(frozen=True)
class CropGeometry:
    """Where the model's input sits in the original image.

    The model sees the image resized to ``resized`` (w, h), then center-cropped to
    ``crop`` x ``crop`` at offset (``left``, ``top``) in resized pixels.
    """

    image_size: tuple[int, int]  # original (w, h)
    resized: tuple[int, int]
    left: int
    top: int
    crop: int

    @property
    def scale(self) -> tuple[float, float]:
        """Resized pixels per original pixel, along x and y."""
        return self.resized[0] / self.image_size[0], self.resized[1] / self.image_size[1]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The crop in original-image pixel coordinates: (left, top, right, bottom)."""
        sx, sy = self.scale
        return (self.left / sx, self.top / sy, (self.left + self.crop) / sx, (self.top + self.crop) / sy)


def crop_geometry(size: tuple[int, int], pre: Preprocessing) -> CropGeometry:
    """The geometry torchvision's ``resize(shorter=N)`` + ``center_crop`` produce."""
    w, h = size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = pre.resize, int(pre.resize * long / short)  # torchvision truncates too
    rw, rh = (new_short, new_long) if w <= h else (new_long, new_short)
    top = int(round((rh - pre.crop) / 2.0))
    left = int(round((rw - pre.crop) / 2.0))
    return CropGeometry((w, h), (rw, rh), left, top, pre.crop)


def model_crop(img: Image.Image, pre: Preprocessing) -> Image.Image:
    """The exact RGB crop the model sees, before normalisation."""
    import torchvision.transforms.v2.functional as F  # torch stays out of import time

    interp = F.InterpolationMode(pre.interpolation)
    img = F.resize(img, [pre.resize], interpolation=interp, antialias=pre.antialias)
    return F.center_crop(img, [pre.crop])


def to_tensor(crop: Image.Image, pre: Preprocessing):
    """Normalised 1x3xHxW float tensor of a model crop."""
    import torch
    import torchvision.transforms.v2.functional as F

    t = F.to_dtype(F.pil_to_tensor(crop), torch.float32, scale=True)
    return F.normalize(t, mean=list(pre.mean), std=list(pre.std)).unsqueeze(0)
