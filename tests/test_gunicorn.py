"""`gunicorn -k ringserve.Worker`: real gunicorn masters and workers serving an ASGI and a WSGI app.

Each test starts `python -m gunicorn` in its own session (so teardown can kill the whole group),
bound to a socket the test listened on itself (`-b fd://N`, no port race) unless it tests binding.
Ready = one 'Ringserve running on' line per worker on the error log (stderr), never a sleep.
At teardown the master gets SIGTERM; every worker that logged 'ring stats at exit' must show no
operation, buffer or connection left in flight.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("gunicorn", reason="the gunicorn worker tests need gunicorn (pip install 'ringserve[gunicorn]')")

ROOT = Path(__file__).resolve().parent.parent
ASGI = "tests.apps.gunicorn_asgi:app"
WSGI = "tests.apps.gunicorn_wsgi:app"
APPS = [pytest.param(ASGI, id="asgi"), pytest.param(WSGI, id="wsgi")]
READY = re.compile(r"Ringserve running on")
STATS = re.compile(r"\[(\d+)\] \[INFO\] ring stats at exit:(.*)$")
BOOT_TIMEOUT = 15.0

pytestmark = pytest.mark.timeout(45)


class Gunicorn:
    """One gunicorn master and its workers; output lines are collected by reader threads."""

    def __init__(self, app: str, *args: str, workers: int = 1, worker: str = "ringserve.Worker",
                 bind: list[str] | None = None, env: dict | None = None):
        self.app, self.args, self.workers, self.worker = app, args, workers, worker
        self.bind, self.env = bind, env or {}
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.readers: list[threading.Thread] = []
        self.port = 0

    def start(self, wait: bool = True) -> Gunicorn:
        sock = None
        binds = self.bind
        if binds is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.port = sock.getsockname()[1]
            binds = [f"fd://{sock.fileno()}"]
        cmd = [sys.executable, "-m", "gunicorn", "-k", self.worker, "-w", str(self.workers),
               "--no-control-socket", "--graceful-timeout", "5",
               *[arg for b in binds for arg in ("-b", b)], *self.args, self.app]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGSERVE_", "GUNICORN_"))}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **self.env)
        try:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True,
                                         pass_fds=(sock.fileno(),) if sock else ())
        finally:
            if sock:
                sock.close()
        self.readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                        for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self.readers:
            reader.start()
        if wait:
            self.wait_ready(self.workers)
        if not self.port and self.bind:
            listening = self.wait_for(r"Listening at: (.*) \(\d+\)").group(1)
            tcp = re.search(r"http://127\.0\.0\.1:(\d+)", listening)
            self.port = int(tcp.group(1)) if tcp else 0
        return self

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        stream.close()
        with self.cond:
            self.cond.notify_all()

    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def count(self, pattern) -> int:
        with self.cond:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_until(self, done, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = done()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._readers_alive()):
                    raise AssertionError(f"gunicorn: no {what} within {timeout}s (exit code {self.proc.poll()})"
                                         f"\n--- output ---\n" + "\n".join(self.lines))
                self.cond.wait(min(left, 0.2))

    def _readers_alive(self) -> bool:
        return any(reader.is_alive() for reader in self.readers)

    def wait_for(self, pattern: str, timeout: float = 10.0):
        regex = re.compile(pattern)
        return self.wait_until(lambda: next(filter(None, map(regex.search, self.lines)), None), timeout, pattern)

    def wait_ready(self, total: int, timeout: float = BOOT_TIMEOUT) -> None:
        """Until `total` workers (counting every one since start) have said they are running."""
        self.wait_until(lambda: sum(1 for line in self.lines if READY.search(line)) >= total, timeout,
                        f"{total} ready workers")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("gunicorn did not exit within 15 s of SIGTERM\n" + self.output()) from None
        for reader in self.readers:
            reader.join(5)
        return self.proc.returncode

    def assert_rings_clean(self) -> None:
        with self.cond:
            stats = [m for m in map(STATS.search, self.lines) if m]
        assert stats, "no 'ring stats at exit' line\n" + self.output()
        for match in stats:
            values = dict(kv.split("=") for kv in match.group(2).split())
            left = {k: values[k] for k in ("inflight_ops", "bufs_out", "conns") if values.get(k) != "0"}
            assert not left, f"worker {match.group(1)} left {left} in flight\n" + self.output()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def gunicorn():
    started: list[Gunicorn] = []

    def start(app: str, *args: str, wait: bool = True, **kwargs) -> Gunicorn:
        server = Gunicorn(app, *args, **kwargs)
        started.append(server)
        return server.start(wait)

    yield start
    for server in started:  # printed output shows in the report only when the test fails
        print(f"--- gunicorn {server.app} {' '.join(server.args)} ---\n{server.output()}")
        if server.proc is None:
            continue
        try:
            server.stop()
        finally:
            try:  # nothing of this test may outlive it (a worker orphaned by a killed master)
                os.killpg(server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Load:
    """Client threads sending GET / on keep-alive connections until stopped; counts what failed."""

    def __init__(self, url: str, clients: int = 4):
        self.url, self.stop_event = url, threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[str] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self.stop_event.is_set():
                try:
                    response = client.get(self.url)
                    good = response.status_code == 200 and response.content == b"hello"
                    problem = None if good else f"{response.status_code} {response.content[:80]!r}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if problem:
                        self.failures.append(problem)
                    else:
                        self.ok += 1
                        self.pids.add(response.headers["x-pid"])

    def wait_for(self, requests: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.ok
        while self.ok - start < requests and time.monotonic() < deadline:
            time.sleep(0.02)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("app", APPS)
def test_serves_tcp_and_unix_socket(gunicorn, app, tmp_path):
    """One master bound to TCP and a UNIX socket (every other test binds fd://N); -k ringserve.Worker
    for ASGI, -k ringserve_gunicorn.Worker for WSGI."""
    uds = str(tmp_path / "g.sock")
    worker = "ringserve.Worker" if app == ASGI else "ringserve_gunicorn.Worker"
    server = gunicorn(app, "--threads", "4", worker=worker, bind=["127.0.0.1:0", f"unix:{uds}"])
    assert server.port, server.output()
    for transport, url in ((None, server.url()), (httpx.HTTPTransport(uds=uds), "http://localhost/")):
        with httpx.Client(transport=transport, timeout=10.0) as client:
            responses = [client.get(url) for _ in range(3)]
        assert [(r.status_code, r.content) for r in responses] == [(200, b"hello")] * 3, url
        assert responses[0].headers["server"] == "ringserve"
    assert f"Interface: {'ASGI' if app == ASGI else 'WSGI'} (detected)" in server.output()
    if app == WSGI:
        environ = httpx.get(server.url("/environ")).json()
        assert environ["wsgi.multithread"] is True and environ["REMOTE_ADDR"] == "127.0.0.1"
    assert server.stop() == 0
    server.assert_rings_clean()


def test_lifespan_runs_once_per_worker(gunicorn, tmp_path):
    log = tmp_path / "lifespan.log"
    server = gunicorn(ASGI, workers=2, env={"LIFESPAN_LOG": str(log)})
    httpx.get(server.url()).raise_for_status()
    started = log.read_text().split("\n")
    assert server.stop() == 0
    lines = [line.split() for line in log.read_text().splitlines()]
    startups = [pid for kind, pid in lines if kind == "startup"]
    shutdowns = [pid for kind, pid in lines if kind == "shutdown"]
    assert len(startups) == 2 and len(set(startups)) == 2, lines
    assert sorted(shutdowns) == sorted(startups), lines
    assert len([s for s in started if s]) == 2, "startup must finish before the worker serves"
    server.assert_rings_clean()


@pytest.mark.parametrize("app", APPS)
def test_max_requests_recycles_workers_without_failed_requests(gunicorn, app):
    server = gunicorn(app, "--max-requests", "20", "--max-requests-jitter", "5", "--threads", "2", workers=2)
    with Load(server.url(), clients=4) as load:
        load.wait_for(200)
    assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert load.ok >= 200
    assert len(load.pids) >= 4, f"workers were not recycled: {load.pids}"
    assert server.count("Maximum requests reached") >= 2
    assert server.stop() == 0
    server.assert_rings_clean()


@pytest.mark.parametrize("app", APPS)
def test_hup_under_load_without_failed_requests(gunicorn, app):
    server = gunicorn(app, "--threads", "2", workers=2)
    with Load(server.url(), clients=4) as load:
        load.wait_for(50)
        before = set(load.pids)
        server.signal(signal.SIGHUP)
        server.wait_ready(4)  # two new workers
        server.wait_until(lambda: server.count(r"Worker exiting") >= 2, 10.0, "the old workers' exit")
        load.pids.clear()
        load.wait_for(100)
        after = set(load.pids)
    assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert after and not after & before, (before, after)
    assert server.stop() == 0
    server.assert_rings_clean()


def test_blocked_worker_is_killed_after_timeout_and_replaced(gunicorn):
    server = gunicorn(ASGI, "--timeout", "2", "-c", "python:tests.apps.gunicorn_hooks")
    first = httpx.get(server.url()).headers["x-pid"]
    blocked = threading.Thread(target=_get_quietly, args=(server.url("/block?s=30"),), daemon=True)
    blocked.start()
    server.wait_for(rf"WORKER TIMEOUT \(pid:{first}\)", timeout=10)
    server.wait_for(rf"HOOK worker_abort {first}")
    server.wait_ready(2)
    response = httpx.get(server.url(), timeout=10)
    assert response.status_code == 200 and response.headers["x-pid"] != first
    assert server.stop() == 0


def _get_quietly(url: str) -> None:
    try:
        httpx.get(url, timeout=40)
    except httpx.HTTPError:
        pass


@pytest.mark.parametrize("app", APPS)
def test_access_log_in_custom_format_and_usr1_reopens_it(gunicorn, app, tmp_path):
    log = tmp_path / "access.log"
    fmt = '%(h)s "%(r)s" %(s)s %(B)s %(m)s %(U)s %(q)s <%({x-req}i)s> <%({x-pid}o)s> %({remote_addr}e)s %(zz)s'
    server = gunicorn(app, "--access-logfile", str(log), "--access-logformat", fmt)
    response = httpx.get(server.url("/?a=1"), headers={"x-req": "abc"})
    pid = response.headers["x-pid"]
    expected = f'127.0.0.1 "GET /?a=1 HTTP/1.1" 200 5 GET / a=1 <abc> <{pid}> 127.0.0.1 -'
    _wait_for_file_line(log, expected)
    log.rename(tmp_path / "access.log.1")
    server.signal(signal.SIGUSR1)  # the master reopens its files and sends USR1 to the workers
    line = f'127.0.0.1 "GET /?b=2 HTTP/1.1" 200 5 GET / b=2 <-> <{pid}> 127.0.0.1 -'
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (log.exists() and line in log.read_text().splitlines()):
        httpx.get(server.url("/?b=2"))  # logged to the renamed file until the worker has reopened
        time.sleep(0.05)
    _wait_for_file_line(log, line)
    assert server.stop() == 0


def _wait_for_file_line(path: Path, line: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.02)
    raise AssertionError(f"{line!r} not in {path}: {path.read_text() if path.exists() else '(missing)'!r}")


def test_signals_and_hooks(gunicorn):
    """TTIN/TTOU add and retire a worker (gracefully); QUIT is quick, runs worker_int, cuts requests."""
    server = gunicorn(ASGI, "-c", "python:tests.apps.gunicorn_hooks")
    output = server.output()
    assert "ringserve.Worker: pre_request is not called" in output
    assert server.count(r"HOOK when_ready") == 1 and server.count(r"HOOK post_worker_init") == 1
    server.signal(signal.SIGTTIN)
    server.wait_ready(2)
    server.signal(signal.SIGTTOU)
    server.wait_for(r"ring stats at exit")  # the oldest worker drained and left
    assert server.count(r"HOOK worker_int") == 0
    slow = threading.Thread(target=_get_quietly, args=(server.url("/sleep?s=30"),), daemon=True)
    slow.start()
    time.sleep(0.3)
    began = time.monotonic()
    server.signal(signal.SIGQUIT)
    assert server.stop() == 0
    assert time.monotonic() - began < 4, "QUIT must not wait for the request in flight"
    assert server.count(r"HOOK worker_int") == 1
    assert server.count(r"HOOK pre_request") == 0


@pytest.mark.parametrize("args, env, code, message", [
    pytest.param(("tests.apps.gunicorn_asgi:no_such_app",), {}, 4, "App failed to load", id="app-load"),
    pytest.param((ASGI, "--asgi-lifespan", "on"), {"LIFESPAN_FAIL": "no database"}, 3, "Worker failed to boot",
                 id="lifespan-failed"),
    pytest.param((ASGI, "--certfile", "{tmp}/x.pem"), {}, 3, "no PEM certificate in it", id="bad-cert"),
])
def test_boot_errors_stop_the_arbiter(gunicorn, args, env, code, message, tmp_path):
    (tmp_path / "x.pem").write_text("")  # gunicorn checks that it exists before the worker class sees it
    app, *rest = [arg.format(tmp=tmp_path) for arg in args]
    server = gunicorn(app, *rest, env=env, wait=False)
    try:
        returncode = server.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError("gunicorn kept running (respawning?)\n" + server.output()) from None
    server.wait_until(lambda: message in "\n".join(server.lines), 2.0, message)
    assert returncode == code, server.output()


# --------------------------------------------------------------------------- no process needed


def test_importing_ringserve_never_imports_gunicorn():
    code = ("import sys, ringserve; assert 'gunicorn' not in sys.modules, 'imported gunicorn'; "
            "from gunicorn.util import load_class; import ringserve_gunicorn; "
            "assert load_class('ringserve.Worker') is ringserve.Worker is ringserve_gunicorn.Worker; "
            "assert load_class('ringserve_gunicorn.Worker') is ringserve_gunicorn.Worker")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_from_gunicorn_maps_settings():
    from gunicorn.config import Config as GunicornConfig

    from ringserve.config import from_gunicorn

    cfg = GunicornConfig()
    settings = {"workers": 3, "threads": 7, "worker_connections": 50, "keepalive": 9, "graceful_timeout": 4,
                "max_requests": 100, "max_requests_jitter": 10, "limit_request_line": 9000,
                "limit_request_fields": 0, "limit_request_field_size": 0, "forwarded_allow_ips": "10.0.0.1,10.0.0.2",
                "root_path": "/api", "loglevel": "warning", "asgi_lifespan": "off", "accesslog": "-",
                "websocket_max_message_size": 1000,
                "access_log_format": '%(h)s %({x-id}i)s %({HTTP_X_REAL_IP}e)s %({REMOTE_ADDR}e)s %(zz)s 100%%'}
    for name, value in settings.items():
        cfg.set(name, value)
    environ = {"RINGSERVE_IO": "asyncio", "RINGSERVE_WORKERS": "9", "RINGSERVE_TIMEOUT_KEEP_ALIVE_S": "99",
               "RINGSERVE_PORT": "1"}
    config = from_gunicorn(cfg, app="m:app", environ=environ)
    assert (config.app, config.workers, config.threads, config.limit_concurrency) == ("m:app", 3, 7, 50)
    assert (config.timeout_keep_alive_s, config.timeout_graceful_shutdown_s) == (9.0, 4.0)
    assert (config.limit_max_requests, config.limit_max_requests_jitter) == (100, 10)
    # gunicorn's clamps: a line past 8190 is 8190; 0 fields is 32768; field size 0 is 8190
    assert (config.limit_request_line, config.limit_request_fields, config.limit_request_field_size) == (
        8190, 32768, 8190)
    assert config.forwarded_allow_ips == "10.0.0.1,10.0.0.2" and config.proxy_headers
    assert (config.root_path, str(config.log_level), str(config.lifespan)) == ("/api", "warning", "off")
    assert config.ws_max_size == 1000
    assert config.access_log and config.access_log_format == '%(h)s %({x-id}i)s %({x-real-ip}i)s %(h)s - 100%%'
    assert str(config.io) == "asyncio"  # ringserve's own option, from the environment
    assert config.port != 1  # what the arbiter owns never comes from RINGSERVE_*
    assert not from_gunicorn(GunicornConfig(), environ={}).access_log  # no accesslog: none written


@pytest.mark.parametrize("app", APPS)
def test_https_from_gunicorn_certfile_and_keyfile(gunicorn, app, tmp_path):
    from tests.helpers.certs import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    server = gunicorn(app, "--certfile", str(files.cert), "--keyfile", str(files.key))
    assert server.count(r"Ringserve running on https://") == 1
    with httpx.Client(verify=files.client_context(), timeout=10.0) as client:
        for _ in range(3):  # keep-alive over one TLS connection
            response = client.get(f"https://127.0.0.1:{server.port}/")
            assert (response.status_code, response.content) == (200, b"hello")
    with pytest.raises(httpx.HTTPError):  # plain HTTP gets no response from the TLS port
        httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5.0).raise_for_status()


def test_from_gunicorn_maps_tls_settings():
    from gunicorn.config import Config as GunicornConfig

    from ringserve.config import from_gunicorn

    cfg = GunicornConfig()
    for name, value in (("certfile", "c.pem"), ("keyfile", "k.pem"), ("ca_certs", "ca.pem"), ("cert_reqs", "2"),
                        ("ciphers", "ECDHE+AESGCM")):
        cfg.set(name, value)
    config = from_gunicorn(cfg, environ={})
    assert (config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs) == ("c.pem", "k.pem", "ca.pem")
    assert (config.ssl_cert_reqs, config.ssl_ciphers) == (2, "ECDHE+AESGCM")
    assert from_gunicorn(GunicornConfig(), environ={}).ssl_certfile is None


@pytest.mark.parametrize("name, value, message", [
    ("proxy_protocol", "v1", "does not parse PROXY headers"),
])
def test_from_gunicorn_refuses_what_it_cannot_serve(name, value, message):
    from gunicorn.config import Config as GunicornConfig

    from ringserve.config import ConfigError, from_gunicorn

    cfg = GunicornConfig()
    cfg.set(name, value)
    with pytest.raises(ConfigError, match=message):
        from_gunicorn(cfg, environ={})
