"""Request side of ringserve.http: events, pausing, pipelining, EOF, upgrade, error placement."""

from __future__ import annotations

import pytest
from test_http_corpus import harness  # the corpus replay harness, loaded once

from ringserve.http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    HTTPConnection,
    LocalProtocolError,
    ProtocolError,
    Request,
)

req, replay_all = harness.req, harness.replay_all
END, CLOSED = ("end",), ("closed",)
GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"


def events(conn: HTTPConnection, stop=(NEED_DATA, PAUSED)) -> list:
    out = []
    while True:
        ev = conn.next_event()
        out.append(ev)
        if ev in stop or type(ev) is ConnectionClosed:
            return out


def answer(conn: HTTPConnection, headers=((b"content-length", b"0"),)) -> bytes:
    out = conn.response_head(200, list(headers), b"") + conn.response_end()
    conn.start_next_cycle()
    return out


# -- keep-alive and pipelining ------------------------------------------------------------------

def test_keep_alive_two_requests_in_two_receives():
    conn = HTTPConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(GET)
    assert events(conn) == [Request(b"GET", b"/", b"/", b"", [(b"host", b"example.com")], "1.1", True,
                                    False, None), EndOfMessage(), PAUSED]
    assert conn.next_event() is PAUSED  # stays paused until the response is done
    answer(conn)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(POST)
    assert [type(e) for e in events(conn)] == [Request, Data, EndOfMessage, type(PAUSED)]


def test_pipelined_requests_wait_for_start_next_cycle():
    conn = HTTPConnection()
    conn.receive_data(GET + POST + GET.replace(b"/ ", b"/3 "))
    assert conn.buffered_requests == 3
    assert conn.unread_body_bytes == 5
    first = events(conn)
    assert first[0].path == b"/" and first[-1] is PAUSED
    assert conn.buffered_requests == 2
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()  # no response yet
    answer(conn)
    second = events(conn)
    assert second[0].path == b"/p" and second[1] == Data(b"hello") and conn.unread_body_bytes == 0
    answer(conn)
    assert events(conn)[0].path == b"/3"
    assert conn.buffered_requests == 0


@pytest.mark.parametrize("pipelined", [1, 2, 10])
def test_pipelining_every_split(pipelined):
    stream = b"".join(GET.replace(b"/ ", b"/%d " % i) for i in range(pipelined))
    expected = []
    for i in range(pipelined):
        expected += [req(b"GET", b"/%d" % i), END]
    assert replay_all(stream) == expected


def test_data_events_are_coalesced():
    conn = HTTPConnection()
    conn.receive_data(CHUNKED)
    for piece in (b"3\r\nabc\r\n", b"2\r\nde\r\n", b"1\r\nf\r\n"):
        conn.receive_data(piece)
    assert conn.unread_body_bytes == 6
    assert events(conn)[1:] == [Data(b"abcdef"), NEED_DATA]
    assert conn.unread_body_bytes == 0
    conn.receive_data(b"0\r\n\r\n")
    assert events(conn) == [EndOfMessage(), PAUSED]


def test_in_head_tracks_a_partial_head():
    conn = HTTPConnection()
    assert not conn.in_head
    conn.receive_data(b"\r\n")  # empty lines before a request are not a head
    assert not conn.in_head
    conn.receive_data(GET[:10])
    assert conn.in_head
    conn.receive_data(GET[10:-1])
    assert conn.in_head
    conn.receive_data(GET[-1:])
    assert not conn.in_head
    conn.receive_data(b"GET")  # the next pipelined head, while the first is being answered
    assert conn.in_head


def test_memoryview_is_copied():
    buf = bytearray(POST)
    conn = HTTPConnection()
    conn.receive_data(memoryview(buf))
    buf[:] = b"X" * len(buf)  # the ring recycles the buffer
    evs = events(conn)
    assert evs[0].method == b"POST" and evs[0].headers[0] == (b"host", b"example.com")
    assert evs[1] == Data(b"hello")


