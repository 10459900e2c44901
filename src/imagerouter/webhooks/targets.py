"""How many webhook requests go to one receiver (a host and port) at once.

A receiver may always take ``floor`` at once, unless it said otherwise. While it answers 2xx
promptly with most of its limit in use, the limit grows: by one an answer at first (doubling
each round trip), and by one a round trip once the receiver has shown where its capacity ends.
A 429, a 5xx, a timeout, a failed connection or an answer slower than ``slow_s`` is a sign of
overload: the limit is multiplied by ``backoff`` (never below the floor, but for a refusal
with a Retry-After when the limit adapts: that receiver said this client sends too many, and
with several replicas their floors together can be more than it takes; it may go down to one),
and that level is remembered as where growth slows. The signs of one round trip make one
decrease: the answers to requests sent before the last decrease describe the old limit, not the
new one (TCP's rule; a burst of 503s would otherwise halve the limit once for each, down to the
floor).

So one customer's endpoint that keeps up gets the throughput its completions need (up to
``ceiling``), and one that struggles is held near what it can take, never pushed harder than
the floor (or what its Retry-After refusals left). Requests beyond the limit wait for that
receiver in turn, first come first served, within their own deadline.

A receiver that refuses two round trips running with a Retry-After (a 429 or 503 for a request
sent after its limit came down for the one before, and no 2xx answer between) is paused for
that Retry-After, at most ``pause_at_most_s``: its line is turned away at once, and every
request for it until the pause ends, with :class:`ReceiverPaused`. One refusal alone does not
pause it: an endpoint that answers 429 to what is beyond its capacity (while serving the rest)
says "fewer at once", which the limit's decrease already does; pausing it would cost what it
can serve. One that refuses everything (down for maintenance, its rate spent) is left alone
until it said to come back. A second round trip's refusal that comes while requests sent
before it are still out waits for their answers before it pauses the receiver (for at most
the pause's own length), and nothing more is sent to it meanwhile: an endpoint that refuses
only what is beyond its capacity answers those refusals at once and serves the rest a little
later, and a 2xx among them says it serves (after an outage, several replicas coming back
together see exactly that).

A pause this process's requests earned is told to :attr:`TargetLimits.on_pause` with the time
its refusals began (with Redis shared state, the other replicas then pause that receiver too:
a receiver's Retry-After holds for the fleet, not only for the replica it refused).
:meth:`TargetLimits.pause` applies one learned elsewhere and tells no listener. Given when
those refusals began, it is applied at once here only while this process has nothing in flight
to the receiver or its last answer was a refusal; it is dropped if a request of this process's
sent since then was answered 2xx (the receiver refuses only more than the fleet sends it: the
same reading as one refusal alone, above), and otherwise held until the answers in flight say
which (the first refusal applies it: another replica's two round trips and this one's refusal
are the fleet's second round trip).

The floor and the ceiling are what a receiver is to get from the whole fleet. With replicas
sharing state, :meth:`TargetLimits.share` tells how many send webhooks, and each takes its share
of both (divided among them, at least one request at once): a customer's endpoint sees about
what one sender would send it, however many replicas there are, not that many times over.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from imagerouter.listeners import Listeners

__all__ = ["PauseEarned", "ReceiverBusy", "ReceiverPaused", "TargetLimits"]

#: Receivers remembered at most; past it, those with nothing in flight or waiting are forgotten
#: (a forgotten one starts again from the floor).
_REMEMBER_AT_MOST = 4096


class ReceiverBusy(TimeoutError):
    """No slot of the receiver came free in time. ``line_wait_s``: how long the line ahead of
    the request (those that gave up with it included: they come back too) takes at the
    receiver's limit and its answers' mean time (0 before its first answer)."""

    def __init__(self, line_wait_s: float) -> None:
        super().__init__("no slot of the receiver came free in time")
        self.line_wait_s = line_wait_s


class ReceiverPaused(Exception):
    """The receiver asked for a pause that has not ended: nothing goes to it before ``until``
    (the loop's clock). ``line_wait_s``: how long, after the pause, the requests turned away
    before this one take at the receiver's limit and its answers' mean time (so that they do
    not all come back at its end)."""

    def __init__(self, until: float, line_wait_s: float) -> None:
        super().__init__(f"the receiver asked for a pause until loop time {until:.3f}")
        self.until = until
        self.line_wait_s = line_wait_s


@dataclass(frozen=True, slots=True)
class PauseEarned:
    """Receiver ``key`` refused this process's requests two round trips running, from the one
    sent at ``since`` on, the second with ``status`` (429 or 503): nothing goes to it before
    ``until`` (both the loop's clock)."""

    key: Hashable
    until: float
    since: float
    status: int


@dataclass(slots=True)
class _Target:
    """One receiver's limit (a float: growth a round trip comes in fractions), the level where
    its growth slows, the requests in flight, the decreases so far, the waiters, the end of
    the pause it asked for (the loop's clock; 0: none) and its answers' moving mean time."""

    limit: float
    slow_above: float
    in_flight: int = 0
    decreases: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    paused_until: float = 0.0
    latency_s: float = 0.0
    #: A refusal with a Retry-After came in since its last 2xx answer.
    refused: bool = False
    #: When the first request of that run of refusals was sent (the loop's clock).
    refused_since: float = 0.0
    #: When the last request it answered 2xx was sent (the loop's clock).
    ok_sent_at: float = 0.0
    #: A pause learned elsewhere, held until an answer here bears it out: its end and when
    #: its refusals began (the loop's clock; 0: none).
    heard_until: float = 0.0
    heard_since: float = 0.0
    #: Requests turned away since its pause began.
    turned_away: int = 0
    #: A pause this process's answers earned, held while requests sent before its refusal
    #: are still out (see :meth:`TargetLimits.release`): how many of them, its end and the
    #: status that earned it (0 left: none held).
    hold_left: int = 0
    hold_until: float = 0.0
    hold_status: int = 0
    #: Ends a held pause whose window passes with answers still out.
    hold_timer: asyncio.TimerHandle | None = None


class TargetLimits:
    """Adaptive concurrency per receiver; see the module doc.

    Args:
        floor: requests in flight to one receiver that are always allowed (and the start),
            unless it refuses with a Retry-After and the limit adapts; for the whole fleet,
            each sender taking its share (:meth:`share`).
        ceiling: the most ever allowed (at most ``floor``: a fixed limit of ``floor``), for
            the whole fleet too.
        slow_s: a 2xx slower than this counts as a sign of overload.
        backoff: what a sign of overload multiplies the limit by.
        pause_at_most_s: the longest pause a receiver's Retry-After earns (0: none).
    """

    def __init__(
        self,
        floor: int,
        ceiling: int,
        *,
        slow_s: float = 2.0,
        backoff: float = 0.5,
        pause_at_most_s: float = 60.0,
    ) -> None:
        if floor < 1:
            raise ValueError(f"the floor must be at least 1, not {floor!r}")
        if not 0.0 < backoff < 1.0:
            raise ValueError(f"backoff must be in (0, 1), not {backoff!r}")
        #: The floor and ceiling for the whole fleet, as configured.
        self.fleet_floor = floor
        self.fleet_ceiling = max(floor, ceiling)
        #: How many processes send webhooks (this one included; see :meth:`share`).
        self.senders = 1
        #: This process's share of them (the whole of them alone).
        self.floor, self.ceiling = self.fleet_floor, self.fleet_ceiling
        self._adapts = self.fleet_ceiling > floor
        self._slow_s = slow_s
        self._backoff = backoff
        self._pause_at_most_s = pause_at_most_s
        self._targets: dict[Hashable, _Target] = {}
        #: Every pause a receiver's answers to this process earned (not those :meth:`pause`
        #: applies from elsewhere), e.g. to share it with the other replicas.
        self.on_pause: Listeners[PauseEarned] = Listeners()

    def share(self, senders: int) -> None:
        """``senders`` processes (this one included) send webhooks to the same receivers: this
        one takes its share of the floor and the ceiling, each divided among them (rounded
        down, at least 1). Every receiver's limit here is scaled by the change, so that the
        fleet's total for it stays about where it was: kept within the new ceiling, and at
        least the new floor unless a Retry-After had taken it below the old one."""
        senders = max(1, senders)
        if senders == self.senders:
            return
        old_floor, old_senders = self.floor, self.senders
        self.senders = senders
        self.floor = max(1, self.fleet_floor // senders)
        self.ceiling = max(self.floor, self.fleet_ceiling // senders)
        ceiling = float(self.ceiling)

        def scaled(value: float) -> float:
            # a hair up, so that a share and its reverse give a whole limit back (13, not
            # 12.999…: the limit in use is its whole part)
            return value * old_senders / senders + 1e-9

        for target in self._targets.values():
            low = float(self.floor) if target.limit >= old_floor else 1.0
            target.limit = min(ceiling, max(low, scaled(target.limit)))
            target.slow_above = min(ceiling, max(1.0, scaled(target.slow_above)))
            self._wake(target)  # a limit that grew frees slots

    def limit_of(self, key: Hashable) -> int:
        """The receiver's current limit (the floor for one not seen yet)."""
        target = self._targets.get(key)
        return int(target.limit) if target is not None else self.floor

    def snapshot(self) -> dict[Hashable, dict[str, int]]:
        """Every remembered receiver's ``{"limit", "in_flight", "waiting", "paused_s"}``
        (``waiting``: requests in line for one of its slots; ``paused_s``: the whole seconds
        left of the pause it asked for, rounded up, 0 if none)."""
        now = _loop_time()
        return {key: _figures(target, now) for key, target in self._targets.items()}

    def busiest(self, count: int) -> list[tuple[Hashable, dict[str, int]]]:
        """The ``count`` receivers with the most requests waiting, then in flight, then the
        longest pause left (those with none of the three left out), as :meth:`snapshot` gives
        them."""
        now = _loop_time()
        busy = [
            (key, _figures(target, now))
            for key, target in self._targets.items()
            if target.in_flight or target.waiters or target.paused_until > now
        ]
        busy.sort(
            key=lambda item: (item[1]["waiting"], item[1]["in_flight"], item[1]["paused_s"]),
            reverse=True,
        )
        return busy[:count]

    def summary(self) -> dict[str, int]:
        """Totals over the remembered receivers: how many there are, how many have their limit
        at the floor, above it, and at the ceiling (one at both counts at the floor), how many
        are paused, and the requests in flight and waiting to all of them."""
        counted = ("receivers", "at_floor", "above_floor", "at_ceiling", "paused")
        totals = dict.fromkeys((*counted, "in_flight", "waiting"), 0)
        now = _loop_time()
        for target in self._targets.values():
            figures = _figures(target, now)
            totals["receivers"] += 1
            if figures["limit"] <= self.floor:
                totals["at_floor"] += 1
            else:
                totals["above_floor"] += 1
                totals["at_ceiling"] += figures["limit"] >= self.ceiling
            totals["paused"] += figures["paused_s"] > 0
            totals["in_flight"] += figures["in_flight"]
            totals["waiting"] += figures["waiting"]
        return totals

    async def acquire(self, key: Hashable, deadline: float) -> int:
        """Wait for a slot of receiver ``key`` until ``deadline`` (the loop's clock; then
        :class:`ReceiverBusy`, a ``TimeoutError``; :class:`ReceiverPaused` at once while it is
        paused, or when a pause begins as it waits). The answer is the ticket its
        :meth:`release` or :meth:`give_back` (exactly one follows) takes."""
        target = self._target(key)
        if target.paused_until:
            if _loop_time() < target.paused_until:
                raise self._turned_away(target)
            target.paused_until = 0.0
        if not target.waiters and not target.hold_left and target.in_flight < int(target.limit):
            target.in_flight += 1
            return target.decreases
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        target.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            try:
                ahead = target.waiters.index(waiter)
            except ValueError:  # handed a slot as it gave up: out of the line already
                ahead = 0
            self._give_up(target, waiter)
            raise ReceiverBusy(_line_wait_s(target, ahead)) from None
        except BaseException:
            self._give_up(target, waiter)
            raise
        return target.decreases

    def _give_up(self, target: _Target, waiter: asyncio.Future[None]) -> None:
        """A waiter stops waiting: out of the line, or its slot passed on if it had one."""
        if not waiter.done():
            waiter.cancel()
            target.waiters.remove(waiter)
        elif not waiter.cancelled() and waiter.exception() is None:
            # handed a slot as it gave up: pass the slot on
            target.in_flight -= 1
            self._wake(target)

    def release(
        self,
        key: Hashable,
        ticket: int,
        latency_s: float,
        overloaded: bool,
        retry_after_s: float | None = None,
        status: int = 0,
    ) -> None:
        """The request sent with ``ticket`` answered (or failed) after ``latency_s``;
        ``overloaded``: a 429, 5xx, timeout or failed connection; ``retry_after_s``: a 429 or
        503's Retry-After (the second round trip refused so pauses the receiver), ``status``
        that answer's status."""
        target = self._targets[key]
        mean = target.latency_s
        target.latency_s = latency_s if mean == 0.0 else mean + 0.2 * (latency_s - mean)
        if retry_after_s is not None:
            now = _loop_time()
            pause_s = min(retry_after_s, self._pause_at_most_s)
            if target.hold_left:  # one of the answers a held pause waits for
                target.hold_until = max(target.hold_until, now + pause_s)
            elif target.refused and ticket == target.decreases and pause_s > 0:
                # sent at the limit the last refusal left (its ticket is current), and nothing
                # answered 2xx since that refusal: a second round trip refused. Requests sent
                # with it may still be answered 2xx (an endpoint that refuses only what is
                # beyond its capacity answers its refusals first, at once): with any out, the
                # pause waits for their answers, and nothing more is sent meanwhile.
                target.hold_until, target.hold_status = now + pause_s, status
                target.hold_left = target.in_flight  # this one too: it is counted off below
                self._hold_timer(key, target)
            else:
                if not target.refused:
                    target.refused_since = now - latency_s
                if target.heard_until > now and target.ok_sent_at < target.heard_since:
                    self.pause(key, target.heard_until)  # one heard of, borne out here
            target.refused = True
        elif not overloaded:
            target.refused = False
            target.ok_sent_at = _loop_time() - latency_s
            target.heard_until = 0.0
            if target.hold_left:  # the receiver serves: a held pause is dropped
                self._end_hold(target)
        busy = target.in_flight * 2 >= target.limit
        target.in_flight -= 1
        self._count_off(key, target)
        if overloaded or latency_s > self._slow_s:
            if ticket == target.decreases:  # the first sign since the last decrease
                # below the floor only for a receiver that said so (a Retry-After), and a
                # limit that adapts: with several replicas, their floors together can be
                # more than it takes (a fixed limit is the operator's, and stays)
                low = 1.0 if retry_after_s is not None and self._adapts else float(self.floor)
                target.limit = max(low, target.limit * self._backoff)
                target.slow_above = target.limit
                target.decreases += 1
        elif busy and target.limit < self.ceiling:
            step = 1.0 if target.limit < target.slow_above else 1.0 / target.limit
            target.limit = min(float(self.ceiling), target.limit + step)
        self._wake(target)

    def pause(self, key: Hashable, until: float, *, since: float | None = None) -> bool:
        """Receiver ``key`` asked for a pause: nothing more goes to it before ``until`` (the
        loop's clock; a pause already longer is kept). Its waiters are turned away now with
        :class:`ReceiverPaused`, as is every :meth:`acquire` until then; what is in flight
        is answered as it is. ``since``: when the refusals that earned it elsewhere began (the
        loop's clock). A request sent here since then and answered 2xx says the receiver
        serves: the pause is not applied. With requests here in flight and none refused yet,
        it is held until their answers say which: the first refusal with a Retry-After applies
        it, a 2xx drops it. Returns whether the pause began or grew longer; tells no
        :attr:`on_pause` listener."""
        target = self._target(key)
        if since is not None:
            if target.ok_sent_at >= since:
                return False
            if target.in_flight and not target.refused:
                if until > target.heard_until:
                    target.heard_until, target.heard_since = until, since
                return False
        lengthened = until > target.paused_until
        if lengthened:
            if target.paused_until <= _loop_time():
                target.turned_away = 0  # a new pause: its line starts again
            target.paused_until = until
        waiters, target.waiters = target.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._turned_away(target))
        return lengthened

    def paused_until(self, key: Hashable) -> float:
        """The loop time receiver ``key``'s pause ends; 0 when it is not paused."""
        target = self._targets.get(key)
        if target is None or target.paused_until <= _loop_time():
            return 0.0
        return target.paused_until

    @staticmethod
    def _turned_away(target: _Target) -> ReceiverPaused:
        """The next request turned away by ``target``'s pause, with its place after it."""
        line_wait_s = _line_wait_s(target, target.turned_away)
        target.turned_away += 1
        return ReceiverPaused(target.paused_until, line_wait_s)

    def give_back(self, key: Hashable) -> None:
        """The request never went, or its answer says nothing of the receiver's load."""
        target = self._targets[key]
        target.in_flight -= 1
        self._count_off(key, target)
        self._wake(target)

    def _count_off(self, key: Hashable, target: _Target) -> None:
        """One request out when a pause was held is over; after the last, with no 2xx among
        them, the pause begins (if its end has not passed meanwhile)."""
        if not target.hold_left:
            return
        target.hold_left -= 1
        if target.hold_left:
            return
        self._end_hold(target)
        until = target.hold_until
        if until > _loop_time() and self.pause(key, until) and self.on_pause:
            self.on_pause(PauseEarned(key, until, target.refused_since, target.hold_status))

    def _hold_timer(self, key: Hashable, target: _Target) -> None:
        """Arm the end of ``target``'s held pause at its window's end: a hold lasts no longer
        than the pause would have (answers that hang do not keep the receiver waiting)."""
        if target.hold_timer is not None:
            target.hold_timer.cancel()
        loop = asyncio.get_running_loop()
        target.hold_timer = loop.call_at(target.hold_until, self._hold_over, key, target)

    def _hold_over(self, key: Hashable, target: _Target) -> None:
        target.hold_timer = None
        if not target.hold_left:
            return
        if _loop_time() < target.hold_until:  # a later refusal made the window longer
            self._hold_timer(key, target)
            return
        target.hold_left = 0  # its window is over: sending resumes, as after the pause
        self._wake(target)

    @staticmethod
    def _end_hold(target: _Target) -> None:
        """No pause is held any more (its timer is dropped)."""
        target.hold_left = 0
        if target.hold_timer is not None:
            target.hold_timer.cancel()
            target.hold_timer = None

    def _target(self, key: Hashable) -> _Target:
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _REMEMBER_AT_MOST:
                self._forget_idle()
            target = self._targets[key] = _Target(float(self.floor), float(self.ceiling))
        return target

    def _forget_idle(self) -> None:
        now = _loop_time()
        idle = [
            key
            for key, target in self._targets.items()
            if not target.in_flight and not target.waiters and target.paused_until <= now
        ]
        for key in idle:
            del self._targets[key]

    @staticmethod
    def _wake(target: _Target) -> None:
        """Hand free slots to the first waiters (a limit that grew frees more than one)."""
        waiters = target.waiters
        while waiters and not target.hold_left and target.in_flight < int(target.limit):
            waiter = waiters.popleft()
            if not waiter.done():  # one that gave up already is passed over
                target.in_flight += 1
                waiter.set_result(None)


def _figures(target: _Target, now: float) -> dict[str, int]:
    """One receiver's limit, requests in flight, requests waiting (a waiter that gave up
    stays in the line until the next hand-over and is not counted) and whole seconds of pause
    left at loop time ``now``."""
    waiters = target.waiters
    waiting = sum(1 for waiter in waiters if not waiter.done()) if waiters else 0
    paused_s = math.ceil(target.paused_until - now) if target.paused_until > now else 0
    return {
        "limit": int(target.limit),
        "in_flight": target.in_flight,
        "waiting": waiting,
        "paused_s": paused_s,
    }


def _line_wait_s(target: _Target, ahead: int) -> float:
    """How long ``ahead`` requests take at ``target``'s limit and its answers' mean time (0
    before its first answer)."""
    return ahead / int(target.limit) * target.latency_s


def _loop_time() -> float:
    """The running loop's clock (a pause's end is in it)."""
    return asyncio.get_running_loop().time()
