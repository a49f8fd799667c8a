"""ringserve benchmark driver. Run through bench/run.sh, which prepares bench/.venv first.

For each round, for each app, for each server (A B C A B C ...): start the server pinned to CPU 1, check that
it answers correctly, warm it up, then run wrk (pinned to CPU 0, under perf stat) at each concurrency. Then one
strace -c pass per server (syscall names only) and the idle keep-alive memory probe. Medians go to
bench/results/<timestamp>.md (and latest.md) with PNG charts; raw records and server logs go to results/raw/.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import load
import report
from servers import BASELINE, HOST, SERVER_CPU, SERVERS, Running, Unsupported, cpu_seconds, rss_kib, stop_all

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REPO = BENCH.parent
HELLO = b"Hello, world!"
POST_BODY = b"x" * 65536


@dataclasses.dataclass(frozen=True)
class App:
    name: str
    interface: str  # "asgi" or "wsgi"
    target: str  # module:attr, importable from bench/apps
    path: str
    expect: bytes
    describe: str
    post: bool = False

    @property
    def method(self) -> str:
        return "POST" if self.post else "GET"

    @property
    def body(self) -> bytes | None:
        return POST_BODY if self.post else None


JSON_BODY = b'{"message":"Hello, world!"}'
APPS = [
    App("asgi-plain", "asgi", "raw_asgi:plaintext", "/", HELLO, 'raw ASGI, "Hello, world!" (13 B)'),
    App("wsgi-plain", "wsgi", "raw_wsgi:plaintext", "/", HELLO, 'raw WSGI, "Hello, world!" (13 B)'),
    App("fastapi-json", "asgi", "fastapi_app:app", "/json", JSON_BODY, "FastAPI, small JSON"),
    App("django-wsgi", "wsgi", "django_project.wsgi:application", "/json", b'{"message": "Hello, world!"}',
        "Django JsonResponse over WSGI"),
    App("django-asgi", "asgi", "django_project.asgi:application", "/json", b'{"message": "Hello, world!"}',
        "Django JsonResponse over ASGI (sync view)"),
    App("asgi-1mib", "asgi", "raw_asgi:big", "/", b"x" * (1 << 20), "raw ASGI, 1 MiB response"),
    App("asgi-echo64k", "asgi", "raw_asgi:echo", "/", POST_BODY, "raw ASGI, 64 KiB POST echoed back", post=True),
]
PLAIN = {"asgi": "asgi-plain", "wsgi": "wsgi-plain"}
WARNINGS: list[str] = []


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round x 2 s, 1,000 idle connections")
    p.add_argument("--only", nargs="+", metavar="SERVER", help="servers: " + ", ".join(s.name for s in SERVERS))
    p.add_argument("--apps", nargs="+", metavar="APP", help="apps: " + ", ".join(a.name for a in APPS))
    p.add_argument("--rounds", type=int, help="rounds per (app, server) (default 3; quick 1)")
    p.add_argument("--duration", type=float, help="seconds per measured wrk run (default 10; quick 2)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up at c=64 after each start (default 3; quick 1)")
    p.add_argument("--conc", type=int, nargs="+", default=[1, 64, 512], help="wrk connections (default 1 64 512)")
    p.add_argument("--idle-conns", type=int, help="idle keep-alive connections (default 10000; quick 1000)")
    p.add_argument("--no-idle", action="store_true", help="skip the idle keep-alive memory probe")
    p.add_argument("--no-strace", action="store_true", help="skip the strace syscall-name pass")
    a = p.parse_args(argv)
    quick = a.quick
    a.rounds = a.rounds or (1 if quick else 3)
    a.duration = a.duration or (2.0 if quick else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if quick else 3.0)
    a.idle_conns = a.idle_conns or (1000 if quick else 10000)
    for name, pool in (("only", SERVERS), ("apps", APPS)):
        unknown = set(getattr(a, name) or []) - {x.name for x in pool}
        if unknown:
            p.error(f"--{name}: unknown {', '.join(sorted(unknown))}")
    return a


def check(run: Running, app: App) -> None:
    """The server must answer the app's URL with 200 and exactly the expected body, 3 times on one connection
    (http.client reconnects if the server closes, as gunicorn's sync worker does)."""
    run.wait_ready(app.method, app.path, app.body)
    conn = http.client.HTTPConnection(HOST, run.port, timeout=10)
    try:
        for i in range(3):
            try:
                conn.request(app.method, app.path, body=app.body)
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise RuntimeError(f"check failed on request {i + 1} of 3 on one connection: {exc!r}") from exc
            if status != 200 or body != app.expect:
                raise RuntimeError(f"check failed: status {status}, body {body[:60]!r} ({len(body)} B)")
    finally:
        conn.close()


def measure(run: Running, app: App, conc: int, args, perf: bool, log: Path) -> dict:
    pids = run.pids()
    cpu0 = cpu_seconds(pids)
    res = load.wrk(run.port, app.path, conc, args.duration, app.post, perf, log)
    cpu1 = cpu_seconds(run.pids())
    n = max(res["requests"], 1)
    res["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / n
    res["syscalls_per_req"] = res["syscalls"] / n if res["syscalls"] is not None else None
    res["rss_mib"] = rss_kib(run.pids()) / 1024
    if res["requests"] <= conc:  # not even two requests per connection: keep-alive stalls, or a hang
        WARNINGS.append(f"{app.name} / {run.server.name} / c={conc}: only {res['requests']} requests from "
                        f"{conc} connections in {args.duration:g} s (stalled keep-alive?)")
    return res


def bench_loop(apps, servers, args, perf: bool, raw: Path, status: dict) -> list[dict]:
    """Rounds outermost, servers innermost: A B C A B C ... A server is restarted for each (app, round)."""
    runs: list[dict] = []
    for rnd in range(1, args.rounds + 1):
        for app in apps:
            for server in servers:
                if app.interface in server.interfaces and (app.name, server.name) not in status:
                    print(f"[round {rnd}/{args.rounds}] {app.name:13} {server.name:18}", end=" ", flush=True)
                    runs += bench_one(app, server, rnd, args, perf, raw / f"{app.name}-{server.name}-r{rnd}.log",
                                      status)
    return runs


def bench_one(app: App, server, rnd: int, args, perf: bool, log: Path, status: dict) -> list[dict]:
    """Start, check, warm up, measure each concurrency, stop. A failure is recorded in status, not raised."""
    try:
        run = Running(server, app.target, app.interface, log)
    except Unsupported as exc:
        status[(app.name, server.name)] = f"n/a: {exc}"
        print(f"n/a ({exc})")
        return []
    runs = []
    try:
        check(run, app)
        if args.warmup > 0:
            load.wrk(run.port, app.path, 64, args.warmup, app.post, perf=False)
        for conc in args.conc:
            res = measure(run, app, conc, args, perf, log.with_suffix(".wrk"))
            runs.append(dict(res, app=app.name, server=server.name, conc=conc, round=rnd))
            print(f"c{conc}={res['rps']:,.0f}", end=" ", flush=True)
        print()
    except Exception as exc:  # noqa: BLE001 - a failing server is a result, not a crash
        status[(app.name, server.name)] = f"failed: {exc}".replace("|", "/")[:300]
        print(f"FAILED ({str(exc)[:200]})")
        runs = []  # a server that fails part-way is reported as failed, not half-measured
    finally:
        run.stop()
    return runs


def side_passes(apps, servers, args, raw: Path, status: dict) -> tuple[list[dict], list[dict]]:
    """strace names at c=64 and the idle-connection memory probe, on each interface's plaintext app."""
    out: dict[str, list[dict]] = {"strace": [], "idle": []}
    kinds = [k for k, skip in (("strace", args.no_strace), ("idle", args.no_idle)) if not skip]
    plain = [a for a in apps if a.name in PLAIN.values()] or [a for a in APPS if a.name in PLAIN.values()]
    for app in plain:
        for server in servers:
            if app.interface not in server.interfaces or (app.name, server.name) in status:
                continue  # n/a, or already failed its check in the measured rounds
            for kind in kinds:
                print(f"[{kind}] {app.name:13} {server.name:18}", end=" ", flush=True)
                rec = side_pass(kind, app, server, args, raw / f"{kind}-{app.name}-{server.name}.log")
                if rec is not None:
                    out[kind].append(rec)
    return out["strace"], out["idle"]


def side_pass(kind: str, app: App, server, args, log: Path) -> dict | None:
    rec = {"server": server.name, "app": app.name, "interface": app.interface}
    try:
        run = Running(server, app.target, app.interface, log)
    except Unsupported as exc:
        print(f"n/a ({exc})")
        return None
    try:
        check(run, app)
        if kind == "strace":
            load.wrk(run.port, app.path, 64, args.warmup or 1.0, app.post, perf=False)
            rec["top"] = load.strace_names(run.pids(), run.port, app.path, 64, min(args.duration, 5.0), app.post)
            print(", ".join(n for n, _ in rec["top"][:4]))
        else:
            rec.update(load.idle_memory(run.port, app.path, lambda: rss_kib(run.pids()), args.idle_conns))
            print(f"alive {rec['alive']}/{rec['opened']}, {report.fmt(rec['kib_per_conn'], '{:.1f}')} KiB/conn")
    except load.NoKeepAlive as exc:
        rec["error"] = str(exc)
        print(rec["error"])
    except Exception as exc:  # noqa: BLE001 - a failing server is a result, not a crash
        rec["error"] = f"failed: {exc}".replace("|", "/")[:200]
        print(rec["error"])
    finally:
        run.stop()
    return rec


def _cmd(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unavailable"


def machine_facts(args, perf_note: str) -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    commit = _cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not commit or "fatal" in commit or "ambiguous" in commit:
        commit = "no commit yet"
    dirty = _cmd(["git", "-C", str(REPO), "status", "--porcelain"])
    versions = []
    for pkg in ("ringserve", "uvicorn", "uvloop", "httptools", "granian", "gunicorn", "gunicorn_h1c",
                "uvicorn-worker", "hypercorn", "fastapi", "django"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg} –")
    gov = Path("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor")
    governor = f", governor {gov.read_text().strip()}" if gov.exists() else ""
    return {
        "kernel": platform.release(),
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs{governor}",
        "commit": commit + (" (work tree has changes)" if dirty not in ("", "unavailable") else ""),
        "Python": platform.python_version(),
        "packages": ", ".join(versions),
        "tools": f"{_cmd(['wrk', '-v'])}; {_cmd(['perf', '--version'])}; {_cmd(['strace', '-V'])}",
        "method": f"{args.rounds} round(s) × {args.duration:g} s per concurrency, interleaved servers; "
                  f"{args.warmup:g} s warm-up at c=64 after each start; medians over rounds",
        "pinning": f"server: taskset -c {SERVER_CPU}, one worker; wrk: taskset -c {load.CLIENT_CPU}, -t1",
        "concurrency": ", ".join(map(str, args.conc)),
        "syscalls": perf_note,
    }


def raise_nofile(want: int) -> None:
    """Servers inherit this limit too: each side needs one descriptor per idle connection, plus some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE (a container): the hard limit is the ceiling
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < want:
            print(f"warning: open-file limit {hard} < {want}: the idle probe may stop early")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below stops the servers
    os.sched_setaffinity(0, {int(load.CLIENT_CPU)})
    raise_nofile(args.idle_conns + 2048)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = RESULTS / "raw" / stamp
    raw.mkdir(parents=True, exist_ok=True)
    servers = [s for s in SERVERS if not args.only or s.name in args.only]
    apps = [a for a in APPS if not args.apps or a.name in args.apps]
    perf, perf_note = load.perf_works()
    print(f"perf: {perf_note}")
    if not perf:
        perf_note = f"n/a ({perf_note})"
    status: dict = {}
    try:
        runs = bench_loop(apps, servers, args, perf, raw, status)
        straces, idle = side_passes(apps, servers, args, raw, status)
    finally:
        stop_all()
    notes = [f"`{s.name}`: {s.note}" for s in servers if s.note] + [
        "Baselines for ×: " + ", ".join(f"{k.upper()} → {v}" for k, v in BASELINE.items()) + ".",
        "spread = (max − min) / 2 / median of req/s over rounds; errors = sum over rounds of wrk's connect, read, "
        "write, timeout and non-2xx/3xx counts.",
        "CPU µs/req = utime+stime of the server process tree during the measured run / requests. RSS = sum of "
        "VmRSS over the tree at the end of the run (forked workers' shared pages count twice).",
        "syscalls/req = raw_syscalls:sys_enter counted on the server CPU during the run (anything else scheduled "
        "there counts too) / requests; io_uring work submitted without a syscall is, by design, not counted.",
        *(f"**warning**: {w}" for w in WARNINGS),
        "Server commands are logged in results/raw/<timestamp>/*.log; RINGSERVE_INSTALL: "
        + os.environ.get("RINGSERVE_INSTALL", "not reported by run.sh"),
    ]
    meta = {"timestamp": stamp, "quick": args.quick, "facts": machine_facts(args, perf_note), "notes": notes}
    (raw / "records.json").write_text(json.dumps({"meta": meta, "runs": runs, "status": {
        f"{a}|{s}": v for (a, s), v in status.items()}, "idle": idle, "strace": straces}, indent=1))
    chart_names = report.charts(RESULTS / stamp, apps, servers, args.conc, runs, idle) if runs else []
    text = report.markdown(meta, apps, servers, args.conc, runs, status, idle, straces, chart_names, BASELINE)
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / "latest.md").write_text(text)
    print("\n" + text)
    print(f"written: {RESULTS / (stamp + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
