"""Python face of the io_uring core (ring.c through cffi).

`Ring` creates the ring, turns setup failures into `RingUnavailable` with a cause
and a fix, and exposes the hot calls as attributes bound to the C functions, so
the server's per-request path pays one cffi call per operation and one per batch
of completions.
"""

from __future__ import annotations

import errno
import os
from functools import partial

OP_ACCEPT = 1
OP_RECV = 2
OP_SEND = 3
OP_CLOSE = 4
OP_CANCEL = 5
OP_POLL = 6
OP_SPLICE_IN = 7
OP_SPLICE_OUT = 8
OP_NOP = 9
OP_WAKE = 11

F_BUFFER = 1
F_MORE = 2
BUFFER_SHIFT = 16

WANT_SQPOLL = 1
WANT_NO_DEFER = 2

_CAPS = [
    (1, "single_issuer"),
    (2, "defer_taskrun"),
    (4, "coop_taskrun"),
    (8, "sqpoll"),
    (16, "ext_arg"),
    (32, "fast_poll"),
    (64, "registered_ring_fd"),
    (128, "splice"),
    (256, "cqe_skip"),
]


class RingUnavailable(RuntimeError):
    """io_uring cannot be used here; `cause` says why and `fix` what to do."""

    def __init__(self, cause: str, fix: str, err: int = 0) -> None:
        super().__init__(f"io_uring is unavailable: {cause}. {fix}")
        self.cause = cause
        self.fix = fix
        self.errno = err


def _read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def explain(err: int) -> RingUnavailable:
    """Map a negative errno from ring setup to a cause and a fix."""
    err = -err
    if err == errno.EPERM:
        disabled = _read_sysctl("kernel.io_uring_disabled")
        if disabled not in (None, "0"):
            return RingUnavailable(
                f"the sysctl kernel.io_uring_disabled is {disabled}",
                "Run `sysctl -w kernel.io_uring_disabled=0` (or add this user to kernel.io_uring_group), "
                "or serve with --io asyncio.",
                err,
            )
        return RingUnavailable(
            "io_uring_setup/io_uring_enter was refused with EPERM, which is what a container's seccomp "
            "profile does (Docker >= 25 and containerd >= 2 block io_uring by default)",
            "Allow the io_uring_setup, io_uring_enter and io_uring_register syscalls in the seccomp profile "
            "(e.g. docker run --security-opt seccomp=<profile>), or serve with --io asyncio.",
            err,
        )
    if err == errno.ENOSYS:
        return RingUnavailable(
            "this kernel has no io_uring (ENOSYS: built without CONFIG_IO_URING, or blocked by seccomp)",
            "Use Linux >= 6.1 with io_uring enabled, or serve with --io asyncio.",
            err,
        )
    if err in (errno.EINVAL, errno.EOPNOTSUPP):
        return RingUnavailable(
            f"this kernel ({os.uname().release}) lacks io_uring features ringserve needs "
            "(multishot accept/receive and provided-buffer rings need Linux >= 6.0)",
            "Upgrade to Linux >= 6.1, or serve with --io asyncio.",
            err,
        )
    if err == errno.ENOMEM:
        return RingUnavailable(
            "not enough locked memory for the ring (RLIMIT_MEMLOCK is too low)",
            "Raise the limit (`ulimit -l unlimited`, LimitMEMLOCK=infinity in a systemd unit, "
            "--ulimit memlock=-1 in Docker), use smaller --ring-entries/--ring-buffers, or serve with --io asyncio.",
            err,
        )
    return RingUnavailable(f"ring setup failed: {os.strerror(err)}", "Serve with --io asyncio.", err)


