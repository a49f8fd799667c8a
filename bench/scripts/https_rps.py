"""HTTPS requests/s: ringserve (io_uring and asyncio) against uvicorn and granian, same certificate, same run.

Userspace TLS on every server, one self-signed certificate + key (openssl CLI, EC P-256 by default) made into a
temp dir for this run and handed to all of them. Not the main bench (bench/run.sh); same conventions:

- app: bench/apps raw_asgi:plaintext (GET / -> 200 "Hello, world!"), ONE worker, access log off, 60 s
  keep-alive where the server has the option, bound to 127.0.0.1 on a free port
- server: taskset -c 1; wrk: taskset -c 0, wrk -t1 -cCONC -dDUR --latency -s bench/wrk/report.lua https://...
- order: rounds outermost, servers innermost (A B C D A B C D ...); each server restarted every round
- correctness: before any load, 3 GET / on ONE TLS connection that verifies the certificate: 200 and exactly
  the body; the negotiated TLS version/cipher is recorded. Readiness: poll every 100 ms, 30 s timeout
- warm-up: WARM (default 2s) of wrk at the same concurrency after each start, not measured
- report: medians over rounds (req/s, p50, p99, CPU µs/req), spread = (max - min) / 2 / median, errors summed
- a server that fails (start, check, load, or dies under load) is reported as failed with its log tail, is not
  measured in later rounds, and the others still run

Servers: bench/servers.py's commands (bench/.venv as installed by bench/run.sh, ringserve from this work
tree), plus the certificate and key:
  ringserve-uring    ringserve APP --io uring ... --ssl-certfile C --ssl-keyfile K
  ringserve-asyncio  ringserve APP --io asyncio ... --ssl-certfile C --ssl-keyfile K
  uvicorn            uvicorn APP --loop uvloop --http httptools ... --ssl-certfile C --ssl-keyfile K
  granian            granian --interface asgi ... APP --ssl-certificate C --ssl-keyfile K
                     (granian 2.8.9 flag names; its key must be PKCS#8, as openssl writes)

Usage:
  python3 bench/scripts/https_rps.py                       # ROUNDS=3, DUR=10s, c=64, all four servers
  ROUNDS=1 DUR=2s python3 bench/scripts/https_rps.py --only uvicorn granian   # smoke run; NOT a result
  env: ROUNDS, DUR, WARM, CONC (or --rounds --duration --warmup --conc); --key rsa for an RSA-2048 key

Prints a markdown table and writes it to bench/results/https-<timestamp>.md; server logs and wrk output go to
bench/results/raw/https-<timestamp>/ (not committed). Run on a quiet machine: on a shared one it is noise.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import load  # noqa: E402
import servers  # noqa: E402
from load import CLIENT_CPU  # noqa: E402
from servers import HOST, SERVER_CPU, Running, Server, cpu_seconds, stop_all, tree_pids  # noqa: E402

PEER_BIN = servers.BIN = BENCH / ".venv" / "bin"  # whichever python runs this script
TARGET = "raw_asgi:plaintext"
EXPECT = b"Hello, world!"
BASELINE = "uvicorn"


# --- servers ----------------------------------------------------------------------------------------------

def _tls(build, cert_flag="--ssl-certfile"):
    """bench/servers.py's command for this server, plus the certificate and key."""
    def with_tls(port, cert, key):
        return build(TARGET, "asgi", port) + [cert_flag, cert, "--ssl-keyfile", key]
    return with_tls


SERVERS = {
    "ringserve-uring": (_tls(servers._ringserve("uring")), "--io uring"),
    "ringserve-asyncio": (_tls(servers._ringserve("asyncio")), "--io asyncio"),
    "uvicorn": (_tls(servers._uvicorn), "uvloop + httptools, stdlib ssl"),
    "granian": (_tls(servers._granian, "--ssl-certificate"), "--http 1, uvloop, --backpressure 20000 (as bench/servers.py); rustls"),
}


