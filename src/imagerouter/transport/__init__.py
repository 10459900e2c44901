"""Outbound HTTP for provider calls: a lean keep-alive HTTP/1.1 connection pool."""

from imagerouter.transport.connection import HttpResponse, ProtocolError, ServerDisconnected
from imagerouter.transport.pool import HttpPool

__all__ = ["HttpPool", "HttpResponse", "ProtocolError", "ServerDisconnected"]
