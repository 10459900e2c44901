"""The circuit breaker: a pure state machine, one per provider.

::

    closed    ── failure rate or slow-call rate over the window, or N failures in a row ──► open
    open      ── cooldown elapsed (or force_probe()) ─────────────────────────────────► half_open
    half_open ── every probe succeeded ───────────────────────────────────────────────► closed
    half_open ── a probe failed, the probes were slow, or they went unanswered ───────► open

Semantics follow resilience4j (count- or time-based sliding window, ``minimum_calls``, a
slow-call rate with its own threshold, a fixed number of half-open permits) and Envoy's outlier
detection (consecutive failures; the open time grows with each trip in a row and is capped).

* **Open time**: ``open_base_s · open_multiplier^(trips-1)``, capped at ``open_max_s``, where
  ``trips`` counts trips *in a row*. A trip from half-open always grows it. The streak is forgotten
  once the breaker has stayed closed for ``trip_reset_s`` (default: ``open_max_s``): the next trip
  after that opens for ``open_base_s`` again. No timer is needed; the check is made lazily.
* **Half-open**: ``half_open_probes`` permits. ``allow()`` returning True reserves one; every
  reserved permit must be answered by exactly one of ``record_success``, ``record_failure`` or
  ``record_ignored``. All probes must succeed to close; one failure re-opens at once. If reserved
  probes stay unanswered for ``half_open_max_s`` (a lost or cancelled task), the breaker re-opens
  rather than staying half-open forever (resilience4j #903/#935).
* **Late outcomes**: while open, outcomes are dropped (they describe calls admitted before the
  trip). While half-open, an outcome counts as a probe's only if a probe is outstanding; as
  outcomes carry no ticket, a late outcome arriving while a probe is out is taken for the
  probe's (it is recent evidence about the provider either way).
* Nothing here reads the time except through the injected :class:`~imagerouter.clock.Clock`, and
  open → half-open happens lazily, when ``allow()``, ``state`` or another reader looks.

Every call is O(1) amortized; a time-based window is bucketed per second, like resilience4j's, so
expiring old calls costs at most one bucket clear per elapsed second (and at most one sweep of the
window however long the gap).

Longer than 400 lines on purpose: the count and time windows are inlined in the breaker's
hot path (allow + record in about 600 ns, ``bench_state_machines``), so they live in this class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from imagerouter.clock import Clock
from imagerouter.resilience.ranges import refuse_out_of_range

__all__ = ["BreakerConfig", "BreakerState", "BreakerTransition", "CircuitBreaker"]

# Outcome codes stored in the count-based ring: bit 0 = failure, bit 1 = slow.
_FAILED = 1
_SLOW = 2


class BreakerState(StrEnum):
    """The three states of a circuit breaker; the value is the name used in APIs and logs."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker trips, how long it stays open, and how it probes its way back.

    Attributes:
        window: ``"count"`` (the last ``window_size`` calls) or ``"time"`` (the calls of the last
            ``window_seconds``, in one-second buckets).
        window_size: calls kept by a count-based window.
        window_seconds: span of a time-based window (rounded up to whole seconds).
        minimum_calls: calls the window must hold before a rate can trip it (capped at
            ``window_size`` for a count window).
        failure_rate_threshold: trip when failures / calls ≥ this, in (0, 1].
        consecutive_failures: trip after this many failures in a row; 0 disables.
        slow_call_s: a call at least this long is slow; None disables the slow-call rate.
        slow_call_rate_threshold: trip when slow calls / calls ≥ this, in (0, 1].
        open_base_s: open time after the first trip of a streak.
        open_multiplier: growth of the open time per further trip in a row (≥ 1).
        open_max_s: cap on the open time.
        trip_reset_s: closed this long, the trip streak is forgotten; None means ``open_max_s``.
        half_open_probes: calls let through while half-open; all must succeed to close.
        half_open_max_s: reserved probes unanswered this long re-open the breaker; None: never.
    """

    # Defaults chosen by the simulator (README "How the router decides"): a failure rate over
    # 30 s keeps a browning-out provider that still serves most calls in service at launch
    # throughput, where "5 in a row" and a 20-call window tripped it within a second; 20 in a
    # row still takes out a dead provider of a deployment too quiet to fill the window.
    window: Literal["count", "time"] = "time"
    window_size: int = 20
    window_seconds: float = 30.0
    minimum_calls: int = 20
    failure_rate_threshold: float = 0.5
    consecutive_failures: int = 20
    slow_call_s: float | None = None
    slow_call_rate_threshold: float = 1.0
    open_base_s: float = 5.0
    open_multiplier: float = 2.0
    open_max_s: float = 120.0
    trip_reset_s: float | None = None
    half_open_probes: int = 2
    half_open_max_s: float | None = 300.0

    def __post_init__(self) -> None:
        """Reject values that would make the breaker meaningless, naming the field."""
        if self.window not in ("count", "time"):
            raise ValueError(f"window must be 'count' or 'time', not {self.window!r}")
        checks: tuple[tuple[str, bool], ...] = (
            ("window_size", self.window_size >= 1),
            ("window_seconds", self.window_seconds >= 1.0),
            ("minimum_calls", self.minimum_calls >= 1),
            ("failure_rate_threshold", 0.0 < self.failure_rate_threshold <= 1.0),
            ("consecutive_failures", self.consecutive_failures >= 0),
            ("slow_call_s", self.slow_call_s is None or self.slow_call_s > 0.0),
            ("slow_call_rate_threshold", 0.0 < self.slow_call_rate_threshold <= 1.0),
            ("open_base_s", self.open_base_s > 0.0),
            ("open_multiplier", self.open_multiplier >= 1.0),
            ("open_max_s", self.open_max_s >= self.open_base_s),
            ("trip_reset_s", self.trip_reset_s is None or self.trip_reset_s >= 0.0),
            ("half_open_probes", self.half_open_probes >= 1),
            ("half_open_max_s", self.half_open_max_s is None or self.half_open_max_s > 0.0),
        )
        refuse_out_of_range(self, checks)

    def open_duration(self, trips: int) -> float:
        """Seconds the breaker stays open after the ``trips``-th trip in a row (1-based)."""
        if trips <= 1:
            return self.open_base_s
        try:
            grown = self.open_base_s * self.open_multiplier ** (trips - 1)
        except OverflowError:
            return self.open_max_s
        return grown if grown < self.open_max_s else self.open_max_s


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One state change of one breaker, handed to ``on_transition``.

    Attributes:
        name: the breaker's name (the provider instance).
        from_state: state before.
        to_state: state after.
        at: monotonic time of the change.
        reason: why, for people: e.g. ``"failure rate 0.60 ≥ 0.50 over 10 calls"``,
            ``"5 consecutive failures"``, ``"cooldown elapsed"``, ``"forced probe"``,
            ``"probe failed"``, ``"probes succeeded"``, ``"probes timed out"``, ``"reset"``.
        open_for_s: for a change to ``open``, how long it will stay open; otherwise None.
    """

    name: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str
    open_for_s: float | None = None


