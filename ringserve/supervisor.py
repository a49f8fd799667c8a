"""Prefork supervisor: bind, fork N workers, watch them, replace them, reload them.

Theory of operation
-------------------
The supervisor binds every listener and never imports the app or creates a ring. Each worker is
forked, imports the app itself (so SIGHUP and --reload load new code, and nothing the app starts
at import time is forked), creates its own ring and calls `server.run_worker()`. A worker that
exits before it said "ready" failed to boot (import error, lifespan startup failure, no ring).

Slots. Worker i serves slot i's listeners. With SO_REUSEPORT (the default with workers) each slot
has its own listener, bound by the supervisor and kept open by it, so the kernel spreads
connections over the slots evenly, and a slot's listener (with its accept queue) outlives the
worker that serves it: the replacement of a crashed, recycled or reloaded worker accepts what
queued meanwhile, and no connection is reset. Without it (--no-reuse-port, --fd, --uds, systemd
sockets) every slot shares the one listener.

One single-threaded loop over a selector: the signal wake-up pipe (its bytes are signal numbers),
a pipe per worker (it writes b"R" once it accepts, b"D" when it starts draining by itself, e.g. at
--limit-max-requests) and the --reload watcher's pipe. The heartbeat is a shared-memory timestamp
that the worker's 250 ms sweep writes on its loop thread, so a blocked loop stops it.

`reconcile()` holds the policy. Workers are BOOTING, READY or RETIRING. Every slot below the
target gets a live (booting or ready) worker; a slot whose live workers are all of an older
generation (SIGHUP, a file change) gets a new one, one slot at a time; once a slot has a newer
ready worker, the older ones are retired. So a new worker is ready before the one it replaces
stops accepting, on the same listener.

Signals to the supervisor: TERM/INT drain (a second INT forces), QUIT forces, HUP rolling restart,
TTIN/TTOU one worker more/less. To a worker (only from the supervisor): TERM drain, QUIT force,
USR2 drain and close the listener now (its slot is gone), USR1 dump every thread's stack
(faulthandler), KILL. Workers ignore INT/HUP/TTIN/TTOU.

Exit code: 0 after a clean shutdown, 3 if a worker failed to boot (outside a reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import faulthandler
import logging
import mmap
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import PurePath
from typing import Any

from ringserve.config import ConfigError

logger = logging.getLogger("ringserve.error")

BOOT_FAILED = 3
KILL_MARGIN_S = 5.0  # past --timeout-graceful-shutdown before SIGKILL (lifespan shutdown, settle)
FORCE_KILL_S = 3.0  # after a forced stop (second Ctrl+C) before SIGKILL
DUMP_WAIT_S = 0.5  # between the stack-dump signal and SIGKILL of a blocked worker
READY, DRAINING = b"R", b"D"
SUPERVISOR_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
                      signal.SIGTTOU, signal.SIGCHLD)
now = time.monotonic


class Phase(str, enum.Enum):
    BOOTING = "booting"
    READY = "ready"
    RETIRING = "retiring"


class Worker:
    """The supervisor's record of one worker process."""

    def __init__(self, number: int, slot: int, generation: int) -> None:
        self.number, self.slot, self.generation = number, slot, generation
        self.pid = 0
        self.phase = Phase.BOOTING
        self.said_ready = False  # its signal handlers are installed
        self.signalled = False  # (in the worker) told to stop, so no replacement is asked for
        self.kill_at = 0.0  # SIGKILL deadline once retiring
        self.beat = mmap.mmap(-1, 8)  # MAP_SHARED: the worker writes monotonic(), we read it
        self.read_fd, self.write_fd = os.pipe()

    def __str__(self) -> str:
        return f"worker {self.number} [pid {self.pid}]"

    def last_beat(self) -> float:
        return struct.unpack_from("d", self.beat)[0]

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


