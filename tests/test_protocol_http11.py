"""HTTP/1.1 message framing and connection management, over raw sockets and httpx.

Runs against ringserve and uvicorn (oracle). Each test is something a wrong server would fail:
framing mistakes show up as parse errors in the strict raw client (conftest.RawConnection).
"""

from __future__ import annotations

import email.utils
import time

import pytest

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server(serve):
    return serve()


# --------------------------------------------------------------------------- connection reuse


def test_keep_alive_reuses_the_connection(server):
    with server.connect() as conn:
        for i in range(3):
            conn.request("GET", f"/echo?i={i}")
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.header("connection") != "close"
            data = resp.json()
            assert data["query_string"] == f"i={i}"
            # The same TCP connection carried every request: the server saw the same client port.
            assert data["client"] == ["127.0.0.1", conn.local_port]
        assert conn.is_open()


def test_pipelined_requests_in_one_packet_answered_in_order(server):
    with server.connect() as conn:
        build = conn.build
        conn.send(
            build("GET", "/echo?n=1")
            + build("POST", "/echo?n=2", body=b"second body")
            + build("GET", "/stream?n=2")
            + build("PUT", "/echo?n=4", headers={"Transfer-Encoding": "chunked"}, body=conn.chunked(b"fourth"))
        )
        first, second, third, fourth = (conn.read_response() for _ in range(4))
        assert first.json()["query_string"] == "n=1"
        assert (second.json()["method"], second.json()["body"]) == ("POST", "second body")
        assert third.chunked and third.body == b"chunk-0\nchunk-1\n"
        assert (fourth.json()["method"], fourth.json()["body"]) == ("PUT", "fourth")
        assert conn.is_open()


def test_pipelined_slow_request_does_not_let_the_next_overtake(server):
    with server.connect() as conn:
        conn.send(conn.build("GET", "/slow?delay=0.3&tag=a") + conn.build("GET", "/echo?after=slow"))
        slow = conn.read_response()
        assert slow.body == b"started a\ndone a\n"
        assert conn.read_response().json()["query_string"] == "after=slow"


def test_request_sent_one_byte_at_a_time(server):
    with server.connect() as conn:
        conn.send_slowly(conn.build("POST", "/echo?x=1", headers={"X-Split": "yes"}, body=b"hello"))
        data = conn.read_response().json()
        assert (data["method"], data["query_string"], data["body"]) == ("POST", "x=1", "hello")
        assert ["x-split", "yes"] in data["headers"]


# --------------------------------------------------------------------------- request bodies


def test_content_length_body(server):
    body = bytes(range(256)) * 200  # 51200 bytes, several reads
    with server.connect() as conn:
        conn.request("POST", "/echo", body=body)
        assert conn.read_response().json()["body"].encode("latin-1") == body


def test_chunked_request_body_with_extensions_and_trailers(server):
    with server.connect() as conn:
        body = b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
        conn.request("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=body)
        assert conn.read_response().json()["body"] == "hello0123456789"
        conn.request("GET", "/echo?next=1")  # the connection is still in sync
        assert conn.read_response().json()["query_string"] == "next=1"


def test_body_arrives_in_pieces_with_more_body(server):
    with server.connect() as conn:
        conn.send(conn.build("POST", "/pieces", headers={"Transfer-Encoding": "chunked"}))
        for part in (b"aaaa", b"bbbbbbbb", b"cc"):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.05)  # let each chunk be its own read
        conn.send(b"0\r\n\r\n")
        data = conn.read_response().json()
    messages = data["messages"]
    assert data["body"] == "aaaabbbbbbbbcc"
    assert sum(m[0] for m in messages) == 14
    assert all(more for _, more in messages[:-1]), messages
    assert messages[-1][1] is False, messages
    assert len(messages) >= 2, "the body was delivered in one piece although it arrived in several"


def test_request_without_body_is_one_final_message(server):
    with server.client() as client:
        assert client.get("/pieces").json()["messages"] == [[0, False]]


# --------------------------------------------------------------------------- response framing


def test_streamed_response_is_chunked_and_incremental(server):
    with server.connect() as conn:
        start = time.monotonic()
        conn.request("GET", "/stream?n=3&delay=0.3")
        head = conn.read_head()
        assert head.header("transfer-encoding") == "chunked"
        assert head.header("content-length") is None
        first = conn._read_line()
        assert conn._read_exact(int(first, 16) + 2) == b"chunk-0\n\r\n"
        first_at = time.monotonic() - start
    assert first_at < 0.5, f"first chunk took {first_at:.2f}s: the response was buffered"


