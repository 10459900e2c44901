"""The records replicas exchange: what is stored in the shared hashes and published on the
channel, as one JSON object each (``kind`` says which).

Times are wall-clock unix seconds: each replica converts them to and from its own monotonic
clock, so replicas on one host agree exactly and replicas on NTP-synced hosts agree to within
their clock skew. Every record names its ``origin`` replica, so nobody applies its own twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "PEER_KINDS",
    "BreakerRecord",
    "BudgetRecord",
    "CooldownRecord",
    "ReceiverPauseRecord",
    "Record",
    "decode",
    "encode",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CooldownRecord:
    """A provider instance must not be called before ``until`` (a Retry-After or learned)."""

    kind: ClassVar[str] = "cooldown"
    #: Compared (as ``max``) by the keep-latest script.
    order_field: ClassVar[str] = "until"

    name: str
    until: float
    reason: str
    origin: str

    @property
    def order(self) -> float:
        """What "later" means for this record: its end."""
        return self.until


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    """A provider instance's x-ratelimit budget is spent: no token before ``until``."""

    kind: ClassVar[str] = "budget"
    order_field: ClassVar[str] = "until"

    name: str
    until: float
    rate_per_s: float
    burst: float
    origin: str

    @property
    def order(self) -> float:
        """What "later" means for this record: its end."""
        return self.until


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A breaker transition: ``state`` since ``at``; last writer (by ``at``, then origin) wins."""

    kind: ClassVar[str] = "breaker"
    order_field: ClassVar[str] = "at"

    name: str
    state: str
    at: float
    origin: str
    reason: str
    open_until: float | None = None
    trips: int = 0

    @property
    def order(self) -> tuple[float, str]:
        """What "later" means for this record: its time, then its origin (for ties)."""
        return (self.at, self.origin)


@dataclass(frozen=True, slots=True)
class ReceiverPauseRecord:
    """A webhook receiver (``name``: its origin, ``scheme://host:port``, never a path) refused
    ``origin``'s requests two round trips running with a Retry-After, from the one sent at
    ``since`` on: no webhook goes to it before ``until`` (unless it answered another replica's
    request sent since then with a 2xx)."""

    kind: ClassVar[str] = "receiver_pause"
    order_field: ClassVar[str] = "until"

    name: str
    until: float
    origin: str
    since: float

    @property
    def order(self) -> float:
        """What "later" means for this record: its end."""
        return self.until


Record = CooldownRecord | BudgetRecord | BreakerRecord | ReceiverPauseRecord

#: The kinds that are windows (nothing may be sent before their end): what goes to the peers
#: through the job store while Redis is away. Each only ever lengthens, so a copy that arrives
#: twice, or by both ways, changes nothing.
PEER_KINDS = frozenset(cls.kind for cls in (CooldownRecord, BudgetRecord, ReceiverPauseRecord))
_KINDS: dict[str, type[Record]] = {
    cls.kind: cls for cls in (CooldownRecord, BudgetRecord, BreakerRecord, ReceiverPauseRecord)
}


def encode(record: Record) -> str:
    """The record as compact JSON, ``kind`` first."""
    return json.dumps({"kind": record.kind, **asdict(record)}, separators=(",", ":"))


def decode(text: str | bytes) -> Record | None:
    """The record in ``text``, or None (logged) if it is not one this version understands.

    Fields this version does not know are ignored, so a newer replica can add some during a
    rolling upgrade; so is a record of a kind this version does not know, at debug level: a
    newer replica sends it for every pause or change, and each is expected until this one is
    upgraded. A record that does not parse at all is a warning.
    """
    try:
        data: dict[str, Any] = json.loads(text)
        kind = data.pop("kind")
        cls = _KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            log.debug("ignoring a shared-state record of a kind this version lacks: %.80r", kind)
            return None
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring a shared-state record that does not parse (%s): %.200r", exc, text)
        return None
