"""ASGI WebSockets on the same connections: one WSCycle per upgraded connection, framed by wsproto.

Theory of operation
-------------------
A WebSocket starts as an HTTP/1.1 request with `Upgrade: websocket`. For an ASGI app with --ws on,
Connection.new_cycle() makes a WSCycle instead of an HTTPCycle. run() checks the handshake (GET,
Sec-WebSocket-Key, Sec-WebSocket-Version 13: else 400, or 426 for another version, before the app
sees it), then calls `conn.switch_to(self)`: from there on the connection's bytes, EOF and deadline
come here (data_received, eof, timed_out) instead of to the HTTP parser, starting with the bytes
that arrived behind the request head.

The app answers `websocket.connect` with
  - websocket.accept: the 101 head goes out through the HTTP layer (response_head), then a
    wsproto.connection.Connection owns the bytes: framing, masking, UTF-8 checks, fragments,
    control frames, close codes and permessage-deflate (wsproto.extensions) are all wsproto's;
  - websocket.close: 403;
  - websocket.http.response.start/body (the denial extension): any HTTP response.
Bytes that arrive before that answer wait here; past EARLY_MAX the receive pauses.

States:  CONNECTING -> OPEN -> CLOSING (our Close is out, the peer's is awaited) -> CLOSED
         CONNECTING -> RESPONDING (a denial response) -> CLOSED
`gone` is the websocket.disconnect message, set once (the first cause wins); receive() returns it
after the queued messages, and every time after that.

Backpressure. Out: send() writes its frame and waits on conn.drain() while the connection is past
its high-water mark, so a client that does not read parks the app, not memory. In: whole messages
queue here; past QUEUE_MAX messages or QUEUE_BYTES the receive pauses until the app catches up. A
message past --ws-max-size closes with 1009 as soon as the bytes so far exceed it (wsproto hands
over frames piece by piece); with permessage-deflate the bytes go to the inflater FEED_STEP at a
time, so one inflate call can't produce more than ~4 MiB (deflate expands at most ~1032:1).

Timers: none of our own. The connection's one `deadline`, swept every 250 ms by the server, is the
next keepalive ping, the pong's deadline, or the end of the close handshake (CLOSE_TIMEOUT_S).

Shutdown: Server.drain() calls shutdown(): an open websocket is closed with 1012 (service restart);
one whose app accepts while the server drains is closed with 1012 right after its 101.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import zlib
from collections import deque
from typing import Any

from ringserve.asgi import build_scope
from ringserve.connection import monotonic

try:
    from wsproto.connection import Connection as WSConnection
    from wsproto.connection import ConnectionState, ConnectionType
    from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
    from wsproto.extensions import PerMessageDeflate
    from wsproto.frame_protocol import Opcode
    from wsproto.handshake import server_extensions_handshake
    from wsproto.utilities import LocalProtocolError as WSLocalError
    from wsproto.utilities import generate_accept_token
except ImportError:  # wsproto is a dependency; without it --ws auto turns websockets off
    WSConnection = None  # type: ignore[misc, assignment]

logger = logging.getLogger("ringserve.error")

CONNECTING, OPEN, CLOSING, RESPONDING, CLOSED = range(5)
EARLY_MAX = 64 * 1024  # bytes held before the app answers the handshake
QUEUE_MAX = 32  # messages the app has not received yet, before the receive pauses
QUEUE_BYTES = 1024 * 1024  # ... or bytes
FEED_STEP = 4096  # inflating connections get their bytes this many at a time
CLOSE_TIMEOUT_S = 10.0  # wait for the peer's Close (or for our last bytes to leave)
DEFLATE_WINDOW_BITS = 12  # 4 KiB windows instead of 32 KiB: see DeflateSmall
DEFLATE_MEM_LEVEL = 5
WS_SCHEMES = {"http": "ws", "https": "wss"}
WS_EXTENSIONS: dict[str, dict] = {"websocket.http.response": {}}
_AFTER_CLOSE = "Unexpected ASGI message '{}', after sending 'websocket.close'."


class ClientDisconnected(OSError):
    """send() on a websocket that is closed (ASGI: a server-specific subclass of OSError)."""


def bind_websockets(config: Any) -> type | None:
    """The WSCycle class this server makes for websocket upgrades, or None when they are off."""
    if config.ws == "none":
        return None
    if WSConnection is None:
        if config.ws == "wsproto":
            from ringserve.config import ConfigError

            raise ConfigError("--ws wsproto needs wsproto: pip install wsproto")
        logger.warning("wsproto is not installed: websockets are off (pip install wsproto).")
        return None
    attrs = {
        "max_size": config.ws_max_size,
        "ping_interval": float(config.ws_ping_interval_s),
        "ping_timeout": float(config.ws_ping_timeout_s),
        "deflate": config.ws_per_message_deflate,
    }
    return type("WSCycle", (WSCycle,), attrs)


def read_handshake(request: Any) -> tuple[int, bytes, list[str], list[str]]:
    """(0 or the status that refuses it, Sec-WebSocket-Key, subprotocols, extension offers)."""
    key = version = None
    protocols: list[str] = []
    offers: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-key":
            key = value
        elif name == b"sec-websocket-version":
            version = value
        elif name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        elif name == b"sec-websocket-extensions":
            offers += [e.strip() for e in value.decode("latin-1").split(",") if e.strip()]
    if version != b"13":
        return (426 if version else 400), b"", protocols, offers
    if request.method != b"GET" or not _valid_key(key):
        return 400, b"", protocols, offers
    return 0, key, protocols, offers  # type: ignore[return-value]


def _valid_key(key: bytes | None) -> bool:
    """RFC 6455 4.2.1: base64 of 16 bytes."""
    try:
        return key is not None and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def negotiate_deflate(offers: list[str]) -> tuple[list, bytes | None]:
    """(extensions for wsproto, Sec-WebSocket-Extensions value) for the client's offers."""
    if not any(o.split(";", 1)[0].strip() == "permessage-deflate" for o in offers):
        return [], None
    # A smaller window for what the client sends only where it lets us choose one.
    bare = any("client_max_window_bits" in o and "client_max_window_bits=" not in o for o in offers)
    ext = DeflateSmall(client_max_window_bits=DEFLATE_WINDOW_BITS if bare else None,
                       server_max_window_bits=DEFLATE_WINDOW_BITS)
    try:
        reply = server_extensions_handshake(offers, [ext])
    except ValueError:  # malformed parameters: no compression
        return [], None
    return ([ext], reply) if reply else ([], None)


