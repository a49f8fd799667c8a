"""The servers under test, how to start them, and how to read their process tree.

Each server is a Server: a name, the interfaces it serves, and a function that builds its command line from
(app target, interface, port). Every server runs ONE worker, pinned to SERVER_CPU with taskset, with access
logs off and a 60 s keep-alive timeout where it has one (so idle connections survive the idle-memory test).
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
BIN = Path(sys.executable).parent  # the bench venv's bin/
SERVER_CPU = "1"
HOST = "127.0.0.1"
KEEPALIVE_S = "60"
GTHREAD_THREADS = "4"


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    interfaces: tuple[str, ...]
    build: object  # callable(target, interface, port) -> list[str]; raises Unsupported
    note: str = ""


class Unsupported(Exception):
    """The server cannot run this configuration (e.g. a flag it lacks); recorded as n/a."""


@functools.lru_cache(maxsize=None)
def help_text(exe: str) -> str:
    try:
        out = subprocess.run([str(BIN / exe), "--help"], capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _ringserve(io: str, *extra: str):
    def build(target: str, interface: str, port: int) -> list[str]:
        if not (BIN / "ringserve").exists():
            raise Unsupported("ringserve is not installed in bench/.venv")
        helptext = help_text("ringserve")
        cmd = ["ringserve", target, "--host", HOST, "--port", str(port), "--no-access-log"]
        if "--io" in helptext:
            cmd += ["--io", io]
        elif io != "uring":
            raise Unsupported("ringserve has no --io flag yet")
        if interface == "wsgi":
            cmd += ["--interface", "wsgi"]
        cmd += list(extra)
        if "--workers" in helptext:
            cmd += ["--workers", "1"]
        for flag in ("--timeout-keep-alive", "--keepalive-timeout-s", "--keepalive-timeout"):
            if flag in helptext:
                cmd += [flag, KEEPALIVE_S]
                break
        return cmd

    return build


def _uvicorn(target, interface, port):
    return ["uvicorn", target, "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", KEEPALIVE_S]


def _granian(target, interface, port):
    return ["granian", "--interface", interface, "--host", HOST, "--port", str(port), "--workers", "1",
            "--http", "1", "--loop", "uvloop", "--backpressure", "20000", "--no-access-log", "--log-level", "warning",
            target]


def _hypercorn(target, interface, port):
    return ["hypercorn", target, "--bind", f"{HOST}:{port}", "--workers", "1", "--worker-class", "uvloop",
            "--keep-alive", KEEPALIVE_S, "--backlog", "2048", "--log-level", "warning"]


def _gunicorn(worker: str, *extra: str):
    def build(target, interface, port):
        return ["gunicorn", target, "--bind", f"{HOST}:{port}", "--workers", "1", "--worker-class", worker,
                "--keep-alive", KEEPALIVE_S, "--worker-connections", "20000", "--log-level", "warning", *extra]

    return build


SERVERS = [
    Server("ringserve-uring", ("asgi", "wsgi"), _ringserve("uring")),
    Server("ringserve-asyncio", ("asgi", "wsgi"), _ringserve("asyncio")),
    Server("ringserve-uvloop", ("asgi",), _ringserve("uring", "--loop", "uvloop"),
           "--io uring --loop uvloop: uvloop drives the ring (README: for Django over ASGI)"),
    Server("uvicorn", ("asgi",), _uvicorn, "uvloop + httptools"),
    Server("granian", ("asgi", "wsgi"), _granian,
           "--http 1, uvloop; --backpressure 20000 (its default, 1024, stops accepting new connections)"),
    Server("gunicorn-sync", ("wsgi",), _gunicorn("sync"), "no keep-alive by design"),
    Server("gunicorn-gthread", ("wsgi",), _gunicorn("gthread", "--threads", GTHREAD_THREADS),
           f"{GTHREAD_THREADS} threads"),
    Server("gunicorn-asgi", ("asgi",), _gunicorn("asgi"), "gunicorn's native ASGI worker"),
    Server("gunicorn-uvicorn", ("asgi",), _gunicorn("uvicorn_worker.UvicornWorker"), "uvicorn-worker"),
    Server("hypercorn", ("asgi",), _hypercorn, "uvloop worker"),
]
BASELINE = {"asgi": "uvicorn", "wsgi": "gunicorn-gthread"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0):
    """One HTTP/1.1 request on a fresh connection; returns (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Running:
    """A started server: its Popen (own session, so its process group can be killed whole) and log path."""

    def __init__(self, server: Server, target: str, interface: str, log: Path):
        self.server, self.port, self.log = server, free_port(), log
        cmd = server.build(target, interface, self.port)
        cmd[0] = str(BIN / cmd[0])
        self.cmd = cmd
        env = dict(os.environ, PYTHONPATH=str(APPS), PYTHONUNBUFFERED="1")
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self._logf = open(log, "wb")
        self._logf.write(f"$ taskset -c {SERVER_CPU} {' '.join(cmd)}\n".encode())
        self._logf.flush()
        self._log_start = self._logf.tell()
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *cmd], cwd=APPS, env=env,
                                     stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.add(self)

    def wait_ready(self, method: str, path: str, body: bytes | None, timeout: float = 30.0) -> None:
        """Poll connect + request until any HTTP answer, the process dies, or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before ready; {self.tail()}")
            try:
                request(self.port, method, path, body, timeout=2.0)
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        raise RuntimeError(f"not ready after {timeout:.0f} s; {self.tail()}")

    def tail(self, n: int = 400) -> str:
        self._logf.flush()
        text = self.log.read_bytes()[self._log_start:][-n:].decode(errors="replace").strip()
        return "log: " + " | ".join(text.splitlines()[-4:]) if text else "empty log"

    def pids(self) -> list[int]:
        return tree_pids(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after 5 s."""
        _LIVE.discard(self)
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if self._wait_gone(pgid, 5.0):
                break
        self.proc.poll()
        self._logf.close()

    def _wait_gone(self, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.proc.poll()  # reap the leader so it does not linger as a zombie
            if not group_alive(pgid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


_LIVE: set[Running] = set()


def stop_all() -> None:
    for r in list(_LIVE):
        r.stop()


# --- /proc readings -------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # fields from #3 (state) on; comm may contain spaces


def group_alive(pgid: int) -> bool:
    """Is any non-zombie process left in the process group?"""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                f = _stat_fields(int(entry))
            except (OSError, IndexError):
                continue
            if int(f[2]) == pgid and f[0] != "Z":
                return True
    return False


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])  # fields 14 and 15: utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS over the processes (shared pages of forked workers count more than once)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total
