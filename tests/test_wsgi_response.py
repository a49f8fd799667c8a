"""WSGI responses: write(), iterables and their close(), errors, exc_info, wsgi.file_wrapper, backpressure."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

import pytest

from wsgi_fixtures import wsgi_fixtures

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
server_kind, server = wsgi_fixtures()


def get(server, target: str, method: str = "GET"):
    with server.connect() as conn:
        conn.request(method, target)
        return conn.read_response(method)


def closed(server, key: str, timeout: float = 5) -> bool:
    with server.client() as client:
        return client.get("/closed", params={"id": key, "timeout": timeout}).json()["closed"]


def test_list_response(server):
    resp = get(server, "/environ")
    assert resp.status == 200
    assert resp.header("content-type") == "application/json"
    assert int(resp.header("content-length")) == len(resp.body)


def test_head_request_has_no_body(server):
    resp = get(server, "/sleep?s=0", "HEAD")
    assert resp.status == 200 and resp.body == b""
    assert resp.header("content-length") == "5"


def test_write_callable(server):
    resp = get(server, "/write")
    assert resp.status == 200
    assert resp.body == b"one two three"


def test_generator_close_is_called(server):
    key = uuid.uuid4().hex
    resp = get(server, f"/gen?id={key}&n=4")
    assert resp.body == b"".join(b"block %d\n" % i for i in range(4))
    assert closed(server, key)


def test_close_is_called_when_the_client_goes_away(server):
    key = uuid.uuid4().hex
    with server.connect() as conn:
        conn.request("GET", f"/endless?id={key}")
        head = conn.read_head()
        assert head.status == 200
        assert conn._fill()  # some of the body is flowing
    assert closed(server, key), "close() was not called after the client disconnected mid-stream"


def test_exception_before_start_is_500_and_logged(server):
    resp = get(server, "/raise?when=before&msg=wsgi-boom-before")
    assert resp.status == 500
    server.wait_for_output(r"Traceback \(most recent call last\)")
    server.wait_for_output(r"RuntimeError: wsgi-boom-before")


def test_exception_after_start_closes_the_connection(server):
    with server.connect() as conn:
        conn.request("GET", "/raise?when=iter&msg=wsgi-boom-after")
        head = conn.read_head()
        assert head.status == 200
        closed_, data = conn.wait_closed(5)
    assert closed_, "the connection stayed open after the app failed mid-response"
    assert b"partial-10" in data
    assert not data.endswith(b"0\r\n\r\n"), "a failed response must not look complete"
    server.wait_for_output(r"RuntimeError: wsgi-boom-after")


def test_exc_info_replaces_a_response_not_yet_sent(server):
    resp = get(server, "/excinfo?mode=replace")
    assert resp.status == 500
    assert resp.header("x-replaced") == "yes"
    assert resp.body == b"replaced"


def test_exc_info_after_the_head_was_sent_reraises(server):
    with server.connect() as conn:
        conn.request("GET", "/excinfo?mode=after")
        assert conn.read_head().status == 200
        closed_, data = conn.wait_closed(5)
    assert closed_ and b"first block" in data and b"never sent" not in data
    server.wait_for_output(r"ValueError: too late")


def test_second_start_response_without_exc_info_raises(server):
    resp = get(server, "/excinfo?mode=twice")
    assert resp.status == 200
    assert resp.body.startswith(b"second call raised ")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsgi") / "data.bin"
    path.write_bytes(os.urandom(3 * MiB + 12345))
    return path


@pytest.mark.parametrize("blksize", [8192, 1 << 20])
def test_file_wrapper_sends_the_file_intact(server, data_file, blksize):
    data = data_file.read_bytes()
    resp = get(server, f"/file?path={data_file}&blksize={blksize}")
    assert resp.status == 200
    assert len(resp.body) == len(data) and resp.body == data


def test_file_wrapper_honours_position_and_content_length(server, data_file):
    data = data_file.read_bytes()
    with server.connect() as conn:
        for offset, length in ((1000, 5000), (0, 1), (len(data) - 10, 10)):
            conn.request("GET", f"/file?path={data_file}&offset={offset}&cl={length}")
            resp = conn.read_response()
            assert resp.body == data[offset:offset + length]
            if resp.header("connection") == "close":
                break


def test_file_wrapper_big_file(server, tmp_path):
    path = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(40):
            f.write(block)
    resp = get(server, f"/file?path={path}&cl={40 * MiB}")
    assert len(resp.body) == 40 * MiB
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(block * 40).digest()


def test_big_generator_to_a_slow_reader_keeps_memory_flat(server):
    size = 32 * MiB
    assert len(get(server, f"/big?size={MiB}").body) == MiB  # warm up, and the digest cache
    base = server.rss_kb()
    with server.connect(rcvbuf=64 * 1024, timeout=15) as conn:
        conn.request("GET", f"/big?size={size}")
        peak, deadline = base, time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the client reads nothing for 1.5 s
            peak = max(peak, server.rss_kb())
            time.sleep(0.05)
        resp = conn.read_response()
    assert len(resp.body) == size
    assert hashlib.sha256(resp.body).hexdigest() == resp.header("x-sha256")
    growth_mib = (peak - base) / 1024
    assert growth_mib < 12, f"server RSS grew {growth_mib:.1f} MiB while the client did not read"


def test_slow_request_does_not_block_others(serve):
    server = serve("tests.apps.wsgi_app:app", "--threads", "2")
    results = {}

    def slow():
        start = time.monotonic()
        results["slow"] = (get(server, "/sleep?s=2").body, time.monotonic() - start)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)  # the sleeping request holds one of the two threads
    try:
        start = time.monotonic()
        for _ in range(5):  # new connections are accepted and served meanwhile
            assert get(server, "/environ").status == 200
        elapsed = time.monotonic() - start
    finally:
        thread.join()
    assert elapsed < 1.0, f"5 fast requests took {elapsed:.2f}s next to a sleeping one"
    assert results["slow"][0] == b"slept" and results["slow"][1] >= 1.9
