"""Events returned by HTTPConnection.next_event(), and its two sentinels."""

from __future__ import annotations

__all__ = ["NEED_DATA", "PAUSED", "ConnectionClosed", "Data", "EndOfMessage", "Request"]


class Request:
    """A request head. `headers` names are lower-cased, values stripped of OWS, in arrival order."""

    __slots__ = ("method", "target", "path", "query", "headers", "http_version", "keep_alive",
                 "expect_continue", "upgrade")

    def __init__(self, method: bytes, target: bytes, path: bytes, query: bytes,
                 headers: list[tuple[bytes, bytes]], http_version: str, keep_alive: bool,
                 expect_continue: bool, upgrade: bytes | None) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is Request and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Request({fields})"


class Data:
    """A piece of request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is Data and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The request body is complete (trailers, if any, were read and dropped)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is EndOfMessage

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "EndOfMessage()"


class ConnectionClosed:
    """The peer sent EOF; nothing more will arrive."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is ConnectionClosed

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "ConnectionClosed()"


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")  # call receive_data() before asking again
PAUSED = _Sentinel("PAUSED")  # a request is complete: respond, then call start_next_cycle()
