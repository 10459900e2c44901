"""Peer messages (:class:`~imagerouter.jobs.store.PeerMessages`): on PostgreSQL a message told
through one store instance reaches every instance listening on the same schema, the sender's
too; SQLite has no peers to tell. Both refuse a message too long for ``NOTIFY``."""

from __future__ import annotations

import asyncio

import pytest

from imagerouter.jobs.store import PEER_MESSAGE_MAX
from tests.polling import eventually
from tests.store.conftest import StoreFactory


async def test_a_peer_message_reaches_every_instance_on_the_store(
    make_store: StoreFactory,
) -> None:
    """B and the sender A hear A's messages, in order; after unsubscribing, B hears no more."""
    sender, peer = await make_store(), await make_store()
    heard_by_sender: list[str] = []
    heard_by_peer: list[str] = []
    sender.subscribe_peers(heard_by_sender.append)
    unsubscribe = peer.subscribe_peers(heard_by_peer.append)
    sent = await sender.tell_peers('{"kind": "cooldown", "n": 1}')
    if make_store.backend == "sqlite":
        assert sent is False
        await asyncio.sleep(0.2)
        assert heard_by_sender == heard_by_peer == []
        return
    assert sent is True
    await sender.tell_peers("second ☃")
    await eventually(lambda: len(heard_by_peer) == 2, what="B hearing both messages")
    await eventually(lambda: len(heard_by_sender) == 2, what="A hearing its own")
    assert heard_by_peer == heard_by_sender == ['{"kind": "cooldown", "n": 1}', "second ☃"]
    unsubscribe()
    await sender.tell_peers("third")
    await eventually(lambda: len(heard_by_sender) == 3, what="A hearing the third")
    assert heard_by_peer == ['{"kind": "cooldown", "n": 1}', "second ☃"]


async def test_a_peer_message_too_long_is_refused(make_store: StoreFactory) -> None:
    """A message over PEER_MESSAGE_MAX bytes (counted in UTF-8) is a ValueError naming the
    limit, and nothing is sent; one at the limit goes."""
    store = await make_store()
    heard: list[str] = []
    store.subscribe_peers(heard.append)
    with pytest.raises(ValueError, match=str(PEER_MESSAGE_MAX)):
        await store.tell_peers("é" * (PEER_MESSAGE_MAX // 2 + 1))
    at_limit = "x" * PEER_MESSAGE_MAX
    sent = await store.tell_peers(at_limit)
    if make_store.backend == "postgres":
        await eventually(lambda: heard, what="the message at the limit")
        assert heard == [at_limit]
    else:
        assert sent is False
