"""Peer messages on SQLite (:class:`~imagerouter.jobs.store.PeerMessages`): processes sharing
a file have no channel between them, so there is no one to tell. Several replicas share
PostgreSQL (README, "Several replicas")."""

from __future__ import annotations

from collections.abc import Callable

from imagerouter.jobs.store import PeerListener, check_peer_message

__all__ = ["SQLitePeers"]


class SQLitePeers:
    """No peers: a message is sent nowhere and none arrives."""

    async def tell_peers(self, message: str) -> bool:
        """Send nothing; False (no peers on SQLite). ValueError for a message too long, as on
        PostgreSQL."""
        check_peer_message(message)
        return False

    def subscribe_peers(self, listener: PeerListener) -> Callable[[], None]:
        """Nothing will arrive; returns an unsubscribe that does nothing."""
        return lambda: None
