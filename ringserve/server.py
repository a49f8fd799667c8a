"""The server: owns the ring, the connection table, timers, signals and shutdown.

`serve(config)` is the whole life of one worker process: load the app, bind,
create the ring (after any fork), run lifespan startup, accept until a signal,
drain gracefully within the configured timeout, and report the ring's counters
so tests can check that nothing was left in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import sys
import time
from email.utils import formatdate
from typing import Any

from ringserve.asgi import HTTPCycle, Lifespan, ProxyHeaders, ServerState
from ringserve.connection import Connection
from ringserve.http import Limits
from ringserve.ws import bind_websockets
from ringserve.wsgi import WSGIApp

logger = logging.getLogger("ringserve.error")
access_logger = logging.getLogger("ringserve.access")

SWEEP_S = 0.25
BUFFER_SHIFT = 16


class Server:
    def __init__(
        self, config: Any, app: Any, socks: list[socket.socket], backend: Any, loop: Any,
        hooks: "WorkerHooks | None" = None, tls: Any = None,
    ) -> None:
        self.config = config
        self.app = app
        self.socks = socks
        self.backend = backend
        self.ring = getattr(backend, "ring", None)
        self.loop = loop
        self.conns: dict[int, Connection] = {}
        self.active = 0
        self.served = 0
        self.max_requests = _max_requests(config)
        self.draining = False
        self.force = False
        self.hooks = hooks or WorkerHooks()
        self.spawn = task_spawner(loop)
        self.tasks: set[asyncio.Task] = set()  # cycles still running after their first step
        self.threaded: set = set()  # WSGI cycles whose app is on a pool thread (no task: WSGICycle.begin)
        self.threads_idle: asyncio.Future | None = None  # resolved when `threaded` empties while draining
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
        self.tls = tls  # tls.TLSSettings when serving HTTPS
        if isinstance(app, WSGIApp):  # WSGI: the app runs on a thread pool and has no lifespan
            self.cycle_class, self.lifespan = app.bind(config, loop)
            self.ws_cycle_class = None  # a websocket upgrade gets 400
        else:
            self.cycle_class = HTTPCycle
            self.lifespan = Lifespan(app, config.lifespan, self.shared.state)
            self.ws_cycle_class = bind_websockets(config)
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

    def forget(self, conn: Connection) -> None:
        self.conns.pop(conn.key, None)
        if self.draining and not self.conns:
            self.all_closed.set()

    # -- request cycles ---------------------------------------------------------

    def cycle_done(self, cycle: Any, start: float) -> None:
        """A cycle's run(app, start) ends here, however the app ended (each cycle class calls it in
        a `finally`: one coroutine per request, not a wrapper around the cycle's)."""
        self.active -= 1
        self.served += 1
        if self.tasks:
            # cycle.task is set once spawn() returned; a cycle that finished inside it was never added
            self.tasks.discard(cycle.task)
        if self.access_log:
            self.log_access(cycle, start)
        if self.served == self.max_requests:
            logger.info("Maximum requests reached (%d); shutting down this worker gracefully.", self.served)
            self.request_stop()

    def threaded_done(self, cycle: Any) -> None:
        """A WSGI cycle's pool thread is done with it (its last posted action ran)."""
        self.threaded.discard(cycle)
        self.cycle_done(cycle, cycle.started_at)
        idle = self.threads_idle
        if idle is not None and not self.threaded and not idle.done():
            idle.set_result(None)

    def log_access(self, cycle: Any, start: float) -> None:
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
        if self.hooks.tick is not None:
            self.hooks.tick(self)
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
                self.request_stop(force=True)
            return
        logger.info("Shutting down")
        self.request_stop()

    def request_stop(self, force: bool = False) -> None:
        """Begin the graceful drain (force: close everything now)."""
        if force:
            self.force = True
            self.all_closed.set()
        self.stop_event.set()

    async def main(self) -> int:
        loop = self.loop
        if self.hooks.install_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.on_signal, signum)
        if not await self.lifespan.startup():
            return 3
        if hasattr(self.backend, "start_async"):
            await self.backend.start_async(self, self.socks)
        else:
            self.backend.start(self, self.socks)
        self.sweep()
        logger.info("%s", self.running_message())
        if self.hooks.started is not None:
            self.hooks.started(self)
        await self.stop_event.wait()
        await self.drain()
        await self.lifespan.shutdown()
        return 0

    def running_message(self) -> str:
        from ringserve.sockets import describe

        scheme = "https" if self.tls is not None else "http"
        where = ", ".join(describe(sock, scheme) for sock in self.socks)
        return f"Ringserve running on {where} (Press CTRL+C to quit) with {self.backend.describe()}"

    async def drain(self) -> None:
        """Stop accepting, let in-flight requests finish, then close what is left."""
        self.draining = True
        self.backend.stop_accepting()
        idle_until = time.monotonic() + 1.0
        for conn in list(self.conns.values()):
            if conn.upgraded is not None:  # a websocket: closed with 1012 (service restart)
                conn.upgraded.shutdown()
            elif conn.cycle is None:  # idle, or its first request still on the way: 1 s to send one
                conn.deadline = min(conn.deadline, idle_until) if conn.deadline else idle_until
            elif not conn.cycle.head_sent:
                conn.http.disable_keep_alive()
        timeout = self.config.timeout_graceful_shutdown_s
        deadline = time.monotonic() + timeout
        if self.conns:
            try:
                await asyncio.wait_for(self.all_closed.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "Graceful shutdown timed out after %ss with %d connection(s) open; closing them.",
                    timeout,
                    len(self.conns),
                )
        for conn in list(self.conns.values()):
            conn.abort()
        await self._wait_for_tasks(deadline - time.monotonic())

    async def _wait_for_tasks(self, budget: float) -> None:
        """Apps may still run after their response (a background task): give them what is left
        of the graceful timeout, then cancel them."""
        tasks = {t for t in self.tasks if not t.done()}
        if (tasks or self.threaded) and budget > 0 and not self.force:
            logger.info("Waiting for %d background task(s) to complete.", len(tasks) + len(self.threaded))
            await self._wait_for(tasks, budget)
        tasks = {t for t in tasks if not t.done()}
        for task in tasks:
            task.cancel()
        for cycle in list(self.threaded):  # WSGI's cancel: the app stops at its next read or write
            cycle.disconnect()
        if tasks or self.threaded:
            logger.warning("Cancelled %d task(s) still running at the end of the graceful timeout.",
                           len(tasks) + len(self.threaded))
            await self._wait_for(tasks, 1.0)
        from ringserve.sockets import close_listeners

        close_listeners(self.socks, self.config)

    async def _wait_for(self, tasks: set, timeout: float) -> None:
        """Wait up to timeout for these tasks and for every WSGI cycle still on a pool thread."""
        waits = set(tasks)
        if self.threaded:
            self.threads_idle = self.loop.create_future()  # threaded_done() resolves it
            waits.add(self.threads_idle)
        await asyncio.wait(waits, timeout=timeout)


