"""The server: owns the ring, the connection table, timers, signals and shutdown.

`serve(config)` is the whole life of one worker process: load the app, bind,
create the ring (after any fork), run lifespan startup, accept until a signal,
drain gracefully within the configured timeout, and report the ring's counters
so tests can check that nothing was left in flight.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from email.utils import formatdate
from typing import Any

from ringserve.asgi import HTTPCycle, Lifespan, ProxyHeaders, ServerState
from ringserve.connection import Connection
from ringserve.core.ring import (
    F_BUFFER,
    F_MORE,
    OP_ACCEPT,
    OP_CANCEL,
    OP_RECV,
    OP_SEND,
    OP_SPLICE_IN,
    OP_SPLICE_OUT,
    Ring,
    RingUnavailable,
)
from ringserve.http import Limits

logger = logging.getLogger("ringserve.error")
access_logger = logging.getLogger("ringserve.access")

SWEEP_S = 0.25
BUFFER_SHIFT = 16


class Listener:
    __slots__ = ("sock", "fd", "index", "sockname", "multishot", "armed")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        name = sock.getsockname()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            self.sockname = (name[0], name[1])
        else:
            self.sockname = (name, None) if isinstance(name, str) else (name.decode(errors="replace"), None)
        self.multishot = 1
        self.armed = False


class Server:
    def __init__(self, config: Any, app: Any, listeners: list[socket.socket], ring: Ring, loop: Any) -> None:
        self.config = config
        self.app = app
        self.ring = ring
        self.loop = loop
        self.listeners = [Listener(s, i) for i, s in enumerate(listeners)]
        self.conns: dict[int, Connection] = {}
        self.next_key = 1
        self.active = 0
        self.draining = False
        self.force = False
        self.multishot_recv = 1
        self.limits = Limits(
            max_request_line=config.limit_request_line,
            max_header_count=config.limit_request_fields,
            max_header_field=config.limit_request_field_size,
            max_head_bytes=config.limit_request_head,
            max_body=config.limit_request_body,
        )
        self.keepalive_timeout = float(config.timeout_keep_alive_s)
        self.head_timeout = float(config.timeout_request_head_s)
        self.limit_concurrency = config.limit_concurrency or 0
        proxy = ProxyHeaders(config.forwarded_allow_ips) if config.proxy_headers else None
        self.shared = ServerState(app, config.root_path, proxy)
        self.cycle_class = HTTPCycle
        self.lifespan = Lifespan(app, config.lifespan, self.shared.state)
        self.stop_event = asyncio.Event()
        self.all_closed = asyncio.Event()
        self.extra_headers = b"".join(
            f"{name.lower()}: {value}\r\n".encode("latin-1") for name, value in config.headers
        )
        self._date_second = -1
        self.update_default_headers()
        self.access_log = access_logger.isEnabledFor(logging.INFO) and not access_logger.disabled
        if self.access_log:
            from ringserve.logs import compile_access_format

            self.format_access = compile_access_format(config.access_log_format)

    # -- completions ------------------------------------------------------------

    def dispatch(self, cqes: list) -> None:
        """Handle one batch of (user_data, res, flags) completions."""
        conns = self.conns
        ring = self.ring
        buffer = ring.buffer
        recycle = ring.recycle
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
                conn = conns.get(ud >> 8)
                if conn is not None:
                    conn.splice_done(op, cqes[i + 1])

    def arm_accept(self, listener: Listener) -> None:
        if self.draining or listener.armed:
            return
        listener.armed = True
        self.ring.accept(listener.fd, (listener.index << 8) | OP_ACCEPT, listener.multishot)

    def accepted(self, listener: Listener, res: int, flags: int) -> None:
        if res >= 0:
            self.new_connection(res, listener)
        if flags & F_MORE:
            return
        listener.armed = False
        if self.draining:
            return
        if res == -errno.EINVAL and listener.multishot:
            logger.info("Multishot accept is not supported by this kernel; using single-shot accept.")
            listener.multishot = 0
        if res in (-errno.EMFILE, -errno.ENFILE, -errno.ENOBUFS, -errno.ENOMEM):
            logger.warning("accept failed: %s; retrying in 100 ms", os.strerror(-res))
            self.loop.call_later(0.1, self.arm_accept, listener)
            return
        self.arm_accept(listener)

    def new_connection(self, fd: int, listener: Listener) -> None:
        if self.draining:
            os.close(fd)
            return
        family, host, port = self.ring.peer(fd)
        client = (host, port) if family in (socket.AF_INET, socket.AF_INET6) else None
        key = self.next_key
        self.next_key = key + 1
        conn = Connection(self, key, fd, client, listener.sockname)
        self.conns[key] = conn
        conn.arm_recv()

    def forget(self, conn: Connection) -> None:
        self.conns.pop(conn.key, None)
        if self.draining and not self.conns:
            self.all_closed.set()

    # -- request cycles ---------------------------------------------------------

    async def run_cycle(self, conn: Connection, cycle: HTTPCycle) -> None:
        start = time.monotonic() if self.access_log else 0.0
        try:
            await cycle.run(self.app)
        finally:
            self.active -= 1
            if self.access_log:
                self.log_access(conn, cycle, start)

    def log_access(self, conn: Connection, cycle: HTTPCycle, start: float) -> None:
        from ringserve.logs import AccessInfo

        request = cycle.request
        client = cycle.scope.get("client") or (None, None)
        info = AccessInfo(
            client[0], client[1], request.method, request.path, request.query, request.http_version,
            cycle.status or 500, cycle.body_bytes, request.headers, list(cycle.headers), start,
            time.monotonic(),
        )
        access_logger.info("%s", self.format_access(info))

    # -- timers -------------------------------------------------------------------

    def update_default_headers(self) -> None:
        now = int(time.time())
        if now == self._date_second:
            return
        self._date_second = now
        parts = []
        if self.config.server_header:
            parts.append(b"server: ringserve\r\n")
        if self.config.date_header:
            parts.append(b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
        self.shared.default_headers = b"".join(parts) + self.extra_headers

    def sweep(self) -> None:
        """Every SWEEP_S: refresh the Date header and close connections past their deadline."""
        self.update_default_headers()
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if c.deadline and c.deadline <= now]:
            conn.timed_out()
        if not self.force:
            self.loop.call_later(SWEEP_S, self.sweep)

    # -- life cycle -------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        if self.stop_event.is_set():
            if signum == signal.SIGINT:
                logger.info("Second interrupt: forcing shutdown.")
                self.force = True
                self.all_closed.set()
            return
        logger.info("Shutting down")
        self.stop_event.set()

    async def main(self) -> int:
        loop = self.loop
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.on_signal, signum)
        if not await self.lifespan.startup():
            return 3
        for listener in self.listeners:
            self.arm_accept(listener)
        self.sweep()
        logger.info("%s", self.running_message())
        await self.stop_event.wait()
        await self.drain()
        await self.lifespan.shutdown()
        return 0

    def running_message(self) -> str:
        from ringserve.sockets import describe

        where = ", ".join(describe(listener.sock) for listener in self.listeners)
        ring = self.ring
        feats = ", ".join(ring.features())
        return (
            f"Ringserve running on {where} (Press CTRL+C to quit) with io_uring: {feats}, "
            f"multishot accept+recv, {ring.entries} entries, {ring.buf_count}x{ring.buf_size} B receive buffers"
        )

    async def drain(self) -> None:
        """Stop accepting, let in-flight requests finish, then close what is left."""
        self.draining = True
        for listener in self.listeners:
            if listener.armed:
                self.ring.cancel((listener.index << 8) | OP_ACCEPT, OP_CANCEL)
        for conn in list(self.conns.values()):
            if conn.cycle is None:
                conn.close()
        if self.conns:
            timeout = self.config.timeout_graceful_shutdown_s
            try:
                await asyncio.wait_for(self.all_closed.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "Graceful shutdown timed out after %ss with %d connection(s) open; closing them.",
                    timeout,
                    len(self.conns),
                )
        tasks = []
        for conn in list(self.conns.values()):
            if conn.cycle is not None and conn.cycle.task is not None:
                tasks.append(conn.cycle.task)
            conn.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        from ringserve.sockets import close_listeners

        close_listeners([listener.sock for listener in self.listeners], self.config)


def _settle_ring(ring: Ring, limit_s: float = 1.0) -> None:
    """Reap the cancel/close completions still on their way after the loop stopped."""
    deadline = time.monotonic() + limit_s
    while ring.counters()["inflight_ops"] > 0 and time.monotonic() < deadline:
        ring.wait(10_000_000)


def _ring_stats(ring: Ring, server: Server) -> str:
    c = ring.counters()
    return (
        f"ring stats at exit: sqes={c['sqes']} enters={c['enters']} cqes={c['cqes']} "
        f"inflight_ops={c['inflight_ops']} bufs_out={c['bufs_out']} conns={len(server.conns)} "
        f"enobufs={c['enobufs']}"
    )


def serve(config: Any) -> int:
    """Run one worker until it is told to stop; returns the process exit code."""
    from ringserve.importer import import_app
    from ringserve.sockets import bind_listeners
    from ringserve.config import ConfigError

    try:
        app = import_app(config.app, config.app_dir, config.factory)
        app = resolve_interface(app, config.interface)
        listeners = bind_listeners(config)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    try:
        ring = Ring(
            entries=config.ring_entries,
            buf_count=config.ring_buffers,
            buf_size=config.ring_buffer_size,
            sqpoll=config.sqpoll,
        )
    except RingUnavailable as exc:
        logger.error("%s", exc)
        for sock in listeners:
            sock.close()
        return 1
    from ringserve.loop import new_loop

    try:
        loop, hub = new_loop(str(config.loop), ring)
    except RuntimeError as exc:
        logger.error("%s", exc)
        ring.close()
        return 1
    asyncio.set_event_loop(loop)
    server = Server(config, app, listeners, ring, loop)
    hub.dispatch = server.dispatch
    try:
        code = loop.run_until_complete(server.main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        if hasattr(hub, "close") and hub is not getattr(loop, "ring_selector", None):
            hub.close()
        loop.close()
        asyncio.set_event_loop(None)
        _settle_ring(ring)
        logger.info("%s", _ring_stats(ring, server))
        ring.close()
    return code


def resolve_interface(app: Any, interface: str) -> Any:
    """Pick ASGI 3 (wrapping ASGI 2 apps with asgiref); WSGI arrives in its own module."""
    from asgiref.compatibility import guarantee_single_callable

    if interface == "wsgi":
        from ringserve.config import ConfigError

        raise ConfigError("--interface wsgi is not available yet in this build; serve an ASGI app.")
    return guarantee_single_callable(app)
