"""Outbound HTTP for provider calls: a lean keep-alive HTTP/1.1 connection pool."""

from imagerouter.transport.connection import (
    BodyTooLarge,
    HttpResponse,
    ProtocolError,
    ServerDisconnected,
)
from imagerouter.transport.pool import HttpPool

__all__ = ["BodyTooLarge", "HttpPool", "HttpResponse", "ProtocolError", "ServerDisconnected"]
