"""Integration-test harness: real server processes on a socket the test bound itself.

How it works
- The test binds 127.0.0.1:0 and listens, then starts the server with ``--fd N`` (``pass_fds``), so there
  is no port race and connections made before the server is ready wait in the backlog.
- Ready = a line matching ``running on`` (any case) on the server's output; never a sleep. A server that
  is not ready within BOOT_TIMEOUT, or exits first, fails the test with its output.
- Stop = SIGTERM, wait STOP_TIMEOUT, then SIGKILL of the process group. For ringserve the line
  ``ring stats at exit: key=value ...`` must be present with inflight_ops, bufs_out and conns all 0.
- Every test runs against each server kind: ``ringserve`` and ``uvicorn --http httptools`` as an oracle
  (the way uvloop runs its suite on uvloop and asyncio). ``--server=ringserve|uvicorn|all`` picks.
  ``@pytest.mark.ringserve_only(reason)`` skips a test on uvicorn and says why.
- WSGI tests run against ringserve and ``gunicorn`` (sync worker; gthread when a test passes ``--threads``) as
  the oracle: such a module overrides ``server_kind`` with ``params=WSGI_SERVER_KINDS``. gunicorn serves the
  inherited socket with ``--bind fd://N``; gunicorn_args() spells the few ringserve flags those tests use.
- On failure the output the server(s) wrote during the test is added to the report.

Fixtures
- ``server_kind``: "ringserve" | "uvicorn" (session-scoped parameter).
- ``serve(app, *args, env=None)``: module-scoped factory; the same (app, args, env) reuses one process.
- ``start_server(app, *args, env=None)``: function-scoped factory, for tests that stop the server or need
  a pristine one; stopped and checked after the test.
- ``run_server(app, *args, env=None, timeout=30)``: run a server command expected to exit by itself
  (bad app, address in use); returns subprocess.CompletedProcess with text output.

Server objects: ``.url``, ``.port``, ``.pid``, ``.client()`` (httpx.Client), ``.connect()`` (RawConnection),
``.https`` (started with ``--ssl-certfile``: ``.url`` is https, pass ``client(verify=ctx)`` and ``connect(tls=ctx)``),
``.output()``, ``.wait_for_output(regex)``, ``.rss_kb()``, ``.terminate()`` (SIGTERM, no wait), ``.stop()``,
``.exit_problems()``, ``.ring_stats()``.
RawConnection: ``.request()``, ``.send()``, ``.send_slowly()``, ``.read_response(method)``, ``.read_until_closed()``,
``.wait_closed()``, ``.is_open()``; ``RawConnection.build(...)`` and ``RawConnection.chunked(...)`` serialise
requests. Responses are parsed strictly enough that a framing error shows up as a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_KINDS = ("ringserve", "ringserve-asyncio", "uvicorn")
RINGSERVE_KINDS = ("ringserve", "ringserve-asyncio")  # --io uring (default) and --io asyncio
WSGI_SERVER_KINDS = ("ringserve", "ringserve-asyncio", "gunicorn")
APP = "tests.apps.combined:app"
READY_RE = re.compile(r"running on|booting worker with pid", re.IGNORECASE)  # gunicorn: the second
STATS_RE = re.compile(r"ring stats at exit:(.*)$")
STATS_MUST_BE_ZERO = ("inflight_ops", "bufs_out", "conns")
BOOT_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 5.0
# Environment that would change either server's configuration behind the test's back.
_SCRUB_PREFIXES = ("UVICORN_", "RINGSERVE_")
_SCRUB = ("FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY")


# --------------------------------------------------------------------------- pytest wiring


def pytest_addoption(parser):
    parser.addoption(
        "--server",
        choices=("ringserve", "ringserve-asyncio", "uvicorn", "gunicorn", "gunicorn-ringserve", "all"),
        default="all",
        help="which server the integration tests run against (uvicorn is the oracle); default: all",
    )
    parser.addoption(
        "--run-ringserve-only",
        action="store_true",
        help="also run ringserve_only tests against uvicorn (to see what uvicorn does; they are expected to fail)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "ringserve_only(reason): asserts something uvicorn deliberately does not do; skipped on uvicorn "
        "with the reason",
    )
    config.addinivalue_line(
        "markers", "uring_only(reason): exercises the io_uring core itself; skipped on other servers/backends",
    )


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--server")
    keep, drop = [], []
    for item in items:
        kind = getattr(item, "callspec", None) and item.callspec.params.get("server_kind")
        if kind and wanted != "all" and kind != wanted:
            drop.append(item)
            continue
        marker = item.get_closest_marker("ringserve_only")
        if kind in ("uvicorn", "gunicorn") and marker and not config.getoption("--run-ringserve-only"):
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason=f"ringserve-only: {reason}"))
        uring = item.get_closest_marker("uring_only")
        if kind and kind != "ringserve" and uring:
            reason = uring.args[0] if uring.args else ""
            item.add_marker(pytest.mark.skip(reason=f"io_uring backend only: {reason}"))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    for server in _servers_of(item):
        server.mark()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for server in _servers_of(item):
            since_mark = call.when == "call"
            report.sections.append(
                (f"{server.kind} output ({server.describe()})", server.output(since_mark=since_mark) or "(none)")
            )


def _servers_of(item) -> list[Server]:
    found: dict[int, Server] = {}
    for value in getattr(item, "funcargs", {}).values():
        candidates = value.servers if isinstance(value, _Factory) else [value]
        for server in candidates:
            if isinstance(server, Server):
                found[id(server)] = server
    return list(found.values())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def serve(server_kind):
    """Module-scoped: serve(app, *args, env=None) -> a running Server, shared for equal arguments."""
    factory = _Factory(server_kind, reuse=True)
    yield factory
    factory.close()


@pytest.fixture
def start_server(server_kind):
    """Function-scoped: start_server(app, *args, env=None) -> a fresh Server, stopped after the test."""
    factory = _Factory(server_kind, reuse=False)
    yield factory
    factory.close()


@pytest.fixture
def run_server(server_kind):
    """run_server(app, *args, env=None, timeout=30, fd=True) -> CompletedProcess for a command that exits."""

    def run(app, *args, env=None, timeout=30.0, fd=True):
        sock = listening_socket() if fd else None
        try:
            cmd = server_command(server_kind, app, sock.fileno() if sock else None, args)
            return subprocess.run(
                cmd, cwd=ROOT, env=server_env(env), capture_output=True, text=True, errors="replace",
                timeout=timeout, pass_fds=(sock.fileno(),) if sock else (),
                stdin=subprocess.DEVNULL, start_new_session=True,  # no terminal to prompt on (a key's password)
            )
        finally:
            if sock:
                sock.close()

    return run


class _Factory:
    def __init__(self, kind: str, reuse: bool):
        self.kind, self.reuse = kind, reuse
        self.servers: list[Server] = []
        self._by_key: dict[tuple, Server] = {}
        self._failed: dict[tuple, str] = {}

    def __call__(self, app: str = APP, *args: str, env: dict | None = None) -> Server:
        key = (app, args, tuple(sorted((env or {}).items())))
        if self.reuse and key in self._failed:  # don't pay the boot timeout once per test
            raise AssertionError(f"(this configuration already failed to start in this module)\n{self._failed[key]}")
        if self.reuse and key in self._by_key and self._by_key[key].alive:
            return self._by_key[key]
        server = Server(self.kind, app, args, env)
        try:
            server.start()  # a failed start reports (and stops) itself
        except AssertionError as exc:
            self._failed[key] = str(exc)
            raise
        self.servers.append(server)
        self._by_key[key] = server
        return server

    def close(self) -> None:
        problems = []
        for server in self.servers:
            server.stop()
            problems.extend(server.exit_problems())
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------- process


def server_command(kind: str, app: str, fd: int | None, args) -> list[str]:
    fd_args = ["--fd", str(fd)] if fd is not None else []
    if kind == "ringserve":
        return [sys.executable, "-m", "ringserve", app, *fd_args, *args]
    if kind == "ringserve-asyncio":
        return [sys.executable, "-m", "ringserve", app, *fd_args, "--io", "asyncio", *args]
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", app, *fd_args, "--http", "httptools", *args]
    if kind == "gunicorn":
        bind = ["--bind", f"fd://{fd}"] if fd is not None else []
        return [sys.executable, "-m", "gunicorn", app, *bind, "--workers", "1", "--worker-class", "sync",
                "--graceful-timeout", "5", "--log-level", "info", *gunicorn_args(args)]
    if kind == "gunicorn-ringserve":  # gunicorn's arbiter with ringserve's worker class (tests/test_examples.py)
        bind = ["--bind", f"fd://{fd}"] if fd is not None else []
        return [sys.executable, "-m", "gunicorn", app, *bind, "--workers", "1", "--worker-class", "ringserve.Worker",
                "--graceful-timeout", "5", "--log-level", "info", *gunicorn_args(args)]
    raise ValueError(kind)


def gunicorn_args(args) -> list[str]:
    """The ringserve flags the WSGI tests use, spelled for gunicorn (the rest pass through)."""
    out, rest = [], iter(args)
    for arg in rest:
        if arg == "--root-path":
            out += ["--env", f"SCRIPT_NAME={next(rest)}"]  # gunicorn reads SCRIPT_NAME from its environment
        elif arg == "--timeout-keep-alive":
            out += ["--keep-alive", next(rest)]
        elif arg == "--interface":
            next(rest)
        else:
            out.append(arg)
    return out


def server_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


class Server:
    """One server process. Output is collected by reader threads (pipes never fill up)."""

    def __init__(self, kind: str, app: str, args=(), env: dict | None = None):
        self.kind, self.app, self.args, self.env = kind, app, tuple(args), dict(env or {})
        self.host, self.port = "127.0.0.1", 0
        self.https = "--ssl-certfile" in self.args
        self.proc: subprocess.Popen | None = None
        self._lines: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._mark = 0
        self._stopped = False
        self._terminated = False
        self._exited_early: int | None = None
        self._killed = False

    def describe(self) -> str:
        return " ".join([self.app, *self.args])

    # ---- lifecycle

    def start(self) -> None:
        sock = listening_socket(self.host)
        self.port = sock.getsockname()[1]
        try:
            self.proc = subprocess.Popen(
                server_command(self.kind, self.app, sock.fileno(), self.args),
                cwd=ROOT, env=server_env(self.env), pass_fds=(sock.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            sock.close()  # the child owns it now; if it dies, clients get ECONNREFUSED, not a hang
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            thread = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            thread.start()
            self._readers.append(thread)
        try:
            self.wait_for_output(READY_RE, BOOT_TIMEOUT, what="the ready line")
        except AssertionError:
            self.stop()
            raise

    def _read(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self._lines.append((name, raw.decode("utf-8", "replace").rstrip("\r\n")))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def terminate(self) -> None:
        """Send SIGTERM (once) without waiting: the start of a graceful shutdown the test can watch."""
        if self.proc is not None and not self._terminated:
            self._terminated = True
            if self.proc.poll() is not None:
                self._exited_early = self.proc.returncode
            else:
                self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL the group if needed; collect the rest of the output. Idempotent."""
        if self.proc is None or self._stopped:
            return self.proc and self.proc.returncode
        self._stopped = True
        self.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._killed = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for thread in self._readers:
            thread.join(5)
        return self.proc.returncode

    def exit_problems(self) -> list[str]:
        """What went wrong at exit: early death, kill, bad exit code, ring stats (ringserve). [] if clean."""
        if self.proc is None:
            return []
        problems = []
        if self._exited_early is not None:
            problems.append(f"server exited by itself with code {self._exited_early} before teardown")
        elif self._killed:
            problems.append(f"server did not exit within {STOP_TIMEOUT}s of SIGTERM (killed)")
        elif self.proc.returncode not in (0, -signal.SIGTERM):
            problems.append(f"server exited with code {self.proc.returncode} after SIGTERM")
        if self.kind in RINGSERVE_KINDS and not self._killed:
            stats = self.ring_stats()
            if stats is None:
                problems.append("no 'ring stats at exit:' line in the output")
            else:
                leftover = {k: stats.get(k) for k in STATS_MUST_BE_ZERO if stats.get(k, 0) != 0 or "conns" not in stats}
                if leftover:
                    problems.append(f"ring not clean at exit (want 0): {leftover}; all stats: {stats}")
        if not problems:
            return []
        return [f"{self.kind} ({self.describe()}): " + "; ".join(problems) + "\n--- output ---\n" + self.output()]

    # ---- output

    def mark(self) -> None:
        with self._cond:
            self._mark = len(self._lines)

    def output(self, since_mark: bool = False) -> str:
        with self._cond:
            lines = self._lines[self._mark:] if since_mark else list(self._lines)
        return "\n".join(line for _, line in lines)

    def wait_for_output(self, pattern, timeout: float = IO_TIMEOUT, what: str | None = None) -> re.Match:
        """Wait until a line (from now or earlier) matches; fail with the output if the server exits first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for _, line in self._lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                readers_done = not any(t.is_alive() for t in self._readers)
                left = deadline - time.monotonic()
                if readers_done or left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        code = self.proc.poll()
        status = f"exited with code {code}" if code is not None else "still running"
        raise AssertionError(
            f"{self.kind}: no output matching {what or regex.pattern!r} within {timeout}s ({status});"
            f" command: {' '.join(self.proc.args)}\n--- output ---\n{self.output()}"
        )

    def ring_stats(self) -> dict | None:
        """Parse 'ring stats at exit: key=value ...' (the last one) into a dict; ints where they parse."""
        stats = None
        with self._cond:
            lines = list(self._lines)
        for _, line in lines:
            match = STATS_RE.search(line)
            if match:
                stats = parse_stats(match.group(1))
        return stats

    # ---- clients

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def connect(self, timeout: float = IO_TIMEOUT, rcvbuf: int | None = None,
                tls: ssl.SSLContext | None = None) -> RawConnection:
        """A raw connection; with `tls`, TLS over it (the handshake is done before this returns)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        try:
            sock.connect((self.host, self.port))
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=self.host)
        except OSError:
            sock.close()
            raise
        return RawConnection(sock, timeout)

    def rss_kb(self) -> int:
        """VmRSS of the server and its descendants, in KiB."""
        return sum(_vmrss_kb(pid) for pid in _process_tree(self.pid))


