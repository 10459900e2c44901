"""A provider's health score in [0, 1], from passive observation of its real calls.

Two time-decayed averages feed the score, each the exact exponentially time-weighted mean of its
samples (a sample ``a`` seconds old weighs ``2^(-a / half_life)``), kept as a decaying sum and a
decaying weight. Unlike an EWMA with one alpha per sample, many samples at the same instant
(a burst, or the simulator's virtual clock) each count fully, and a long gap forgets the past::

    success    = (Σ w·ok      + neutral · prior_weight) / (Σ w + prior_weight)
    recent     = (Σ w·latency + baseline · prior_weight) / (Σ w + prior_weight)
    baseline   = the same mean of latency with a long half-life (default 10 min)
    latency    = clamp(latency_tolerance · baseline / recent, min_latency_factor, 1)
    score      = success · latency

``prior_weight`` pseudo-samples pull both toward neutral, so with no traffic the sums decay and
the score drifts back to ``neutral`` (default 0.75): a provider that failed an hour ago gets
another chance, and one that shone an hour ago is no longer trusted blindly. Latency is measured
against the provider's *own* baseline, so a slow-but-steady provider is not penalised, only one
that is slower than it usually is (by more than ``latency_tolerance``, as in Gradient2).

Latencies are those of successful calls only (a timeout's "latency" is the timeout). The last
``window`` of them also feed ``p50()``/``p95()`` for the latency routing policy and for hedging;
the sorted copy is rebuilt lazily, when ``quantile_refresh`` new samples (or 1/8 of the buffer)
have arrived, so reads stay O(1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from imagerouter.clock import Clock
from imagerouter.resilience.ranges import refuse_out_of_range

__all__ = ["HealthConfig", "HealthScore"]

_LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Knobs of the health score; every duration in seconds.

    Attributes:
        half_life_s: half-life of the success average.
        latency_half_life_s: half-life of the recent-latency average.
        baseline_half_life_s: half-life of the latency baseline (slow on purpose).
        neutral: the score of a provider with no (recent) traffic.
        prior_weight: how many pseudo-samples of ``neutral`` (and of the baseline latency) are
            mixed in; > 0. Larger values make a few samples move the score less.
        latency_tolerance: recent latency up to this multiple of the baseline costs nothing.
        min_latency_factor: the latency factor never goes below this.
        window: how many recent successful latencies the quantiles are computed over.
        quantile_refresh: new samples after which the quantiles are recomputed.
    """

    half_life_s: float = 30.0
    latency_half_life_s: float = 30.0
    baseline_half_life_s: float = 600.0
    neutral: float = 0.75
    prior_weight: float = 2.0
    latency_tolerance: float = 1.5
    min_latency_factor: float = 0.25
    window: int = 128
    quantile_refresh: int = 16

    def __post_init__(self) -> None:
        """Reject values that would make the score meaningless, naming the field."""
        checks: tuple[tuple[str, bool], ...] = (
            ("half_life_s", self.half_life_s > 0.0),
            ("latency_half_life_s", self.latency_half_life_s > 0.0),
            ("baseline_half_life_s", self.baseline_half_life_s > 0.0),
            ("neutral", 0.0 <= self.neutral <= 1.0),
            ("prior_weight", self.prior_weight > 0.0),
            ("latency_tolerance", self.latency_tolerance >= 1.0),
            ("min_latency_factor", 0.0 <= self.min_latency_factor <= 1.0),
            ("window", self.window >= 1),
            ("quantile_refresh", self.quantile_refresh >= 1),
        )
        refuse_out_of_range(self, checks)


