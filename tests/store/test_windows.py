"""Windows kept (:class:`~imagerouter.jobs.store.WindowStore`): the latest end of each window
is kept, whoever writes it and in whatever order; a window that ended is neither listed nor
kept; another store instance on the same database (a restart, a replica) reads them."""

from __future__ import annotations

import time

from tests.store.conftest import StoreFactory


async def test_the_latest_end_of_each_window_is_kept_and_read_by_another_instance(
    make_store: StoreFactory,
) -> None:
    """Two ends of fal's cooldown in either order: the later stays. A receiver's pause is
    another window. A second instance on the store lists both."""
    writer = await make_store()
    now = time.time()
    await writer.keep_window("cooldown", "fal", now + 60, "fal-later")
    await writer.keep_window("cooldown", "fal", now + 30, "fal-earlier")
    await writer.keep_window("receiver_pause", "http://127.0.0.1:9", now + 10, "pause")
    await writer.keep_window("cooldown", "openai", now + 5, "openai-first")
    await writer.keep_window("cooldown", "openai", now + 20, "openai-later")
    reader = await make_store()
    assert sorted(await reader.live_windows()) == ["fal-later", "openai-later", "pause"]


async def test_a_window_that_ended_is_not_listed_and_is_dropped(
    make_store: StoreFactory,
) -> None:
    """A window whose end has passed is not listed; the next write drops it, and a new
    window of the same name is kept whatever the old one's end was."""
    store = await make_store()
    now = time.time()
    await store.keep_window("cooldown", "fal", now - 1, "ended")
    assert await store.live_windows() == []
    await store.keep_window("cooldown", "wavespeed", now + 30, "running")
    await store.keep_window("cooldown", "fal", now + 30, "fal-new")
    assert sorted(await store.live_windows()) == ["fal-new", "running"]
