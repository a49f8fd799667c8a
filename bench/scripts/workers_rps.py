"""Interleaved req/s: 1 worker vs 2 workers (reuse-port) vs 2 workers shared; wrk -t2 -c64 -d3s after 1 s warm-up."""
import os, re, signal, statistics, subprocess, time, json

ROOT = "/work/main"
CONFIGS = {"1 worker": ["--workers", "1"], "2 workers reuse-port": ["--workers", "2"],
           "2 workers shared": ["--workers", "2", "--no-reuse-port"]}
PORT = 18900
res = {k: [] for k in CONFIGS}
cpu_us = {k: [] for k in CONFIGS}
TCK = os.sysconf("SC_CLK_TCK")
def tree(pid):
    out, todo = [], [pid]
    while todo:
        cur = todo.pop(); out.append(cur)
        try:
            todo += [int(c) for c in open(f"/proc/{cur}/task/{cur}/children").read().split()]
        except OSError:
            pass
    return out
def cpu(pid):
    total = 0
    for q in tree(pid):
        try:
            f = open(f"/proc/{q}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / TCK
for r in range(int(os.environ.get("ROUNDS", 5))):
    for name, args in CONFIGS.items():
        logf = f"/tmp/rps_{r}_{name.replace(' ', '_')}.log"
        p = subprocess.Popen([f"{ROOT}/.venv/bin/python", "-m", "ringserve", "tests.apps.workers_app:app", "--port", str(PORT),
                              "--no-access-log", *args], cwd=ROOT, stdout=open(logf, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        while "running on" not in open(logf).read():
            time.sleep(0.05)
        subprocess.run(["wrk", "-t2", "-c64", "-d1s", f"http://127.0.0.1:{PORT}/"], capture_output=True)
        c0 = cpu(p.pid)
        out = subprocess.run(["wrk", f"-t{os.environ.get('WRK_T', '2')}", "-c64", "-d3s", f"http://127.0.0.1:{PORT}/"], capture_output=True, text=True).stdout
        c1 = cpu(p.pid)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        res[name].append(rps)
        cpu_us[name].append((c1 - c0) / (rps * 3) * 1e6)
        t0 = time.monotonic(); os.killpg(p.pid, signal.SIGTERM); p.wait(60)
        if time.monotonic() - t0 > 5: print("SLOW EXIT", name, r, time.monotonic() - t0, logf, flush=True)
        time.sleep(0.3)
print(json.dumps(res))
print({k: round(statistics.median(v)) for k, v in res.items()})
print("cpu us/req", {k: round(statistics.median(v), 1) for k, v in cpu_us.items()})