class Ring:
    """One io_uring with a provided-buffer ring; create it in the process and thread that use it."""

    def __init__(
        self,
        entries: int = 4096,
        buf_count: int = 4096,
        buf_size: int = 4096,
        sqpoll: bool = False,
        defer: bool = True,
        max_batch: int = 4096,
    ) -> None:
        try:
            from ringserve.core._ring import ffi, lib
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RingUnavailable(
                f"the compiled core is missing ({exc})",
                "Reinstall ringserve with liburing-dev installed: pip install -e .",
            ) from exc
        self.ffi = ffi
        self.lib = lib
        want = (WANT_SQPOLL if sqpoll else 0) | (0 if defer else WANT_NO_DEFER)
        out = ffi.new("struct rs_ring **")
        ret = lib.rs_ring_create(out, entries, buf_count, buf_size, want)
        if ret < 0:
            raise explain(ret)
        self._r = out[0]
        self._closed = False
        self.max_batch = max_batch
        self._cqes = ffi.new("int64_t[]", 3 * max_batch)
        self._cqe_buf = ffi.buffer(self._cqes)
        info = ffi.new("struct rs_info *")
        lib.rs_ring_info(self._r, info)
        self.entries = info.entries
        self.caps = info.caps
        self.buf_count = info.buf_count
        self.buf_size = info.buf_size
        self.memlock_raised = bool(info.memlock_raised)
        self.fd = lib.rs_ring_fd(self._r)
        base = lib.rs_buf_base(self._r)
        self._bufs = memoryview(ffi.buffer(base, self.buf_count * self.buf_size))
        self._peer_host = ffi.new("char[64]")
        self._peer_port = ffi.new("int *")
        self._bind()

    def _bind(self) -> None:
        """Bind the hot calls to this ring: self.send(fd, buf, n, ud) is one cffi call."""
        lib, r = self.lib, self._r
        self.accept = partial(lib.rs_accept, r)  # (fd, ud, multishot)
        self.recv = partial(lib.rs_recv, r)  # (fd, ud, multishot)
        self.recycle = partial(lib.rs_recycle, r)  # (bid)
        self.send = partial(lib.rs_send, r)  # (fd, buf, n, ud)
        self.sendmsg = partial(lib.rs_sendmsg, r)  # (fd, msghdr, ud)
        self.send_partial = partial(lib.rs_send_partial, r)  # the same without MSG_WAITALL (kTLS)
        self.sendmsg_partial = partial(lib.rs_sendmsg_partial, r)
        self.splice = partial(lib.rs_splice, r)  # (file, off, pipe_w, pipe_r, sock, n, ud_in, ud_out)
        self.splice_out = partial(lib.rs_splice_out, r)  # (pipe_r, sock, n, ud)
        self.poll = partial(lib.rs_poll, r)  # (fd, mask, ud)
        self.cancel = partial(lib.rs_cancel, r)  # (target_ud, ud)
        self.close_fd = partial(lib.rs_close, r)  # (fd, ud): cancel all on fd, then close
        self.shutdown = lib.rs_shutdown_fd  # (fd, how): a plain syscall (see ring.c: why not the ring's)
        self.nop = partial(lib.rs_nop, r)  # (ud)
        self.read = partial(lib.rs_read, r)  # (fd, buf, n, ud)
        self.submit = partial(lib.rs_submit, r)
        self.register_eventfd = partial(lib.rs_register_eventfd, r)  # (efd)
        cqes, cqe_buf, max_batch, rs_wait = self._cqes, self._cqe_buf, self.max_batch, lib.rs_wait

        def wait(timeout_ns: int) -> list:
            """Submit, wait up to timeout_ns (0: poll, <0: forever), return [ud, res, flags, ...]."""
            n = rs_wait(r, cqes, max_batch, timeout_ns)
            if n <= 0:
                if n < 0:
                    raise OSError(-n, "io_uring_enter: " + os.strerror(-n))
                return []
            return memoryview(cqe_buf)[: 24 * n].cast("q").tolist()

        self.wait = wait

    def buffer(self, bid: int, n: int) -> memoryview:
        """The first n bytes of provided buffer bid: valid until recycle(bid)."""
        start = bid * self.buf_size
        return self._bufs[start : start + n]

    def peer(self, fd: int) -> tuple[int, str, int]:
        """(family, host, port) of a connected socket; family < 0 is an errno."""
        fam = self.lib.rs_peer(fd, self._peer_host, 64, self._peer_port)
        if fam < 0:
            return fam, "", 0
        return fam, self.ffi.string(self._peer_host).decode(), self._peer_port[0]

    def features(self) -> list[str]:
        return [name for bit, name in _CAPS if self.caps & bit]

    def counters(self) -> dict[str, int]:
        c = self.ffi.new("struct rs_counters *")
        self.lib.rs_ring_counters(self._r, c)
        return {
            "sqes": c.sqes,
            "enters": c.enters,
            "cqes": c.cqes,
            "waits": c.waits,
            "inflight_ops": c.inflight,
            "bufs_out": c.bufs_out,
            "enobufs": c.enobufs,
        }

    @property
    def closed(self) -> bool:
        """After close() the ring's memory is gone: no rs_* call may be made with it."""
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bufs.release()
            self.lib.rs_ring_destroy(self._r)

