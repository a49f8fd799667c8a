"""WSGICycle: one request, fed by the same HTTP events as the ASGI cycle, its app on a pool thread.

Theory of operation
-------------------
A cycle has two sides. The loop side (this module) is what Connection sees (body(), end_of_body(),
disconnect(), run()) and the only code that touches the connection or the http layer: the ring is
SINGLE_ISSUER. The app side (appside.py: the app call, start_response, write, wsgi.input) runs on a
ThreadPool thread and reaches the loop only through `post(fn, arg)`. Each field has one writer:

  loop thread   more_body chunks received paused released held drain_hooked head_sent status
                headers body_bytes complete disconnected file_done
  pool thread   consumed continued posted head_posted waiter status_code out_headers left
  both          resume_asked: the thread sets it when it posts resume(), which clears it

- Response: nothing goes out before the first non-empty body block (or the end); the head travels
  with it. A list (the usual Django/Flask response) is ONE post: head + body + end, written as one
  send. Streamed blocks are posted as they come; the thread may run WINDOW bytes ahead of what the
  loop has released, and the loop releases bytes only while the connection is under its high-water
  mark, so a slow client blocks the app's thread instead of filling the server's memory.
- Request body: chunks queue here; past BODY_HIGH_WATER unread bytes the receive pauses. wsgi.input
  asks for 100 Continue the first time it has to wait, and for the receive to resume once at most
  half of that is left.
- Waiting: the thread publishes `waiter` (its own Event), re-checks its condition, then sleeps; the
  loop changes state first and reads `waiter` second, so no wakeup is lost (spurious ones are fine).
- Every job ends with exactly one final action, after the iterable's close() was called (on every
  path, errors and disconnects included); it resolves the future run() awaits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any, Callable

from ringserve.asgi import BODY_HIGH_WATER

from .appside import END, AppSide

logger = logging.getLogger("ringserve.error")

JOIN_LIMIT = 64 * 1024  # below this a head and its body are joined into one send

__all__ = ["BODY_HIGH_WATER", "END", "WSGICycle"]


class WSGICycle(AppSide):
    """One request and its response (see the module docstring for who writes what)."""

    submit: Callable[[Callable[[], None]], None]  # these five are set by WSGIApp.bind() on a subclass
    post: Callable[[Callable[[Any], None], Any], None]
    wsgi: Any
    base: dict
    root: str

    __slots__ = (
        "conn", "http", "request", "shared", "scope", "task", "started_at", "status", "headers",
        "body_bytes", "head_sent", "more_body", "complete", "disconnected", "chunks", "received",
        "paused", "released", "held", "drain_hooked", "file_done", "consumed", "resume_asked",
        "continued", "posted", "head_posted", "waiter", "status_code", "out_headers", "left",
    )

    def __init__(self, conn: Any, request: Any, shared: Any) -> None:
        self.conn = conn
        self.http = conn.http
        self.request = request
        self.shared = shared
        self.scope = {"client": conn.client}  # what the access log reads
        self.task = None  # never a Task: see begin()
        self.started_at = 0.0
        self.status = self.body_bytes = 0
        self.headers: list = []
        self.head_sent = self.complete = self.disconnected = self.paused = False
        self.drain_hooked = self.file_done = False
        self.more_body = True
        self.chunks: deque = deque()
        self.received = self.released = self.held = self.consumed = self.posted = 0
        self.resume_asked = self.continued = self.head_posted = False
        self.waiter: threading.Event | None = None
        self.status_code = 0
        self.out_headers: list | None = None
        self.left: int | None = None

    # -- fed by the connection ---------------------------------------------------------------

    def body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if not self.paused and self.received - self.consumed > BODY_HIGH_WATER:
            self.paused = True
            self.conn.pause_reading()
        self.wake()

    def end_of_body(self) -> None:
        self.more_body = False
        self.wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            waiter.set()

    on_thread = True  # Connection.run_cycle calls begin() instead of spawning a task

    def begin(self, start: float) -> None:
        """Hand the request to a pool thread. The loop side needs no asyncio Task: everything it
        does is a reaction to the thread's posted actions, and finish() ends the cycle (a Task
        here cost a Future, a suspended coroutine and a wake-up Handle per request on the loop
        thread, which is the one that holds the GIL longest)."""
        self.started_at = start
        self.conn.server.threaded.add(self)
        self.submit(self.call)

    def live(self) -> bool:
        """May this cycle still write to its connection?"""
        return not self.disconnected and self.conn.cycle is self

    # -- actions posted by the app side ---------------------------------------------------------

    def out(self, item: tuple) -> None:
        """(head or None, body block, END or 0): frame and write; END completes the response."""
        head, block, flags = item
        if not self.live():
            return self.release(len(block), flags)
        http = self.http
        try:
            out = self.start(head) if head is not None else b""
            data = http.response_data(block) if block else b""
            tail = http.response_end() if flags else b""
        except Exception as exc:  # LocalProtocolError: an invalid head
            return self.bad_response(exc, flags)
        self.body_bytes += len(block)
        conn = self.conn
        if len(data) < JOIN_LIMIT:
            conn.write(out + data + tail)
        else:
            if out:
                conn.write(out)
            conn.write(data)
            if tail:
                conn.write(tail)
        if flags:
            self.completed()
            self.finish(None)
        elif not conn.write_blocked:
            self.release(len(block), 0)
        else:
            self.held += len(block)
            if not self.drain_hooked:
                self.drain_hooked = True
                asyncio.ensure_future(conn.drain()).add_done_callback(self.drained)

    def start(self, head: tuple) -> bytes:
        self.status, self.headers = head
        out = self.http.response_head(self.status, self.headers, self.shared.default_headers)
        self.head_sent = True
        return out

    def completed(self) -> None:
        """The response is out: the connection moves on (reading again if this cycle paused it)."""
        self.complete = True
        if self.paused and self.http.keep_alive:
            self.paused = False
            self.conn.resume_reading()
        self.conn.response_done(self)

    def release(self, n: int, flags: int) -> None:
        self.released += n
        self.wake()
        if flags:
            self.finish(None)

    def drained(self, future: Any) -> None:
        self.drain_hooked = False
        held, self.held = self.held, 0
        self.release(held, 0)

    def bad_response(self, exc: Exception, flags: int) -> None:
        logger.error("Invalid response from the WSGI application: %s", exc)
        self.fail(None)
        if flags:
            self.finish(None)

    def fail(self, arg: Any) -> None:
        """The app failed (or its response was invalid): 500 if nothing was sent, else close."""
        if self.live():
            if self.head_sent:
                self.conn.abort()
            else:
                self.status = 500
                self.conn.error(500)
        self.disconnect()

    def finish(self, arg: Any) -> None:
        """The app side is done with this request (close() was called): the cycle ends (once:
        begin() put it in server.threaded, threaded_done() takes it out)."""
        server = self.conn.server
        if self in server.threaded:
            server.threaded_done(self)

    def fail_and_finish(self, arg: Any) -> None:
        self.fail(None)
        self.finish(None)

    def send_continue(self, arg: Any) -> None:
        if self.live():
            data = self.http.continue_response()
            if data:
                self.conn.write(data)

    def resume(self, arg: Any) -> None:
        self.resume_asked = False
        self.paused = False
        if self.live():
            self.conn.resume_reading()

    def send_file(self, item: tuple) -> None:
        """(head or None, fd, offset, count): the whole rest of the response, by splice."""
        head, fd, offset, count = item
        if not self.live():
            return self.file_sent(None, b"")
        try:
            out = self.start(head) if head is not None else b""
            prefix, tail, count = self.http.response_file(count)
        except Exception as exc:  # LocalProtocolError: an invalid head
            self.bad_response(exc, 0)
            return self.file_sent(None, b"")
        self.conn.write(out + prefix)
        self.body_bytes += count
        sending = asyncio.ensure_future(self.conn.sendfile(fd, offset, count))  # ring: a future; asyncio: a coroutine
        sending.add_done_callback(lambda future: self.file_sent(future, tail))

    def file_sent(self, future: Any, tail: bytes) -> None:
        if future is not None and (future.cancelled() or future.exception() is not None):
            logger.warning("Sending a file failed: %s", "cancelled" if future.cancelled() else future.exception())
            if self.live():
                self.conn.abort()  # the body is cut short: the client must not wait for the rest
        elif future is not None and self.live():
            self.conn.write(tail + self.http.response_end())
            self.completed()
        self.file_done = True
        self.wake()