def serve(config: Any) -> int:
    """Run until told to stop; returns the process exit code. One process serves by itself; with
    --workers > 1 or --reload, ringserve.supervisor binds and forks the workers."""
    from ringserve.importer import import_app
    from ringserve.config import ConfigError
    from ringserve.sockets import bind_listeners
    from ringserve.supervisor import pid_file, supervise

    if config.ssl_certfile is not None:  # a bad certificate or key: say so before binding or forking
        from ringserve.tls import create_context

        try:
            create_context(config)
        except ConfigError as exc:
            logger.error("%s", exc)
            return 1
    if config.workers > 1 or config.reload:
        return supervise(config)
    try:
        app = import_app(config.app, config.app_dir, config.factory)
        app = resolve_interface(app, config.interface)
        listeners = bind_listeners(config)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    with pid_file(config.pid_file):
        return run_worker(config, app, listeners)


def run_worker(config: Any, app: Any, listeners: list[socket.socket], hooks: "WorkerHooks | None" = None) -> int:
    """Serve `app` on already bound listeners in this process (a worker of a supervisor, or of
    gunicorn), creating the ring here, after any fork. Returns the exit code."""
    from ringserve.config import ConfigError
    from ringserve.sockets import close_listeners

    tune_malloc()
    try:
        backend, loop = make_backend(config)
    except (RuntimeError, ConfigError) as exc:
        logger.error("%s", exc)
        close_listeners(listeners, config)
        return 1
    try:
        from ringserve.tls import TLSSettings

        tls = TLSSettings.load(config, backend.name)
    except ConfigError as exc:
        logger.error("%s", exc)
        close_listeners(listeners, config)
        loop.close()  # first: the loop's selector hands its eventfd to the ring to close...
        backend.settle()  # ...which happens here
        backend.close()
        return 1
    asyncio.set_event_loop(loop)
    server = Server(config, app, listeners, backend, loop, hooks, tls)
    try:
        code = loop.run_until_complete(server.main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        hub = getattr(backend, "hub", None)
        if hub is not None and hub is not getattr(loop, "ring_selector", None):
            hub.close()
        loop.close()  # this restores SIGTERM's default action...
        previous = None
        if server.hooks.install_signals and server.stop_event.is_set():
            # ...but we are stopping already: a second SIGTERM (a supervisor's, after a group-wide
            # one) must not kill us before the ring settles and the stats are written.
            previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        asyncio.set_event_loop(None)
        backend.settle()
        logger.info("%s", backend.stats(len(server.conns)))
        backend.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> None:
    """glibc gives the top of its heap back to the kernel whenever more than 128 KiB is free
    there, so a worker that allocates and frees a 64 KiB request body per request pays a brk()
    and fresh zeroed pages each time (measured: 64 KiB echo 3.3k -> 4.3k req/s with this). Keep
    up to 8 MiB; and since that freezes glibc's adaptive mmap threshold at 128 KiB, raise it to
    1 MiB so 256 KiB socket reads (--io asyncio) stay off mmap/munmap too. No-op off glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_TRIM_THRESHOLD, 8 << 20)
    mallopt(M_MMAP_THRESHOLD, 1 << 20)


def task_spawner(loop: Any) -> Any:
    """How request cycles become tasks: started eagerly, so an app that never waits finishes
    without a loop round trip (RingEventLoop on any Python, asyncio's eager tasks on 3.12+)."""
    if hasattr(loop, "create_eager_task"):
        return loop.create_eager_task
    if sys.version_info >= (3, 12):
        return lambda coro: asyncio.Task(coro, loop=loop, eager_start=True)
    return loop.create_task


class WorkerHooks:
    """How an embedding process manager (ringserve's supervisor, gunicorn) takes part.

    install_signals: the worker handles SIGINT/SIGTERM itself (off when the manager installs its own
    and calls server.request_stop()); tick(server): called every sweep (~250 ms), e.g. a heartbeat;
    started(server): called once the worker accepts."""

    def __init__(self, install_signals: bool = True, tick: Any = None, started: Any = None) -> None:
        self.install_signals = install_signals
        self.tick = tick
        self.started = started


def _max_requests(config: Any) -> int:
    """--limit-max-requests plus this worker's share of the jitter; 0 = no limit."""
    limit = getattr(config, "limit_max_requests", None)
    if not limit:
        return 0
    jitter = getattr(config, "limit_max_requests_jitter", 0)
    return limit + (random.randint(0, jitter) if jitter else 0)


def make_backend(config: Any) -> tuple[Any, asyncio.AbstractEventLoop]:
    """The I/O backend and its loop: io_uring, or asyncio transports where io_uring is
    unavailable (--io auto logs the cause and the fix) or asked for (--io asyncio)."""
    from ringserve.core.ring import Ring, RingUnavailable

    io, loop_kind = str(config.io), str(config.loop)
    if io != "asyncio":
        try:
            ring = Ring(
                entries=config.ring_entries,
                buf_count=config.ring_buffers,
                buf_size=config.ring_buffer_size,
                sqpoll=config.sqpoll,
            )
        except RingUnavailable as exc:
            if io == "uring":
                raise RuntimeError(str(exc)) from None
            logger.warning("%s Serving with --io asyncio instead.", exc)
        else:
            from ringserve.loop import new_loop
            from ringserve.uring import RingBackend

            backend = RingBackend(ring)
            try:
                loop, backend.hub = new_loop(loop_kind, ring)
            except RuntimeError:
                ring.close()
                raise
            return backend, loop  # backend.start() installs its dispatch on the hub
    from ringserve.aio import AsyncioBackend

    loop = _asyncio_loop(loop_kind)
    return AsyncioBackend(loop), loop


def _asyncio_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("--loop uvloop needs uvloop: pip install uvloop (or use --loop auto)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def resolve_interface(app: Any, interface: str) -> Any:
    """ASGI 3 (ASGI 2 apps wrapped with asgiref) or, for WSGI, a WSGIApp served on threads."""
    from asgiref.compatibility import guarantee_single_callable

    from ringserve.wsgi import detect_interface

    how = f"--interface {interface}"
    if interface == "auto":
        interface, how = detect_interface(app), "detected"
    logger.info("Interface: %s (%s)", str(interface).upper(), how)
    if interface == "wsgi":
        return WSGIApp(app)
    return guarantee_single_callable(app)
