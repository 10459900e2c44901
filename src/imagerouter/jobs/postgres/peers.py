"""Peer messages on PostgreSQL (:class:`~imagerouter.jobs.store.PeerMessages`): ``NOTIFY`` on
the schema's peers channel, heard by every replica's event feed ``LISTEN`` connection."""

from __future__ import annotations

from collections.abc import Callable

from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.store import PeerListener, check_peer_message

__all__ = ["PostgresPeers"]


class PostgresPeers(PostgresBase):
    """Tells every process listening on this schema, at once; nothing is kept."""

    async def tell_peers(self, message: str) -> bool:
        """``NOTIFY`` the peers channel with ``message``; True once PostgreSQL took it."""
        check_peer_message(message)
        await self._pool.execute("SELECT pg_notify($1, $2)", self.peers_channel, message)
        return True

    def subscribe_peers(self, listener: PeerListener) -> Callable[[], None]:
        """Call ``listener`` with each message on this schema's peers channel, by any process
        (this one's included), as its notification arrives."""
        self._feed.peer_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._feed.peer_listeners:
                self._feed.peer_listeners.remove(listener)

        return unsubscribe
