"""WSGI: wsgi.input streamed from the connection (Content-Length, chunked, 100-continue, big uploads)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from wsgi_fixtures import COMPLAINTS, wsgi_fixtures

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
server_kind, server = wsgi_fixtures(COMPLAINTS + ("AssertionError",))


def post(server, target: str, body: bytes, headers=None) -> dict:
    with server.connect() as conn:
        conn.request("POST", target, headers, body)
        resp = conn.read_response()
        assert resp.status == 200, resp
        return resp.json()


def pattern(n: int) -> bytes:
    return (b"line %06d of the request body\n" * (n // 28 + 1))[:n]


@pytest.mark.parametrize("mode", ["chunks", "lines", "readlines"])
def test_body_with_content_length(server, mode):
    body = pattern(300_000)
    got = post(server, f"/body?mode={mode}", body, {"Content-Type": "application/octet-stream"})
    assert got["size"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["content_length"] == str(len(body))
    assert got["content_type"] == "application/octet-stream"


def test_read_without_size(server):
    if server.app.endswith(":validated"):
        pytest.skip("wsgiref.validate requires a size argument to read()")
    body = pattern(100_000)
    got = post(server, "/body?mode=all", body)
    assert (got["size"], got["reads"]) == (len(body), 1)


def test_empty_body(server):
    got = post(server, "/body", b"")
    assert got["size"] == 0


def test_chunked_body_is_terminated_input(server):
    parts = [pattern(10), pattern(70_000), b"x", pattern(5000)]
    with server.connect() as conn:
        head = conn.build("POST", "/body?mode=chunks", {"Transfer-Encoding": "chunked"})
        conn.send(head + conn.chunked(*parts))
        resp = conn.read_response()
    got = resp.json()
    body = b"".join(parts)
    assert got["size"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["content_length"] in (None, "")  # wsgi.input_terminated: read to the end without it


def test_chunked_body_sent_slowly(server):
    with server.connect() as conn:
        conn.send(conn.build("POST", "/body?mode=lines", {"Transfer-Encoding": "chunked"}))
        for i in range(5):
            conn.send(conn.chunked(b"piece %d\n" % i)[:-5])  # one chunk, without the last-chunk
            time.sleep(0.05)
        conn.send(b"0\r\n\r\n")
        got = conn.read_response().json()
    assert got["size"] == sum(len(b"piece %d\n" % i) for i in range(5))
    assert got["reads"] == 5


def test_expect_100_continue(server):
    body = pattern(50_000)
    with server.connect() as conn:
        conn.send(conn.build("POST", "/body", {"Expect": "100-continue", "Content-Length": str(len(body))}))
        interim = conn.read_head()
        assert interim.status == 100
        conn.send(body)
        resp = conn.read_response()
    assert resp.json()["size"] == len(body)


def test_streamed_upload_keeps_memory_bounded(server):
    size = 64 * MiB
    block = os.urandom(MiB)
    expected = hashlib.sha256(block * 64).hexdigest()
    # Warm-up at full speed: touches ringserve's fixed receive-buffer ring (16 MiB per worker, used
    # round-robin by the kernel), so the measurement below sees only what the upload itself holds.
    post(server, "/upload", block * 32)
    base = server.rss_kb()
    peak = [base]
    with server.connect(timeout=30) as conn:
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], server.rss_kb())
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            # The app sleeps 0.5 ms per 64 KiB read: slower than loopback, so the server must stop reading.
            conn.send(conn.build("POST", "/upload?delay=0.0005", {"Content-Length": str(size)}))
            for _ in range(64):
                conn.send(block)
            got = conn.read_response().json()
        finally:
            done.set()
            sampler.join()
    assert got == {"size": size, "sha256": expected}
    growth_mib = (peak[0] - base) / 1024
    assert growth_mib < 16, f"server RSS grew {growth_mib:.1f} MiB during a 64 MiB upload"


def test_keep_alive_after_body(server):
    with server.connect() as conn:
        for i in range(3):
            body = pattern(1000 + i)
            conn.request("POST", "/body", None, body)
            resp = conn.read_response()
            assert json.loads(resp.body)["size"] == len(body)
            if resp.header("connection") == "close":  # gunicorn's sync worker: one request per connection
                break