# --- one running server: bench/servers.py's Running, with the TLS files in its command -------------------

class TLSRunning(Running):
    def __init__(self, name, cert, key, log: Path):
        build = SERVERS[name][0]
        server = Server(name, ("asgi",), lambda target, interface, port: build(port, cert, key))
        super().__init__(server, TARGET, "asgi", log)
        self.name = name

    def tail(self, lines=15):
        self._logf.flush()
        text = self.log.read_bytes()[self._log_start:].decode(errors="replace").strip()
        return "\n".join(text.splitlines()[-lines:]) if text else "(empty log)"

    def alive(self):
        return self.proc.poll() is None


class Failed(Exception):
    pass


def tls_context(cert):
    ctx = ssl.create_default_context(cafile=cert)  # verifies: the server must present exactly this certificate
    return ctx


def wait_ready(run: TLSRunning, ctx, timeout=30.0):
    deadline = time.monotonic() + timeout
    last, ssl_errors = None, 0
    while time.monotonic() < deadline:
        if not run.alive():
            raise Failed(f"exited with code {run.proc.returncode} before ready")
        conn = http.client.HTTPSConnection(HOST, run.port, timeout=2.0, context=ctx)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except ssl.SSLError as exc:  # it listens, but the handshake fails (e.g. it answers in plain HTTP)
            last, ssl_errors = exc, ssl_errors + 1
            if ssl_errors >= 3:
                raise Failed(f"listening, but the TLS handshake fails 3 times in a row: {exc!r}"
                             + (" (it answers in plain HTTP?)" if "WRONG_VERSION_NUMBER" in str(exc) else ""))
            time.sleep(0.1)
        except (OSError, http.client.HTTPException) as exc:
            last, ssl_errors = exc, 0
            time.sleep(0.1)
        finally:
            conn.close()
    raise Failed(f"not ready after {timeout:.0f} s (last error: {last!r})")


def check(run: TLSRunning, ctx):
    """3 GET / on one verified TLS connection: 200 and exactly the body. Returns 'TLSv1.3 TLS_AES_...'."""
    wait_ready(run, ctx)
    conn = http.client.HTTPSConnection(HOST, run.port, timeout=10, context=ctx)
    try:
        for i in range(3):
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise Failed(f"check failed on request {i + 1} of 3 on one TLS connection: {exc!r}") from exc
            if status != 200 or body != EXPECT:
                raise Failed(f"check failed: status {status}, body {body[:60]!r} ({len(body)} B)")
        sock = conn.sock
        return f"{sock.version()} {sock.cipher()[0]}" if sock else "?"
    finally:
        conn.close()


def wrk(port, conc, duration, log: Path | None):
    try:
        return load.wrk(port, "/", conc, _seconds(duration), post=False, perf=False, log=log, scheme="https")
    except RuntimeError as exc:
        raise Failed(str(exc)) from None


def _seconds(d):
    m = re.fullmatch(r"([\d.]+)\s*(ms|s|m|h)?", str(d))
    if not m:
        raise SystemExit(f"bad duration {d!r} (want e.g. 10s)")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


# --- certificate, versions ---------------------------------------------------------------------------------