class CircuitBreaker:
    """A circuit breaker for one provider: ask ``allow()`` before a call, record its outcome after.

    ``allow()`` → True means "call"; after the call, record exactly one of ``record_success``,
    ``record_failure`` (5xx, timeout, connection error, auth failure) or ``record_ignored``
    (429, content rejection, invalid request, cancellation: outcomes that say nothing about the
    provider's health). Transitions are reported synchronously to ``on_transition``, which must
    not raise.
    """

    __slots__ = (
        "_b_calls",
        "_b_failures",
        "_b_slow",
        "_calls",
        "_clock",
        "_config",
        "_consecutive",
        "_consecutive_limit",
        "_failure_threshold",
        "_failures",
        "_forced_at",
        "_head",
        "_last_failure_at",
        "_min_calls",
        "_n_buckets",
        "_name",
        "_on_transition",
        "_open_until",
        "_pos",
        "_probe_at",
        "_probe_ok",
        "_probe_slow",
        "_probes_left",
        "_probes_out",
        "_ring",
        "_size",
        "_slow",
        "_slow_enabled",
        "_slow_s",
        "_slow_threshold",
        "_state",
        "_state_since",
        "_time_window",
        "_total_trips",
        "_trip_reset_s",
        "_trips",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Clock,
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self._name = name
        self._config = config
        self._clock = clock
        self._on_transition = on_transition
        now = clock.now()
        self._state: BreakerState = _CLOSED
        self._state_since = now
        self._open_until = 0.0
        self._trips = 0
        self._total_trips = 0
        self._consecutive = 0
        self._last_failure_at: float | None = None
        self._probes_left = 0
        self._probes_out = 0
        self._probe_ok = 0
        self._probe_slow = 0
        self._probe_at = now
        self._forced_at = -math.inf
        # Thresholds, flattened for the hot path.
        self._failure_threshold = config.failure_rate_threshold
        self._slow_enabled = config.slow_call_s is not None
        self._slow_s = config.slow_call_s if config.slow_call_s is not None else math.inf
        self._slow_threshold = config.slow_call_rate_threshold
        self._consecutive_limit = config.consecutive_failures or 0
        self._trip_reset_s = (
            config.trip_reset_s if config.trip_reset_s is not None else config.open_max_s
        )
        # The sliding window: totals, plus a ring of outcome codes or per-second buckets.
        self._calls = 0
        self._failures = 0
        self._slow = 0
        self._time_window = config.window == "time"
        if self._time_window:
            n = max(1, math.ceil(config.window_seconds))
            self._min_calls = config.minimum_calls
            self._size = 0
            self._ring: list[int] = []
            self._n_buckets = n
            self._b_calls = [0] * n
            self._b_failures = [0] * n
            self._b_slow = [0] * n
        else:
            self._size = config.window_size
            self._min_calls = min(config.minimum_calls, config.window_size)
            self._ring = [0] * config.window_size
            self._n_buckets = 0
            self._b_calls = []
            self._b_failures = []
            self._b_slow = []
        self._pos = 0
        self._head = math.floor(now)

    # ----------------------------------------------------------------- reading

    @property
    def name(self) -> str:
        """The breaker's name, as given."""
        return self._name

    @property
    def config(self) -> BreakerConfig:
        """The breaker's configuration."""
        return self._config

    @property
    def state(self) -> BreakerState:
        """The current state; an elapsed cooldown turns ``open`` into ``half_open`` here."""
        if self._state is not _CLOSED:
            self._tick(self._clock.now())
        return self._state

    @property
    def open_until(self) -> float | None:
        """Monotonic time the open state ends, or None when not open."""
        if self._state is _CLOSED:
            return None
        self._tick(self._clock.now())
        return self._open_until if self._state is _OPEN else None

    @property
    def next_forced_probe_at(self) -> float | None:
        """While open, the earliest monotonic time :meth:`force_probe` can succeed (its
        one-per-``open_base_s`` pace); None when not open."""
        if self._state is _CLOSED:
            return None
        now = self._clock.now()
        self._tick(now)
        if self._state is not _OPEN:
            return None
        return max(now, self._forced_at + self._config.open_base_s)

    @property
    def next_probe_at(self) -> float | None:
        """Earliest monotonic time ``allow()`` can let a call through, or None if unknown.

        Closed: None (calls are not probes). Open: the end of the cooldown. Half-open: now if a
        permit is free, None while every permit is out (one frees when a probe answers).
        """
        if self._state is _CLOSED:
            return None
        now = self._clock.now()
        self._tick(now)
        if self._state is _OPEN:
            return self._open_until
        return now if self._probes_left > 0 else None

    @property
    def trips(self) -> int:
        """Trips in the current streak (they set the next open time); 0 once the streak is over."""
        if self._state is _CLOSED and self._clock.now() - self._state_since >= self._trip_reset_s:
            return 0
        return self._trips

    @property
    def total_trips(self) -> int:
        """Every trip since the breaker was created (for metrics)."""
        return self._total_trips

    @property
    def last_failure_at(self) -> float | None:
        """Monotonic time of the last recorded failure in any state, or None."""
        return self._last_failure_at

    def snapshot(self) -> dict[str, Any]:
        """The breaker's whole decision state as a plain dict (for dashboards and a shared store).

        Keys: ``name``; ``state`` (``"closed"``/``"open"``/``"half_open"``); ``state_since``,
        ``open_until`` (None unless open), ``last_failure_at`` (monotonic seconds or None);
        ``trips`` (current streak), ``total_trips``; ``consecutive_failures``; ``window_calls``,
        ``window_failures``, ``window_slow`` and ``failure_rate`` (None with an empty window);
        ``probes_left``, ``probes_out``, ``probe_successes`` (half-open bookkeeping).
        """
        now = self._clock.now()
        self._tick(now)
        if self._time_window:
            self._expire(math.floor(now))
        calls = self._calls
        return {
            "name": self._name,
            "state": self._state.value,
            "state_since": self._state_since,
            "open_until": self._open_until if self._state is _OPEN else None,
            "last_failure_at": self._last_failure_at,
            "trips": self.trips,
            "total_trips": self._total_trips,
            "consecutive_failures": self._consecutive,
            "window_calls": calls,
            "window_failures": self._failures,
            "window_slow": self._slow,
            "failure_rate": self._failures / calls if calls else None,
            "probes_left": self._probes_left,
            "probes_out": self._probes_out,
            "probe_successes": self._probe_ok,
        }

    # ----------------------------------------------------------------- deciding

    def allow(self) -> bool:
        """May a call go to this provider now? In half-open, True reserves one probe permit."""
        if self._state is _CLOSED:
            return True
        now = self._clock.now()
        self._tick(now)
        if self._state is _HALF_OPEN and self._probes_left > 0:
            self._probes_left -= 1
            self._probes_out += 1
            self._probe_at = now
            return True
        return False

    def would_allow(self) -> bool:
        """Would :meth:`allow` say yes now? Reserves nothing."""
        if self._state is _CLOSED:
            return True
        self._tick(self._clock.now())
        return self._state is _HALF_OPEN and self._probes_left > 0

    def force_probe(self) -> bool:
        """Panic mode: end the cooldown early and reserve one probe. False unless open, and
        at most once per ``open_base_s``.

        The router calls this when every candidate's breaker is open, on the provider that failed
        least recently, so that traffic can find its way back without waiting out every cooldown.
        One forced probe per base open time, not one per job: in a total outage every job would
        otherwise probe, and the breakers would hold no traffic back at all.
        """
        if self._state is _CLOSED:
            return False
        now = self._clock.now()
        self._tick(now)
        if self._state is not _OPEN or now - self._forced_at < self._config.open_base_s:
            return False
        self._forced_at = now
        self._transition(_HALF_OPEN, now, "forced probe", None)
        self._probes_left -= 1
        self._probes_out += 1
        self._probe_at = now
        return True

    def reset(self) -> None:
        """Close the breaker and forget everything (an operator's manual override)."""
        now = self._clock.now()
        self._trips = 0
        if self._state is not _CLOSED:
            self._transition(_CLOSED, now, "reset", None)
        else:
            self._clear_window(now)
            self._consecutive = 0

    def apply_remote(
        self,
        to: BreakerState,
        *,
        open_until: float | None = None,
        trips: int = 0,
        reason: str = "remote",
        hold: bool = False,
    ) -> BreakerTransition | None:
        """Adopt a state another replica decided, without calling ``on_transition``.

        Nothing is ticked first: the state is taken as it stands, so adopting never causes a
        local transition (and so never an echo). Returns the transition made, or None when the
        state stayed the same.

        * ``OPEN`` with ``open_until`` (monotonic, on this breaker's clock): open until then. An
          open breaker takes the new end as it is; with ``hold=True`` it keeps the later of the
          two, and a half-open breaker whose own probes are already out stays half-open (the
          hold defers to probes in flight). ``trips`` raises the streak (never lowers it).
        * ``HALF_OPEN``: half-open now, with fresh permits.
        * ``CLOSED``: closed, with an empty window.
        """
        now = self._clock.now()
        state = self._state
        if to is _CLOSED:
            if state is _CLOSED:
                return None
            return self._transition(_CLOSED, now, reason, None, notify=False)
        if to is _HALF_OPEN:
            if state is _HALF_OPEN:
                return None
            return self._transition(_HALF_OPEN, now, reason, None, notify=False)
        if open_until is None:
            raise ValueError("apply_remote(OPEN) needs open_until")
        if trips > self._trips:
            self._trips = trips
        if state is _OPEN:
            self._open_until = max(self._open_until, open_until) if hold else open_until
            return None
        if hold and state is _HALF_OPEN and (self._probes_out or self._probe_ok):
            return None
        self._open_until = open_until
        return self._transition(_OPEN, now, reason, max(0.0, open_until - now), notify=False)

    # ----------------------------------------------------------------- recording

    def record_success(self, latency_s: float = 0.0) -> None:
        """A permitted call succeeded after ``latency_s`` seconds."""
        state = self._state
        if state is _CLOSED:
            self._consecutive = 0
            self._add(_SLOW if latency_s >= self._slow_s else 0)
        elif state is _HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1
            self._probe_ok += 1
            if latency_s >= self._slow_s:
                self._probe_slow += 1
            now = self._clock.now()
            self._probe_at = now
            if self._probe_ok >= self._config.half_open_probes:
                probes = self._probe_ok
                if self._slow_enabled and self._probe_slow / probes >= self._slow_threshold:
                    self._trip(now, f"probes slow: {self._probe_slow} of {probes}")
                else:
                    self._transition(_CLOSED, now, "probes succeeded", None)

    def record_failure(self, latency_s: float = 0.0) -> None:
        """A permitted call failed (5xx, timeout, connection error, auth) after ``latency_s``."""
        now = self._clock.now()
        self._last_failure_at = now
        state = self._state
        if state is _CLOSED:
            self._consecutive += 1
            self._add(_FAILED | _SLOW if latency_s >= self._slow_s else _FAILED)
            if self._state is _CLOSED and 0 < self._consecutive_limit <= self._consecutive:
                self._trip(now, f"{self._consecutive} consecutive failures")
        elif state is _HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1
            self._trip(now, "probe failed")

    def record_ignored(self) -> None:
        """A permitted call ended without a verdict on health; frees its half-open permit."""
        if self._state is _HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1
            self._probes_left += 1

    # ----------------------------------------------------------------- internals

    def _add(self, code: int) -> None:
        """Put one outcome into the window (closed state only) and trip on a crossed rate."""
        failed = code & _FAILED
        slow = code >> 1
        if self._time_window:
            sec = math.floor(self._clock.now())
            if sec != self._head:
                self._expire(sec)
            i = sec % self._n_buckets
            self._b_calls[i] += 1
            self._b_failures[i] += failed
            self._b_slow[i] += slow
            self._calls += 1
        else:
            pos = self._pos
            if self._calls == self._size:
                old = self._ring[pos]
                self._failures -= old & _FAILED
                self._slow -= old >> 1
            else:
                self._calls += 1
            self._ring[pos] = code
            pos += 1
            self._pos = 0 if pos == self._size else pos
        self._failures += failed
        self._slow += slow
        calls = self._calls
        if calls < self._min_calls:
            return
        rate = self._failures / calls
        if rate >= self._failure_threshold:
            self._trip(
                self._clock.now(),
                f"failure rate {rate:.2f} ≥ {self._failure_threshold:.2f} over {calls} calls",
            )
        elif self._slow_enabled:
            slow_rate = self._slow / calls
            if slow_rate >= self._slow_threshold:
                self._trip(
                    self._clock.now(),
                    f"slow-call rate {slow_rate:.2f} ≥ {self._slow_threshold:.2f}"
                    f" over {calls} calls",
                )

    def _expire(self, sec: int) -> None:
        """Advance a time window to second ``sec``, dropping the buckets that fell out of it."""
        head = self._head
        if sec <= head:
            return
        n = self._n_buckets
        if sec - head >= n:
            for i in range(n):
                self._b_calls[i] = self._b_failures[i] = self._b_slow[i] = 0
            self._calls = self._failures = self._slow = 0
        else:
            b_calls, b_failures, b_slow = self._b_calls, self._b_failures, self._b_slow
            for s in range(head + 1, sec + 1):
                i = s % n
                if b_calls[i]:
                    self._calls -= b_calls[i]
                    self._failures -= b_failures[i]
                    self._slow -= b_slow[i]
                    b_calls[i] = b_failures[i] = b_slow[i] = 0
        self._head = sec

    def _clear_window(self, now: float) -> None:
        """Empty the sliding window (on closing)."""
        self._calls = self._failures = self._slow = 0
        self._pos = 0
        for i in range(self._n_buckets):
            self._b_calls[i] = self._b_failures[i] = self._b_slow[i] = 0
        self._head = math.floor(now)

    def _tick(self, now: float) -> None:
        """Apply the transitions that time alone causes: cooldown over, probes lost."""
        state = self._state
        if state is _OPEN:
            if now >= self._open_until:
                self._transition(_HALF_OPEN, now, "cooldown elapsed", None)
        elif (
            state is _HALF_OPEN
            and self._probes_out > 0
            and self._config.half_open_max_s is not None
            and now - self._probe_at >= self._config.half_open_max_s
        ):
            self._trip(now, "probes timed out")

    def _trip(self, now: float, reason: str) -> None:
        """Open the breaker, growing the open time if this trip continues a streak."""
        if self._state is _CLOSED and now - self._state_since >= self._trip_reset_s:
            self._trips = 0
        self._trips += 1
        self._total_trips += 1
        open_for = self._config.open_duration(self._trips)
        self._open_until = now + open_for
        self._transition(_OPEN, now, reason, open_for)

    def _transition(
        self,
        to: BreakerState,
        now: float,
        reason: str,
        open_for: float | None,
        notify: bool = True,
    ) -> BreakerTransition:
        """Change state, reset the bookkeeping the new state starts from, and report it
        (to ``on_transition`` unless ``notify`` is False); returns the transition."""
        before = self._state
        self._state = to
        self._state_since = now
        self._probes_out = 0
        self._probe_ok = 0
        self._probe_slow = 0
        if to is _HALF_OPEN:
            self._probes_left = self._config.half_open_probes
            self._probe_at = now
        else:
            self._probes_left = 0
        if to is _CLOSED:
            self._consecutive = 0
            self._clear_window(now)
        event = BreakerTransition(self._name, before, to, now, reason, open_for)
        callback = self._on_transition
        if notify and callback is not None:
            callback(event)
        return event
