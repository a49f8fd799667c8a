"""The io_uring core: the Ring on its own, and what the ring does for a real server process."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, server_env
from ringserve.core.ring import F_BUFFER, F_MORE, OP_ACCEPT, OP_CLOSE, OP_RECV, OP_SEND, Ring

RING_APP = "tests.apps.ringtest:app"
ONLY = pytest.mark.uring_only("exercises ringserve's io_uring core")
MiB = 1024 * 1024


def triples(cqes):
    return [tuple(cqes[i : i + 3]) for i in range(0, len(cqes), 3)]


def wait_for(ring, pred, timeout=2.0):
    """Reap until a completion matches pred; returns every completion seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += triples(ring.wait(50_000_000))
        if any(pred(c) for c in seen):
            return seen
    raise AssertionError(f"no matching completion in {timeout}s: {seen}")


@pytest.fixture
def ring():
    r = Ring(entries=64, buf_count=4, buf_size=4096)
    yield r
    r.close()


@pytest.fixture
def pair(ring):
    """A listener armed with multishot accept, one client, and the accepted fd."""
    listener = socket.create_server(("127.0.0.1", 0))
    ring.accept(listener.fileno(), (1 << 8) | OP_ACCEPT, 1)
    client = socket.create_connection(listener.getsockname())
    seen = wait_for(ring, lambda c: c[0] & 0xFF == OP_ACCEPT)
    ud, fd, flags = next(c for c in seen if c[0] & 0xFF == OP_ACCEPT)
    assert fd >= 0 and flags & F_MORE, "multishot accept should stay armed"
    yield listener, client, fd
    client.close()
    listener.close()


def test_round_trip_leaves_nothing_in_flight(ring, pair):
    listener, client, fd = pair
    ring.recv(fd, (2 << 8) | OP_RECV, 1)
    client.sendall(b"ping")
    seen = wait_for(ring, lambda c: c[0] & 0xFF == OP_RECV)
    ud, res, flags = next(c for c in seen if c[0] & 0xFF == OP_RECV)
    assert flags & F_BUFFER and flags & F_MORE
    assert bytes(ring.buffer(flags >> 16, res)) == b"ping"
    ring.recycle(flags >> 16)
    ring.send(fd, b"pong", 4, (2 << 8) | OP_SEND)
    wait_for(ring, lambda c: c[0] & 0xFF == OP_SEND and c[1] == 4)
    assert client.recv(10) == b"pong"
    ring.close_fd(fd, (2 << 8) | OP_CLOSE)  # cancels the multishot recv, then closes
    wait_for(ring, lambda c: c[0] & 0xFF == OP_CLOSE)
    assert client.recv(10) == b"", "the peer sees EOF after close"
    ring.cancel((1 << 8) | OP_ACCEPT, 0)
    deadline = time.monotonic() + 2
    while ring.counters()["inflight_ops"] and time.monotonic() < deadline:
        ring.wait(10_000_000)
    counters = ring.counters()
    assert counters["inflight_ops"] == 0 and counters["bufs_out"] == 0, counters


@pytest.mark.parametrize("first", ["bytes", "parts"])
def test_short_sends_go_on_where_they_stopped(ring, pair, first):
    """Without MSG_WAITALL (kTLS sockets) a big send completes short; RingConnection's Gather.advance
    re-points the iovecs at the rest, in place, and every byte arrives once and in order."""
    from ringserve.uring import Gather

    listener, client, fd = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    parts = [os.urandom(n) for n in (1000, 3 * MiB + 7, 1, 0, 2 * MiB)]
    want = b"".join(parts)
    got = bytearray()

    def read_all() -> None:
        while len(got) < len(want):
            data = client.recv(65536)
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read_all)
    job = Gather(ring.ffi, [memoryview(want)] if first == "bytes" else parts)
    ring.sendmsg_partial(fd, job.msg, (2 << 8) | OP_SEND)
    short = 0
    reader.start()
    while True:
        seen = wait_for(ring, lambda c: c[0] & 0xFF == OP_SEND, timeout=10)
        res = next(c[1] for c in seen if c[0] & 0xFF == OP_SEND)
        assert res > 0, res
        if res == len(job):
            break
        short += 1
        job.advance(res)
        ring.sendmsg_partial(fd, job.msg, (2 << 8) | OP_SEND)
    reader.join(10)
    assert short > 0, "every send completed whole: the test proves nothing"
    assert len(got) == len(want) and hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
    ring.close_fd(fd, (2 << 8) | OP_CLOSE)
    wait_for(ring, lambda c: c[0] & 0xFF == OP_CLOSE)


