"""HTTPConnection: one HTTP/1.1 server connection as a sans-IO state machine.

Theory of operation
-------------------
Nothing here does I/O, reads a clock or logs. Bytes go in with receive_data(), events come out of
next_event(); the response side returns bytes for the caller to write. All state changes live in this
module and in _parser.py (the receive side); _response.py holds pure serialisation helpers.

Receive side (_parser.RequestParser). receive_data() parses at once: httptools (llhttp) callbacks only
append events (Request, Data, EndOfMessage) to a queue, so pipelined requests pile up there, in order.
We never hand llhttp more than the rest of the current message: a head is fed up to its CRLFCRLF (in
one call when it arrived whole and is too short to break a limit: the common case), a Content-Length
body up to its length, a chunked body a framing line or one chunk at a time. Hence we always know
where a message ends, can enforce the Limits exactly while bytes arrive (httptools would otherwise
buffer an endless header), and every error is found at its place in the stream, so the outcome never
depends on how the bytes were split. llhttp checks the syntax (strict mode); we check in callbacks
what it lets through: the request-line shape and version, Host, Content-Length/Transfer-Encoding
combinations and codings, CONNECT, limits, trailing OWS. Its phases:

    HEAD -> (BODY | CHUNKED) -> HEAD ...     keep-alive requests
    HEAD ... -> CLOSED                       after a request that won't keep the connection, or EOF
    HEAD -> UPGRADED                         Upgrade: later bytes are kept in `trailing_data`
    any -> FAILED                            a ProtocolError is queued; nothing more is parsed

A ProtocolError is queued like an event, so the requests before it are still served; next_event()
raises it when it gets there, and again on every later call.

Request cycle (this class). next_event() pops the queue: Request starts a cycle, EndOfMessage ends
the request, after which it returns PAUSED until start_next_cycle(), even when more requests are
queued. The response is framed by response_head() and ended by response_end(); start_next_cycle()
then drops what the app left unread of the request body and lets the next request through. It
raises LocalProtocolError if the response isn't complete or the connection can't be kept alive
(keep_alive is False): the caller must close instead. keep_alive is decided when the response ends:
the request and the response must both allow it and the request must have been read to its end.

Response framing:  IDLE --response_head--> SENDING --response_end--> DONE --start_next_cycle--> IDLE
error_response() may replace a response that hasn't started; it always ends the connection.
"""

from __future__ import annotations

from . import _response as rsp
from ._parser import HEAD, RequestParser
from .errors import Limits, LocalProtocolError
from .events import NEED_DATA, PAUSED, ConnectionClosed, Data, EndOfMessage, Request

_IDLE, _SENDING, _DONE = range(3)
_CLOSED = ConnectionClosed()
_NO_BODY_STATUS = frozenset((204, 304))
_STATUS_LINES = rsp._STATUS_LINES


