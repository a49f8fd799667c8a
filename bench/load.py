"""Load and observation: wrk (under perf stat), strace -c, and the idle keep-alive memory probe.

wrk runs pinned to CLIENT_CPU; perf counts raw_syscalls:sys_enter on the server's CPU for exactly as long as
wrk runs (perf stat -a -C 1 ... -- wrk ...), so warm-up traffic is never counted.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers import HOST, SERVER_CPU

WRK_DIR = Path(__file__).resolve().parent / "wrk"
CLIENT_CPU = "0"
PERF_EVENT = "raw_syscalls:sys_enter"


def perf_works() -> tuple[bool, str]:
    """Can perf count syscalls system-wide on the server CPU here?"""
    try:
        count = _perf_count(["true"])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return False, f"perf failed: {exc}"
    if count is None:
        return False, "perf ran but could not count raw_syscalls:sys_enter"
    return True, "perf stat -a -C %s -e %s" % (SERVER_CPU, PERF_EVENT)


def _perf_count(cmd: list[str], timeout: float = 30) -> int | None:
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        subprocess.run(["perf", "stat", "-a", "-C", SERVER_CPU, "-e", PERF_EVENT, "-x,", "-o", out.name, "--",
                        *cmd], capture_output=True, timeout=timeout, check=True)
        return parse_perf(Path(out.name).read_text())


def parse_perf(text: str) -> int | None:
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith(PERF_EVENT):
            return int(fields[0]) if fields[0].isdigit() else None
    return None


def wrk(port: int, path: str, conc: int, duration: float, post: bool, perf: bool, log: Path | None = None,
        scheme: str = "http") -> dict:
    """One wrk run. Returns wrk's JSON summary plus rps, ms latencies and the perf syscall count (or None)."""
    script = "post64k.lua" if post else "report.lua"
    url = f"{scheme}://{HOST}:{port}{path}"
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{duration:g}s", "--latency", "-s", script, url]
    perf_out = tempfile.NamedTemporaryFile("r", suffix=".perf")
    if perf:
        cmd = ["perf", "stat", "-a", "-C", SERVER_CPU, "-e", PERF_EVENT, "-x,", "-o", perf_out.name, "--", *cmd]
    proc = subprocess.run(["taskset", "-c", CLIENT_CPU, *cmd], cwd=WRK_DIR, capture_output=True, text=True,
                          timeout=duration + 60)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    match = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}")
    res = json.loads(match.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["p50_ms"], res["p99_ms"] = res["p50_us"] / 1000, res["p99_us"] / 1000
    res["errors"] = sum(res[k] for k in ("connect", "read", "write", "status", "timeout"))
    res["syscalls"] = parse_perf(Path(perf_out.name).read_text()) if perf else None
    perf_out.close()
    return res


def strace_names(pids: list[int], port: int, path: str, conc: int, duration: float, post: bool,
                 top: int = 8) -> list[tuple[str, float]]:
    """Attach strace -f -c to the server tree while wrk runs; return the top syscalls as (name, calls/request).

    strace slows the server a lot: use the names and their proportions, never the rates.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        args = ["strace", "-f", "-c", "-q", "-o", out.name]
        for pid in pids:
            args += ["-p", str(pid)]
        tracer = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let strace attach to every thread
        try:
            res = wrk(port, path, conc, duration, post, perf=False)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        rows = []
        for line in Path(out.name).read_text().splitlines():
            tok = line.split()
            if len(tok) in (5, 6) and tok[3].isdigit() and tok[-1] != "total":
                rows.append((tok[-1], int(tok[3])))
    rows.sort(key=lambda r: -r[1])
    requests = max(res["requests"], 1)
    return [(name, calls / requests) for name, calls in rows[:top]]


def idle_memory(port: int, path: str, rss_fn, n: int, deadline_s: float = 120.0) -> dict:
    """Open n keep-alive connections, one GET each, leave them idle; RSS delta per connection still open.

    rss_fn() returns the server tree's RSS in KiB. Stops early after 3 failures in a row (e.g. a server that
    stops accepting) or at the deadline; 'alive' counts the connections the server still holds at the end.
    """
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    time.sleep(0.5)
    base = rss_fn()
    socks: list[socket.socket] = []
    failures, stop_at = 0, time.monotonic() + deadline_s
    try:
        while len(socks) < n and failures < 3 and time.monotonic() < stop_at:
            try:
                s = socket.create_connection((HOST, port), timeout=2.0)
            except OSError:
                failures += 1
                continue
            socks.append(s)
            try:
                s.sendall(req)
                head = _read_response(s)
                failures = 0
            except OSError:
                failures += 1
                continue
            if re.search(rb"(?im)^connection:\s*close", head):
                raise NoKeepAlive("n/a: the server closes the connection after each response")
        time.sleep(1.0)
        after = rss_fn()
        alive = sum(_is_open(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    return {"opened": len(socks), "alive": alive, "base_kib": base, "after_kib": after,
            "kib_per_conn": (after - base) / alive if alive else None}


class NoKeepAlive(Exception):
    pass


def _read_response(s: socket.socket) -> bytes:
    """Read one response with a Content-Length body (all the benchmark apps send one); return its head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before response")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed mid-body")
        body += chunk
    return head


def _is_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""  # data we did not ask for: still open
    except BlockingIOError:
        return True
    except OSError:
        return False