@pytest.mark.parametrize("step", [1, 3, 16, 1000])
def test_body_from_recycled_memoryviews(step):
    """A content-length body arriving in ring buffers (views, overwritten after each call), with the
    next request behind it: the same events as one bytes feed."""
    body = bytes(range(256)) * 40
    stream = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body + GET
    conn = HTTPConnection()
    buf = bytearray(step)
    got = []
    for i in range(0, len(stream), step):
        piece = stream[i:i + step]
        buf[:len(piece)] = piece
        conn.receive_data(memoryview(buf)[:len(piece)])
        buf[:] = b"X" * step  # the ring recycles the buffer
        got += [e for e in events(conn) if e not in (NEED_DATA, PAUSED)]
    assert b"".join(e.data for e in got if type(e) is Data) == body
    assert got[-1] == EndOfMessage() and got[0].path == b"/p"
    answer(conn)
    nxt = events(conn)
    assert nxt[0].method == b"GET" and nxt[1] == EndOfMessage()


def test_unread_body_is_dropped_by_start_next_cycle():
    conn = HTTPConnection()
    conn.receive_data(POST + GET)
    assert type(conn.next_event()) is Request
    answer(conn)  # the app never read the body
    assert conn.unread_body_bytes == 0
    assert events(conn)[0].target == b"/"


def test_response_before_body_complete_closes():
    conn = HTTPConnection()
    conn.receive_data(POST[:-2])
    events(conn)
    conn.response_head(413, [(b"content-length", b"0")], b"")
    conn.response_end()
    assert not conn.keep_alive
    with pytest.raises(LocalProtocolError):
        conn.start_next_cycle()


# -- HTTP/1.0, Connection, Expect -----------------------------------------------------------------