class HTTPConnection:
    """The server side of one HTTP/1.1 connection (see the module docstring)."""

    __slots__ = ("_rx", "_events", "_paused", "_req", "_nreq", "_state", "_framing", "_left",
                 "_keep_alive", "_continued", "_switched")

    def __init__(self, limits: Limits | None = None) -> None:
        self._rx = RequestParser(limits if limits is not None else Limits())
        self._events = self._rx.events
        self._paused = False
        self._req: Request | None = None
        self._nreq = 0  # requests returned by next_event
        self._state = _IDLE
        self._framing = rsp.NO_BODY
        self._left = 0  # Content-Length bytes still to send
        self._keep_alive = True
        self._continued = False  # 100 Continue sent (or no longer useful)
        self._switched = False  # a 101 was sent: the bytes that follow are not HTTP

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data) -> None:
        """Parse bytes (or a memoryview, only read during the call); b"" means the peer sent EOF."""
        self._rx.feed(data)

    def next_event(self):
        """Request | Data | EndOfMessage | ConnectionClosed | NEED_DATA | PAUSED; raises ProtocolError."""
        if self._paused:
            return PAUSED
        events = self._events
        if not events:
            return _CLOSED if self._rx.eof else NEED_DATA
        ev = events.popleft()
        kind = type(ev)
        if kind is Data:
            return self._data(ev)
        if kind is Request:
            self._rx.heads -= 1
            self._req = ev
            self._nreq += 1
            self._keep_alive = ev.keep_alive and ev.upgrade is None
            return ev
        if kind is EndOfMessage:
            self._paused = True
            return ev
        events.appendleft(ev)  # a ProtocolError: the stream is dead from here on
        raise ev.with_traceback(None)

    def _data(self, ev: Data) -> Data:
        rx = self._rx
        events = self._events
        if events and type(events[0]) is Data:  # hand over everything that has arrived at once
            parts = [ev.data]
            while events and type(events[0]) is Data:
                parts.append(events.popleft().data)
            ev = Data(b"".join(parts))
        rx.unread -= len(ev.data)
        return ev

    def start_next_cycle(self) -> None:
        """After a complete response: let the next request through (raises if we must close)."""
        if self._state != _DONE:
            raise LocalProtocolError("start_next_cycle() before the response is complete")
        if not self._keep_alive:
            raise LocalProtocolError("this connection cannot be kept alive; close it")
        if not self._paused:  # the app didn't read the whole body; it is all here: drop it
            events = self._events
            while True:
                ev = events.popleft()
                if type(ev) is EndOfMessage:
                    break
                self._rx.unread -= len(ev.data)
        self._paused = False
        self._req = None
        self._state = _IDLE
        self._framing = rsp.NO_BODY
        self._continued = False

    # -- sending ---------------------------------------------------------------------------------

    def response_head(self, status: int, headers, default_headers: bytes = b"") -> bytes:
        """Serialise the response head and choose the body framing (see docs/interfaces.md)."""
        req = self._req
        if req is None:
            raise LocalProtocolError("no request to respond to")
        if self._state != _IDLE:
            raise LocalProtocolError("the response has already started")
        line = _STATUS_LINES.get(status) if type(status) is int else None
        if line is None:
            line = rsp.status_line(status)  # validates status
        if status < 200 and status != 101:
            self._continued = True
            return rsp.informational_head(line, headers)
        if status == 101 and req.upgrade is None:
            raise LocalProtocolError("101 Switching Protocols for a request that asked no upgrade")
        no_body = req.method == b"HEAD" or status in _NO_BODY_STATUS or status == 101
        head, self._framing, self._left, keep = rsp.build_head(
            line, headers, default_headers, no_body, req.http_version == "1.1",
            self._keep_alive or status == 101)
        self._state = _SENDING
        self._continued = True
        if status == 101:
            self._switched = True
            keep = False
        self._keep_alive = keep
        return head

    def response_data(self, data: bytes) -> bytes:
        """Frame a piece of response body: chunked, counted against Content-Length, or dropped."""
        framing = self._framing
        if self._state != _SENDING:
            raise LocalProtocolError("response_data() outside a response")
        if framing == rsp.CHUNKED:
            return rsp.chunk(data)
        if framing == rsp.LENGTH:
            left = self._left - len(data)
            if left < 0:
                raise LocalProtocolError("more response body than its Content-Length")
            self._left = left
            return data
        return data if framing == rsp.UNTIL_CLOSE else b""

    def response_file(self, size: int) -> tuple[bytes, bytes, int]:
        """Frame a body part the caller sends itself (a file by splice/sendfile): returns
        (prefix, suffix, count) -- write prefix, then `count` bytes of the file, then suffix.
        A Content-Length response sends at most what is left of its length; HEAD sends nothing."""
        framing = self._framing
        if self._state != _SENDING:
            raise LocalProtocolError("response_file() outside a response")
        if framing == rsp.CHUNKED:
            return (b"%x\r\n" % size, b"\r\n", size) if size else (b"", b"", 0)
        if framing == rsp.LENGTH:
            count = min(size, self._left)
            self._left -= count
            return b"", b"", count
        return b"", b"", size if framing == rsp.UNTIL_CLOSE else 0

    def response_end(self) -> bytes:
        """End the response body; decides keep_alive."""
        if self._state != _SENDING:
            raise LocalProtocolError("response_end() outside a response")
        self._state = _DONE
        if self._left or self._rx.completed < self._nreq or self._switched:
            self._keep_alive = False  # body cut short, or the request not read to its end
        return rsp.LAST_CHUNK if self._framing == rsp.CHUNKED else b""

    def error_response(self, status: int, default_headers: bytes = b"") -> bytes:
        """A whole plain-text response that closes the connection (for ProtocolError.status, 408,
        500, 503...). Not allowed once a response has started: then just close."""
        if self._state == _SENDING:
            raise LocalProtocolError("error_response() after the response started; close instead")
        head_only = self._req is not None and self._req.method == b"HEAD"
        out = rsp.error_response(status, default_headers, head_only)
        self._state = _DONE
        self._keep_alive = False
        return out

    def disable_keep_alive(self) -> None:
        """The server is shutting down: the current (or next) response says `connection: close`."""
        self._keep_alive = False

    def continue_response(self) -> bytes:
        """b"HTTP/1.1 100 Continue\\r\\n\\r\\n" the first time it is due, else b""."""
        req = self._req
        if req is None or not req.expect_continue or self._continued or self._state != _IDLE:
            return b""
        self._continued = True
        return rsp.CONTINUE

    # -- state for the server ----------------------------------------------------------------------

    @property
    def keep_alive(self) -> bool:
        """May the connection carry another request? Final once response_end() has returned."""
        return self._keep_alive

    @property
    def buffered_requests(self) -> int:
        """Complete request heads queued that next_event() hasn't returned yet."""
        return self._rx.heads

    @property
    def in_head(self) -> bool:
        """Part of a request head has arrived, not all of it (the server's head deadline runs)."""
        return self._rx.phase == HEAD and self._rx.head_len > 0

    @property
    def unread_body_bytes(self) -> int:
        """Request body bytes parsed and queued, not yet returned by next_event()."""
        return self._rx.unread

    @property
    def response_started(self) -> bool:
        return self._state != _IDLE

    @property
    def response_complete(self) -> bool:
        return self._state == _DONE

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the head of an upgrade request (the new protocol's first bytes)."""
        return self._rx.trailing

    @property
    def their_eof(self) -> bool:
        """The peer has sent EOF (it may still be waiting for our response)."""
        return self._rx.eof
