"""A minimal PNG encoder (zlib + struct, no PIL/matplotlib) and tiny pixel-art plots.

* :func:`encode_png` / :func:`write_png` -- 8-bit grayscale ``[H, W]`` or RGB ``[H, W, 3]``
  arrays to PNG bytes / an atomically written file.
* :func:`decode_png` -- the inverse for the files written here (8-bit gray/RGB, any filter);
  used by the tests and handy for checking outputs.
* :func:`image_grid` -- tiles images into one grid (optionally upscaled, with padding).
* :func:`histogram_image` -- a bar chart of values drawn into a pixel array, with axes, ticks
  and labels in a built-in 3x5 pixel font.
"""
from __future__ import annotations

import math
import struct
import zlib
from typing import Sequence

import numpy as np

__all__ = ["encode_png", "write_png", "decode_png", "image_grid", "histogram_image", "draw_text"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _as_uint8(img) -> np.ndarray:
    a = np.asarray(img.detach().cpu().numpy() if hasattr(img, "detach") else img)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0 + 0.5
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image must be [H, W] (gray) or [H, W, 3] (RGB) with H, W >= 1, got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return np.ascontiguousarray(a)


def encode_png(img) -> bytes:
    """PNG bytes of an 8-bit image: ``[H, W]`` gray or ``[H, W, 3]`` RGB.

    uint8 arrays are written as is; float arrays are taken as [0, 1] (clipped) and scaled.
    """
    a = _as_uint8(img)
    h, w = a.shape[:2]
    color = 0 if a.ndim == 2 else 2
    rows = a.reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def write_png(path: str, img) -> str:
    """Write :func:`encode_png` output to ``path`` atomically; returns ``path``."""
    from .format import atomic_write_bytes

    atomic_write_bytes(path, encode_png(img))
    return path


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced gray or RGB PNG (e.g. from :func:`encode_png`)."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file (bad signature)")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        crc = data[pos + 8 + n:pos + 12 + n]
        if len(body) != n or len(crc) != 4:
            raise ValueError(f"truncated PNG chunk {tag!r}")
        if struct.unpack(">I", crc)[0] != zlib.crc32(tag + body) & 0xFFFFFFFF:
            raise ValueError(f"bad CRC in PNG chunk {tag!r}")
        if tag == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        elif tag == b"IEND":
            break
        pos += 12 + n
    if ihdr is None:
        raise ValueError("PNG has no IHDR chunk")
    w, h, depth, color, _, _, interlace = ihdr
    if depth != 8 or color not in (0, 2) or interlace != 0:
        raise ValueError(f"unsupported PNG (bit depth {depth}, color type {color}, interlace {interlace})")
    ch = 1 if color == 0 else 3
    raw = zlib.decompress(idat)
    stride = w * ch
    if len(raw) != h * (stride + 1):
        raise ValueError(f"PNG image data has {len(raw)} bytes, expected {h * (stride + 1)}")
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for r in range(h):
        f = raw[r * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, r * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        elif f in (1, 3, 4):
            cur = np.zeros(stride, np.int32)
            for i in range(stride):
                a = cur[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        else:
            raise ValueError(f"bad PNG filter type {f} in row {r}")
        out[r] = cur
        prev = cur
    img = out.astype(np.uint8)
    return img if ch == 1 else img.reshape(h, w, 3)


def image_grid(images, ncols: int = 8, pad: int = 2, scale: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile ``[N, H, W]`` (or ``[N, H, W, 3]``) images into a uint8 grid ``ncols`` wide."""
    imgs = [_as_uint8(im) for im in images]
    if not imgs:
        raise ValueError("image_grid needs at least one image")
    if scale > 1:
        imgs = [np.repeat(np.repeat(im, scale, 0), scale, 1) for im in imgs]
    h, w = imgs[0].shape[:2]
    rgb = any(im.ndim == 3 for im in imgs)
    if rgb:
        imgs = [im if im.ndim == 3 else np.repeat(im[:, :, None], 3, 2) for im in imgs]
    ncols = max(1, min(ncols, len(imgs)))
    nrows = math.ceil(len(imgs) / ncols)
    shape = (pad + nrows * (h + pad), pad + ncols * (w + pad)) + ((3,) if rgb else ())
    out = np.full(shape, pad_value, np.uint8)
    for k, im in enumerate(imgs):
        if im.shape[:2] != (h, w):
            raise ValueError(f"image {k} has size {im.shape[:2]}, expected {(h, w)} like image 0")
        r, c = divmod(k, ncols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    return out


# 3x5 pixel font (upper case; lower case is drawn as upper case): 5 rows of 3 bits, MSB = left
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), "%": (5, 1, 2, 4, 5),
    "-": (0, 0, 7, 0, 0), " ": (0, 0, 0, 0, 0), "=": (0, 7, 0, 7, 0), "/": (1, 1, 2, 4, 4),
    "(": (1, 2, 2, 2, 1), ")": (4, 2, 2, 2, 4), ":": (0, 2, 0, 2, 0), "+": (0, 2, 7, 2, 0),
    "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6), "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6),
    "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4), "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5),
    "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2), "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7),
    "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5), "O": (2, 5, 5, 5, 2), "P": (6, 5, 6, 4, 4),
    "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5), "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5),
    "Y": (5, 5, 2, 2, 2), "Z": (7, 1, 2, 4, 7),
}


def draw_text(img: np.ndarray, x: int, y: int, text: str, color=0, size: int = 1) -> int:
    """Draw ``text`` with the 3x5 font at pixel (x, y) (top-left), clipped; returns the end x."""
    for ch in text:
        glyph = _FONT.get(ch.upper(), _FONT[" "])
        for r, bits in enumerate(glyph):
            for c in range(3):
                if bits >> (2 - c) & 1:
                    y0, x0 = y + r * size, x + c * size
                    y1, x1 = min(y0 + size, img.shape[0]), min(x0 + size, img.shape[1])
                    if y0 >= 0 and x0 >= 0 and y0 < img.shape[0] and x0 < img.shape[1]:
                        img[y0:y1, x0:x1] = color
        x += 4 * size
    return x


def _fmt_tick(v: float) -> str:
    if v == int(v) and abs(v) >= 1:
        return str(int(v))
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:.0f}"


def histogram_image(values: Sequence[float] | np.ndarray, *, bins: int = 20, value_range: tuple[float, float] | None = None,
                    groups: dict[str, Sequence[float]] | None = None, width: int = 480, height: int = 260,
                    title: str = "", colors: Sequence[tuple[int, int, int]] = ((40, 90, 200), (220, 110, 30), (40, 160, 70))
                    ) -> np.ndarray:
    """An RGB bar chart (histogram) of ``values`` as a uint8 ``[height, width, 3]`` array.

    ``groups`` (name -> values) draws stacked bars, one colour per group (and a legend);
    otherwise ``values`` is one group. Axes with tick labels (x: bin edges, y: counts).
    """
    if groups is None:
        groups = {"": values}
    arrs = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in groups.items()}
    allv = np.concatenate(list(arrs.values())) if arrs else np.zeros(0)
    allv = allv[np.isfinite(allv)]
    if value_range is None:
        lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = map(float, value_range)
    edges = np.linspace(lo, hi, bins + 1)
    counts = [np.histogram(np.clip(v[np.isfinite(v)], lo, hi), bins=edges)[0] for v in arrs.values()]
    total = np.sum(counts, axis=0) if counts else np.zeros(bins)
    cmax = max(int(total.max()) if total.size else 0, 1)
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 34, 10, 18 if title else 8, 22
    pw, ph = width - left - right, height - top - bottom
    if pw < bins or ph < 10:
        raise ValueError(f"histogram_image: {width}x{height} pixels is too small for {bins} bins")
    x0, y0 = left, top + ph  # plot origin (bottom-left)
    bw = pw / bins
    for b in range(bins):
        acc = 0
        xa, xb = int(round(x0 + b * bw)) + 1, int(round(x0 + (b + 1) * bw)) - 1
        for gi, c in enumerate(counts):
            if c[b] == 0:
                continue
            ya = y0 - int(round((acc + c[b]) / cmax * ph))
            yb = y0 - int(round(acc / cmax * ph))
            img[max(ya, top):yb, xa:max(xb, xa + 1)] = colors[gi % len(colors)]
            acc += c[b]
    img[top:y0 + 1, x0 - 1] = 0  # y axis
    img[y0, x0 - 1:x0 + pw] = 0  # x axis
    for k in range(6):  # x ticks
        v = lo + (hi - lo) * k / 5
        x = int(round(x0 + pw * k / 5))
        img[y0:y0 + 3, min(x, width - 1)] = 0
        s = _fmt_tick(v)
        draw_text(img, min(max(x - 2 * len(s), 0), width - 4 * len(s)), y0 + 5, s)
    for v in sorted({0, cmax // 2, cmax}):  # y ticks (integer counts)
        y = int(round(y0 - ph * v / cmax))
        img[y, x0 - 4:x0 - 1] = 0
        s = str(int(v))
        draw_text(img, max(x0 - 6 - 4 * len(s), 0), max(y - 2, 0), s)
    if title:
        draw_text(img, left, 4, title)
    names = [k for k in arrs if k]
    if names:
        x = left + pw - 4 * (sum(len(n) + 3 for n in names))
        for gi, n in enumerate(names):
            img[top + 2:top + 7, x:x + 5] = colors[gi % len(colors)]
            x = draw_text(img, x + 7, top + 2, n) + 6
    return img