def test_enobufs_ends_multishot_and_rearm_delivers_queued_data(ring, pair):
    """4 buffers, none recycled: the 5th message ends the receive with -ENOBUFS; re-armed after
    recycling, the receive delivers what queued in the socket meanwhile."""
    listener, client, fd = pair
    ring.recv(fd, (2 << 8) | OP_RECV, 1)
    got, held = [], []
    for i in range(6):
        client.sendall(b"m%d" % i)
        time.sleep(0.02)
        for ud, res, flags in triples(ring.wait(20_000_000)):
            if flags & F_BUFFER:
                got.append(bytes(ring.buffer(flags >> 16, res)))
                held.append(flags >> 16)
            elif res == -errno.ENOBUFS:
                assert not flags & F_MORE
                got.append("ENOBUFS")
    assert "ENOBUFS" in got and ring.counters()["enobufs"] >= 1, got
    for bid in held:
        ring.recycle(bid)
    ring.recv(fd, (2 << 8) | OP_RECV, 1)
    seen = wait_for(ring, lambda c: c[2] & F_BUFFER)
    rest = b"".join(bytes(ring.buffer(f >> 16, r)) for _, r, f in seen if f & F_BUFFER)
    for _, _, f in seen:
        if f & F_BUFFER:
            ring.recycle(f >> 16)
    assert b"".join(g for g in got if g != "ENOBUFS") + rest == b"m0m1m2m3m4m5"


# --------------------------------------------------------------------------- a real server


def upload(server, body: bytes, path: str = "/sha") -> bytes:
    with server.connect(timeout=20) as conn:
        conn.request("POST", path, body=body)
        return conn.read_response().body


