"""API keys: minted once, stored only as a SHA-256 hash, looked up by their public id part.

A key reads ``ir_<id>_<secret>``: ``ir_`` marks it as ours (secret scanners can match it),
``<id>`` (12 base32 characters) finds the stored record, and ``<secret>`` (256 random bits) is
what proves possession. Only ``sha256(key)`` is stored, so a leaked database holds no usable key.
Since the key is high-entropy, a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.errors import ImageRouterError
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.store import AccountStore
from imagerouter.jobs.types import ApiKeyRecord

__all__ = [
    "KEY_PREFIX",
    "AuthError",
    "Authenticator",
    "NewApiKey",
    "Principal",
    "hash_key",
    "mint_key",
    "parse_key_id",
]

KEY_PREFIX = "ir_"


class AuthError(ImageRouterError):
    """The request carries no API key, or one that is unknown, malformed or revoked."""

    code = "invalid_api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account and the key it used."""

    account_id: str
    account_name: str
    key_id: str
    #: The key's default routing preferences (JSON text), or None.
    routing: str | None = None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly minted key: ``token`` is shown once and never stored."""

    token: str
    record: ApiKeyRecord


def hash_key(token: str) -> str:
    """The stored form of a key: hex SHA-256 of the whole token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_key_id(token: str) -> str | None:
    """The lookup id of a well-formed key (``key_…``), else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 12 or len(secret) < 32:
        return None
    return f"key_{key_id}"


def mint_key(
    account_id: str, name: str | None, now: float, routing: str | None = None
) -> NewApiKey:
    """A new random key for ``account_id`` and the record to store for it; ``routing`` is
    the key's default routing preferences as JSON (checked by the caller)."""
    key_id = new_id("key", 12)
    token = f"{KEY_PREFIX}{key_id.removeprefix('key_')}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        id=key_id,
        account_id=account_id,
        secret_hash=hash_key(token),
        name=name,
        created_at=now,
        routing=routing,
    )
    return NewApiKey(token, record)


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or raises AuthError.

    Verified records are cached for ``cache_s`` seconds (0 disables it). A revocation made
    through :meth:`revoke` (the admin API of this process) takes effect here at once. Once
    :meth:`watch` is on, one made by another process (another replica, or ``imagerouter keys
    revoke``) drops the cached record as soon as the store tells
    (:meth:`~imagerouter.jobs.store.AccountStore.subscribe_revocations`: at once on
    PostgreSQL, within 0.25 s on SQLite); whatever happens to that news, a cached record
    expires after ``cache_s``.
    """

    def __init__(
        self,
        store: AccountStore,
        *,
        cache_s: float = 5.0,
        max_cached: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        self._store, self._cache_s, self._max = store, cache_s, max_cached
        self._clock = clock or MonotonicClock()
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        #: Keys revoked through this process: refused whatever a lookup already in flight (from
        #: before the revocation) puts back in the cache. A revocation is final, so this only
        #: grows, by one id per revocation made here.
        self._revoked: set[str] = set()
        #: Bumped by every forget: a lookup that read the store before a revocation was
        #: heard of must not put its stale record back in the cache.
        self._generation = 0
        self._unwatch: Callable[[], None] | None = None

    def watch(self) -> None:
        """Drop cached records as the store tells of revocations by other processes (call
        on the event loop; :meth:`close` stops it). Without a cache there is nothing to drop."""
        if self._unwatch is None and self._cache_s > 0:
            self._unwatch = self._store.subscribe_revocations(self._revoked_elsewhere)

    def close(self) -> None:
        """Stop watching the store's revocations."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _revoked_elsewhere(self, key_id: str | None) -> None:
        if key_id is None:
            self.forget_all()
        else:
            self.forget(key_id)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer <key>`` (AuthError says what is wrong)."""
        if not authorization:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("malformed Authorization header: expected 'Bearer <key>'")
        key_id = parse_key_id(token)
        if key_id is None:
            raise AuthError("invalid API key")
        record = await self._lookup(key_id)
        if record is None or not hmac.compare_digest(record.secret_hash, hash_key(token)):
            raise AuthError("invalid API key")
        if not record.active or record.id in self._revoked:
            raise AuthError("this API key has been revoked")
        return Principal(record.account_id, record.account_name or "", record.id, record.routing)

    async def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id`` in the store and refuse it in this process from now on.

        True if an active key was revoked, False if there is none by that id (or it was already
        revoked). Other processes refuse it when their store tells them (see the class).
        """
        revoked = await self._store.revoke_api_key(key_id)
        if revoked:
            self._revoked.add(key_id)
        self.forget(key_id)
        return revoked

    def forget(self, key_id: str) -> None:
        """Drop a cached record, so the next request with that key reads the store."""
        self._generation += 1
        self._cache.pop(key_id, None)

    def forget_all(self) -> None:
        """Drop every cached record (revocations may have been missed)."""
        self._generation += 1
        self._cache.clear()

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        now = self._clock.now()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        generation = self._generation
        record = await self._store.get_api_key(key_id)
        if self._cache_s > 0 and generation == self._generation:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key_id] = (now, record)
        return record
