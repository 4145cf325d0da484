"""Hostile and unusual uploads, generated (never committed as binaries)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A few hundred bytes that declare a 40000x40000 canvas (1.6 gigapixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo() -> Image.Image:
    return Image.open(EXAMPLES / "chelsea.png").convert("RGB")


def make_corpus(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """name -> (file, expected error fragment or None when it must work)."""
    folder.mkdir(parents=True, exist_ok=True)
    cat = photo()
    w, h = cat.size
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    rgba = cat.convert("RGBA")
    alpha = np.array(rgba)
    alpha[: h // 2, :, 3] = 0  # top half transparent
    pal = cat.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    deep = (np.asarray(cat.convert("L"), dtype=np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": we store it turned the other way
    items: dict[str, tuple[bytes, str | None]] = {
        "not-an-image.jpg": (b"GIF89? no, just text pretending to be a photo\n" * 20, "not an image"),
        "empty.png": (b"", "empty"),
        "truncated.jpg": (save(cat, "JPEG", quality=90)[:3000], "truncated"),
        "bomb.png": (bomb_png(), "megapixels|decompression bomb|too large"),
        "animated.gif": (gif.getvalue(), None),
        "cmyk.jpg": (save(cat.convert("CMYK"), "JPEG", quality=95), None),
        "sixteen-bit.png": (save(Image.fromarray(deep), "PNG"), None),
        "grayscale.png": (save(cat.convert("L"), "PNG"), None),
        "rgba.png": (save(Image.fromarray(alpha), "PNG"), None),
        "palette-transparent.png": (save(pal, "PNG", transparency=0), None),
        "exif-rotated.png": (save(cat.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif), None),
        "one-pixel.png": (save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), None),
        "extreme-aspect.png": (save(Image.new("RGB", (10000, 10), (90, 90, 90)), "PNG"), "aspect ratio"),
        "drawing.svg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                        b'<rect width="10" height="10"/></svg>', "SVG"),
    }
    out = {}
    for name, (data, err) in items.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = (path, err)
    return out


# A minimal Encapsulated PostScript file: Pillow would hand it to Ghostscript to render.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"newpath 0 0 moveto 16 0 lineto 16 16 lineto closepath fill\nshowpage\n%%EOF\n")
def many_frame_gif(frames: int = 10_000, width: int = 1000, height: int = 1000) -> bytes:
    """A GIF of ``frames`` one-pixel frames on a ``width`` x ``height`` canvas (~23 bytes a frame).

    Written by hand: Pillow would need every full frame in memory to write it. Whoever
    decodes every frame holds frames x width x height pixels; the first frame alone is small.
    """
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF0, 0, 0)  # global table of 2 colours
    palette = b"\x80\x80\x80" + b"\xff\x00\x00"
    frame = (b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control: no delay, no transparency
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # image descriptor: 1x1 at (0, 0)
             + b"\x02\x02\x44\x01\x00")  # LZW, min code size 2: clear, pixel 0, end
    return header + palette + frame * frames + b"\x3b"
