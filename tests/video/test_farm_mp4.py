"""The farm's generated MP4s: valid boxes, the requested duration and size, any file size."""

from __future__ import annotations

import pytest

from mockproviders.mp4 import FarmVideo, video_digest
from tests.video.mp4check import parse_mp4


@pytest.mark.parametrize(("seconds", "width", "height"), [(8, 1280, 720), (5, 480, 864)])
def test_a_small_video_has_ftyp_first_and_moov_with_the_duration(
    seconds: int, width: int, height: int
) -> None:
    """ftyp, moov, mdat in that order; mvhd says the seconds; tkhd the display size."""
    video = FarmVideo(video_digest("a heron", 1, width, height, seconds), width, height, seconds)
    data = video.data()
    facts = parse_mp4(data)
    assert facts.top == ["ftyp", "moov", "mdat"]
    assert facts.seconds == seconds
    assert (facts.track_width, facts.track_height) == (width, height)
    assert facts.sample_count == seconds
    assert len(data) < 20_000


def test_a_padded_video_is_exactly_the_target_size_and_still_parses() -> None:
    """Padding lives inside mdat, streamed in chunks no bigger than 256 KiB."""
    target = 3 * 1024 * 1024 + 17
    video = FarmVideo(video_digest("a heron", 1, 1280, 720, 8), 1280, 720, 8, target)
    chunks = list(video.chunks())
    assert max(len(chunk) for chunk in chunks) <= 256 * 1024
    data = b"".join(chunks)
    assert len(data) == target == video.size
    assert parse_mp4(data).top == ["ftyp", "moov", "mdat"]


def test_different_prompts_make_different_frames() -> None:
    """The frames' colour comes from the digest."""
    first = FarmVideo(video_digest("a heron", 1, 640, 480, 5), 640, 480, 5).data()
    second = FarmVideo(video_digest("a crane", 1, 640, 480, 5), 640, 480, 5).data()
    assert first != second
