"""Spread of connections/requests across ringserve workers; req/s. Usage: spread.py LABEL -- ringserve args"""
import collections, json, os, re, signal, socket, statistics, subprocess, sys, threading

ROOT = "/work/main"
PORT = 18500 + os.getpid() % 400


def start(args):
    p = subprocess.Popen([f"{ROOT}/.venv/bin/python", "-m", "ringserve", "tests.apps.workers_app:app",
                          "--port", str(PORT), "--no-access-log", *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines = []
    for raw in p.stdout:
        lines.append(raw.decode())
        if "running on" in lines[-1]:
            break
    threading.Thread(target=lambda: [lines.append(l.decode()) for l in p.stdout], daemon=True).start()
    return p, lines


def get_pid():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    return data.split(b"\r\n\r\n", 1)[1].strip().decode()


def conn_spread(n=400, conc=8):
    counts = collections.Counter()
    lock = threading.Lock()
    def run(k):
        for _ in range(k):
            pid = get_pid()
            with lock:
                counts[pid] += 1
    ts = [threading.Thread(target=run, args=(n // conc,)) for _ in range(conc)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return sorted(counts.values(), reverse=True)


def wrk(conc, secs, tally):
    cmd = ["wrk", "-t2", f"-c{conc}", f"-d{secs}s", f"http://127.0.0.1:{PORT}/"]
    if tally:
        cmd[1:1] = ["-s", str(__import__("pathlib").Path(__file__).with_name("tally.lua"))]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"TALLY (.*)", out)
    spread = sorted((int(kv.split("=")[1]) for kv in m.group(1).split()), reverse=True) if m else None
    return rps, spread


args = sys.argv[sys.argv.index("--") + 1:]
label = sys.argv[1]
rounds = int(os.environ.get("ROUNDS", 3))
res = collections.defaultdict(list)
for r in range(rounds):
    p, lines = start(args)
    try:
        get_pid()
        res["conn_spread_c8"].append(conn_spread())
        res["conn_spread_c1"].append(conn_spread(conc=1, n=200))
        wrk(64, 2, False)  # warm-up
        rps, _ = wrk(64, 4, False)
        res["rps_c64"].append(rps)
        _, spread = wrk(64, 3, True)
        res["req_spread_wrk_c64"].append(spread)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(15)
print(label, json.dumps(dict(res)))
print(label, "median rps", statistics.median(res["rps_c64"]))
