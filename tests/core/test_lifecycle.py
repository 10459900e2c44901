"""AsyncResource: ``async with`` is ``start()`` then ``aclose()``, on error too."""

from __future__ import annotations

import pytest

from imagerouter import AsyncResource


class Recorder(AsyncResource):
    def __init__(self, fail_start: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_start = fail_start

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise OSError("no")

    async def aclose(self) -> None:
        self.calls.append("aclose")


async def test_async_with_starts_and_acloses_and_returns_the_resource() -> None:
    resource = Recorder()
    async with resource as entered:
        assert entered is resource
        assert resource.calls == ["start"]
    assert resource.calls == ["start", "aclose"]


async def test_an_error_in_the_block_still_acloses_and_propagates() -> None:
    resource = Recorder()
    with pytest.raises(ValueError, match="boom"):
        async with resource:
            raise ValueError("boom")
    assert resource.calls == ["start", "aclose"]


async def test_a_failed_start_is_not_aclosed() -> None:
    resource = Recorder(fail_start=True)
    with pytest.raises(OSError, match="no"):
        async with resource:
            pass  # pragma: no cover
    assert resource.calls == ["start"]