@pytest.mark.parametrize("stream, keep", [
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,  CLOSE\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive_flag(stream, keep):
    out = replay_all(stream)
    assert out[0][7] is keep
    assert out[-1] == (END if keep else ("close",))


@pytest.mark.parametrize("head, expected", [
    (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", True),
    (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-CONTINUE\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", False),
    (b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", False),
    (b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\nContent-Length: 3\r\n\r\n", False),
])
def test_expect_continue(head, expected):
    conn = HTTPConnection()
    conn.receive_data(head)
    ev = conn.next_event()
    assert ev.expect_continue is expected
    if expected:
        assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.continue_response() == b""  # only once


def test_continue_not_sent_after_the_response_started():
    conn = HTTPConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    conn.next_event()
    conn.response_head(417, [(b"content-length", b"0")], b"")
    assert conn.continue_response() == b""


# -- upgrade --------------------------------------------------------------------------------------

UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


@pytest.mark.parametrize("how", harness.SPLITS)
def test_upgrade_keeps_the_following_bytes(how):
    conn = HTTPConnection()
    for piece in harness.pieces(UPGRADE + b"\x81\x02hi", how, 7):
        conn.receive_data(piece)
    conn.receive_data(b"more")
    evs = events(conn)
    assert evs[0].upgrade == b"websocket" and evs[1:] == [EndOfMessage(), PAUSED]
    assert conn.trailing_data == b"\x81\x02himore"
    head = conn.response_head(101, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")], b"")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"connection: close" not in head and b"transfer-encoding" not in head
    assert conn.response_end() == b""
    assert not conn.keep_alive  # not for HTTP: the server hands the socket to the new protocol


def test_upgrade_refused_closes_the_connection():
    conn = HTTPConnection()
    conn.receive_data(UPGRADE + GET)
    events(conn)
    head = conn.response_head(400, [(b"content-length", b"0")], b"")
    assert b"connection: close\r\n" in head
    conn.response_end()
    assert not conn.keep_alive
    assert conn.trailing_data == GET  # never parsed as a request


def test_upgrade_with_a_body_never_parses_the_body_as_a_request():
    smuggled = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    stream = (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
              b"Content-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
    out = replay_all(stream)
    assert [e[0] for e in out] == ["request", "end", "close"]


def test_101_requires_an_upgrade_request():
    conn = HTTPConnection()
    conn.receive_data(GET)
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.response_head(101, [], b"")


# -- EOF ------------------------------------------------------------------------------------------

def test_eof_when_idle():
    conn = HTTPConnection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()
    conn.receive_data(GET)  # ignored
    assert conn.next_event() == ConnectionClosed()


def test_eof_after_a_request_is_seen_after_the_cycle():
    conn = HTTPConnection()
    conn.receive_data(GET)
    conn.receive_data(b"")
    assert conn.their_eof
    assert events(conn)[-1] is PAUSED
    answer(conn)
    assert conn.next_event() == ConnectionClosed()


def test_eof_in_the_middle_of_a_head_is_an_error():
    assert replay_all(GET[:-3], eof=True) == [("error", 400)]


@pytest.mark.parametrize("stream", [POST[:-2], CHUNKED + b"3\r\nab"])
def test_eof_in_the_middle_of_a_body_is_connection_closed(stream):
    out = replay_all(stream, eof=True)
    assert out[0][0] == "request" and out[-1] == CLOSED and END not in out


# -- errors ---------------------------------------------------------------------------------------

def test_error_is_raised_again_and_input_is_then_ignored():
    conn = HTTPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    with pytest.raises(ProtocolError) as first:
        conn.next_event()
    assert first.value.status == 400 and "Host" in first.value.reason
    conn.receive_data(GET)
    conn.receive_data(b"")
    with pytest.raises(ProtocolError) as again:
        conn.next_event()
    assert again.value is first.value


def test_valid_request_before_garbage_is_served_first():
    conn = HTTPConnection()
    conn.receive_data(POST + b"BREW /pot HTCPCP/1.0\r\n\r\n")
    evs = events(conn)
    assert [type(e) for e in evs] == [Request, Data, EndOfMessage, type(PAUSED)]
    answer(conn)
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 400


def test_error_in_a_body_comes_after_the_data_before_it():
    out = replay_all(CHUNKED + b"3\r\nabc\r\nzz\r\n")
    assert out[1:] == [("data", b"abc"), ("error", 400)]


def test_unexpected_exception_in_a_callback_becomes_a_protocol_error(monkeypatch):
    from ringserve.http import _parser

    def broken(self, url):
        raise RuntimeError("bug")

    monkeypatch.setattr(_parser.RequestParser, "on_url", broken)
    conn = HTTPConnection()
    conn.receive_data(GET)  # must not raise
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 400 and isinstance(exc.value.__cause__, RuntimeError)


def test_http_parser_keyboard_interrupt_is_not_swallowed(monkeypatch):
    from ringserve.http import _parser

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(_parser.RequestParser, "on_headers_complete", interrupted)
    conn = HTTPConnection()
    with pytest.raises(KeyboardInterrupt):
        conn.receive_data(GET)


def test_header_values_and_names():
    stream = (b"GET / HTTP/1.1\r\nHOST: example.com\r\nX-Multi: a \r\nx-multi:\t b\t\r\n"
              b"X-Inner:  a  b  \r\n\r\n")
    out = replay_all(stream)
    assert out[0][5] == [(b"host", b"example.com"), (b"x-multi", b"a"), (b"x-multi", b"b"),
                         (b"x-inner", b"a  b")]


@pytest.mark.parametrize("stream, eof", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (GET, True),
    (UPGRADE + b"\x81", False),
])
def test_a_finished_connection_needs_no_cycle_collector(stream, eof):
    """llhttp holds our bound methods; once nothing more can be parsed we drop it (else every
    connection would wait for the garbage collector)."""
    import gc

    gc.collect()
    gc.disable()
    try:
        conn = HTTPConnection()
        conn.receive_data(stream)
        if eof:
            conn.receive_data(b"")
        events(conn)
        conn.response_head(200, [(b"content-length", b"0")], b"")
        conn.response_end()
        del conn
        assert gc.collect() == 0
    finally:
        gc.enable()
