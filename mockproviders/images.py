"""Small real PNGs, painted deterministically from a digest of (prompt, seed, size, index).

The picture keeps the aspect ratio of the requested size but its longest side is at most
:data:`PREVIEW_SIDE` pixels, so answers stay small; the API bodies still report the requested
width and height. Only the standard library is used (``zlib`` and ``struct``).
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib

__all__ = [
    "MAX_SIDE",
    "PREVIEW_SIDE",
    "image_digest",
    "parse_wxh",
    "png_bytes",
    "preview_size",
    "prompt_seed",
    "render_png",
]

#: Longest side of a generated picture, in pixels.
PREVIEW_SIDE = 64
#: Largest width or height any API accepts.
MAX_SIDE = 8192

_WXH = re.compile(r"^\s*(\d{1,5})\s*[xX*×]\s*(\d{1,5})\s*$")


def parse_wxh(text: str) -> tuple[int, int] | None:
    """``"1024x768"`` or ``"1024*768"`` -> ``(1024, 768)``; None when it is not such a size."""
    match = _WXH.match(text)
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return None
    return width, height


def image_digest(prompt: str, seed: int | None, width: int, height: int, index: int = 0) -> str:
    """The hex digest that names (and paints) one generated image."""
    text = f"{prompt}\x00{seed}\x00{width}x{height}\x00{index}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def prompt_seed(prompt: str) -> int:
    """The seed used when a request gives none: stable for the same prompt."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def preview_size(width: int, height: int) -> tuple[int, int]:
    """The picture's real size: the requested aspect ratio, longest side ``PREVIEW_SIDE``."""
    longest = max(width, height)
    if longest <= PREVIEW_SIDE:
        return width, height
    scale = PREVIEW_SIDE / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(width: int, height: int, rgb_rows: list[bytes]) -> bytes:
    """Encode RGB rows (``3 * width`` bytes each) as a PNG file."""
    raw = b"".join(b"\x00" + row for row in rgb_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 6)),
            _chunk(b"IEND", b""),
        )
    )


def render_png(digest: str, width: int, height: int) -> bytes:
    """Paint the image named ``digest`` at the requested ``width`` x ``height``.

    A vertical gradient between two colours, with three rectangles on top, all taken from the
    digest: the same digest and size always give the same bytes.
    """
    seed = hashlib.sha256(digest.encode()).digest()
    w, h = preview_size(width, height)
    top, bottom = seed[0:3], seed[3:6]
    rows = []
    for y in range(h):
        t = y / max(1, h - 1)
        colour = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows.append(bytearray(colour * w))
    for n in range(3):
        box = seed[6 + n * 7 : 13 + n * 7]
        x0, y0 = box[0] * w // 256, box[1] * h // 256
        x1 = min(w, x0 + 1 + box[2] * w // 512)
        y1 = min(h, y0 + 1 + box[3] * h // 512)
        fill = bytes(box[4:7]) * (x1 - x0)
        for y in range(y0, y1):
            rows[y][x0 * 3 : x1 * 3] = fill
    return png_bytes(w, h, [bytes(row) for row in rows])