class Slots:
    """The listeners of each slot: one SO_REUSEPORT listener per slot, or all share `base`."""

    def __init__(self, config: Any, base: list[socket.socket]) -> None:
        self.config, self.base = config, base
        self.address = _reuse_port_address(config, base)
        self.own: dict[int, socket.socket] = {}
        if self.address is not None:
            base[0].close()  # bound without SO_REUSEPORT to detect "address in use"
            self.base = []
            for slot in range(config.workers):
                self.of(slot)

    def of(self, slot: int) -> list[socket.socket]:
        from ringserve.sockets import bind_tcp

        if self.address is None:
            return self.base
        if slot not in self.own:
            self.own[slot] = bind_tcp(self.address[0], self.address[1], self.config.backlog, True)
        return [self.own[slot]]

    def release(self, slot: int) -> None:
        """SIGTTOU: close our copy; the slot's listener leaves the group when its worker, told
        with SIGUSR2, closes its copy too."""
        sock = self.own.pop(slot, None)
        if sock is not None:
            sock.close()

    def all(self) -> list[socket.socket]:
        return self.base + list(self.own.values())


class Supervisor:
    def __init__(self, config: Any, listeners: list[socket.socket]) -> None:
        self.config = config
        self.worker_config = config.replace(uds=None) if config.uds else config  # we unlink it
        self.slots = Slots(config, listeners)
        self.target = config.workers
        self.generation = 0
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.next_number = 1
        self.announced = self.stopping = self.forced = False
        self.hold = False  # a reload's new worker failed to boot: no rolling until the next one
        self.exit_code = 0
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.watcher: Any = None

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> int:
        if self.config.reload:
            self.watcher = Watcher(self.config, lambda: self.close_in_child(keep=[]))
            self.selector.register(self.watcher.fd, selectors.EVENT_READ, self.watcher)
        self._install_signals()
        logger.info("Started supervisor [pid %d]", os.getpid())
        self.reconcile()
        while self.workers or not self.stopping:
            for key, _ in self.selector.select(self.timeout()):
                self.readable(key.data)
            self.reap()
            self.check_workers()
            self.reconcile()
        if self.watcher is not None:
            self.watcher.stop()
        return self.exit_code

    def timeout(self) -> float:
        deadlines = [w.kill_at for w in self.workers.values() if w.kill_at]
        tick = min(1.0, self.config.timeout_worker_healthcheck_s / 4)
        return max(0.0, min([now() + tick, *deadlines]) - now())

    def readable(self, source: Any) -> None:
        if source is None:  # the signal wake-up pipe: one byte per signal
            for signum in os.read(self.wake_r, 512):
                self.on_signal(signum)
        elif isinstance(source, Worker):
            self.read_messages(source)
        elif self.watcher is not None and self.watcher.changed():
            logger.info("Changes detected: replacing the workers.")
            self.reload()

    def read_messages(self, worker: Worker) -> None:
        if worker.read_fd < 0:
            return
        try:
            data = os.read(worker.read_fd, 64)
        except BlockingIOError:
            return
        if not data:  # it exited: reap() says how
            self._close_pipe(worker)
            return
        if READY in data:
            worker.said_ready = True
            if worker.phase is Phase.BOOTING:
                worker.phase = Phase.READY
        if DRAINING in data and worker.phase is Phase.READY:
            logger.info("%s is stopping by itself; starting its replacement.", worker)
            self.retire(worker, signum=None)

    # -- signals ------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        for signum in SUPERVISOR_SIGNALS:
            signal.signal(signum, _ignore)  # its C half writes signum to the wake-up fd
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGCHLD:
            return  # reap() runs after every wake-up
        if signum == signal.SIGHUP:
            logger.info("Received SIGHUP: replacing the workers one by one.")
            self.reload()
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            self.target = max(1, self.target + (1 if signum == signal.SIGTTIN else -1))
            logger.info("Received %s: %d worker(s) from now on.", name, self.target)
        elif signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stopping):
            logger.info("Received %s: forcing shutdown.", name)
            self.shutdown(force=True)
        elif not self.stopping:
            logger.info("Received %s: shutting down; workers finish requests in flight "
                        "(up to %ss).", name, self.config.timeout_graceful_shutdown_s)
            self.shutdown(force=False)

    def reload(self) -> None:
        if not self.stopping:
            self.generation += 1
            self.hold = False

    def shutdown(self, force: bool, code: int | None = None) -> None:
        if code is not None:
            self.exit_code = code
        if self.stopping and (self.forced or not force):
            return
        self.stopping, self.forced = True, force
        for worker in list(self.workers.values()):
            self.retire(worker, force=force)

    # -- workers ------------------------------------------------------------------------------

    def live(self, slot: int) -> list[Worker]:
        return [w for w in self.workers.values() if w.slot == slot and w.phase is not Phase.RETIRING]

    def reconcile(self) -> None:
        """Fork and retire workers until every slot has one current, ready worker."""
        if self.stopping:
            return
        for slot in range(self.target):  # --reload waits for a change after a failed boot
            if not self.live(slot) and not (self.hold and self.config.reload):
                self.spawn(slot)
        if not self.hold and not any(w.phase is Phase.BOOTING for w in self.workers.values()):
            for slot in range(self.target):  # a rolling restart: one slot at a time
                if all(w.generation != self.generation for w in self.live(slot)):
                    self.spawn(slot)
                    break
        for worker in list(self.workers.values()):
            if worker.phase is not Phase.RETIRING and worker.slot >= self.target:
                self.slots.release(worker.slot)
                self.retire(worker, signum=signal.SIGUSR2)
            elif worker.phase is not Phase.RETIRING and any(
                    w.phase is Phase.READY and w.number > worker.number for w in self.live(worker.slot)):
                self.retire(worker)
        if not self.announced and all(
                any(w.phase is Phase.READY for w in self.live(s)) for s in range(self.target)):
            self.announce()

    def announce(self) -> None:
        from ringserve.sockets import describe

        self.announced = True
        scheme = "https" if self.config.ssl_certfile else "http"
        where = ", ".join(describe(sock, scheme) for sock in self.slots.of(0))
        how = "a listener per worker (SO_REUSEPORT)" if self.slots.address else "one shared listener"
        logger.info("Ringserve running on %s with %d worker%s, %s (Press CTRL+C to quit)", where,
                    self.target, "" if self.target == 1 else "s", how)

    def spawn(self, slot: int) -> Worker:
        worker = Worker(self.next_number, slot, self.generation)
        self.next_number += 1
        listeners = self.slots.of(slot)
        # Signals wait until the child has its own handlers (else one could run ours in it).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
            if pid == 0:
                _child(self, worker, listeners, mask)  # never returns
        except OSError as exc:  # EAGAIN/ENOMEM: the next pass of the loop tries again
            logger.error("Cannot fork a worker: %s", exc)
            for fd in (worker.read_fd, worker.write_fd):
                os.close(fd)
            worker.beat.close()
            return worker
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker.pid = pid
        os.close(worker.write_fd)
        os.set_blocking(worker.read_fd, False)
        self.selector.register(worker.read_fd, selectors.EVENT_READ, worker)
        self.workers[pid] = worker
        logger.info("Started %s", worker)
        return worker

    def retire(self, worker: Worker, force: bool = False, signum: int | None = signal.SIGTERM) -> None:
        """Stop a worker: SIGTERM drains, force stops at once; SIGKILL at its deadline."""
        if force:  # a worker that has no handlers yet would dump core on SIGQUIT
            signum = signal.SIGQUIT if worker.said_ready else signal.SIGKILL
        elif worker.phase is Phase.RETIRING:
            return
        worker.phase = Phase.RETIRING
        grace = FORCE_KILL_S if force else self.config.timeout_graceful_shutdown_s + KILL_MARGIN_S
        worker.kill_at = min(worker.kill_at or float("inf"), now() + grace)
        if signum is not None:
            logger.info("Stopping %s%s", worker, " now" if force else "")
            worker.send(signum)

    def check_workers(self) -> None:
        """SIGKILL workers past their deadline; dump and kill those whose loop is blocked."""
        limit = self.config.timeout_worker_healthcheck_s
        for worker in list(self.workers.values()):
            if worker.kill_at and now() >= worker.kill_at:
                logger.warning("%s did not exit in time; killing it (SIGKILL).", worker)
                worker.send(signal.SIGKILL)
                worker.kill_at = now() + 60.0
            elif worker.said_ready and not worker.kill_at and now() - worker.last_beat() > limit:
                logger.error("%s missed its heartbeat for %.1fs (--timeout-worker-healthcheck %ss): "
                             "its event loop is blocked. Dumping its stack, then killing it.",
                             worker, now() - worker.last_beat(), limit)
                worker.send(signal.SIGUSR1)
                worker.phase = Phase.RETIRING  # so that its replacement starts now
                worker.kill_at = now() + DUMP_WAIT_S

    def reap(self) -> None:
        # Signals that arrived since select() returned come first: a worker that exited because the
        # whole group got SIGTERM must not look like one that died while we were not stopping.
        with contextlib.suppress(BlockingIOError):
            self.readable(None)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:  # else the --reload watcher
                self.read_messages(worker)
                self._close_pipe(worker)
                worker.beat.close()
                self.exited(worker, os.waitstatus_to_exitcode(status))

    def exited(self, worker: Worker, code: int) -> None:
        how = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        if worker.phase is Phase.RETIRING:
            logger.info("Stopped %s (%s)", worker, how)
        elif worker.phase is Phase.READY:
            logger.warning("%s died unexpectedly (%s); starting a replacement.", worker, how)
        elif self.config.reload or any(w.generation < worker.generation for w in self.workers.values()):
            logger.error("%s failed to boot (%s); the running workers keep serving the old code. "
                         "Fix the error above, then %s.", worker, how,
                         "save a file" if self.config.reload else "send SIGHUP again")
            self.hold = True
            for other in self.workers.values():
                other.generation = self.generation
        else:
            logger.error("%s failed to boot (%s): see the error above. Stopping.", worker, how)
            self.shutdown(force=False, code=BOOT_FAILED)

    def _close_pipe(self, worker: Worker) -> None:
        if worker.read_fd >= 0:
            self.selector.unregister(worker.read_fd)
            os.close(worker.read_fd)
            worker.read_fd = -1

    def close_in_child(self, keep: list[socket.socket]) -> None:
        """In a forked child: drop what is the supervisor's (all listeners but `keep`)."""
        signal.set_wakeup_fd(-1)
        self.selector.close()
        for fd in (self.wake_r, self.wake_w) + ((self.watcher.fd,) if self.watcher else ()):
            os.close(fd)
        for other in self.workers.values():
            if other.read_fd >= 0:
                os.close(other.read_fd)
            other.beat.close()
        for sock in self.slots.all():
            if all(sock is not mine for mine in keep):
                sock.close()

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def _ignore(signum: int, frame: Any) -> None:
    """A Python handler that does nothing: its C half writes signum to the wake-up fd."""


