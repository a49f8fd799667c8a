"""The io_uring transport: connections whose every byte goes through the ring.

Theory of operation
-------------------
- Accept: one multishot accept per listener, re-armed when IORING_CQE_F_MORE
  clears (single-shot where the kernel lacks multishot; retried after 100 ms on
  EMFILE/ENFILE).
- Receive: a multishot recv per connection. Each CQE's provided buffer is fed to
  the HTTP layer as a memoryview and recycled at once (httptools copies what it
  keeps). `pause_reading()` cancels the receive; `resume_reading()` re-arms it,
  after the cancelled request's final CQE if that is still on its way.
- Send: exactly one send or splice in flight per socket, because two unlinked
  sends on one socket can interleave their bytes. Bytes queued meanwhile are
  joined into the next send. `drain()` waits while more than HIGH_WATER bytes
  are queued or in flight.
- Close: `close()` waits for queued output, `abort()` does not; both end with one
  linked cancel+close pair of SQEs. CQEs that arrive later for this key find no
  connection and are ignored (their buffers still go back to the ring).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from typing import Any

from ringserve.connection import HIGH_WATER, LINGER_S, Connection, done_future, monotonic
from ringserve.core.ring import (
    F_BUFFER,
    F_MORE,
    OP_ACCEPT,
    OP_CANCEL,
    OP_CLOSE,
    OP_POLL,
    OP_RECV,
    OP_SEND,
    OP_SPLICE_IN,
    OP_SPLICE_OUT,
    OP_WAKE,
    Ring,
)

logger = logging.getLogger("ringserve.error")

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
BUFFER_SHIFT = 16
RECV_OFF, RECV_ARMED, RECV_CANCELING = 0, 1, 2


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


class Gather:
    """Several buffers in one sendmsg; the iovecs and buffers live until its CQE."""

    __slots__ = ("ffi", "parts", "keep", "msg", "total", "first")

    def __init__(self, ffi: Any, parts: list[Any]) -> None:
        self.ffi = ffi
        self.parts = parts
        self.total = sum(map(len, parts))
        iov = ffi.new("struct iovec[]", len(parts))
        keep = [iov]
        for i, part in enumerate(parts):
            ptr = ffi.from_buffer(part)
            keep.append(ptr)
            iov[i].iov_base = ptr
            iov[i].iov_len = len(part)
        self.msg = ffi.new("struct msghdr *")
        self.msg.msg_iov = iov
        self.msg.msg_iovlen = len(parts)
        self.keep = keep
        self.first = 0  # the first iovec not wholly sent

    def __len__(self) -> int:
        return self.total

    def advance(self, n: int) -> None:
        """A short send took the first n bytes: point the msghdr at the rest, in place (no copy;
        the buffers stay referenced by `keep`)."""
        self.total -= n
        iov = self.keep[0]
        i = self.first
        while n >= iov[i].iov_len and n:
            n -= iov[i].iov_len
            i += 1
        if n:
            iov[i].iov_base = self.ffi.cast("char *", iov[i].iov_base) + n
            iov[i].iov_len -= n
        self.first = i
        self.msg.msg_iov = iov + i
        self.msg.msg_iovlen = len(self.parts) - i


class RingConnection(Connection):
    __slots__ = (
        "ring", "fd", "sending", "outq", "out_bytes", "recv_state", "want_read", "drainer",
        "pipe", "ud_recv", "ud_send", "sender", "msg_sender",
    )

    def __init__(self, server: Any, key: int, fd: int, client: Any, sockname: Any) -> None:
        super().__init__(server, key, client, sockname)
        self.ring = server.ring
        self.fd = fd
        self.sending: Any = None
        self.outq: list = []
        self.out_bytes = 0
        self.recv_state = RECV_OFF
        self.want_read = True
        self.drainer: Any = None
        self.pipe: tuple[int, int] | None = None
        self.ud_recv = (key << 8) | OP_RECV
        self.ud_send = (key << 8) | OP_SEND
        self.sender = self.ring.send  # (fd, buf, n, ud); kTLS sockets swap in send_partial
        self.msg_sender = self.ring.sendmsg

    # -- receiving ---------------------------------------------------------------

    def arm_recv(self) -> None:
        self.recv_state = RECV_ARMED
        self.ring.recv(self.fd, self.ud_recv, self.server.backend.multishot_recv)

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

    # -- sending -----------------------------------------------------------------

    @property
    def write_blocked(self) -> bool:
        return self.out_bytes > HIGH_WATER

    def write(self, data: bytes) -> None:
        if self.closed or self.close_after:
            return
        self.out_bytes += len(data)
        if self.sending is None:
            self.sending = data
            self.sender(self.fd, data, len(data), self.ud_send)
        else:
            self.outq.append(data)

    def write_parts(self, parts: list[bytes]) -> None:
        """Write big buffers side by side (head, body, framing) without joining them."""
        if self.closed or self.close_after:
            return
        job = Gather(self.ring.ffi, parts)
        self.out_bytes += job.total
        if self.sending is None:
            self.sending = job
            self.msg_sender(self.fd, job.msg, self.ud_send)
        else:
            self.outq.append(job)

    def drain(self) -> Any:
        """An awaitable that resolves once output is below the high-water mark."""
        if self.closed or self.out_bytes <= HIGH_WATER:
            return done_future(self.loop)
        if self.drainer is None:
            self.drainer = self.loop.create_future()
        return self.drainer

    def send_done(self, res: int) -> None:
        data = self.sending
        if res < 0 or self.closed:
            self.sending = None
            self.abort()
            return
        if res < len(data):
            # Short send (rare under MSG_WAITALL; usual for big writes on kTLS sockets, which send
            # without it): go on from byte res, without copying what is left.
            if type(data) is not Gather:
                data = self.sending = Gather(self.ring.ffi, [memoryview(data)])
            data.advance(res)
            self.out_bytes -= res
            self.msg_sender(self.fd, data.msg, self.ud_send)
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
        first = type(q[0])
        if first is FileJob:
            self._start_file(q.pop(0))
            return
        if first is Gather:
            job = self.sending = q.pop(0)
            self.msg_sender(self.fd, job.msg, self.ud_send)
            return
        n = 1
        while n < len(q) and type(q[n]) is bytes:
            n += 1
        data = q[0] if n == 1 else b"".join(q[:n])
        del q[:n]
        self.sending = data
        self.sender(self.fd, data, len(data), self.ud_send)
        if self.drainer is not None and self.out_bytes <= HIGH_WATER:
            self._wake_drainer()

    def _wake_drainer(self) -> None:
        drainer, self.drainer = self.drainer, None
        if not drainer.done():
            drainer.set_result(None)

    # -- files by splice ----------------------------------------------------------

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
        if self.closed:
            if job.pending == 0:
                self._close_after_splices()
            return
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
        if not job.pending:
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
            self.ring.shutdown(self.fd, socket.SHUT_WR)  # the sends before it are complete
            self.resume_reading()
            return
        self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        job = self.sending
        splicing = type(job) is FileJob and job.pending > 0
        if splicing:
            # io_uring runs splices in io-wq workers, which look up the socket's and the pipe's fd
            # numbers only when they start: closing them now could hand a number to the next
            # accept before a queued splice resolves it, and that connection would get this
            # file. Cancel the pair (linked: they fail together) and close when their last CQE
            # is in (splice_done -> _close_after_splices).
            self.ring.cancel((self.key << 8) | OP_SPLICE_IN, (self.key << 8) | OP_CANCEL)
            self.server.backend.closing[self.key] = self
        else:
            self.ring.close_fd(self.fd, (self.key << 8) | OP_CLOSE)
        self._closed_now()
        if self.drainer is not None:
            self._wake_drainer()
        for item in [self.sending, *self.outq]:
            if type(item) is FileJob and not item.future.done():
                item.future.set_result(None)
        self.outq.clear()
        if not splicing:
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self.pipe is not None:
            # Through the ring, after what is queued: an os.close() here would free the numbers
            # before those SQEs are submitted, and the next accept could reuse them.
            ud = (self.key << 8) | OP_CLOSE
            self.ring.close_fd(self.pipe[0], ud)
            self.ring.close_fd(self.pipe[1], ud)
            self.pipe = None

    def _close_after_splices(self) -> None:
        self.server.backend.closing.pop(self.key, None)
        self.sending = None
        self.ring.close_fd(self.fd, (self.key << 8) | OP_CLOSE)
        self._close_pipe()


class Listener:
    __slots__ = ("sock", "fd", "index", "sockname", "multishot", "armed")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.sockname = sockname_of(sock)
        self.multishot = 1
        self.armed = False


def sockname_of(sock: socket.socket) -> Any:
    """ASGI's `server`: (host, port), or (path, None) for a unix socket."""
    name = sock.getsockname()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return (name[0], name[1])
    return (name if isinstance(name, str) else name.decode(errors="replace"), None)