def parse_stats(text: str) -> dict:
    stats = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            try:
                stats[key] = int(value)
            except ValueError:
                stats[key] = value
    return stats


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def _vmrss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- raw HTTP client


@dataclass
class Response:
    http_version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body)


class ConnectionClosed(Exception):
    """The peer closed (EOF or reset) before a complete response."""


class RawConnection:
    """A blocking client socket with a read buffer: for pipelining, slow clients and malformed input."""

    def __init__(self, sock: socket.socket, timeout: float = IO_TIMEOUT):
        self.sock, self.timeout = sock, timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, headers=None, body: bytes = b"", **kwargs) -> None:
        """Send one request built by build_request (see there for the defaults)."""
        self.sock.sendall(build_request(method, target, headers, body, **kwargs))

    def send_slowly(self, data: bytes, step: int = 1, delay: float = 0.002) -> None:
        """Send `step` bytes at a time (TCP_NODELAY is on, so each is its own segment)."""
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            time.sleep(delay)

    def _fill(self, timeout: float | None = None) -> bool:
        """Read once into the buffer. False on EOF/reset; TimeoutError if nothing came in time."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self) -> bytes:
        while True:
            index = self.buf.find(b"\r\n")
            if index >= 0:
                line = bytes(self.buf[:index])
                del self.buf[:index + 2]
                return line
            if not self._fill():
                raise ConnectionClosed(f"closed in the middle of a line; buffered: {bytes(self.buf)[:200]!r}")

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed(f"closed after {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self) -> Response:
        """Read a status line and headers (an interim 1xx response is returned as is)."""
        try:
            status_line = self._read_line()
        except ConnectionClosed:
            reason = "closed before a response" + (" (connection reset)" if self.reset else "")
            raise ConnectionClosed(reason) from None
        version, _, rest = status_line.decode("latin-1").partition(" ")
        status, _, reason = rest.partition(" ")
        assert version.startswith("HTTP/1."), f"bad status line {status_line!r}"
        headers = []
        while True:
            line = self._read_line()
            if not line:
                break
            assert line[:1] not in (b" ", b"\t"), f"obs-fold in response header {line!r}"
            name, sep, value = line.decode("latin-1").partition(":")
            assert sep and name == name.strip() and name, f"bad response header line {line!r}"
            headers.append((name.lower(), value.strip(" \t")))
        return Response(version, int(status), reason, headers)

    def read_response(self, method: str = "GET", skip_interim: bool = True) -> Response:
        """Read one whole response, framed by the rules of RFC 9112 section 6.3."""
        while True:
            resp = self.read_head()
            if not (skip_interim and 100 <= resp.status < 200 and resp.status != 101):
                break
        return self.read_body(resp, method)

    def read_body(self, resp: Response, method: str = "GET") -> Response:
        """Read the body that belongs to a head from read_head(); fills resp.body and returns resp."""
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = resp.header("transfer-encoding")
        if te is not None:
            assert te.lower() == "chunked", f"unexpected transfer-encoding {te!r}"
            assert resp.header("content-length") is None, "both content-length and transfer-encoding"
            resp.chunked = True
            self._read_chunked(resp)
        elif resp.header("content-length") is not None:
            lengths = set(resp.header_all("content-length"))
            assert len(lengths) == 1, f"conflicting content-length {lengths}"
            resp.body = self._read_exact(int(lengths.pop()))
        else:
            resp.body = self.read_until_closed()
        return resp

    def _read_chunked(self, resp: Response) -> None:
        while True:
            size_line = self._read_line()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            resp.chunks.append(self._read_exact(size))
            assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
        while True:
            line = self._read_line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp.trailers.append((name.lower(), value.strip()))
        resp.body = b"".join(resp.chunks)

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything until EOF (or reset). Raises TimeoutError if the peer keeps the connection open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(max(0.001, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError("connection still open")
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def wait_closed(self, timeout: float | None = None) -> tuple[bool, bytes]:
        """(closed?, data received meanwhile) - closed means EOF or reset within `timeout`."""
        try:
            return True, self.read_until_closed(timeout)
        except TimeoutError:
            data = bytes(self.buf)
            self.buf.clear()
            return False, data

    def is_open(self, timeout: float = 0.2) -> bool:
        """True if nothing (no EOF, no data) arrives within `timeout` - the server keeps it open."""
        closed, data = self.wait_closed(timeout)
        self.buf[:0] = data
        return not closed


def build_request(method: str, target: str, headers: dict | list | None = None, body: bytes = b"",
                  version: str = "HTTP/1.1", host: str | None = "test") -> bytes:
    """Serialise a request; Content-Length is added for a non-empty body unless a framing header is given."""
    items = list(headers.items() if isinstance(headers, dict) else headers or [])
    names = {k.lower() for k, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body and not names & {"content-length", "transfer-encoding"}:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    """A chunked body from parts (empty parts are skipped - a zero chunk would end the body)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n" + trailers + b"\r\n"


# Tests reach the helpers through the connection object rather than importing conftest.
RawConnection.build = staticmethod(build_request)
RawConnection.chunked = staticmethod(chunked)