def _reuse_port_address(config: Any, listeners: list[socket.socket]) -> Any:
    """The address of per-slot SO_REUSEPORT listeners, or None to share `listeners`."""
    if config.reuse_port is False:
        return None
    inherited = os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS")
    if (config.fd is not None or config.uds or inherited or len(listeners) != 1
            or listeners[0].family == socket.AF_UNIX):
        if config.reuse_port:
            logger.warning("--reuse-port needs one TCP listener that ringserve binds itself (not "
                           "--fd, --uds or systemd's sockets); the workers share it instead.")
        return None
    return listeners[0].getsockname()


# --- the worker side (in the forked child) -----------------------------------------------------


def _child(sup: Supervisor, worker: Worker, listeners: list[socket.socket], mask: Any) -> None:
    """The forked worker: never returns, never runs the supervisor's cleanup."""
    code = 1
    try:
        _child_signals()
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        sup.close_in_child(keep=listeners)
        os.close(worker.read_fd)
        worker.pid = os.getpid()
        logging.getLogger("ringserve.error").addFilter(_drop_running_line)
        code = _serve_in_child(sup.worker_config, worker, listeners)
    except BaseException:  # the child must reach os._exit
        logger.exception("%s crashed", worker)
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _child_signals() -> None:
    """INT/HUP/TTIN/TTOU are the supervisor's; TERM and QUIT get handlers once the worker runs."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR2, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


def _drop_running_line(record: logging.LogRecord) -> bool:
    """The supervisor says "running on", once; a worker says "ready" instead."""
    return not record.getMessage().startswith("Ringserve running on")


def _serve_in_child(config: Any, worker: Worker, listeners: list[socket.socket]) -> int:
    from ringserve.importer import import_app
    from ringserve.server import WorkerHooks, resolve_interface, run_worker

    try:
        app = import_app(config.app, config.app_dir, config.factory)
        app = resolve_interface(app, config.interface)
    except ConfigError as exc:
        logger.error("%s", exc)
        return BOOT_FAILED
    beat, parent = worker.beat, os.getppid()

    def tick(server: Any) -> None:
        struct.pack_into("d", beat, 0, now())
        _accept_stranded(server)
        if os.getppid() != parent and not server.stop_event.is_set():
            logger.warning("Worker %d [pid %d]: the supervisor is gone; shutting down.",
                           worker.number, worker.pid)
            server.request_stop()

    hooks = WorkerHooks(install_signals=False, tick=tick, started=lambda s: _started(s, worker))
    return run_worker(config, app, listeners, hooks)


def _accept_stranded(server: Any) -> None:
    """Stop-gap for lost accept wake-ups (docs/design.md, Process model; it belongs in uring.py):
    a connection can wait in a listener's queue although our ring's accept is armed, when its
    wake-up went to a ring that was cancelling its accept. Accept it here (every 250 ms)."""
    backend = server.backend
    if server.draining or not hasattr(backend, "new_connection"):
        return
    for listener in getattr(backend, "listeners", ()):
        waiting = select.poll()
        waiting.register(listener.fd, select.POLLIN)
        while listener.armed and waiting.poll(0):
            try:
                sock, _ = listener.sock.accept()
            except OSError:
                break
            backend.new_connection(sock.detach(), listener)


def _started(server: Any, worker: Worker) -> None:
    loop = server.loop
    loop.add_signal_handler(signal.SIGTERM, _signalled, server, worker, False)
    loop.add_signal_handler(signal.SIGQUIT, _signalled, server, worker, True)
    loop.add_signal_handler(signal.SIGUSR2, _leave, server, worker)
    struct.pack_into("d", worker.beat, 0, now())
    logger.info("Worker %d [pid %d] ready: %s", worker.number, worker.pid, server.backend.describe())
    _tell(worker, READY)
    loop.create_task(_on_stop(server, worker))


def _leave(server: Any, worker: Worker) -> None:
    """SIGUSR2 (SIGTTOU removed this slot): drain, and close the listeners as soon as the accept
    is cancelled, so that the kernel stops steering connections to this slot's listener."""

    async def close_listeners() -> None:
        await server.stop_event.wait()
        await asyncio.sleep(0)  # drain() has cancelled the accept by now
        for sock in server.socks:
            sock.close()

    server.loop.create_task(close_listeners())
    _signalled(server, worker, False)