class RingBackend:
    """Accepts on the listeners and routes every completion to its connection."""

    name = "uring"

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.server: Any = None
        self.listeners: list[Listener] = []
        self.multishot_recv = 1
        self.next_key = 1
        self.conn_class: Any = RingConnection
        self.closing: dict[int, RingConnection] = {}  # aborted, waiting for their splices' CQEs
        self.hub: Any = None  # the loop's RingSelector (or EventfdDriver): polls and wake-ups are its

    def start(self, server: Any, socks: list[socket.socket]) -> None:
        self.server = server
        self.hub.dispatch = self.dispatch  # until now the hub handled only its own polls and wake-ups
        if server.tls is not None:
            from ringserve.uring_tls import TLSRingConnection

            self.conn_class = TLSRingConnection
        self.listeners = [Listener(s, i) for i, s in enumerate(socks)]
        for listener in self.listeners:
            self.arm_accept(listener)

    def stop_accepting(self) -> None:
        for listener in self.listeners:
            if listener.armed:
                self.ring.cancel((listener.index << 8) | OP_ACCEPT, OP_CANCEL)

    def dispatch(self, cqes: list) -> None:
        """Handle one batch of (user_data, res, flags) completions."""
        conns = self.server.conns
        buffer = self.ring.buffer
        recycle = self.ring.recycle
        for i in range(0, len(cqes), 3):
            ud = cqes[i]
            op = ud & 0xFF
            if op == OP_RECV:
                res = cqes[i + 1]
                flags = cqes[i + 2]
                conn = conns.get(ud >> 8)
                if flags & F_BUFFER:
                    bid = flags >> BUFFER_SHIFT
                    if conn is not None and res > 0:
                        try:
                            conn.data_received(buffer(bid, res))
                        except Exception:
                            logger.exception("Unexpected error handling received data")
                            conn.abort()
                    recycle(bid)
                if not flags & F_MORE and conn is not None:
                    conn.recv_ended(res)
            elif op == OP_SEND:
                conn = conns.get(ud >> 8)
                if conn is not None:
                    conn.send_done(cqes[i + 1])
            elif op == OP_ACCEPT:
                self.accepted(self.listeners[ud >> 8], cqes[i + 1], cqes[i + 2])
            elif op == OP_SPLICE_IN or op == OP_SPLICE_OUT:
                conn = conns.get(ud >> 8) or self.closing.get(ud >> 8)
                if conn is not None:
                    conn.splice_done(op, cqes[i + 1])
            elif op == OP_POLL:
                self.hub.polled(ud, cqes[i + 1])
            elif op == OP_WAKE:
                self.hub.woken(cqes[i + 1])

    def arm_accept(self, listener: Listener) -> None:
        if self.server.draining or listener.armed:
            return
        listener.armed = True
        self.ring.accept(listener.fd, (listener.index << 8) | OP_ACCEPT, listener.multishot)

    def accepted(self, listener: Listener, res: int, flags: int) -> None:
        if res >= 0:
            self.new_connection(res, listener)
        if flags & F_MORE:
            return
        listener.armed = False
        if self.server.draining:
            return
        if res == -errno.EINVAL and listener.multishot:
            logger.info("Multishot accept is not supported by this kernel; using single-shot accept.")
            listener.multishot = 0
        if res in (-errno.EMFILE, -errno.ENFILE, -errno.ENOBUFS, -errno.ENOMEM):
            logger.warning("accept failed: %s; retrying in 100 ms", os.strerror(-res))
            self.server.loop.call_later(0.1, self.arm_accept, listener)
            return
        self.arm_accept(listener)

    def new_connection(self, fd: int, listener: Listener) -> None:
        server = self.server
        # Accepted while draining (the accept raced the cancel): still served, once, with
        # `connection: close`, rather than reset.
        family, host, port = self.ring.peer(fd)
        client = (host, port) if family in (socket.AF_INET, socket.AF_INET6) else None
        key = self.next_key
        self.next_key = key + 1
        conn = self.conn_class(server, key, fd, client, listener.sockname)
        if server.draining:
            conn.deadline = min(conn.deadline, monotonic() + 1.0)
        server.conns[key] = conn
        conn.arm_recv()

    def describe(self) -> str:
        ring = self.ring
        return (
            f"io_uring ({', '.join(ring.features())}, multishot accept+recv, {ring.entries} entries, "
            f"{ring.buf_count}x{ring.buf_size} B receive buffers)"
        )

    def settle(self, limit_s: float = 1.0) -> None:
        """Reap the cancel/close completions still on their way after the loop stopped."""
        deadline = monotonic() + limit_s
        while self.ring.counters()["inflight_ops"] > 0 and monotonic() < deadline:
            self.ring.wait(10_000_000)

    def stats(self, conns: int) -> str:
        c = self.ring.counters()
        return (
            f"ring stats at exit: sqes={c['sqes']} enters={c['enters']} cqes={c['cqes']} "
            f"inflight_ops={c['inflight_ops']} bufs_out={c['bufs_out']} conns={conns} enobufs={c['enobufs']}"
        )

    def close(self) -> None:
        self.ring.close()