if WSConnection is not None:

    class DeflateSmall(PerMessageDeflate):
        """wsproto's permessage-deflate with a smaller compressor: a 4 KiB window and memLevel 5
        hold ~50 KiB of zlib state per connection instead of ~260 KiB (zlib's 15 / 8). Our window
        is ours to choose (the client's inflater takes any window up to the one agreed)."""

        def frame_outbound(self, proto: Any, opcode: Any, rsv: Any, data: bytes, fin: bool) -> Any:
            if self._compressor is None and opcode in (Opcode.TEXT, Opcode.BINARY):
                self._compressor = zlib.compressobj(
                    zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.server_max_window_bits,
                    DEFLATE_MEM_LEVEL)
            return super().frame_outbound(proto, opcode, rsv, data, fin)


def ws_scope(conn: Any, request: Any, shared: Any, subprotocols: list[str]) -> dict:
    scope = build_scope(conn, request, shared)
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = WS_SCHEMES.get(scope["scheme"], scope["scheme"])  # after proxy headers
    scope["subprotocols"] = subprotocols
    scope["extensions"] = WS_EXTENSIONS if conn.tls is None else conn.tls.extensions(WS_EXTENSIONS)
    return scope


def disconnect(code: int, reason: str = "") -> dict:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


class WSCycle:
    """One websocket: Connection's cycle surface, the switched connection's handler, and the app's
    receive/send (see the module docstring)."""

    max_size: int  # these four are set by bind_websockets() on a subclass
    ping_interval: float
    ping_timeout: float
    deflate: bool

    __slots__ = (
        "conn", "http", "loop", "request", "scope", "shared", "task", "status", "headers",
        "body_bytes", "head_sent", "more_body", "complete", "state", "refusal", "key", "offers",
        "ws", "early", "inbox", "queued", "paused", "parts", "size", "gone", "waiter",
        "connected", "app_closed", "ping_payload", "inflating",
    )

    def __init__(self, conn: Any, request: Any, shared: Any) -> None:
        self.conn = conn
        self.http = conn.http
        self.loop = conn.loop
        self.request = request
        self.shared = shared
        self.refusal, self.key, protocols, self.offers = read_handshake(request)
        self.scope = ws_scope(conn, request, shared, protocols)
        self.task: asyncio.Task | None = None
        self.status = self.body_bytes = self.queued = self.size = 0
        self.headers: list = []
        self.head_sent = self.more_body = self.complete = False
        self.state = CONNECTING
        self.ws: Any = None
        self.early: bytearray | None = bytearray()
        self.inbox: deque = deque()  # (message, size)
        self.paused = self.connected = self.app_closed = self.inflating = False
        self.parts: list = []
        self.gone: dict | None = None
        self.waiter: asyncio.Future | None = None
        self.ping_payload: bytes | None = None

    # -- Connection's cycle surface ----------------------------------------------------------

    def body(self, data: bytes) -> None:
        pass  # an upgrade request has no body: what follows its head is the new protocol's

    def end_of_body(self) -> None:
        pass

    def disconnect(self) -> None:
        """The connection is gone."""
        self.state = CLOSED
        self._gone(1006)

    on_thread = False

    async def run(self, app: Any, start: float) -> None:
        try:
            if self.refusal:  # not a valid handshake: 400, or 426 naming the version we speak
                extra = b"sec-websocket-version: 13\r\n" if self.refusal == 426 else b""
                return self._http_error(self.refusal, extra)
            self.conn.switch_to(self)
            try:
                await app(self.scope, self.receive, self.send)
            except BaseException as exc:
                self._ended(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._ended(None)
        finally:
            self.conn.server.cycle_done(self, start)

    def _ended(self, exc: BaseException | None) -> None:
        """The app returned (exc None) or raised: 500 before the handshake, 1000 or 1011 after."""
        state = self.state
        if exc is None:
            if state == CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")
            elif state == RESPONDING:
                logger.error("ASGI callable returned without completing response.")
        elif isinstance(exc, ClientDisconnected) or (
                isinstance(exc, asyncio.CancelledError) and state == CLOSED):
            return
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
        if state == CONNECTING:
            self._http_error(500)
        elif state == OPEN:
            self._close(1000 if exc is None else 1011, "")
        elif state == RESPONDING:
            self.conn.abort()

    # -- the switched connection's handler ------------------------------------------------

    def data_received(self, data: Any) -> None:
        state = self.state
        if state == OPEN or state == CLOSING:
            if self.inflating and len(data) > FEED_STEP:
                for start in range(0, len(data), FEED_STEP):
                    self._feed(data[start:start + FEED_STEP])
            else:
                self._feed(data)
        elif state == CONNECTING and self.early is not None:
            self.early += data
            if len(self.early) > EARLY_MAX and not self.paused:
                self.paused = True
                self.conn.pause_reading()

    def eof(self) -> None:
        """The client closed its side (or reset): whatever we still have queued goes, then close."""
        if self.state != CLOSED:
            self.state = CLOSED
            self._gone(1006)
        if self.conn.close_after:  # we were already closing (lingering): done
            self.conn.abort()
        else:
            self.conn.close()

    def timed_out(self) -> None:
        """The connection's deadline: a ping is due, a pong is late, or the close took too long."""
        if self.state != OPEN:
            self.conn.abort()
        elif self.paused:  # the app is behind, so we don't read (a pong either): not the client's fault
            self.ping_payload = None
            self.conn.deadline = monotonic() + self.ping_interval
        elif self.ping_payload is not None and self.ping_timeout:
            self._fail(1011, "keepalive ping timeout")
        else:
            self.ping_payload = os.urandom(4)
            self._write(self.ws.send(Ping(self.ping_payload)))
            self.conn.deadline = monotonic() + (self.ping_timeout or self.ping_interval)

    def shutdown(self) -> None:
        """The server drains: close with 1012 (service restart)."""
        if self.state == OPEN:
            self._close(1012, "server shutdown")
        # CONNECTING: _accept() sees server.draining; closing states close by themselves

    # -- receiving ---------------------------------------------------------------------------

    def _feed(self, data: Any) -> None:
        ws = self.ws
        try:
            ws.receive_data(data)
        except WSLocalError:  # bytes after the close handshake
            return
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self.state == OPEN:
                    self._part(event)
            elif kind is Ping:
                if self.state == OPEN:
                    self._write(ws.send(event.response()))
            elif kind is Pong:
                if event.payload == self.ping_payload:
                    self.ping_payload = None
                    if self.ping_interval:
                        self.conn.deadline = monotonic() + self.ping_interval
            elif kind is CloseConnection:
                self._peer_close(event)
            if self.state == CLOSED:
                return

    def _part(self, event: Any) -> None:
        data = event.data
        binary = type(event) is BytesMessage
        size = self.size + (len(data) if binary or data.isascii() else len(data.encode()))
        if size > self.max_size:
            self._fail(1009, f"Message exceeds the maximum size ({self.max_size} bytes)")
            return
        if not event.message_finished:
            self.parts.append(data)
            self.size = size
            return
        if self.parts:
            self.parts.append(data)
            data = (b"" if binary else "").join(self.parts)
            self.parts = []
        self.size = 0
        message = {"type": "websocket.receive", "bytes" if binary else "text": data}
        self.inbox.append((message, size))
        self.queued += size
        if not self.paused and (len(self.inbox) > QUEUE_MAX or self.queued > QUEUE_BYTES):
            self.paused = True
            self.conn.pause_reading()
        self._wake()

    def _peer_close(self, event: Any) -> None:
        if self.state == OPEN and self.ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(self.ws.send(event.response()))  # answer the client's Close
            self._finish(event.code, event.reason)
        elif self.state == OPEN:  # wsproto found a protocol error (1002, 1007...): fail
            self._fail(event.code, event.reason)
        else:  # the answer to our Close (or garbage after it)
            self._finish(event.code, event.reason)

    async def receive(self) -> dict:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        inbox = self.inbox
        while not inbox:
            if self.gone is not None:
                return self.gone
            self.waiter = self.loop.create_future()
            await self.waiter
        message, size = inbox.popleft()
        self.queued -= size
        if self.paused and self.state != CONNECTING and (
                len(inbox) <= QUEUE_MAX // 2 and self.queued <= QUEUE_BYTES // 2):
            self.paused = False
            self.conn.resume_reading()
        return message

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _gone(self, code: int, reason: str = "") -> None:
        if self.gone is None:
            self.gone = disconnect(code, reason)
        self._wake()

    # -- sending -----------------------------------------------------------------------------

    async def send(self, message: dict) -> None:
        kind = message["type"]
        state = self.state
        if state == OPEN:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                self._write(self.ws.send(Message(data=data)))  # type: ignore[type-var]
                if self.conn.write_blocked:
                    await self.conn.drain()
            elif kind == "websocket.close":
                self.app_closed = True
                self._close(message.get("code") or 1000, message.get("reason") or "")
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'.")
        elif state == CONNECTING and self.gone is None:
            self._answer(kind, message)
        elif state == RESPONDING:
            await self._deny_body(kind, message)
        elif self.app_closed:
            raise RuntimeError(_AFTER_CLOSE.format(kind))
        else:
            raise ClientDisconnected("the websocket connection is closed")

    def _answer(self, kind: str, message: dict) -> None:
        """The app's answer to the handshake."""
        if kind == "websocket.accept":
            self._accept(message.get("subprotocol"), message.get("headers") or [])
        elif kind == "websocket.close":
            self._http_error(403)
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 200 <= status <= 599:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self.status, self.headers = status, list(message.get("headers") or [])
            self.state = RESPONDING
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start' but got '{kind}'.")

    def _accept(self, subprotocol: str | None, extra: list) -> None:
        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-accept", generate_accept_token(self.key))]
        if subprotocol is not None:
            if subprotocol not in self.scope["subprotocols"]:
                raise RuntimeError(f"Subprotocol {subprotocol!r} was not offered by the client.")
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        extensions, reply = negotiate_deflate(self.offers) if self.deflate else ([], None)
        if reply is not None:
            headers.append((b"sec-websocket-extensions", reply))
        headers += extra
        head = self.http.response_head(101, headers, self.shared.default_headers)
        self.status, self.headers, self.head_sent = 101, headers, True
        self.ws = WSConnection(ConnectionType.SERVER, extensions)
        self.inflating = bool(extensions)
        self.state = OPEN
        conn = self.conn
        conn.write(head)
        if self.ping_interval:
            conn.deadline = monotonic() + self.ping_interval
        early, self.early = self.early, None
        if self.paused:
            self.paused = False
            conn.resume_reading()
        if conn.server.draining:
            self._close(1012, "server shutdown")
        elif early:
            self.data_received(bytes(early))

    async def _deny_body(self, kind: str, message: dict) -> None:
        if kind != "websocket.http.response.body":
            raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
        http = self.http
        body = message.get("body", b"")
        more = message.get("more_body", False)
        out = b""
        if not self.head_sent:
            out = http.response_head(self.status, self.headers, self.shared.default_headers)
            self.head_sent = True
        if body:
            out += http.response_data(bytes(body))
            self.body_bytes += len(body)
        if not more:
            out += http.response_end()
        self.conn.write(out)
        if not more:
            self._http_done()
        elif self.conn.write_blocked:
            await self.conn.drain()

    def _http_done(self) -> None:
        """An HTTP response instead of the websocket is out: the connection closes."""
        self.state = CLOSED
        self.complete = True
        self._gone(1006)
        if self.early or self.http.trailing_data:  # early frames must not turn our close into a reset
            self.conn.linger = True
        self.conn.response_done(self)

    def _http_error(self, status: int, extra: bytes = b"") -> None:
        """A whole plain-text response (403, 500, 400/426) instead of the websocket."""
        self.status = status
        self.conn.write(self.http.error_response(status, self.shared.default_headers + extra))
        self._http_done()

    def _write(self, frame: Any) -> None:
        self.conn.write(bytes(frame))

    # -- closing -----------------------------------------------------------------------------

    def _close(self, code: int, reason: str) -> None:
        """Start the close handshake: our Close out, the peer's awaited (CLOSE_TIMEOUT_S)."""
        self._write(self.ws.send(CloseConnection(code, reason)))
        self.state = CLOSING
        self._gone(code, reason)
        conn = self.conn
        conn.deadline = monotonic() + CLOSE_TIMEOUT_S
        if self.paused:  # the peer's Close must get through
            self.paused = False
            conn.resume_reading()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the websocket (RFC 6455 7.1.7): our Close out, then close without waiting."""
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._write(self.ws.send(CloseConnection(code, reason)))
        self.conn.linger = True  # unread bytes must not turn our Close into a reset
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        """The close handshake is over: the connection closes once our last bytes are out."""
        self.state = CLOSED
        self._gone(code, reason)
        conn = self.conn
        conn.deadline = monotonic() + CLOSE_TIMEOUT_S
        conn.close()
