"""Spend-cap tests against the real wall clock: start a scenario only when it cannot straddle
the end of a UTC hour (every day window ends on an hour too), where the meter rightly starts
counting from zero again and the test's sums would split across two windows."""

from __future__ import annotations

import asyncio
import time

#: Longer than any spend-cap scenario takes, even on a slow CI host.
SCENARIO_S = 90.0
HOUR_S = 3600.0


async def clear_of_the_hour_end(needed_s: float = SCENARIO_S) -> None:
    """Return at once if the current UTC hour has ``needed_s`` left; else wait for the next."""
    left = HOUR_S - time.time() % HOUR_S
    if left < needed_s:
        await asyncio.sleep(left + 0.5)
