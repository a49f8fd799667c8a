"""Sans-IO HTTP/1.1 over httptools: bytes in -> events out, response -> bytes out.

No sockets, clocks, logging or asyncio here; see connection.py for the theory of operation and
docs/interfaces.md for the contract with the server.
"""

from .connection import HTTPConnection
from .errors import Limits, LocalProtocolError, ProtocolError
from .events import NEED_DATA, PAUSED, ConnectionClosed, Data, EndOfMessage, Request

__all__ = [
    "NEED_DATA", "PAUSED", "ConnectionClosed", "Data", "EndOfMessage", "HTTPConnection", "Limits",
    "LocalProtocolError", "ProtocolError", "Request",
]
