"""The process model (--workers, signals, respawn, recycling, heartbeat, --reload, --pid), with real
processes on loopback.

Most servers here bind their own port (--port 0; the port is read from the "running on" line):
per-worker SO_REUSEPORT listeners, the default with --workers > 1, cannot be made from an
inherited --fd. Under load, each request uses a fresh connection ("Connection: close"), so a
connection dropped in an accept queue during a restart shows up as a failed request.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    BOOT_TIMEOUT,
    ROOT,
    ConnectionClosed,
    RawConnection,
    Server,
    server_env,
)

APP = "tests.apps.workers_app:app"
PORT_RE = re.compile(r"running on http://127\.0\.0\.1:(\d+)")
READY_RE = r"Worker {} \[pid (\d+)\] ready"


class OwnPortServer(Server):
    """A ringserve that binds --port 0 itself (the harness's Server passes --fd instead)."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ringserve", self.app, "--port", "0", *self.args],
            cwd=ROOT, env=server_env(self.env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            thread = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            thread.start()
            self._readers.append(thread)
        try:
            self.port = int(self.wait_for_output(PORT_RE, BOOT_TIMEOUT, "the ready line").group(1))
        except AssertionError:
            self.stop()
            raise

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def worker_pid(self, number: int, timeout: float = 5.0) -> int:
        return int(self.wait_for_output(READY_RE.format(number), timeout).group(1))

    def exit_code(self, timeout: float) -> int:
        """Wait for an exit the test caused (teardown still checks the code and ring stats)."""
        code = self.proc.wait(timeout)
        self._stopped = True
        for thread in self._readers:
            thread.join(5)
        return code


@pytest.fixture
def launch():
    """launch(*args, app=APP, env=None) -> a started OwnPortServer; stopped and checked after the test."""
    servers: list[OwnPortServer] = []

    def start(*args: str, app: str = APP, env: dict | None = None) -> OwnPortServer:
        server = OwnPortServer("ringserve", app, ("--no-access-log", *args), env)
        server.start()
        servers.append(server)
        return server

    yield start
    problems = []
    for server in servers:
        server.stop()
        problems.extend(server.exit_problems())
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    with RawConnection(socket.create_connection(("127.0.0.1", port), timeout=timeout), timeout) as conn:
        conn.request("GET", path, {"Connection": "close"})
        response = conn.read_response()
    return response.status, response.body


class Load:
    """A steady stream of requests from a few threads until stop(); records every outcome."""

    def __init__(self, port: int, threads: int = 4, pause: float = 0.002) -> None:
        self.port, self.pause = port, pause
        self.ok: collections.Counter = collections.Counter()  # pid -> responses
        self.failures: list[tuple[float, str]] = []
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = get(self.port)
                assert status == 200, status
                with self.lock:
                    self.ok[int(body)] += 1
            except (OSError, AssertionError, ValueError, ConnectionClosed) as exc:
                with self.lock:
                    self.failures.append((time.monotonic(), repr(exc)))
            time.sleep(self.pause)

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values())

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` more requests succeeded."""
        target, deadline = self.total() + count, time.monotonic() + timeout
        while self.total() < target:
            assert time.monotonic() < deadline, f"load stalled: {self.total()} < {target}, failures {self.failures[:5]}"
            time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(10)


def served_by(port: int, n: int = 40) -> collections.Counter:
    return collections.Counter(int(get(port)[1]) for _ in range(n))


# --------------------------------------------------------------------------- start-up and spread


@pytest.mark.timeout(20)
def test_workers_spread_connections_with_reuse_port_by_default(launch):
    server = launch("--workers", "2")
    assert "a listener per worker (SO_REUSEPORT)" in server.output()
    assert len(re.findall(r"running on", server.output())) == 1, "only the supervisor says it"
    pids = {server.worker_pid(1), server.worker_pid(2)}
    counts = served_by(server.port, 60)
    assert set(counts) == pids
    assert min(counts.values()) >= 10, counts  # 50/50 by the 4-tuple hash; 10 of 60 is far below


@pytest.mark.timeout(20)
def test_address_in_use_is_still_detected_with_reuse_port(launch):
    server = launch("--workers", "2")
    proc = subprocess.run([sys.executable, "-m", "ringserve", APP, "--workers", "2", "--port", str(server.port)],
                          cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=15, check=False)
    assert proc.returncode == 1, proc
    assert "already in use" in proc.stderr
    assert served_by(server.port, 4)


@pytest.mark.timeout(20)
def test_import_error_exits_3_quickly():
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ringserve", "tests.apps.workers_broken:app", "--workers", "2",
                           "--port", "0"], cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=15, check=False)
    assert proc.returncode == 3, proc
    assert time.monotonic() - start < 5
    assert "ringserve_no_such_dependency" in proc.stderr
    assert "failed to boot" in proc.stderr
    assert proc.stderr.count("Started worker") == 2, "no respawn loop"


@pytest.mark.timeout(20)
def test_pid_file_names_the_supervisor_and_is_removed(launch, tmp_path):
    pid_path = tmp_path / "ringserve.pid"
    server = launch("--workers", "2", "--pid", str(pid_path))
    assert int(pid_path.read_text()) == server.pid
    server.stop()
    assert not pid_path.exists()


# --------------------------------------------------------------------------- restarts under load


@pytest.mark.timeout(25)
@pytest.mark.parametrize("mode", ["reuse-port", "shared", "shared-asyncio"])
def test_sighup_replaces_workers_one_by_one_without_failed_requests(launch, mode):
    args = {"reuse-port": (), "shared": ("--no-reuse-port",), "shared-asyncio": ("--no-reuse-port", "--io", "asyncio")}
    server = launch("--workers", "2", *args[mode])
    old = {server.worker_pid(1), server.worker_pid(2)}
    with Load(server.port) as load:
        load.wait_for(100)
        server.signal(signal.SIGHUP)
        server.wait_for_output(r"Stopped worker 2 ", 10)
        new = {server.worker_pid(3), server.worker_pid(4)}
        load.wait_for(100)
    assert load.failures == []
    assert set(served_by(server.port, 20)) <= new and not new & old
    out = server.output()
    ready_3, stop_1 = out.index("Worker 3 [pid"), out.index("Stopping worker 1 ")
    ready_4, stop_2 = out.index("Worker 4 [pid"), out.index("Stopping worker 2 ")
    assert ready_3 < stop_1 < ready_4 < stop_2, "each new worker is ready before an old one stops"


@pytest.mark.timeout(25)
def test_max_requests_recycles_workers_without_failed_requests(launch):
    server = launch("--workers", "2", "--limit-max-requests", "60")
    with Load(server.port) as load:
        load.wait_for(300)
    assert load.failures == []
    assert server.output().count("Maximum requests reached") >= 3
    assert "is stopping by itself; starting its replacement" in server.output()
    assert len(load.ok) >= 5, "several generations of workers served"


@pytest.mark.timeout(25)
def test_killed_worker_is_replaced_at_once(launch):
    server = launch("--workers", "2", "--timeout-worker-healthcheck", "5")
    victim = server.worker_pid(1)
    with Load(server.port) as load:
        load.wait_for(100)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        server.wait_for_output(rf"worker 1 \[pid {victim}\] died unexpectedly \(killed by SIGKILL\)", 5)
        server.worker_pid(3)
        replaced_at = time.monotonic()
        load.wait_for(200)
    assert replaced_at - killed_at < 3
    # Only requests in flight in the killed worker may fail: at most one per load thread, at the kill.
    assert len(load.failures) <= len(load.threads), load.failures
    assert all(t < replaced_at for t, _ in load.failures), load.failures
    assert victim not in served_by(server.port, 20)


@pytest.mark.timeout(20)
def test_ttin_adds_and_ttou_removes_a_worker(launch):
    server = launch("--workers", "2")
    server.signal(signal.SIGTTIN)
    third = server.worker_pid(3)
    assert third in served_by(server.port, 60)
    server.signal(signal.SIGTTOU)  # the last slot's worker goes
    server.wait_for_output(rf"Stopped worker 3 \[pid {third}\]", 5)
    assert set(served_by(server.port, 40)) == {server.worker_pid(1), server.worker_pid(2)}


# --------------------------------------------------------------------------- shutdown


@pytest.mark.timeout(20)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_lets_a_slow_request_finish(launch, tmp_path, signum):
    log = tmp_path / "lifespan.log"
    server = launch("--workers", "2", env={"WORKERS_LIFESPAN_LOG": str(log)})
    pids = {server.worker_pid(1), server.worker_pid(2)}
    with server.connect() as conn:
        conn.request("GET", "/slow?delay=1.5")
        head = conn.read_head()  # the app has started the response: the request is in flight
        server.signal(signum)
        server.wait_for_output(r"Received SIG(TERM|INT): shutting down", 5)
        rest = conn.read_body(head)  # the remaining chunks arrive: the request was not cut short
    assert rest.body.startswith(b"started") and b"done" in rest.body
    assert server.exit_code(10) == 0
    shutdowns = [line for line in log.read_text().splitlines() if line.startswith("shutdown")]
    assert {int(line.split()[1]) for line in shutdowns} == pids, "lifespan shutdown ran in every worker"


@pytest.mark.timeout(20)
def test_streaming_response_does_not_hold_shutdown_past_the_timeout(launch):
    server = launch("--workers", "2", "--timeout-graceful-shutdown", "1")
    with server.connect() as conn:
        conn.request("GET", "/stream")
        conn.read_head()
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.exit_code(10) == 0
        assert 0.9 < time.monotonic() - start < 4
        assert conn.wait_closed(2)[0]
    assert "Graceful shutdown timed out" in server.output()


@pytest.mark.timeout(20)
def test_sigterm_to_the_whole_group_starts_no_replacements(launch):
    """systemd (KillMode=control-group) and shells signal every process: workers drain by
    themselves and must not be mistaken for workers that stopped at --limit-max-requests."""
    server = launch("--workers", "2")
    os.killpg(server.pid, signal.SIGTERM)
    assert server.exit_code(10) == 0
    assert server.output().count("Started worker") == 2, server.output()


@pytest.mark.timeout(20)
def test_second_sigint_forces_shutdown(launch):
    server = launch("--workers", "2")
    with server.connect() as conn:
        conn.request("GET", "/slow?delay=30")
        conn.read_head()
        server.signal(signal.SIGINT)
        server.wait_for_output(r"Received SIGINT: shutting down", 5)
        start = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.exit_code(10) == 0
        assert time.monotonic() - start < 3
    assert "forcing shutdown" in server.output()


# --------------------------------------------------------------------------- health


@pytest.mark.timeout(20)
def test_blocked_worker_is_dumped_killed_and_replaced(launch):
    server = launch("--workers", "2", "--timeout-worker-healthcheck", "1")
    pids = {server.worker_pid(1), server.worker_pid(2)}
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stuck:
        stuck.sendall(b"GET /block?seconds=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        match = server.wait_for_output(r"worker (\d) \[pid (\d+)\] missed its heartbeat .* event loop is blocked", 6)
        assert int(match.group(2)) in pids
        server.wait_for_output(r'File ".*workers_app\.py", line \d+ in app', 3)  # the faulthandler dump
        server.wait_for_output(rf"worker {match.group(1)} \[pid {match.group(2)}\] \(killed by SIGKILL\)", 3)
    server.worker_pid(3)
    assert int(match.group(2)) not in served_by(server.port, 20)


# --------------------------------------------------------------------------- code changes

_APP_SOURCE = '''
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": b"{}"}})
'''


def _write_app(folder: Path, body: str, broken: bool = False) -> None:
    source = textwrap.dedent(_APP_SOURCE.format(body)) + ("\nraise RuntimeError('broken on purpose')\n" if broken else "")
    (folder / "reloadable.py").write_text(source)


@pytest.mark.timeout(20)
def test_sighup_loads_new_code_and_a_broken_deploy_keeps_the_old_workers(launch, tmp_path):
    _write_app(tmp_path, "v1")
    server = launch("--workers", "2", "--app-dir", str(tmp_path), app="reloadable:app")
    _write_app(tmp_path, "v2.0")
    server.signal(signal.SIGHUP)
    server.wait_for_output(r"Stopped worker 2 ", 10)
    assert {get(server.port)[1] for _ in range(10)} == {b"v2.0"}
    _write_app(tmp_path, "v3.00", broken=True)
    server.signal(signal.SIGHUP)
    server.wait_for_output(r"worker 5 \[pid \d+\] failed to boot .* keep serving the old code", 5)
    assert {get(server.port)[1] for _ in range(10)} == {b"v2.0"}
    assert server.output().count("Started worker") == 5, "no respawn loop"


@pytest.mark.timeout(20)
def test_reload_on_change_and_survive_a_broken_edit(launch, tmp_path):
    pytest.importorskip("watchfiles")
    _write_app(tmp_path, "one")
    server = launch("--reload", "--reload-dir", str(tmp_path), "--app-dir", str(tmp_path), app="reloadable:app")
    server.wait_for_output(r"Reloading on changes in", 5)
    assert get(server.port)[1] == b"one"
    _write_app(tmp_path, "second")  # bodies differ in length: a same-size rewrite within the
    server.worker_pid(2, timeout=8)  # same second could pass Python's .pyc check
    server.wait_for_output(r"Stopped worker 1 ", 5)
    assert get(server.port)[1] == b"second"
    (tmp_path / "notes.txt").write_text("not a .py file: no reload")
    _write_app(tmp_path, "third!", broken=True)
    server.wait_for_output(r"worker 3 \[pid \d+\] failed to boot", 8)
    assert get(server.port)[1] == b"second"
    _write_app(tmp_path, "fourth.")
    server.worker_pid(4, timeout=8)
    server.wait_for_output(r"Stopped worker 2 ", 5)
    assert get(server.port)[1] == b"fourth."
    assert server.output().count("Started worker") == 4, "the .txt file did not reload"


def test_reload_filter_includes_and_excludes(tmp_path):
    from ringserve.supervisor import ReloadFilter

    accept = ReloadFilter([str(tmp_path)], (), ())
    assert accept(None, str(tmp_path / "app.py"))
    assert accept(None, str(tmp_path / "pkg" / "mod.py"))
    assert not accept(None, str(tmp_path / "app.pyc"))
    assert not accept(None, str(tmp_path / ".venv" / "lib" / "x.py"))
    assert not accept(None, str(tmp_path / "pkg" / "__pycache__" / "mod.py"))
    assert not accept(None, str(tmp_path / "notes.txt"))
    custom = ReloadFilter([str(tmp_path)], ("*.py", "templates/*.html"), ("migrations",))
    assert custom(None, str(tmp_path / "templates" / "index.html"))
    assert not custom(None, str(tmp_path / "index.html"))
    assert not custom(None, str(tmp_path / "migrations" / "0001.py"))
