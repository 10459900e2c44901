"""The farm's generated videos: small valid MP4 files written box by box, no codec needed.

A file is ``ftyp``, ``moov`` (one video track: ``mvhd`` / ``tkhd`` / ``mdhd`` durations equal to
the requested seconds, a ``raw `` (uncompressed RGB) sample entry with one small frame a
second), then ``mdat`` holding the frames, optionally padded with zeros after them up to a
target size. The header is a few kilobytes; the padding is streamed in fixed chunks
(:meth:`FarmVideo.chunks`), so a 50 MB video never exists in memory.

The track's display size (``tkhd``) is the requested width x height; the coded frames are
``FRAME_SIDE`` pixels a side (a player scales them), which keeps the file small.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["FRAME_SIDE", "TIMESCALE", "FarmVideo", "build_header", "video_digest"]

#: Coded frame width and height in pixels.
FRAME_SIDE = 16
#: Units per second of every duration in the file.
TIMESCALE = 1000
_FRAME_BYTES = FRAME_SIDE * FRAME_SIDE * 3
_PAD_CHUNK = 256 * 1024
_ZEROS = bytes(_PAD_CHUNK)
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def video_digest(prompt: str, seed: int | None, width: int, height: int, seconds: int) -> str:
    """A stable id of one generated video (its URL's name)."""
    text = f"{prompt}\x00{seed}\x00{width}x{height}\x00{seconds}s"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _frames(digest: str, count: int) -> bytes:
    """``count`` one-colour frames, the colour shifting a little each second."""
    red, green, blue = bytes.fromhex(digest[:6])
    return b"".join(
        bytes(((red + 8 * i) % 256, green, (blue + 16 * i) % 256)) * (FRAME_SIDE * FRAME_SIDE)
        for i in range(count)
    )


def _moov(width: int, height: int, seconds: int, frames: int, data_offset: int) -> bytes:
    duration = seconds * TIMESCALE
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, TIMESCALE, duration),
        struct.pack(">IH", 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),
    )
    tkhd = _full(
        b"tkhd",
        0,
        3,
        struct.pack(">IIII", 0, 0, 1, 0),
        struct.pack(">I", duration),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"FarmVideo\x00")
    vmhd = _full(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    entry = _box(
        b"raw ",
        bytes(6),
        struct.pack(">H", 1),
        bytes(16),
        struct.pack(">HH", FRAME_SIDE, FRAME_SIDE),
        struct.pack(">II", 0x480000, 0x480000),
        bytes(4),
        struct.pack(">H", 1),
        bytes(32),
        struct.pack(">Hh", 24, -1),
    )
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, frames, duration // frames)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
        _full(b"stsz", 0, 0, struct.pack(">II", _FRAME_BYTES, frames)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, data_offset)),
    )
    minf = _box(b"minf", vmhd, dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return _box(b"moov", mvhd, trak)


_FTYP = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2mp41")


@lru_cache(maxsize=256)
def build_header(digest: str, width: int, height: int, seconds: int, total: int) -> bytes:
    """Everything but the padding: ``ftyp``, ``moov``, the ``mdat`` header and the frames
    (one a second); its ``mdat`` size counts the padding that makes the file ``total`` bytes
    (or none, when ``total`` is smaller than the file without it)."""
    frames = max(1, seconds)
    moov_size = len(_moov(width, height, seconds, frames, 0))
    data_offset = len(_FTYP) + moov_size + 8
    moov = _moov(width, height, seconds, frames, data_offset)
    payload = _frames(digest, frames)
    mdat_size = max(8 + len(payload), total - len(_FTYP) - len(moov))
    return _FTYP + moov + struct.pack(">I4s", mdat_size, b"mdat") + payload


@dataclass(frozen=True, slots=True)
class FarmVideo:
    """One generated video: its header bytes and how much zero padding follows them."""

    digest: str
    width: int
    height: int
    seconds: int
    #: The file's size in bytes at least (0: as small as it comes).
    target_bytes: int = 0

    @property
    def header(self) -> bytes:
        """The file up to its padding (cached per video)."""
        return build_header(self.digest, self.width, self.height, self.seconds, self.target_bytes)

    @property
    def size(self) -> int:
        """The whole file's size in bytes."""
        return max(len(self.header), self.target_bytes)

    def chunks(self) -> Iterator[bytes]:
        """The file as a few chunks: the header, then the padding ``_PAD_CHUNK`` at a time."""
        header = self.header
        yield header
        left = self.size - len(header)
        while left > 0:
            step = min(left, _PAD_CHUNK)
            yield _ZEROS if step == _PAD_CHUNK else _ZEROS[:step]
            left -= step

    def data(self) -> bytes:
        """The whole file (small videos only: tests)."""
        return b"".join(self.chunks())
