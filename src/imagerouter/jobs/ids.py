"""Unguessable identifiers for jobs, accounts and API keys.

Every id character is 5 bits straight from the operating system's CSPRNG (``os.urandom``).
Drawing them one id at a time costs a system call per id, and ``os.urandom`` lets go of the
GIL while it runs, which under load hands the interpreter to another thread in the middle of
a request; so the bytes are drawn 4 KiB at a time, each made one base32 character (its low
5 bits), and each id takes the next unused characters. No character is ever handed out
twice: each thread has its own reservoir (so no lock is needed), and a forked child throws
its inherited one away.
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_delivery_id", "new_id", "new_timed_id"]

#: Base32's 32 characters in ASCII order, so that a time written with them sorts as it counts.
_ORDERED = "234567abcdefghijklmnopqrstuvwxyz"
#: Every 10-bit number as two of those characters (the time prefix is written 10 bits at once).
_PAIRS = tuple(a + b for a in _ORDERED for b in _ORDERED)

#: Random bytes drawn per refill, one character each: some 200 job ids.
_DRAW_BYTES = 4096
#: Each byte to the base32 character of its low 5 bits: 256 is a multiple of 32, so a
#: uniformly random byte gives a uniformly random character (5 bits; the other 3 unused).
_TO_BASE32 = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[b & 31] for b in range(256))


class _Reservoir(threading.local):
    """One thread's unused base32 characters of OS randomness, and where the unused part
    starts. A :class:`threading.local`, so each thread draws and slices its own."""

    def __init__(self) -> None:
        self.chars = ""
        self.at = 0

    def take(self, count: int) -> str:
        """The next ``count`` unused characters (drawing more when too few are left)."""
        at = self.at
        if at + count > len(self.chars):
            self.chars = os.urandom(_DRAW_BYTES).translate(_TO_BASE32).decode("ascii")
            at = 0
        self.at = at + count
        return self.chars[at : at + count]


# Per-thread state, not shared mutable state: each thread sees only its own reservoir.
_RESERVOIR = _Reservoir()


def _forget_in_child() -> None:
    # a forked child must not hand out the characters its parent will hand out too
    _RESERVOIR.chars, _RESERVOIR.at = "", 0


os.register_at_fork(after_in_child=_forget_in_child)


def new_id(prefix: str, length: int = 20) -> str:
    """``prefix`` + ``_`` + ``length`` random lowercase base32 characters (5 bits each)."""
    return f"{prefix}_{_RESERVOIR.take(length)}"


def new_timed_id(prefix: str, now_s: float, length: int = 20) -> str:
    """:func:`new_id` with the time ``now_s`` (milliseconds, 50 bits as 10 characters of the
    same alphabet, in ASCII order) before its ``length`` random characters: as unguessable,
    and ids made one after another sort near each other, so inserting them touches the end
    of an index rather than a random page of it (jobs are looked up by id in three indexes).
    """
    ms = int(now_s * 1000)
    pairs = _PAIRS
    stamp = (
        pairs[(ms >> 40) & 1023]
        + pairs[(ms >> 30) & 1023]
        + pairs[(ms >> 20) & 1023]
        + pairs[(ms >> 10) & 1023]
        + pairs[ms & 1023]
    )
    return f"{prefix}_{stamp}{_RESERVOIR.take(length)}"


def new_delivery_id(now_s: float) -> str:
    """A webhook delivery's id (its ``webhook-id``): ``msg_`` and 24 characters, the first 10
    the time (70 random bits follow), so the deliveries' primary key and their attempts' index
    grow at their ends, as the jobs' do."""
    return new_timed_id("msg", now_s, 14)
