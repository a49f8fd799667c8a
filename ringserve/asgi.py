"""ASGI 3: one HTTP request cycle, fed by the sans-IO HTTP events, and lifespan.

The cycle knows nothing of io_uring: it talks to its connection through
`conn.write()`, `conn.drain()`, `conn.sendfile()`, `conn.pause_reading()`,
`conn.resume_reading()` and `conn.response_done()` (docs/interfaces.md), so the
same cycle serves whatever transport feeds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any
from urllib.parse import unquote

from ringserve.http import LocalProtocolError

logger = logging.getLogger("ringserve.error")

ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}
BODY_HIGH_WATER = 256 * 1024
GATHER_MIN = 32 * 1024  # bodies this big go out by sendmsg beside their head, not copied into it  # queued request body before the ring stops reading
EXTENSIONS = {"http.response.pathsend": {}}


class ClientDisconnected(OSError):
    """ASGI 2.4: send() on a connection the client has closed raises an OSError subclass."""


class ServerState:
    """What every cycle of one server shares (built once, never per request)."""

    __slots__ = ("root_path", "state", "default_headers", "proxy", "app", "extensions")

    def __init__(self, app: Any, root_path: str, proxy: "ProxyHeaders | None") -> None:
        self.app = app
        self.root_path = root_path
        self.state: dict = {}
        self.default_headers = b""
        self.proxy = proxy
        self.extensions = EXTENSIONS


class ProxyHeaders:
    """X-Forwarded-For / X-Forwarded-Proto from trusted peers (uvicorn's rules)."""

    def __init__(self, allow: str) -> None:
        hosts = [h.strip() for h in allow.split(",") if h.strip()]
        self.always = "*" in hosts
        self.trusted = frozenset(hosts)

    def trusts(self, host: str | None) -> bool:
        return self.always or host in self.trusted

    def apply(self, scope: dict) -> None:
        client = scope["client"]
        if client is None and not self.always:
            return
        if client is not None and not self.trusts(client[0]):
            return
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
                if proto in ("http", "https", "ws", "wss"):
                    scope["scheme"] = proto
            elif name == b"x-forwarded-for":
                hosts = [h.strip() for h in value.decode("latin-1").split(",")]
                host = next((h for h in reversed(hosts) if not self.trusts(h)), hosts[0])
                if host:
                    scope["client"] = (host, 0)


def build_scope(conn: Any, request: Any, shared: ServerState) -> dict:
    raw_path = request.path
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    root = shared.root_path
    scope = {
        "type": "http",
        "asgi": ASGI_INFO,
        "http_version": request.http_version,
        "server": conn.sockname,
        "client": conn.client,
        "scheme": conn.scheme,
        "method": request.method.decode("ascii"),
        "root_path": root,
        "path": root + path,
        "raw_path": raw_path,
        "query_string": request.query,
        "headers": request.headers,
        "state": shared.state.copy(),
        "extensions": conn.extensions,
    }
    if shared.proxy is not None:
        shared.proxy.apply(scope)
    return scope


class HTTPCycle:
    """One request and its response; the app sees `receive` and `send`."""

    __slots__ = (
        "conn", "http", "scope", "request", "chunks", "queued", "more_body",
        "waiter", "disconnected", "started", "complete", "status", "headers",
        "task", "body_bytes", "head_sent", "body_sent",
    )

    on_thread = False  # run(app, start) is the request's task (WSGICycle: begin() instead)

    def __init__(self, conn: Any, request: Any, shared: ServerState) -> None:
        self.conn = conn
        self.http = conn.http
        self.request = request
        self.scope = build_scope(conn, request, shared)
        self.chunks: list[bytes] = []
        self.queued = 0
        self.more_body = True
        self.waiter: asyncio.Future | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.status = 0
        self.headers: list = []
        self.body_bytes = 0
        self.head_sent = False
        self.body_sent = False
        self.task: asyncio.Task | None = None

    # -- fed by the connection ---------------------------------------------------

    def body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.queued += len(data)
        if self.queued > BODY_HIGH_WATER:
            self.conn.pause_reading()
        self._wake()

    def end_of_body(self) -> None:
        self.more_body = False
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the app's side ------------------------------------------------------------

    async def receive(self) -> dict:
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        if self.body_sent:
            # The whole body was delivered: the next message is the disconnect.
            while not (self.disconnected or self.complete):
                self.waiter = self.conn.loop.create_future()
                await self.waiter
            return {"type": "http.disconnect"}
        if not self.chunks and self.more_body:
            if self.request.expect_continue:
                cont = self.http.continue_response()
                if cont:
                    self.conn.write(cont)
            self.conn.resume_reading()
            while not self.chunks and self.more_body and not self.disconnected:
                self.waiter = self.conn.loop.create_future()
                await self.waiter
            if self.disconnected:
                return {"type": "http.disconnect"}
        chunks = self.chunks
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        self.chunks = []
        if self.queued > BODY_HIGH_WATER:
            self.conn.resume_reading()
        self.queued = 0
        more = self.more_body
        self.body_sent = not more
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.started = True
            self.status = message["status"]
            self.headers = message.get("headers", [])
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind == "http.response.body":
            # Written at once; a coroutine (drain) only when the transport's buffer is full
            if self._send_body(message.get("body", b""), message.get("more_body", False)):
                await self.conn.drain()
        elif kind == "http.response.pathsend":
            await self._send_path(message["path"])
        else:
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")

    def _send_body(self, body: bytes, more: bool) -> bool:
        """Frame and write a body message; True when the caller should wait for drain()."""
        if self.disconnected:
            if not more:
                self.complete = True
            return False
        if type(body) is not bytes:
            body = bytes(body)
        http = self.http
        head = b"" if self.head_sent else self.start_head()
        self.body_bytes += len(body)
        if len(body) >= GATHER_MIN:
            # Big body: head, framing and body go out in one gathered send, never joined.
            prefix, suffix, count = http.response_file(len(body))
            if count != len(body) and count:
                raise LocalProtocolError("more response body than its Content-Length")
            tail = suffix + (http.response_end() if not more else b"")
            self.conn.write_parts([head + prefix, body, tail] if count else [head + prefix + tail])
        else:
            data = head + http.response_data(body) if body else head
            if not more:
                data += http.response_end()
            if data:
                self.conn.write(data)
        if not more:
            self.complete = True
            self.conn.response_done(self)
            if self.waiter is not None:
                self._wake()
            return False
        return self.conn.write_blocked

    def start_head(self) -> bytes:
        """Serialise the response head (once)."""
        self.head_sent = True
        try:
            return self.http.response_head(self.status, self.headers, self.conn.shared.default_headers)
        except LocalProtocolError:
            self.started = False  # lets run() answer 500 instead
            raise

    async def _send_path(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            head = b"" if self.head_sent else self.start_head()
            prefix, suffix, count = self.http.response_file(size)
            if not self.disconnected:
                self.conn.write(head + prefix)
                await self.conn.sendfile(fd, 0, count)
                self.body_bytes += count
            self.complete = True
            self.conn.write(suffix + self.http.response_end())
            self.conn.response_done(self)
        finally:
            os.close(fd)

    async def run(self, app: Any, start: float) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.started:
                logger.error("ASGI callable returned without starting response.")
                self.status = 500
                self.conn.error(500)
            elif not self.complete:
                if not self.disconnected:  # an app that stops on http.disconnect is right to
                    logger.error("ASGI callable returned without completing response.")
                self.conn.abort()
        finally:
            self.conn.server.cycle_done(self, start)

    def _failed(self, exc: BaseException) -> None:
        if self.disconnected and isinstance(exc, (asyncio.CancelledError, OSError)):
            logger.debug("ASGI application stopped after the client left: %r", exc)
            return
        logger.error("Exception in ASGI application", exc_info=exc)
        if self.head_sent:
            self.conn.abort()
        else:
            self.status = 500
            self.conn.error(500)


class Lifespan:
    """The lifespan protocol: startup/shutdown messages and the shared state."""

    def __init__(self, app: Any, mode: str, state: dict) -> None:
        self.app = app
        self.mode = mode  # auto | on | off
        self.state = state
        self.queue: asyncio.Queue = asyncio.Queue()
        self.started = asyncio.Event()
        self.shut = asyncio.Event()
        self.failed = False
        self.unsupported = False
        self.error = ""
        self.task: asyncio.Task | None = None

    async def startup(self) -> bool:
        """Run startup; False means the server must not start."""
        if self.mode == "off":
            return True
        logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failed or (self.error and self.mode == "on"):
            logger.error("Application startup failed. Exiting.")
            return False
        if not self.unsupported:
            logger.info("Application startup complete.")
        return True

    async def shutdown(self) -> None:
        if self.mode == "off" or self.unsupported or self.task is None or self.task.done():
            return
        logger.info("Waiting for application shutdown.")
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.shut.wait()
        if self.failed:
            logger.error("Application shutdown failed.")
        else:
            logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_INFO, "state": self.state}
        try:
            await self.app(scope, self.queue.get, self._send)
        except BaseException as exc:
            self.error = str(exc)
            if self.started.is_set() or self.mode == "on":
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                self.failed = self.failed or self.mode == "on"
            else:
                self.unsupported = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            if not isinstance(exc, Exception):
                raise
        finally:
            self.started.set()
            self.shut.set()

    async def _send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failed = True
            self.started.set()
            if message.get("message"):
                logger.error(message["message"])
        elif kind == "lifespan.shutdown.complete":
            self.shut.set()
        elif kind == "lifespan.shutdown.failed":
            self.failed = True
            self.shut.set()
            if message.get("message"):
                logger.error(message["message"])
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message '{kind}'.")
