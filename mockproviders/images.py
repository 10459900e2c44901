"""Real PNGs of exactly the requested width and height, with a chosen byte size.

A farm image is four parts: the PNG header and ``IHDR`` (the size), a small chunk that names
the image (its digest), the pixel data (``IDAT``) and ``IEND``. The pixel data is the costly
part and depends only on the size and the byte budget, never on the digest, so the farm builds
it once per (width, height, mode, bytes) and keeps it in :class:`mockproviders.pngcache.PngCache`;
answering an image then costs one concatenation.

Two modes (a scenario's ``[images] png_bytes``):

- ``"realistic"`` (the default): an RGB image about ``bytes_per_pixel`` bytes a pixel, like a
  photo PNG (1024x1024 at 1.5 is about 1.5 MB). The first pixels are pseudo-random (stored, not
  compressed: deflate cannot shrink them), the rest black (compressed to almost nothing), so
  the file is as big as asked and costs no CPU to compress. The digest rides in a ``tEXt``
  chunk, so every image's bytes differ.
- ``"tiny"``: a one-colour image (1-bit indexed); the colour is taken from the digest and
  lives in ``PLTE``. A 1024x1024 image is a few hundred bytes.

Everything is deterministic: the same digest, size and settings give the same bytes in every
process. Only the standard library is used (``zlib``, ``struct``, ``random``).
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import zlib
from typing import Literal

__all__ = [
    "DEFAULT_BYTES_PER_PIXEL",
    "MAX_SIDE",
    "PngMode",
    "assemble_png",
    "build_idat",
    "image_digest",
    "name_chunk",
    "parse_wxh",
    "prompt_seed",
    "render_png",
    "target_bytes",
]

#: Largest width or height any API accepts.
MAX_SIDE = 8192
#: Bytes a pixel of a realistic image: a photo PNG is about 1.3-2 (RGB, 8 bits a channel).
DEFAULT_BYTES_PER_PIXEL = 1.5
#: ``"realistic"``: as big as a photo PNG of that size; ``"tiny"``: as small as a PNG can be.
PngMode = Literal["realistic", "tiny"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WXH = re.compile(r"^\s*(\d{1,5})\s*[xX*×]\s*(\d{1,5})\s*$")
#: Bytes of a realistic image besides its IDAT chunk: signature, IHDR, tEXt (32-digit digest)
#: and IEND.
_OVERHEAD = 8 + 25 + 12 + len(b"Comment\x00imagerouter mock farm ") + 32 + 12


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
    """The hex digest that names (and colours) one generated image."""
    text = f"{prompt}\x00{seed}\x00{width}x{height}\x00{index}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def prompt_seed(prompt: str) -> int:
    """The seed used when a request gives none: stable for the same prompt."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def target_bytes(mode: PngMode, width: int, height: int, bytes_per_pixel: float) -> int:
    """The size a farm image should have: ``width * height * bytes_per_pixel`` (realistic), at
    most what raw RGB pixels take; 0 for tiny (as small as it comes)."""
    if mode == "tiny":
        return 0
    return min(round(width * height * bytes_per_pixel), 3 * width * height + _OVERHEAD)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _raw_rows(row_bytes: int, height: int, pixels: bytes) -> bytes:
    """Scanlines: filter byte 0 before each row of ``row_bytes`` bytes of ``pixels``."""
    view = memoryview(pixels)
    parts = []
    for y in range(height):
        parts.append(b"\x00")
        parts.append(view[y * row_bytes : (y + 1) * row_bytes])
    return b"".join(parts)


def build_idat(mode: PngMode, width: int, height: int, file_bytes: int) -> bytes:
    """The ``IDAT`` chunk (length, type, data, CRC) of an image of that size, sized so the whole
    file is about ``file_bytes`` (realistic; ignored for tiny).

    The costly part of an image, independent of its digest: build it once and reuse it.
    Realistic: pseudo-random pixel bytes in stored deflate blocks, then black pixels
    compressed. Tiny: 1-bit pixels, all index 0, compressed.
    """
    if mode == "tiny":
        row_bytes = (width + 7) // 8
        raw = (b"\x00" * (1 + row_bytes)) * height
        return _chunk(b"IDAT", zlib.compress(raw, 9))
    wanted = file_bytes - _OVERHEAD
    pixels = 3 * width * height
    # First guess: the noise bytes plus their filter bytes and deflate framing fill the budget;
    # then correct once by what the first build missed (the black tail's compressed size).
    noise = max(0, min(pixels, wanted - 12 - wanted // (3 * width + 1) - 5 * (wanted // 65535)))
    idat = _realistic_idat(width, height, noise)
    missed = wanted - len(idat)
    if missed and 0 < noise + missed <= pixels:
        idat = _realistic_idat(width, height, noise + missed)
    return idat


def _realistic_idat(width: int, height: int, noise_bytes: int) -> bytes:
    """RGB pixel data: ``noise_bytes`` pseudo-random bytes stored, then black compressed."""
    row_bytes = 3 * width
    noise = random.Random(f"farm-png:{width}x{height}:{noise_bytes}").randbytes(noise_bytes)
    raw = _raw_rows(row_bytes, height, noise + bytes(row_bytes * height - noise_bytes))
    # The noisy head (filter bytes included) goes in stored blocks (no CPU spent trying to
    # compress it); the black tail is compressed in a second raw deflate stream. Two raw
    # streams joined after a sync flush are one valid stream.
    split = (noise_bytes // row_bytes) * (row_bytes + 1) + noise_bytes % row_bytes + 1
    split = min(split, len(raw))
    head = zlib.compressobj(0, zlib.DEFLATED, -15)
    tail = zlib.compressobj(1, zlib.DEFLATED, -15)
    stream = b"".join(
        (
            b"\x78\x01",
            head.compress(raw[:split]),
            head.flush(zlib.Z_SYNC_FLUSH),
            tail.compress(raw[split:]),
            tail.flush(zlib.Z_FINISH),
            struct.pack(">I", zlib.adler32(raw)),
        )
    )
    return _chunk(b"IDAT", stream)


def name_chunk(mode: PngMode, digest: str) -> bytes:
    """The chunk that makes an image its own: ``tEXt`` (realistic) or ``PLTE`` (tiny)."""
    if mode == "tiny":
        return _chunk(b"PLTE", hashlib.sha256(digest.encode()).digest()[:3])
    return _chunk(b"tEXt", b"Comment\x00imagerouter mock farm " + digest.encode())


def assemble_png(mode: PngMode, width: int, height: int, digest: str, idat: bytes) -> bytes:
    """A whole PNG file from its size, digest and a prebuilt :func:`build_idat`."""
    if mode == "tiny":
        header = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)
    else:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            name_chunk(mode, digest),
            idat,
            _chunk(b"IEND", b""),
        )
    )


def render_png(
    digest: str,
    width: int,
    height: int,
    *,
    mode: PngMode = "realistic",
    bytes_per_pixel: float = DEFAULT_BYTES_PER_PIXEL,
) -> bytes:
    """The image named ``digest`` at ``width`` x ``height``, built from scratch (no cache).

    The same bytes the farm serves with those settings; the farm itself goes through its
    :class:`~mockproviders.pngcache.PngCache`.
    """
    size = target_bytes(mode, width, height, bytes_per_pixel)
    return assemble_png(mode, width, height, digest, build_idat(mode, width, height, size))