def _signalled(server: Any, worker: Worker, force: bool) -> None:
    """TERM (drain) or QUIT (force), from the supervisor or from outside (systemd or a shell
    signalling the whole group): stop without asking for a replacement."""
    worker.signalled = True
    server.request_stop(force)


async def _on_stop(server: Any, worker: Worker) -> None:
    """Tell the supervisor when this worker drains by itself (--limit-max-requests), so that it
    starts the replacement now."""
    await server.stop_event.wait()
    if not worker.signalled:
        _tell(worker, DRAINING)


def _tell(worker: Worker, message: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(worker.write_fd, message)


# --- --reload ------------------------------------------------------------------------------------

DEFAULT_RELOAD_INCLUDES = ("*.py",)
DEFAULT_RELOAD_EXCLUDES = (".*", "*.py[cod]", "*.sw.*", "~*", "__pycache__")


class Watcher:
    """--reload: a forked process runs watchfiles and writes a byte to a pipe per batch of changes
    (a process, not a thread: the supervisor stays single-threaded, so its forks are safe)."""

    def __init__(self, config: Any, close_in_child: Any) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigError("--reload needs watchfiles: pip install 'ringserve[reload]' (or "
                              "pip install watchfiles).") from None
        dirs = [os.path.abspath(d) for d in config.reload_dirs or (".",)]
        self.fd, write_fd = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                close_in_child()
                _child_signals()
                accept = ReloadFilter(dirs, config.reload_includes, config.reload_excludes)
                for changes in watchfiles.watch(*dirs, watch_filter=accept, rust_timeout=500,
                                                yield_on_timeout=True, raise_interrupt=False):
                    if os.getppid() != parent:
                        break
                    if changes:
                        os.write(write_fd, b"C")
            finally:
                os._exit(0)
        os.close(write_fd)
        os.set_blocking(self.fd, False)
        logger.info("Reloading on changes in %s [watcher pid %d]", ", ".join(dirs), self.pid)

    def changed(self) -> bool:
        try:
            return bool(os.read(self.fd, 512))
        except BlockingIOError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


class ReloadFilter:
    """Which changed paths reload: the name (or, for a pattern with '/', the path's end) matches an
    include and no exclude; an exclude also matches any directory below a watched one."""

    def __init__(self, dirs: list[str], includes: tuple[str, ...], excludes: tuple[str, ...]) -> None:
        self.dirs = [PurePath(d) for d in dirs]
        self.includes = includes or DEFAULT_RELOAD_INCLUDES
        self.excludes = excludes or DEFAULT_RELOAD_EXCLUDES

    def __call__(self, change: Any, path: str) -> bool:
        full = PurePath(path)
        rel = next((full.relative_to(d) for d in self.dirs if full.is_relative_to(d)), full)
        for pattern in self.excludes:
            if rel.match(pattern) or any(fnmatch(part, pattern) for part in rel.parts):
                return False
        return any(rel.match(pattern) for pattern in self.includes)


# --- entry points ------------------------------------------------------------------------------


def supervise(config: Any) -> int:
    """Bind, then supervise the workers until they stop; returns the process exit code."""
    from ringserve.sockets import bind_listeners, close_listeners

    try:  # without SO_REUSEPORT, which would hide "address in use": Slots rebinds with it
        listeners = bind_listeners(config.replace(reuse_port=False) if config.reuse_port is None
                                   else config)
        supervisor = Supervisor(config, listeners)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    try:
        with pid_file(config.pid_file):
            return supervisor.run()
    finally:
        supervisor.close()
        close_listeners(supervisor.slots.all(), config)


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid to `path` (atomically) meanwhile; remove it if still ours."""
    if not path:
        yield
        return
    pid = str(os.getpid())
    tmp = f"{path}.{pid}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(pid + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"Cannot write --pid {path}: {exc.strerror or exc}. Choose a writable "
                          "path.") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path) as f:
                mine = f.read().strip() == pid
            if mine:
                os.unlink(path)
