"""Bad input, limits and failing apps: the status, the closed connection, and nothing leaking across.

Smuggling vectors: each must get exactly one 400 and a closed connection; the bytes after the bad part
(often a second, "smuggled" request) must never be answered.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(30)

SMUGGLED = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: a\r\n\r\n"

SMUGGLING_VECTORS = {
    # RFC 9112 6.3: TE and CL together is a smuggling attempt; rejecting is the safe choice.
    "te_and_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED,
    "duplicate_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 47\r\n\r\n"
                    b"hello" + SMUGGLED,
    "cl_list": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 47\r\n\r\nhello" + SMUGGLED,
    "negative_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n" + SMUGGLED,
    "plus_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello" + SMUGGLED,
    "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_size_overflow": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"1000000000000000000000005\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_without_crlf": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
    # RFC 9112 6.3: in a request, chunked must be the final coding, else 400.
    "chunked_not_last": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                        b"0\r\n\r\n" + SMUGGLED,
    # RFC 9112 5.2: obs-fold is rejected with 400 (or replaced by SP; ringserve rejects).
    "obs_fold": b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n" + SMUGGLED,
    "obs_fold_te": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n"
                   b"\r\nhello" + SMUGGLED,
    "nul_in_header_value": b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n" + SMUGGLED,
    "bare_cr_in_header_value": b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n" + SMUGGLED,
    # RFC 9112 5.1: whitespace between field name and colon MUST be rejected with 400.
    "space_before_colon": b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n" + SMUGGLED,
    "space_before_colon_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello" + SMUGGLED,
    "space_in_header_name": b"GET /echo HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n" + SMUGGLED,
    "bad_request_line": b"GET /echo HTTP/1.1 extra\r\nHost: a\r\n\r\n" + SMUGGLED,
    "bad_version": b"GET /echo HTTP/1.x\r\nHost: a\r\n\r\n" + SMUGGLED,
}


@pytest.fixture(scope="module")
def server(serve):
    return serve()


def assert_rejected(conn, status: int, statuses: tuple[int, ...] = ()) -> None:
    """Exactly one response with `status` (or one of `statuses`), then the server closes the connection."""
    resp = conn.read_response()
    assert resp.status in (statuses or (status,)), f"got {resp.status} {resp.reason}: {resp.body[:200]!r}"
    closed, rest = conn.wait_closed(3)
    assert closed, "connection left open after a protocol error"
    assert b"HTTP/1." not in rest, f"answered bytes that followed the bad request: {rest[:200]!r}"


# --------------------------------------------------------------------------- smuggling


@pytest.mark.parametrize("name", sorted(SMUGGLING_VECTORS))
def test_smuggling_vector_gets_400_and_close(server, name):
    with server.connect() as conn:
        conn.send(SMUGGLING_VECTORS[name])
        assert_rejected(conn, 400)


def test_unsupported_http_version(server):
    with server.connect() as conn:  # 505 (RFC 9110 15.6.6) or 400: refused and closed either way
        conn.send(b"GET /echo HTTP/9.9\r\nHost: a\r\n\r\n" + SMUGGLED)
        assert_rejected(conn, 400, statuses=(400, 505))


@pytest.mark.parametrize("name", ["te_and_cl", "space_before_colon_cl", "obs_fold"])
def test_smuggling_vector_split_into_bytes(server, name):
    with server.connect() as conn:
        try:
            conn.send_slowly(SMUGGLING_VECTORS[name], step=3, delay=0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may reject and close before the tail; the response must still be there
        assert_rejected(conn, 400)


def test_bad_request_does_not_disturb_a_concurrent_connection(server):
    with server.connect() as good, server.connect() as bad:
        good.send(good.build("POST", "/echo?good=1", body=b"0123456789")[:-5])  # head and half the body
        bad.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n")
        assert_rejected(bad, 400)
        good.send(b"56789")
        data = good.read_response().json()
        assert (data["query_string"], data["body"]) == ("good=1", "0123456789")
        good.request("GET", "/echo?good=2")
        assert good.read_response().json()["query_string"] == "good=2"


# --------------------------------------------------------------------------- limits


@pytest.mark.ringserve_only("uvicorn (httptools) has no request-line limit: a 16 KiB URL gets 200")
def test_long_url_414(server):
    with server.connect() as conn:
        conn.request("GET", "/echo?" + "a" * 16384)
        assert_rejected(conn, 414)


@pytest.mark.ringserve_only("uvicorn (httptools) has no header-count limit: 200 headers get 200")
def test_too_many_headers_431(server):
    with server.connect() as conn:
        conn.request("GET", "/echo", headers=[(f"X-H{i}", "v") for i in range(200)])
        assert_rejected(conn, 431)


@pytest.mark.ringserve_only("uvicorn (httptools) has no header-size limit: a 16 KiB header gets 200")
def test_huge_header_431(server):
    with server.connect() as conn:
        conn.request("GET", "/echo", headers={"X-Big": "v" * 16384})
        assert_rejected(conn, 431)


@pytest.mark.ringserve_only("uvicorn (httptools) has no limit on the whole head: 80 KiB of headers get 200")
def test_huge_head_431(server):
    with server.connect() as conn:
        conn.request("GET", "/echo", headers=[(f"X-H{i}", "v" * 4000) for i in range(20)])
        assert_rejected(conn, 431)


@pytest.mark.ringserve_only("uvicorn has no --limit-request-body")
def test_limit_request_body_413(serve):
    server = serve("tests.apps.combined:app", "--limit-request-body", "1000")
    with server.connect() as conn:  # within the limit
        conn.request("POST", "/echo", body=b"x" * 1000)
        assert len(conn.read_response().json()["body"]) == 1000
    with server.connect() as conn:  # Content-Length over the limit: refused from the head alone
        conn.send(conn.build("POST", "/echo", headers={"Content-Length": "2000"}))
        assert_rejected(conn, 413)
    with server.connect() as conn:  # chunked, over the limit only once the chunks add up
        conn.request("POST", "/echo", headers={"Transfer-Encoding": "chunked"},
                     body=conn.chunked(b"x" * 600, b"y" * 600))
        assert_rejected(conn, 413)


@pytest.mark.ringserve_only(
    "uvicorn ignores the unknown coding in 'gzip, chunked' and answers 200 (RFC 9112 6.1: SHOULD 501)"
)
def test_unknown_transfer_coding_501(server):
    with server.connect() as conn:
        conn.request("POST", "/echo", headers={"Transfer-Encoding": "gzip, chunked"}, body=b"0\r\n\r\n")
        assert_rejected(conn, 501)


def test_transfer_coding_without_chunked_is_refused(server):
    # RFC 9112 6.3 says 400 when chunked is not the final coding; 501 (unknown coding) is accepted too.
    with server.connect() as conn:
        conn.request("POST", "/echo", headers={"Transfer-Encoding": "gzip"}, body=b"hello")
        assert_rejected(conn, 400, statuses=(400, 501))


# --------------------------------------------------------------------------- failing apps


def test_exception_before_response_start_gives_500(server):
    with server.connect() as conn:
        conn.request("GET", "/raise?when=before&msg=boom-before-start")
        resp = conn.read_response()
        assert resp.status == 500
        assert b"boom-before-start" not in resp.body, "the exception text leaked to the client"
    server.wait_for_output(r"Traceback \(most recent call last\)")
    server.wait_for_output(r"RuntimeError: boom-before-start")
    with server.client() as client:  # the server is fine afterwards
        assert client.get("/echo").status_code == 200


def test_exception_after_chunked_start_closes_without_final_chunk(server):
    with server.connect() as conn:
        conn.request("GET", "/raise?when=after&msg=boom-after-chunked")
        head = conn.read_head()
        assert head.status == 200
        closed, rest = conn.wait_closed(3)
        assert closed, "connection left open after the app failed mid-response"
        assert b"partial-10" in rest
        assert not rest.endswith(b"0\r\n\r\n"), "the failed response was terminated as if complete"
    server.wait_for_output(r"RuntimeError: boom-after-chunked")


def test_exception_after_content_length_start_closes_short(server):
    with server.connect() as conn:
        conn.request("GET", "/raise?when=after_cl&msg=boom-after-cl")
        head = conn.read_head()
        assert head.header("content-length") == "100"
        closed, rest = conn.wait_closed(3)
        assert closed and rest == b"partial-10"
    server.wait_for_output(r"RuntimeError: boom-after-cl")