class HealthScore:
    """The live health of one provider: ``record()`` every call's outcome, read ``score``."""

    __slots__ = (
        "_b_sum",
        "_b_w",
        "_clock",
        "_config",
        "_k_base",
        "_k_latency",
        "_k_success",
        "_l_sum",
        "_l_w",
        "_lat",
        "_lat_n",
        "_lat_pos",
        "_pending",
        "_s_sum",
        "_s_w",
        "_samples",
        "_sorted",
        "_t",
    )

    def __init__(self, config: HealthConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._k_success = _LN2 / config.half_life_s
        self._k_latency = _LN2 / config.latency_half_life_s
        self._k_base = _LN2 / config.baseline_half_life_s
        self._s_sum = 0.0
        self._s_w = 0.0
        self._l_sum = 0.0
        self._l_w = 0.0
        self._b_sum = 0.0
        self._b_w = 0.0
        self._t = clock.now()
        self._samples = 0
        self._lat = [0.0] * config.window
        self._lat_n = 0
        self._lat_pos = 0
        self._sorted: list[float] = []
        self._pending = 0

    @property
    def config(self) -> HealthConfig:
        """The score's configuration."""
        return self._config

    def record(self, success: bool, latency_s: float | None = None) -> None:
        """One call ended; ``latency_s`` (if known) is used only when ``success`` is True."""
        now = self._clock.now()
        dt = now - self._t
        if dt > 0.0:
            d = math.exp(-dt * self._k_success)
            self._s_sum *= d
            self._s_w *= d
            if self._b_w:
                if self._k_latency != self._k_success:
                    d = math.exp(-dt * self._k_latency)
                self._l_sum *= d
                self._l_w *= d
                d = math.exp(-dt * self._k_base)
                self._b_sum *= d
                self._b_w *= d
            self._t = now
        self._samples += 1
        self._s_w += 1.0
        if success:
            self._s_sum += 1.0
            if latency_s is not None:
                self._l_sum += latency_s
                self._l_w += 1.0
                self._b_sum += latency_s
                self._b_w += 1.0
                pos = self._lat_pos
                self._lat[pos] = latency_s
                pos += 1
                size = len(self._lat)
                self._lat_pos = 0 if pos == size else pos
                if self._lat_n < size:
                    self._lat_n += 1
                self._pending += 1

    def success_rate(self) -> float:
        """Successful calls a second, time-decayed as the success average is (a call ``a``
        seconds old weighs ``2^(-a / half_life)``): the rate the provider took calls at lately."""
        k = self._k_success
        return self._s_sum * math.exp((self._t - self._clock.now()) * k) * k

    @property
    def score(self) -> float:
        """Health in [0, 1]: the success average times the latency factor."""
        # Inlined _success() * _latency_factor(): this is read for every candidate of every attempt.
        cfg = self._config
        prior = cfg.prior_weight
        age = self._t - self._clock.now()
        d = math.exp(age * self._k_success)
        success = (self._s_sum * d + cfg.neutral * prior) / (self._s_w * d + prior)
        b_w = self._b_w
        if not b_w:
            return success
        baseline = self._b_sum / b_w
        d = math.exp(age * self._k_latency)
        recent = (self._l_sum * d + baseline * prior) / (self._l_w * d + prior)
        if recent <= 0.0:
            return success
        factor = cfg.latency_tolerance * baseline / recent
        if factor >= 1.0:
            return success
        floor = cfg.min_latency_factor
        return success * (factor if factor > floor else floor)

    def inputs(self) -> dict[str, Any]:
        """What the score is made of, as a plain dict (for dashboards and a shared store).

        Keys: ``score``; ``success_ewma`` (decayed toward neutral, as the score sees it);
        ``latency_ewma_s`` and ``baseline_latency_s`` (None before the first timed success);
        ``latency_factor``; ``samples`` (calls recorded, ever); ``weight`` (the decayed number
        of calls behind the success average); ``last_update_age_s`` (None before the first
        call); ``p50_s`` and ``p95_s`` (None before the first timed success).
        """
        now = self._clock.now()
        success = self._success(now)
        factor = self._latency_factor(now)
        age = now - self._t
        return {
            "score": success * factor,
            "success_ewma": success,
            "latency_ewma_s": self._recent_latency(now) if self._l_w else None,
            "baseline_latency_s": self._b_sum / self._b_w if self._b_w else None,
            "latency_factor": factor,
            "samples": self._samples,
            "weight": self._s_w * math.exp(-age * self._k_success),
            "last_update_age_s": age if self._samples else None,
            "p50_s": self.p50(),
            "p95_s": self.p95(),
        }

    def p50(self) -> float | None:
        """Median latency of the last ``window`` successful calls, or None without any."""
        return self.quantile(0.5)

    def p95(self) -> float | None:
        """95th-percentile latency of the last ``window`` successful calls, or None."""
        return self.quantile(0.95)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (nearest rank, 0 < q ≤ 1) of the recent successful latencies."""
        n = self._lat_n
        if n == 0:
            return None
        pending = self._pending
        if pending and (pending >= self._config.quantile_refresh or pending * 8 >= n):
            self._sorted = sorted(self._lat if n == len(self._lat) else self._lat[:n])
            self._pending = 0
        s = self._sorted
        i = math.ceil(q * len(s)) - 1
        return s[0 if i < 0 else min(i, len(s) - 1)]

    # ----------------------------------------------------------------- internals

    def _success(self, now: float) -> float:
        """The success average at ``now``, including the pull toward neutral."""
        prior = self._config.prior_weight
        d = math.exp(-(now - self._t) * self._k_success)
        return (self._s_sum * d + self._config.neutral * prior) / (self._s_w * d + prior)

    def _recent_latency(self, now: float) -> float:
        """The recent latency average at ``now``, pulled toward the baseline (needs samples)."""
        baseline = self._b_sum / self._b_w
        prior = self._config.prior_weight
        d = math.exp(-(now - self._t) * self._k_latency)
        return (self._l_sum * d + baseline * prior) / (self._l_w * d + prior)

    def _latency_factor(self, now: float) -> float:
        """1 while recent latency is within tolerance of the baseline, less as it grows."""
        if not self._b_w:
            return 1.0
        recent = self._recent_latency(now)
        if recent <= 0.0:
            return 1.0
        factor = self._config.latency_tolerance * (self._b_sum / self._b_w) / recent
        if factor >= 1.0:
            return 1.0
        floor = self._config.min_latency_factor
        return factor if factor > floor else floor