def test_empty_body_message_does_not_end_a_chunked_response(server):
    with server.connect() as conn:
        conn.request("GET", "/stream?n=4")
        resp = conn.read_response()
        assert resp.body == b"chunk-0\nchunk-1\nchunk-2\nchunk-3\n"
        assert b"" not in resp.chunks
        conn.request("GET", "/echo?after=stream")
        assert conn.read_response().json()["query_string"] == "after=stream"


def test_head_keeps_headers_and_sends_no_body(server):
    with server.connect() as conn:
        conn.request("GET", "/pathsend?path=/etc/os-release")
        get = conn.read_response()
        conn.request("HEAD", "/pathsend?path=/etc/os-release")
        head = conn.read_response("HEAD")
        assert head.status == 200
        assert head.header("content-length") == get.header("content-length") == str(len(get.body))
        assert head.header("content-type") == "application/octet-stream"
        conn.request("HEAD", "/stream?n=2")
        conn.read_response("HEAD")
        # Any stray body bytes would now be parsed as the next status line.
        conn.request("GET", "/echo?after=head")
        assert conn.read_response().json()["query_string"] == "after=head"


# --------------------------------------------------------------------------- Expect: 100-continue


def test_expect_100_continue_before_body(server):
    with server.connect() as conn:
        conn.request("POST", "/echo", headers={"Expect": "100-continue", "Content-Length": "5"})
        interim = conn.read_head()
        assert interim.status == 100
        conn.send(b"hello")
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["body"] == "hello"


def test_no_100_continue_when_app_answers_without_reading(server):
    with server.connect() as conn:
        conn.request("POST", "/noread", headers={"Expect": "100-continue", "Content-Length": "5"})
        resp = conn.read_response(skip_interim=False)
        assert resp.status == 200
        assert resp.body == b"ok"


# --------------------------------------------------------------------------- HTTP/1.0 and Connection: close


def test_http10_request_closes_after_response(server):
    with server.connect() as conn:
        conn.request("GET", "/echo?v=10", version="HTTP/1.0")
        resp = conn.read_response()
        assert resp.json()["http_version"] == "1.0"
        closed, rest = conn.wait_closed(2)
        assert closed and rest == b""


@pytest.mark.ringserve_only(
    "uvicorn sends Transfer-Encoding: chunked to HTTP/1.0 clients (RFC 9112 6.1: MUST NOT); "
    "ringserve must delimit the body by closing the connection"
)
def test_http10_streamed_response_is_not_chunked(server):
    with server.connect() as conn:
        conn.request("GET", "/stream?n=3", version="HTTP/1.0")
        resp = conn.read_response()
        assert resp.header("transfer-encoding") is None
        assert resp.body == b"chunk-0\nchunk-1\nchunk-2\n"  # read until close: no chunk framing


@pytest.mark.ringserve_only("uvicorn never keeps HTTP/1.0 connections alive (keep_alive = version != '1.0')")
def test_http10_keep_alive_stays_open(server):
    with server.connect() as conn:
        for i in range(2):
            conn.request("GET", f"/echo?i={i}", headers={"Connection": "keep-alive"}, version="HTTP/1.0")
            resp = conn.read_response()
            assert resp.json()["query_string"] == f"i={i}"
            assert "close" not in (resp.header("connection") or "").lower()
        assert conn.is_open()


def test_connection_close_request(server):
    with server.connect() as conn:
        conn.send(conn.build("GET", "/echo?c=1", headers={"Connection": "close"}) + conn.build("GET", "/echo?c=2"))
        resp = conn.read_response()
        assert resp.json()["query_string"] == "c=1"
        assert resp.header("connection") == "close"
        closed, rest = conn.wait_closed(2)
        assert closed and rest == b"", f"answered a request sent after Connection: close: {rest[:100]!r}"


# --------------------------------------------------------------------------- default headers


def test_date_and_server_headers(server):
    with server.client() as client:
        resp = client.get("/echo")
    assert resp.headers.get("server")
    assert len(resp.headers.get_list("server")) == 1
    date = email.utils.parsedate_to_datetime(resp.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5
    assert resp.headers["date"].endswith(" GMT")


def test_no_server_and_date_headers(serve):
    server = serve("tests.apps.combined:app", "--no-server-header", "--no-date-header")
    with server.client() as client:
        resp = client.get("/echo")
    assert resp.status_code == 200
    assert "server" not in resp.headers
    assert "date" not in resp.headers


def test_extra_header_option(serve):
    server = serve("tests.apps.combined:app", "--header", "X-A: b", "--header", "X-Other:c")
    with server.client() as client:
        resp = client.get("/echo")
    assert resp.headers.get_list("x-a") == ["b"]
    assert resp.headers.get_list("x-other") == ["c"]
    assert resp.headers.get("server")
