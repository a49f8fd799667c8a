"""One client connection on the ring: bytes in from multishot receives, bytes out
through one send (or one file splice) in flight at a time.

Theory of operation
-------------------
- Receive: a multishot recv is armed at accept.  Each CQE's provided buffer is
  fed to the sans-IO HTTPConnection and recycled at once (httptools copies what
  it keeps).  `pause_reading()` cancels the receive (an app not reading its body,
  too many pipelined requests); `resume_reading()` re-arms it, after the
  cancelled request's final CQE if it is still on its way.
- Send: `write()` queues bytes; exactly one send or splice is in flight per
  socket, because two unlinked sends on one socket can interleave their bytes.
  Queued bytes are joined into the next send.  `drain()` waits while more than
  HIGH_WATER bytes are queued or in flight.
- Close: `close()` waits for queued output, `abort()` does not.  Both end with one
  linked cancel+close pair of SQEs; CQEs that arrive later for this key find no
  connection and are ignored (their buffers still go back to the ring).
- Deadlines: `deadline` is checked by the server's sweep; it is the keep-alive
  idle limit between requests and the request-head limit while a head arrives.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from typing import Any

from ringserve.asgi import HTTPCycle
from ringserve.core.ring import OP_CLOSE, OP_CANCEL, OP_RECV, OP_SEND, OP_SHUTDOWN, OP_SPLICE_IN, OP_SPLICE_OUT
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
MAX_PIPELINED = 16
LINGER_S = 2.0
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20

RECV_OFF, RECV_ARMED, RECV_CANCELING = 0, 1, 2
monotonic = time.monotonic


class FileJob:
    """A file range going out by splice file -> pipe -> socket, chunk by chunk."""

    __slots__ = ("fd", "off", "remaining", "in_pipe", "pending", "future")

    def __init__(self, fd: int, off: int, count: int, future: Any) -> None:
        self.fd = fd
        self.off = off
        self.remaining = count
        self.in_pipe = 0
        self.pending = 0
        self.future = future


class Connection:
    __slots__ = (
        "server", "ring", "loop", "shared", "key", "fd", "http", "cycle", "client",
        "sockname", "scheme", "sending", "outq", "out_bytes", "recv_state", "want_read",
        "closed", "close_after", "linger", "lingering", "deadline", "head_timing",
        "drainer", "pipe", "ud_recv", "ud_send", "paused_pipeline",
    )

    def __init__(self, server: Any, key: int, fd: int, client: Any, sockname: Any) -> None:
        self.server = server
        self.ring = server.ring
        self.loop = server.loop
        self.shared = server.shared
        self.key = key
        self.fd = fd
        self.http = HTTPConnection(server.limits)
        self.cycle: HTTPCycle | None = None
        self.client = client
        self.sockname = sockname
        self.scheme = "http"
        self.sending: Any = None
        self.outq: list = []
        self.out_bytes = 0
        self.recv_state = RECV_OFF
        self.want_read = True
        self.closed = False
        self.close_after = False
        self.linger = False
        self.lingering = False
        self.deadline = monotonic() + server.head_timeout
        self.head_timing = False
        self.drainer: Any = None
        self.pipe: tuple[int, int] | None = None
        self.ud_recv = (key << 8) | OP_RECV
        self.ud_send = (key << 8) | OP_SEND
        self.paused_pipeline = False

    # -- receiving ---------------------------------------------------------------

    def arm_recv(self) -> None:
        self.recv_state = RECV_ARMED
        self.ring.recv(self.fd, self.ud_recv, self.server.multishot_recv)

    def pause_reading(self) -> None:
        self.want_read = False
        if self.recv_state == RECV_ARMED:
            self.recv_state = RECV_CANCELING
            self.ring.cancel(self.ud_recv, (self.key << 8) | OP_CANCEL)

    def resume_reading(self) -> None:
        self.want_read = True
        if self.recv_state == RECV_OFF and not self.closed:
            self.arm_recv()

    def recv_ended(self, res: int) -> None:
        """The receive request finished (no IORING_CQE_F_MORE)."""
        self.recv_state = RECV_OFF
        if self.closed:
            return
        if res == 0 or (res < 0 and res not in (-errno.ECANCELED, -errno.ENOBUFS)):
            self.peer_closed()
        elif self.want_read:
            self.arm_recv()

    def data_received(self, data: memoryview) -> None:
        if self.lingering:
            return
        self.http.receive_data(data)
        self.handle_events()

    def handle_events(self) -> None:
        http = self.http
        while not self.closed:
            try:
                event = http.next_event()
            except ProtocolError as exc:
                self.protocol_error(exc)
                return
            kind = type(event)
            if kind is Data:
                self.cycle.body(event.data)  # type: ignore[union-attr]
            elif kind is Request:
                self.start_request(event)
            elif kind is EndOfMessage:
                self.cycle.end_of_body()  # type: ignore[union-attr]
            elif event is NEED_DATA or event is PAUSED:
                break
            elif kind is ConnectionClosed:
                self.peer_closed()
                return
        if self.cycle is None and not self.head_timing and http.in_head:
            self.head_timing = True
            self.deadline = monotonic() + self.server.head_timeout
        if http.buffered_requests > MAX_PIPELINED and not self.paused_pipeline:
            self.paused_pipeline = True
            self.pause_reading()

    def start_request(self, request: Request) -> None:
        server = self.server
        self.deadline = 0.0
        self.head_timing = False
        if server.limit_concurrency and server.active >= server.limit_concurrency:
            self.error(503)
            return
        cycle = server.cycle_class(self, request, self.shared)
        self.cycle = cycle
        server.active += 1
        cycle.task = self.loop.create_task(server.run_cycle(self, cycle))

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
        self.abort()

    # -- responding ---------------------------------------------------------------

    def response_done(self, cycle: HTTPCycle) -> None:
        """The app sent its last body bytes: next request, or close."""
        if self.cycle is not cycle:
            return
        self.cycle = None
        if self.closed:
            return
        http = self.http
        if not http.keep_alive or cycle.more_body or self.server.draining:
            self.close()
            return
        http.start_next_cycle()
        self.deadline = monotonic() + self.server.keepalive_timeout
        if self.paused_pipeline and http.buffered_requests <= MAX_PIPELINED // 2:
            self.paused_pipeline = False
            self.resume_reading()
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

    @property
    def write_blocked(self) -> bool:
        return self.out_bytes > HIGH_WATER

    def write(self, data: bytes) -> None:
        if self.closed or self.close_after:
            return
        self.out_bytes += len(data)
        if self.sending is None:
            self.sending = data
            self.ring.send(self.fd, data, len(data), self.ud_send)
        else:
            self.outq.append(data)

    def drain(self) -> Any:
        """An awaitable that resolves once output is below the high-water mark."""
        if self.closed or self.out_bytes <= HIGH_WATER:
            return _done_future(self.loop)
        if self.drainer is None:
            self.drainer = self.loop.create_future()
        return self.drainer

    def sendfile(self, fd: int, off: int, count: int) -> Any:
        future = self.loop.create_future()
        if self.closed or count == 0:
            future.set_result(None)
            return future
        job = FileJob(fd, off, count, future)
        if self.sending is None:
            self._start_file(job)
        else:
            self.outq.append(job)
        return future

    def send_done(self, res: int) -> None:
        data = self.sending
        if res < 0 or self.closed:
            self.sending = None
            self.abort()
            return
        if res < len(data):  # MSG_WAITALL makes this rare: continue the rest
            rest = data[res:]
            self.sending = rest
            self.out_bytes -= res
            self.ring.send(self.fd, rest, len(rest), self.ud_send)
            return
        self.out_bytes -= res
        self._next_output()

    def _next_output(self) -> None:
        q = self.outq
        if not q:
            self.sending = None
            if self.drainer is not None and self.out_bytes <= HIGH_WATER:
                self._wake_drainer()
            if self.close_after:
                self._finish_close()
            return
        if type(q[0]) is FileJob:
            self._start_file(q.pop(0))
            return
        n = 1
        while n < len(q) and type(q[n]) is bytes:
            n += 1
        data = q[0] if n == 1 else b"".join(q[:n])
        del q[:n]
        self.sending = data
        self.ring.send(self.fd, data, len(data), self.ud_send)
        if self.drainer is not None and self.out_bytes <= HIGH_WATER:
            self._wake_drainer()

    def _wake_drainer(self) -> None:
        drainer, self.drainer = self.drainer, None
        if not drainer.done():
            drainer.set_result(None)

    # -- files by splice ----------------------------------------------------------

    def _start_file(self, job: FileJob) -> None:
        if self.pipe is None:
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
            self.pipe = (r, w)
        self.sending = job
        self._splice_step(job)

    def _splice_step(self, job: FileJob) -> None:
        r, w = self.pipe  # type: ignore[misc]
        key = self.key << 8
        if job.in_pipe:
            job.pending = 1
            self.ring.splice_out(r, self.fd, job.in_pipe, key | OP_SPLICE_OUT)
        elif job.remaining:
            n = min(job.remaining, PIPE_SIZE)
            job.pending = 2
            self.ring.splice(job.fd, job.off, w, r, self.fd, n, key | OP_SPLICE_IN, key | OP_SPLICE_OUT)
        else:
            if not job.future.done():
                job.future.set_result(None)
            self._next_output()

    def splice_done(self, op: int, res: int) -> None:
        job = self.sending
        if type(job) is not FileJob:
            return
        job.pending -= 1
        if op == OP_SPLICE_IN:
            if res <= 0:
                return self._file_failed(job, res or -errno.EIO)
            job.in_pipe += res
            job.remaining -= res
            job.off += res
        elif res >= 0:
            job.in_pipe -= res
        elif res != -errno.ECANCELED:
            return self._file_failed(job, res)
        if job.pending == 0 and not self.closed:
            self._splice_step(job)

    def _file_failed(self, job: FileJob, res: int) -> None:
        if not job.future.done():
            job.future.set_exception(OSError(-res, "sendfile: " + os.strerror(-res)))
        self.sending = None
        self.abort()

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Close once queued output has gone out."""
        if self.closed:
            return
        self.close_after = True
        if self.sending is None:
            self._finish_close()

    def _finish_close(self) -> None:
        if self.linger and not self.lingering:
            # Half-close and read until EOF (or LINGER_S), so the client sees our
            # error response instead of a reset caused by its unread bytes.
            self.lingering = True
            self.deadline = monotonic() + LINGER_S
            self.ring.shutdown(self.fd, socket.SHUT_WR, (self.key << 8) | OP_SHUTDOWN)
            self.resume_reading()
            return
        self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ring.close_fd(self.fd, (self.key << 8) | OP_CLOSE)
        self.server.forget(self)
        cycle, self.cycle = self.cycle, None
        if cycle is not None:
            cycle.disconnect()
        if self.drainer is not None:
            self._wake_drainer()
        job = self.sending
        for item in [job, *self.outq]:
            if type(item) is FileJob and not item.future.done():
                item.future.set_result(None)
        self.outq.clear()
        if self.pipe is not None:
            os.close(self.pipe[0])
            os.close(self.pipe[1])
            self.pipe = None

    def timed_out(self) -> None:
        """The sweep found this connection past its deadline."""
        self.deadline = 0.0
        if self.lingering or self.cycle is not None:
            self.abort()
        elif self.head_timing and self.http.in_head:
            self.error(408)
        else:
            self.abort()


def _done_future(loop: Any) -> Any:
    future = loop.create_future()
    future.set_result(None)
    return future
