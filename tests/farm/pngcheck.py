"""A strict little PNG reader for the tests (Pillow is not a dependency): every chunk's CRC,
chunk order, and the zlib stream inflated to exactly the scanlines IHDR promises."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass(frozen=True)
class PngInfo:
    """What a valid PNG says about itself."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    chunks: tuple[bytes, ...]
    size: int


def read_png(data: bytes) -> PngInfo:
    """Check ``data`` is a PNG a decoder accepts and return its header; AssertionError if not."""
    assert data[:8] == _SIGNATURE, "not a PNG signature"
    pos, kinds, idat = 8, [], []
    header = b""
    while pos < len(data):
        assert pos + 12 <= len(data), "truncated chunk"
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert pos == len(data), "bytes after the last chunk"
    assert kinds[0] == b"IHDR", kinds
    assert kinds[-1] == b"IEND", kinds
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", header
    )
    assert width > 0
    assert height > 0
    assert (compression, filtering, interlace) == (0, 0, 0)
    if colour == 3:
        assert b"PLTE" in kinds[: kinds.index(b"IDAT")], "indexed PNG without PLTE first"
    inflater = zlib.decompressobj()
    raw = inflater.decompress(b"".join(idat))
    assert inflater.eof, "zlib stream not finished"
    assert not inflater.unused_data, "bytes after the zlib stream"
    row = (width * depth * _CHANNELS[colour] + 7) // 8
    assert len(raw) == height * (1 + row), "scanlines do not match IHDR"
    assert all(raw[y * (1 + row)] <= 4 for y in range(height)), "bad filter type"
    return PngInfo(width, height, depth, colour, tuple(kinds), len(data))
