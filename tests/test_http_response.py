"""Response side of ringserve.http: framing, connection header, defaults, validation, errors."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from ringserve.http import EndOfMessage, HTTPConnection, LocalProtocolError

DEFAULTS = b"server: ringserve\r\ndate: Mon, 30 Nov 2026 00:00:00 GMT\r\n"


def ready(head: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") -> HTTPConnection:
    """A connection whose request has been read to its end."""
    conn = HTTPConnection()
    conn.receive_data(head)
    while type(conn.next_event()) is not EndOfMessage:
        pass
    return conn


def parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    assert head.endswith(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    return status, [tuple(line.split(b": ", 1)) for line in lines]


def test_content_length_response():
    conn = ready()
    head = conn.response_head(200, [(b"content-type", b"text/plain"), (b"content-length", b"5")],
                              DEFAULTS)
    assert head == (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n" + DEFAULTS
                    + b"\r\n")
    assert conn.response_started and not conn.response_complete
    assert conn.response_data(b"hel") == b"hel"
    assert conn.response_data(b"") == b""
    with pytest.raises(LocalProtocolError):
        conn.response_data(b"too much")
    assert conn.response_data(b"lo") == b"lo"
    assert conn.response_end() == b""
    assert conn.keep_alive and conn.response_complete
    conn.start_next_cycle()


def test_chunked_when_no_length_on_http11():
    conn = ready()
    status, headers = parse_head(conn.response_head(200, [], b""))
    assert headers == [(b"transfer-encoding", b"chunked")]
    assert conn.response_data(b"hello") == b"5\r\nhello\r\n"
    assert conn.response_data(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.response_data(b"") == b""  # an empty chunk would end the body
    assert conn.response_end() == b"0\r\n\r\n"
    assert conn.keep_alive


def test_app_chunked_header_is_replaced_by_ours():
    conn = ready()
    _, headers = parse_head(conn.response_head(200, [(b"Transfer-Encoding", b"chunked")], b""))
    assert headers == [(b"transfer-encoding", b"chunked")]
    conn = ready(b"GET / HTTP/1.0\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [(b"transfer-encoding", b"chunked")], b""))
    assert headers == [(b"connection", b"close")]  # 1.0 can't do chunked: until close


def test_http10_without_length_is_delimited_by_close():
    conn = ready(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [], b""))
    assert headers == [(b"connection", b"close")]
    assert conn.response_data(b"raw") == b"raw"
    conn.response_end()
    assert not conn.keep_alive


def test_http10_keep_alive_with_length():
    conn = ready(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [(b"content-length", b"0")], b""))
    assert headers == [(b"content-length", b"0"), (b"connection", b"keep-alive")]
    conn.response_end()
    assert conn.keep_alive


def test_http10_without_keep_alive_closes():
    conn = ready(b"GET / HTTP/1.0\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [(b"content-length", b"0")], b""))
    assert headers == [(b"content-length", b"0"), (b"connection", b"close")]
    conn.response_end()
    assert not conn.keep_alive
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()


def test_head_request_keeps_content_length_and_drops_the_body():
    conn = ready(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [(b"content-length", b"100")], b""))
    assert headers == [(b"content-length", b"100")]
    assert conn.response_data(b"x" * 100) == b""
    assert conn.response_end() == b""
    assert conn.keep_alive


def test_head_request_without_length_stays_alive():
    conn = ready(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _, headers = parse_head(conn.response_head(200, [], b""))
    assert headers == [(b"connection", b"keep-alive")]
    conn.response_end()
    assert conn.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    conn = ready()
    _, headers = parse_head(conn.response_head(status, [(b"etag", b'"x"')], b""))
    assert headers == [(b"etag", b'"x"')]
    assert conn.response_data(b"ignored") == b""
    assert conn.response_end() == b""
    assert conn.keep_alive


def test_informational_response_does_not_start_the_response():
    conn = ready()
    early = conn.response_head(103, [(b"link", b"</s.css>; rel=preload")], DEFAULTS)
    assert early == b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
    assert not conn.response_started
    conn.response_head(200, [(b"content-length", b"0")], b"")
    conn.response_end()


@pytest.mark.parametrize("request_head, app_headers, keep, line", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", [], False, b"connection: close"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [(b"Connection", b"close")], False, b"Connection: close"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [(b"connection", b"foo, Close")], False, None),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", [(b"connection", b"keep-alive")],
     False, b"connection: close"),
])
def test_connection_close(request_head, app_headers, keep, line):
    conn = ready(request_head)
    head = conn.response_head(200, app_headers + [(b"content-length", b"0")], b"")
    assert head.lower().count(b"connection:") == len(app_headers) + (line == b"connection: close")
    if line:
        assert line + b"\r\n" in head
    conn.response_end()
    assert conn.keep_alive is keep


def test_short_body_closes_the_connection():
    conn = ready()
    conn.response_head(200, [(b"content-length", b"10")], b"")
    conn.response_data(b"12345")
    conn.response_end()
    assert not conn.keep_alive


def test_default_headers_are_skipped_per_name():
    conn = ready()
    head = conn.response_head(200, [(b"Server", b"app/1.0"), (b"content-length", b"0")], DEFAULTS)
    _, headers = parse_head(head)
    assert headers == [(b"Server", b"app/1.0"), (b"content-length", b"0"),
                       (b"date", b"Mon, 30 Nov 2026 00:00:00 GMT")]


@pytest.mark.parametrize("status", [200, 404, 418, 451, 599, 999, 100 + 1, 299])
def test_status_lines(status):
    conn = ready(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
    head = conn.response_head(status, [], b"")
    try:
        phrase = HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    assert head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))


@pytest.mark.parametrize("status", [99, 1000, 0, -200, "200", 200.0, True, None])
def test_invalid_status(status):
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(status, [], b"")
    assert not conn.response_started


@pytest.mark.parametrize("name, value", [
    (b"x-a", b"a\r\nSet-Cookie: evil"), (b"x-a", b"a\nb"), (b"x-a", b"a\rb"), (b"x-a", b"a\x00b"),
    (b"x a", b"v"), (b"x:a", b"v"), (b"", b"v"), (b"x\r\na", b"v"), (b"x(", b"v"),
    ("x-a", b"v"), (b"x-a", "v"), (b"x-a", None), (bytearray(b"x-a"), b"v"),
    (b"content-length", b"-1"), (b"content-length", b"1 2"), (b"transfer-encoding", b"gzip"),
])
def test_header_injection_and_invalid_headers(name, value):
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [(name, value)], b"")
    assert not conn.response_started


def test_duplicate_content_length_from_app():
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [(b"content-length", b"1"), (b"Content-Length", b"1")], b"")


def test_response_calls_out_of_order():
    conn = HTTPConnection()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [], b"")  # no request yet
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.response_end()
    conn.response_head(200, [], b"")
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [], b"")
    conn.response_end()
    with pytest.raises(LocalProtocolError):
        conn.response_data(b"x")


@pytest.mark.parametrize("status", [400, 408, 413, 414, 431, 500, 501, 503, 505, 599])
def test_error_response(status):
    body = HTTPStatus(status).phrase.encode() if status != 599 else b"Error"
    conn = HTTPConnection()
    conn.receive_data(b"\x16\x03\x01garbage")
    out = conn.error_response(status, DEFAULTS)
    head, _, got = out.partition(b"\r\n\r\n")
    line, headers = parse_head(head + b"\r\n\r\n")
    assert line.startswith(b"HTTP/1.1 %d " % status)
    assert got == body
    assert headers == [(b"content-type", b"text/plain; charset=utf-8"),
                       (b"content-length", b"%d" % len(body)), (b"connection", b"close"),
                       (b"server", b"ringserve"), (b"date", b"Mon, 30 Nov 2026 00:00:00 GMT")]
    assert not conn.keep_alive and conn.response_complete
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()


def test_error_response_for_a_head_request_has_no_body():
    conn = ready(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.error_response(500).endswith(b"\r\n\r\n")


def test_error_response_after_the_response_started():
    conn = ready()
    conn.response_head(200, [], b"")
    with pytest.raises(LocalProtocolError):
        conn.error_response(500)


def test_error_response_after_a_complete_response():
    conn = ready()
    conn.response_head(200, [(b"content-length", b"0")], b"")
    conn.response_end()
    assert conn.error_response(408).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert not conn.keep_alive


@pytest.mark.parametrize("defaults", [b"server: x", b"no colon\r\n", b"x: a\x00b\r\n", b"x y: a\r\n",
                                      b"x: a\r\n\r\n", "server: x\r\n"])
def test_invalid_default_headers(defaults):
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [(b"content-length", b"0")], defaults)


def test_bad_values_are_never_cached():
    for _ in range(3):
        conn = ready()
        with pytest.raises(LocalProtocolError):
            conn.response_head(200, [(b"x-a", b"ok\r\nx-injected: 1")], b"")
    long_value = b"v" * 1000  # too long to cache, checked every time
    for _ in range(2):
        conn = ready()
        assert long_value in conn.response_head(200, [(b"x-a", long_value)], b"")
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, [(b"x-a", long_value + b"\x7f")], b"")


def test_status_may_be_an_http_status_member():
    conn = ready()
    assert conn.response_head(HTTPStatus.NOT_FOUND, [], b"").startswith(b"HTTP/1.1 404 Not Found\r\n")


@pytest.mark.parametrize("headers", [[(b"connection", "close")], [(b"content-length", "5")],
                                     [(b"x-a", b"1"), (b"connection", b"x"), (b"Connection", "y")],
                                     [(b"x-a",)], [b"x-a: b"]])
def test_malformed_header_items(headers):
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.response_head(200, headers, b"")
