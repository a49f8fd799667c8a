"""Connection lifetime: timeouts, client disconnects, slow readers and the concurrency limit."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.combined:app"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(serve):
    return serve()


def closed_after(conn, timeout: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (fails if it stays open past `timeout`)."""
    start = time.monotonic()
    closed, data = conn.wait_closed(timeout)
    elapsed = time.monotonic() - start
    assert closed, f"connection still open after {timeout}s"
    return elapsed, data


# --------------------------------------------------------------------------- timeouts


def test_keep_alive_timeout_closes_idle_connection(serve):
    server = serve(APP, "--timeout-keep-alive", "1")
    with server.connect() as conn:
        conn.request("GET", "/echo")
        assert conn.read_response().status == 200
        elapsed, data = closed_after(conn, 4)
    assert data == b""
    assert 0.7 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s, want ~1s"


def test_keep_alive_timer_restarts_after_each_response(serve):
    server = serve(APP, "--timeout-keep-alive", "1")
    with server.connect() as conn:
        for i in range(4):  # 4 x 0.6 s > 1 s: only a timer re-armed per response keeps this alive
            conn.request("GET", f"/echo?i={i}")
            assert conn.read_response().json()["query_string"] == f"i={i}"
            assert conn.is_open(0.6)


def test_keep_alive_timer_does_not_cut_a_slow_response(serve):
    server = serve(APP, "--timeout-keep-alive", "1")
    with server.connect() as conn:
        conn.request("GET", "/slow?delay=1.5&tag=x")
        assert conn.read_response().body == b"started x\ndone x\n"


@pytest.mark.ringserve_only("uvicorn arms no timer before the first request: a silent new connection stays open")
def test_silent_new_connection_is_closed(serve):
    server = serve(APP, "--timeout-keep-alive", "1", "--timeout-request-head", "1")
    with server.connect() as conn:
        elapsed, data = closed_after(conn, 4)
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
    assert elapsed <= 2.5


@pytest.mark.ringserve_only(
    "uvicorn has no request-head deadline (--timeout-request-head): "
    "a client trickling header bytes holds the connection forever (slowloris)"
)
def test_request_head_deadline_against_trickling_client(serve):
    server = serve(APP, "--timeout-request-head", "1", "--timeout-keep-alive", "30")
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Trickle: ")
        closed, data = False, b""
        while not closed and time.monotonic() - start < 5:
            try:
                conn.send(b"a")  # keeps sending: only a deadline on the whole head stops this
            except (BrokenPipeError, ConnectionResetError):
                closed, data = conn.wait_closed(1)
                break
            closed, data = conn.wait_closed(0.1)
        elapsed = time.monotonic() - start
    assert closed, "a client trickling its head kept the connection for 5 s"
    assert 0.7 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s, want ~1s"
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]


@pytest.mark.ringserve_only("uses --timeout-request-head, which uvicorn does not have")
def test_request_head_deadline_allows_a_slow_but_complete_head(serve):
    server = serve(APP, "--timeout-request-head", "1", "--timeout-keep-alive", "30")
    with server.connect() as conn:
        conn.send_slowly(conn.build("GET", "/echo?slow=1"), step=4, delay=0.02)  # ~0.25 s
        assert conn.read_response().json()["query_string"] == "slow=1"


# --------------------------------------------------------------------------- client disconnects


def wait_record(server, key: str) -> dict:
    with server.client() as client:
        return client.get("/disconnect/wait", params={"id": key, "timeout": 5}).json()


def test_disconnect_mid_body_reaches_the_app(server):
    key = uuid.uuid4().hex
    with server.connect() as conn:
        conn.send(conn.build("POST", f"/disconnect/hold?id={key}", headers={"Content-Length": "100"}) + b"x" * 10)
        time.sleep(0.1)  # let the app see the partial body before the close (it must cope either way)
    record = wait_record(server, key)
    assert record["done"], f"the app never saw http.disconnect: {record}"
    messages = record["messages"]
    assert messages[-1] == ["http.disconnect"]
    bodies = [m for m in messages if len(m) == 2]
    assert all(more for _, more in bodies), f"a truncated body was reported complete: {messages}"
    assert sum(n for n, _ in bodies) <= 10


def test_disconnect_while_app_waits_after_the_body(server):
    key = uuid.uuid4().hex
    with server.connect() as conn:
        conn.request("GET", f"/disconnect/hold?id={key}")
        time.sleep(0.1)
    record = wait_record(server, key)
    assert record["done"], f"the app never saw http.disconnect: {record}"
    assert record["messages"] == [[0, False], ["http.disconnect"]]
    assert record["send_after_disconnect"] is not None


# --------------------------------------------------------------------------- slow reader


def test_slow_reader_memory_stays_bounded_and_data_is_intact(server):
    size = 32 * MiB
    with server.client() as client:  # warm up the code paths and the digest cache out of the measurement
        assert len(client.get("/big", params={"size": MiB}).content) == MiB
    base = server.rss_kb()
    with server.connect(rcvbuf=64 * 1024, timeout=10) as conn:
        conn.request("GET", f"/big?size={size}")
        peak, deadline = base, time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the client reads nothing for 1.5 s
            peak = max(peak, server.rss_kb())
            time.sleep(0.05)
        resp = conn.read_response()
    growth_mib = (peak - base) / 1024
    assert len(resp.body) == size
    assert hashlib.sha256(resp.body).hexdigest() == resp.header("x-sha256"), "the body arrived corrupted"
    assert growth_mib < 12, f"server RSS grew {growth_mib:.1f} MiB while the client did not read"


# --------------------------------------------------------------------------- concurrency limit


def test_limit_concurrency_answers_503(serve):
    limit = 3
    server = serve(APP, "--limit-concurrency", str(limit))
    conns, heads = [], []
    try:
        for i in range(limit + 2):
            conn = server.connect()
            conns.append(conn)
            conn.request("GET", f"/slow?delay=1&tag={i}")
            heads.append(conn.read_head())  # the head comes at once: this request is now in flight
            if heads[-1].status == 503:
                break
        statuses = [head.status for head in heads]
        assert statuses[-1] == 503, f"no 503 with {len(statuses)} requests in flight: {statuses}"
        assert conns[-1].read_body(heads[-1]).body  # a whole, well-framed response
        # uvicorn counts the new connection itself, so its first 503 is at index limit-1; either is fine.
        assert statuses[:-1] == [200] * (len(statuses) - 1) and limit - 1 <= len(statuses) - 1 <= limit, statuses
        for i, (conn, head) in enumerate(zip(conns[:-1], heads[:-1], strict=True)):  # the admitted ones complete
            assert conn.read_body(head).body == b"started %d\ndone %d\n" % (i, i)
    finally:
        for conn in conns:
            conn.close()
    deadline = time.monotonic() + 5
    with server.client() as client:
        while True:  # the server may take a moment to notice the closed connections
            status = client.get("/echo").status_code
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert status == 200, "the limit was not released after the requests finished"