@ONLY
def test_receive_buffers_run_dry_and_every_upload_arrives_intact(start_server):
    """Two 4 KiB receive buffers for 8 concurrent 512 KiB uploads: -ENOBUFS again and again,
    and every byte still reaches the app in order."""
    server = start_server(RING_APP, "--ring-buffers", "2", "--no-access-log")
    bodies = [bytes([i]) * (512 * 1024 - i) for i in range(8)]
    results = [None] * len(bodies)

    def run(i):
        results[i] = upload(server, bodies[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for body, result in zip(bodies, results, strict=True):
        assert result == b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    server.stop()
    stats = server.ring_stats()
    assert stats["enobufs"] > 0, f"the buffer ring never ran dry: {stats}"


@ONLY
def test_app_not_reading_stops_the_ring_receiving(start_server):
    """The app sleeps 2 s before reading a 64 MiB upload: the server stops receiving, so its
    memory stays flat and the client's send blocks; then the whole body arrives intact."""
    server = start_server(RING_APP, "--no-access-log")
    body = bytes(range(256)) * (64 * MiB // 256)
    base = server.rss_kb()
    sent = [0]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    head = b"POST /sha?wait=2 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)

    def send_all():
        sock.sendall(head)
        view = memoryview(body)
        while view:
            n = sock.send(view[: 256 * 1024])
            sent[0] += n
            view = view[n:]

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(1.2)
    peak = server.rss_kb()
    stalled_at = sent[0]
    sender.join(30)
    reply = b""
    while not reply.endswith(b"\n") and b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < 70:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert stalled_at < 16 * MiB, f"the client sent {stalled_at / MiB:.1f} MiB to an app that was not reading"
    assert (peak - base) / 1024 < 16, f"server RSS grew {(peak - base) / 1024:.1f} MiB"
    expected = b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    assert reply.endswith(expected), reply[-200:]


@pytest.mark.timeout(60)
def test_an_idle_loop_is_woken_by_every_thread():
    """Two threads play ping-pong with an idle RingEventLoop (no timer: a lost wake-up would
    leave it blocked in io_uring_enter for good): each call_soon_threadsafe must run its
    callback, while the other thread's wake-up may be pending (the coalescing's race)."""
    from ringserve.loop import new_loop

    ring = Ring(entries=64, buf_count=4, buf_size=4096)
    loop, _ = new_loop("auto", ring)
    rounds, stuck = 1500, []

    def player():
        pong = threading.Event()
        for i in range(rounds):
            pong.clear()
            loop.call_soon_threadsafe(pong.set)
            if not pong.wait(2.0):
                stuck.append(i)
                return

    async def main():
        threads = [threading.Thread(target=player) for _ in range(2)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await loop.run_in_executor(None, threads[0].join, 0.2)  # a wake-up of its own, too
        for t in threads:
            t.join()

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
        ring.close()
    assert not stuck, f"a wake-up was lost: a callback queued in round {stuck[0]} never ran"


@ONLY
def test_a_thread_flood_loses_no_signal(start_server):
    """20,000 call_soon_threadsafe from a thread while the loop thread is blocked, then SIGTERM:
    the request in flight is answered (every callback ran) and the server exits at once.
    On asyncio's self-pipe each call wrote a byte; the socketpair filled after a few hundred,
    and the byte of the signal, written to the same socket, was dropped: the server never
    stopped (this test failed so before the loop's own eventfd wake-up)."""
    server = start_server(RING_APP, "--no-access-log")
    result = {}

    def request():
        with server.connect() as conn:
            conn.request("GET", "/flood?n=20000&block=2.5")
            result["resp"] = conn.read_response()

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(1.2)  # the thread is done calling; the loop thread is still blocked
    server.terminate()
    thread.join(15)
    resp = result.get("resp")
    assert resp is not None and resp.status == 200 and resp.body == b"20000", resp
    start = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - start < 3, "SIGTERM was lost"


@ONLY
@pytest.mark.parametrize("args", [("--loop", "uvloop"), ("--loop", "asyncio"), ("--sqpoll",)])
def test_loop_and_sqpoll_choices_serve(start_server, args):
    server = start_server("tests.apps.combined:app", *args)
    with server.client() as client:
        for i in range(20):
            assert client.get(f"/echo?i={i}").json()["query_string"] == f"i={i}"
        assert client.post("/sha", content=b"x" * 300_000).status_code == 200


@ONLY
@pytest.mark.timeout(30)
@pytest.mark.parametrize("err", ["EPERM", "ENOSYS"])
def test_io_uring_blocked_names_the_cause_and_the_fix(err):
    """A seccomp filter refusing io_uring_setup, as Docker >= 25 does by default."""
    cmd = [sys.executable, "-m", "tests.helpers.deny_io_uring", err, "--",
           sys.executable, "-m", "ringserve", "tests.apps.hello:app", "--port", "0", "--io", "uring"]
    proc = subprocess.run(cmd, cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=25)
    assert proc.returncode == 1, proc
    out = proc.stderr
    assert "io_uring is unavailable" in out, out
    if err == "EPERM":
        assert "seccomp" in out and "io_uring_setup" in out, out
    else:
        assert "no io_uring" in out, out
    assert "--io asyncio" in out, out


@ONLY
@pytest.mark.timeout(30)
def test_io_auto_falls_back_to_asyncio_where_io_uring_is_blocked():
    """--io auto (the default) under Docker's seccomp behaviour: one warning naming the cause and
    the fix, then the same server on asyncio transports."""
    import httpx

    sock = socket.create_server(("127.0.0.1", 0))
    cmd = [sys.executable, "-m", "tests.helpers.deny_io_uring", "EPERM", "--",
           sys.executable, "-m", "ringserve", "tests.apps.hello:app", "--fd", str(sock.fileno())]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(), pass_fds=(sock.fileno(),),
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "running on" in line.lower():
                break
        out = "".join(lines)
        assert "seccomp" in out and "Serving with --io asyncio instead" in out, out
        assert "asyncio transports" in out, out
        port = sock.getsockname()[1]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
        sock.close()
    assert proc.returncode == 0