def make_cert(tmp: Path, kind: str):
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt",
                                                             "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def _out(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def versions():
    rev = _out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "ringserve"],
                                    capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        dirty = False
    peer_py = str(PEER_BIN / "python")
    return {
        "commit": rev + (" (ringserve/ has uncommitted changes)" if dirty else ""),
        "ringserve": _out([str(PEER_BIN / "ringserve"), "--version"]),
        "uvicorn": _out([str(PEER_BIN / "uvicorn"), "--version"]),
        "granian": _out([str(PEER_BIN / "granian"), "--version"]),
        "wrk": _out(["wrk", "-v"]),
        "OpenSSL (Python ssl: ringserve, uvicorn)": _out([peer_py, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"]),
        "OpenSSL (CLI, wrk's libssl)": _out(["openssl", "version"]),
    }


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


# --- main ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(SERVERS), default=list(SERVERS), metavar="SERVER",
                    help=f"servers to run, in this order (default: all: {' '.join(SERVERS)})")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--duration", default=os.environ.get("DUR", "10s"), help="wrk -d per measured run")
    ap.add_argument("--warmup", default=os.environ.get("WARM", "2s"), help="wrk -d warm-up after each start; 0 = none")
    ap.add_argument("--conc", type=int, default=int(os.environ.get("CONC", 64)), help="wrk -c")
    ap.add_argument("--key", choices=("ec", "rsa"), default=os.environ.get("KEY", "ec"),
                    help="key type of the self-signed certificate: EC P-256 (default) or RSA 2048")
    ap.add_argument("--out", type=Path, default=None, help="report path (default bench/results/https-<ts>.md); logs go to its dir's raw/https-<ts>/")
    return ap.parse_args(argv)


def fmt(v, spec):
    return "n/a" if v is None else spec.format(v)


def report(args, stamp, facts, results, failed, tls, wrk_cmd) -> str:
    smoke = args.rounds < 3 or _seconds(args.duration) < 10
    L = [f"# HTTPS requests/s (userspace TLS) — {stamp}", ""]
    if smoke:
        L += [f"**Smoke run ({args.rounds} round(s) × {args.duration}): NOT a result.** Use ROUNDS=3 DUR=10s "
              "or more, on a quiet machine.", ""]
    L += ["| | |", "|---|---|",
          f"| machine | {platform.release()}, {cpu_model()}, {os.cpu_count()} logical CPUs |"]
    L += [f"| {k} | {v} |" for k, v in facts.items()]
    L += [f"| certificate | one self-signed {'RSA 2048' if args.key == 'rsa' else 'EC P-256'} cert + key "
          "(openssl req -x509), the same files for every server |",
          f"| app | bench/apps `{TARGET}` (GET / → 200 `Hello, world!`), one worker per server |",
          f"| load | `{wrk_cmd}` |",
          f"| method | {args.rounds} round(s) × {args.duration}, interleaved (A B C A B C), each server restarted "
          f"every round; {args.warmup} warm-up at c={args.conc} after each start; medians over rounds |",
          f"| pinning | server: taskset -c {SERVER_CPU}; wrk: taskset -c {CLIENT_CPU}, -t1 |", ""]
    L += [f"## req/s at c={args.conc} over HTTPS (× = relative to {BASELINE})", "",
          "| server | req/s | × uvicorn | spread | p50 ms | p99 ms | errors | CPU µs/req | TLS (check client) | rounds |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    base = results.get(BASELINE)
    base_rps = statistics.median(r["rps"] for r in base) if base else None
    for name in args.only:
        runs = results.get(name) or []
        if name in failed:
            L.append(f"| {name} | failed | | | | | | | {tls.get(name, '')} | "
                     f"{len(runs)} measured, failed in round {failed[name][0]} |")
            continue
        if not runs:
            L.append(f"| {name} | n/a | | | | | | | | 0 |")
            continue
        rps = [r["rps"] for r in runs]
        med = statistics.median(rps)
        spread = (max(rps) - min(rps)) / 2 / med if len(rps) > 1 and med else None
        ratio = med / base_rps if base_rps else None
        L.append(f"| {name} | {med:,.0f} | {fmt(ratio, '{:.2f}×')} | {fmt(spread, '±{:.0%}')} | "
                 f"{statistics.median(r['p50_us'] for r in runs) / 1000:.2f} | "
                 f"{statistics.median(r['p99_us'] for r in runs) / 1000:.2f} | "
                 f"{sum(r['errors'] for r in runs)} | "
                 f"{statistics.median(r['cpu_us_per_req'] for r in runs):.1f} | {tls.get(name, '?')} | "
                 f"{len(runs)} |")
    per_round = ["{}: {}".format(n, ", ".join("{:,.0f}".format(r["rps"]) for r in results[n]))
                 for n in args.only if results.get(n)]
    L += ["", "Per round req/s: " + ("; ".join(per_round) or "none"), ""]
    notes = []
    for name in args.only:
        for r in results.get(name, []):
            if r["requests"] <= args.conc:
                notes.append(f"{name} round {r['round']}: only {r['requests']} requests from {args.conc} "
                             "connections (stalled keep-alive?)")
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if failed:
        L += ["## Failed servers", ""]
        for name, (rnd, reason, cmd, tail) in failed.items():
            L += [f"### {name} (round {rnd}): {reason}", "", "```", f"$ {cmd}", tail, "```", ""]
    L += ["Servers: " + "; ".join(f"{n}: {SERVERS[n][1]}" for n in args.only),
          "errors = wrk connect + read + write + timeout errors + non-2xx/3xx responses, summed over rounds. "
          "CPU µs/req = utime + stime of the server's process tree during the measured run / requests. "
          "TLS = what the Python check client negotiated (wrk links the same system OpenSSL 3).", ""]
    return "\n".join(L)


def main(argv=None):
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH / "results" / f"https-{stamp}.md"
    raw = out.parent / "raw" / f"https-{stamp}"  # default bench/results/raw/ (git-ignored)
    raw.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, frame):
        stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    facts = versions()
    results, failed, tls = {}, {}, {}
    wrk_cmd = (f"taskset -c {CLIENT_CPU} wrk -t1 -c{args.conc} -d{args.duration} --latency -s wrk/report.lua "
               f"https://{HOST}:PORT/")
    with tempfile.TemporaryDirectory(prefix="https-rps-") as tmp:
        cert, key = make_cert(Path(tmp), args.key)
        ctx = tls_context(cert)
        try:
            for rnd in range(1, args.rounds + 1):
                for name in args.only:
                    if name in failed:
                        continue
                    print(f"[round {rnd}/{args.rounds}] {name:18}", end=" ", flush=True)
                    log = raw / f"{name}-r{rnd}.log"
                    try:
                        run = TLSRunning(name, cert, key, log)
                    except OSError as exc:
                        failed[name] = (rnd, f"could not start: {exc}", " ".join(SERVERS[name][0](0, cert, key)), "")
                        print(f"FAILED: could not start: {exc}", flush=True)
                        continue
                    try:
                        tls[name] = check(run, ctx)
                        if _seconds(args.warmup) > 0:
                            wrk(run.port, args.conc, args.warmup, log.with_suffix(".wrk"))
                        pids = tree_pids(run.proc.pid)
                        c0 = cpu_seconds(pids)
                        res = wrk(run.port, args.conc, args.duration, log.with_suffix(".wrk"))
                        c1 = cpu_seconds(tree_pids(run.proc.pid))
                        if not run.alive():
                            raise Failed(f"server exited with code {run.proc.returncode} during the run")
                        res["cpu_us_per_req"] = (c1 - c0) * 1e6 / max(res["requests"], 1)
                        res["round"] = rnd
                        results.setdefault(name, []).append(res)
                        print(f"{res['rps']:9,.0f} req/s  p99 {res['p99_us'] / 1000:6.2f} ms  "
                              f"errors {res['errors']}  {tls[name]}", flush=True)
                    except Failed as exc:
                        failed[name] = (rnd, str(exc), " ".join(run.cmd), run.tail())
                        print(f"FAILED: {exc}\n    " + run.tail(6).replace("\n", "\n    "), flush=True)
                    finally:
                        run.stop()
        finally:
            stop_all()

    text = report(args, stamp, facts, results, failed, tls, wrk_cmd)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text)
    print(f"written: {out}\nlogs: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
