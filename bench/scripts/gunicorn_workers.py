"""Quick, noisy req/s comparison of gunicorn worker classes (not the real bench: see bench/)."""
import json, os, re, signal, subprocess, time, urllib.request

GUNICORN = "/work/main/bench/.venv/bin/gunicorn"
LUA = "/work/main/bench/wrk/report.lua"
COMMON = ["--workers", "1", "--keep-alive", "60", "--worker-connections", "20000", "--log-level", "warning",
          "--no-control-socket", "--chdir", "/work/main/bench/apps"]
CASES = [
    ("ringserve.Worker", "raw_asgi:plaintext", []),
    ("uvicorn_worker.UvicornWorker", "raw_asgi:plaintext", []),
    ("asgi", "raw_asgi:plaintext", []),
    ("ringserve.Worker", "raw_wsgi:plaintext", ["--threads", "4"]),
    ("gthread", "raw_wsgi:plaintext", ["--threads", "4"]),
]
ROUNDS, DURATION, CONC = int(os.environ.get("ROUNDS", 2)), os.environ.get("DUR", "5s"), os.environ.get("CONC", "64")


def run(worker, app, extra, port):
    cmd = ["taskset", "-c", "1", GUNICORN, "-k", worker, "-b", f"127.0.0.1:{port}", *COMMON, *extra, app]
    env = dict(os.environ, PYTHONPATH="/work/main")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"/tmp/srv-{port}.log", "w"), start_new_session=True, env=env)
    try:
        deadline = time.time() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                assert body == b"Hello, world!", body
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        wrk = ["taskset", "-c", "0", "wrk", "-t1", f"-c{CONC}", "-s", LUA, "--latency", f"http://127.0.0.1:{port}/"]
        subprocess.run(wrk[:4] + ["-d1s"] + wrk[4:], capture_output=True, check=True)  # warm-up
        out = subprocess.run(wrk[:4] + [f"-d{DURATION}"] + wrk[4:], capture_output=True, text=True, check=True).stdout
        data = json.loads(re.search(r"WRKJSON (.*)", out).group(1))
        errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
        return data["requests"] / (data["duration_us"] / 1e6), data["p99_us"], errors
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


results = {}
port = 18700
for rnd in range(ROUNDS):
    for worker, app, extra in CASES:
        port += 1
        rps, p99, errors = run(worker, app, extra, port)
        results.setdefault((worker, app), []).append((rps, p99, errors))
        print(f"round {rnd} {worker:30} {app:20} {rps:9.0f} req/s  p99 {p99/1000:6.2f} ms  errors {errors}", flush=True)
print()
for (worker, app), runs in results.items():
    rps = sorted(r[0] for r in runs)
    print(f"{worker:30} {app:20} median {rps[len(rps)//2]:9.0f}  runs {[round(r) for r in rps]}  errors {sum(r[2] for r in runs)}")
