"""A small MP4 box reader for the tests: the top-level boxes and the durations that matter."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Mp4Facts:
    """What a test checks about an MP4 file."""

    top: list[str]
    timescale: int
    duration: int
    track_width: int
    track_height: int
    sample_count: int

    @property
    def seconds(self) -> float:
        """The movie's duration in seconds (mvhd)."""
        return self.duration / self.timescale


def _boxes(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    boxes, at = [], start
    while at < end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size < 8 or at + size > end:
            raise ValueError(f"box {kind!r} at {at} has a bad size {size}")
        boxes.append((kind.decode("latin-1"), at + 8, at + size))
        at += size
    return boxes


def _child(data: bytes, start: int, end: int, kind: str) -> tuple[int, int]:
    for name, s, e in _boxes(data, start, end):
        if name == kind:
            return s, e
    raise ValueError(f"no {kind} box")


def parse_mp4(data: bytes) -> Mp4Facts:
    """Parse ``data`` (ValueError if the boxes do not nest exactly)."""
    top = _boxes(data, 0, len(data))
    names = [name for name, _, _ in top]
    moov = next((s, e) for name, s, e in top if name == "moov")
    mvhd, _ = _child(data, *moov, "mvhd")
    timescale, duration = struct.unpack(">II", data[mvhd + 12 : mvhd + 20])
    trak = _child(data, *moov, "trak")
    _, tkhd_end = _child(data, *trak, "tkhd")
    width, height = struct.unpack(">II", data[tkhd_end - 8 : tkhd_end])
    mdia = _child(data, *trak, "mdia")
    stbl = _child(data, *_child(data, *mdia, "minf"), "stbl")
    stsz, _ = _child(data, *stbl, "stsz")
    _, count = struct.unpack(">II", data[stsz + 4 : stsz + 12])
    return Mp4Facts(names, timescale, duration, width >> 16, height >> 16, count)
