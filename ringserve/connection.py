"""One client connection, whatever carries its bytes: HTTP events in, request cycles out.

Theory of operation
-------------------
`Connection` is the transport-agnostic half: bytes go to the sans-IO HTTPConnection,
its events start request cycles (ASGI or WSGI) and feed them; when a cycle's
response is done the connection starts the next pipelined request or closes.
Its deadline is the keep-alive idle limit between requests and the request-head
limit while a head arrives; the server's sweep enforces it.

Switching protocols: a cycle that answers an upgrade (ws.WSCycle) calls `switch_to(handler)`;
from then on received bytes, the peer's EOF and the deadline go to `handler.data_received(data)`,
`handler.eof()` and `handler.timed_out()` instead of the HTTP layer (the handler gets the bytes
that came in behind the upgrade request first). The transports are not involved.

A transport subclass (uring.RingConnection, aio.StreamConnection) provides
`write`, `write_blocked`, `drain`, `sendfile`, `pause_reading`, `resume_reading`,
`close` (after queued output) and `abort` (at once, calling `_closed_now`).
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from ringserve.http import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    HTTPConnection,
    NEED_DATA,
    PAUSED,
    ProtocolError,
    Request,
)

HIGH_WATER = 64 * 1024
FILE_CHUNK = 256 * 1024
MAX_PIPELINED = 16
LINGER_S = 2.0
monotonic = time.monotonic


class Connection:
    __slots__ = (
        "server", "loop", "shared", "key", "http", "cycle", "client", "sockname", "scheme",
        "closed", "close_after", "linger", "lingering", "deadline", "head_timing", "paused_pipeline",
        "in_events", "upgraded", "tls", "extensions",
    )

    def __init__(self, server: Any, key: int, client: Any, sockname: Any) -> None:
        self.server = server
        self.loop = server.loop
        self.shared = server.shared
        self.key = key
        self.http = HTTPConnection(server.limits)
        self.cycle: Any = None
        self.client = client
        self.sockname = sockname
        self.scheme = "http"
        self.closed = False
        self.close_after = False
        self.linger = False
        self.lingering = False
        self.deadline = monotonic() + server.head_timeout
        self.head_timing = False
        self.paused_pipeline = False
        self.in_events = False
        self.upgraded: Any = None  # the protocol handler after switch_to()
        self.tls: Any = None  # tls.ConnectionTLS once a TLS handshake is done
        self.extensions = server.shared.extensions  # the scope's, plus "tls" over TLS

    # -- transport (subclasses) -------------------------------------------------

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def write_parts(self, parts: list[bytes]) -> None:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    # -- receiving ---------------------------------------------------------------

    def data_received(self, data: Any) -> None:
        if self.lingering:
            return
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        self.http.receive_data(data)
        self.handle_events()

    def handle_events(self) -> None:
        self.in_events = True
        try:
            self._handle_events()
        finally:
            self.in_events = False

    def _handle_events(self) -> None:
        http = self.http
        while not self.closed:
            cycle = None
            while True:  # pull what has arrived: a head, and as much of its body as is here
                try:
                    event = http.next_event()
                except ProtocolError as exc:
                    self.protocol_error(exc)
                    return
                kind = type(event)
                if kind is Data:
                    if self.cycle is not None:
                        self.cycle.body(event.data)
                elif kind is Request:
                    cycle = self.new_cycle(event)
                elif kind is EndOfMessage:
                    if self.cycle is not None:
                        self.cycle.end_of_body()
                elif event is NEED_DATA or event is PAUSED:
                    break
                elif kind is ConnectionClosed:
                    self.peer_closed()
                    return
                if self.closed:
                    return
            if cycle is None:
                break
            self.run_cycle(cycle)  # may finish at once (eager) and let the next request through
        if self.cycle is None and not self.head_timing and http.in_head:
            self.head_timing = True
            self.deadline = monotonic() + self.server.head_timeout
        if http.buffered_requests > MAX_PIPELINED and not self.paused_pipeline:
            self.paused_pipeline = True
            self.pause_reading()

    def new_cycle(self, request: Request) -> Any:
        server = self.server
        self.deadline = 0.0
        self.head_timing = False
        if server.limit_concurrency and server.active >= server.limit_concurrency:
            self.error(503)
            return None
        cycle_class = server.cycle_class
        if request.upgrade is not None and request.upgrade.lower() == b"websocket":
            cycle_class = server.ws_cycle_class
            if cycle_class is None:  # --ws none, or a WSGI app: no websockets here
                self.error(400)
                return None
        cycle = cycle_class(self, request, self.shared)
        self.cycle = cycle
        if server.draining:
            self.http.disable_keep_alive()
        return cycle

    def run_cycle(self, cycle: Any) -> None:
        server = self.server
        server.active += 1
        start = monotonic() if server.access_log else 0.0
        if cycle.on_thread:  # WSGI: the app runs on a pool thread, the cycle needs no task
            cycle.begin(start)
            return
        task = cycle.task = server.spawn(cycle.run(server.app, start))
        if not task.done():
            server.tasks.add(task)

    def protocol_error(self, exc: ProtocolError) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
            if cycle.head_sent:
                self.abort()
                return
        self.error(exc.status)

    def peer_closed(self) -> None:
        """EOF or a reset from the client: nothing more can be said to it."""
        if self.upgraded is not None:
            self.upgraded.eof()
            return
        self.abort()

    def switch_to(self, handler: Any) -> None:
        """The connection switched protocols (101): bytes, EOF and the deadline go to `handler`."""
        self.upgraded = handler
        self.deadline = 0.0
        data = self.http.trailing_data
        if data:
            handler.data_received(data)

    # -- responding ---------------------------------------------------------------

    def response_done(self, cycle: Any) -> None:
        """The app sent its last body bytes: next request, or close."""
        if self.cycle is not cycle:
            return
        self.cycle = None
        if self.closed:
            return
        http = self.http
        if not http.keep_alive or cycle.more_body:
            # Unread request bytes would turn a plain close into a reset that can destroy the
            # response in flight: half-close and discard them instead.
            self.linger = self.linger or cycle.more_body
            self.close()
            return
        http.start_next_cycle()
        self.resume_reading()  # the app may have paused it by not reading a big body
        # Draining: the client was promised keep-alive; a request already on its way gets 1 s
        # and an answer with connection: close, instead of a closed socket.
        self.deadline = monotonic() + (1.0 if self.server.draining else self.server.keepalive_timeout)
        if self.paused_pipeline and http.buffered_requests <= MAX_PIPELINED // 2:
            self.paused_pipeline = False
            self.resume_reading()
        if not self.in_events:  # else the handle_events loop below us goes on with the next request
            self.handle_events()

    def error(self, status: int) -> None:
        """Answer with a bare error response and close (lingering, so it arrives)."""
        if self.closed or self.close_after:
            return
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.disconnect()
        self.write(self.http.error_response(status))
        self.linger = True
        self.close()

    # -- closing -----------------------------------------------------------------

    def _closed_now(self) -> None:
        """Bookkeeping shared by every transport's abort()."""
        self.closed = True
        self.server.forget(self)
        cycle, self.cycle = self.cycle, None
        if cycle is not None:
            cycle.disconnect()

    def timed_out(self) -> None:
        """The sweep found this connection past its deadline."""
        self.deadline = 0.0
        if self.upgraded is not None:
            self.upgraded.timed_out()
        elif self.lingering or self.cycle is not None:
            self.abort()
        elif self.head_timing and self.http.in_head:
            self.error(408)
        else:
            self.close_idle()

    def close_idle(self) -> None:
        """Past the keep-alive (or handshake, or drain) deadline with nothing in flight. TLS
        transports override it to end with close_notify."""
        self.abort()

    async def copy_file(self, fd: int, off: int, count: int) -> None:
        """sendfile for transports that cannot splice (asyncio's, userspace TLS): read and write
        in 256 KiB pieces with backpressure."""
        end = off + count
        while off < end and not self.closed:
            data = os.pread(fd, min(FILE_CHUNK, end - off), off)
            if not data:
                raise OSError(errno.EIO, "sendfile: the file is shorter than announced")
            off += len(data)
            self.write(data)
            if self.write_blocked:
                await self.drain()


def done_future(loop: Any) -> Any:
    future = loop.create_future()
    future.set_result(None)
    return future
