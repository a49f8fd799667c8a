"""Limits: exact at the boundary, the same whatever the split, enforced while bytes arrive."""

from __future__ import annotations

import pytest
from test_http_corpus import harness  # the corpus replay harness, loaded once

from ringserve.http import NEED_DATA, HTTPConnection, Limits, ProtocolError

replay_all = harness.replay_all
SMALL = Limits(max_request_line=64, max_header_count=5, max_header_field=48, max_head_bytes=200,
               max_body=10)
HOST = b"Host: a\r\n"


def outcome(stream: bytes, limits: Limits = SMALL) -> object:
    """"ok" if the first request gets through, else its error status."""
    out = replay_all(stream, limits=limits)
    return out[0][1] if out[0][0] == "error" else "ok"


def request_line(length: int) -> bytes:
    """A request line of exactly `length` bytes, CRLF excluded."""
    fixed = len(b"GET / HTTP/1.1")
    return b"GET /" + b"a" * (length - fixed) + b" HTTP/1.1\r\n"


def header_line(length: int, name: bytes = b"X-A") -> bytes:
    return name + b": " + b"v" * (length - len(name) - 2) + b"\r\n"


@pytest.mark.parametrize("length, expected", [(64, "ok"), (65, 414), (200, 414), (1000, 414)])
def test_request_line(length, expected):
    assert outcome(request_line(length) + HOST + b"\r\n") == expected


@pytest.mark.parametrize("length, expected", [(48, "ok"), (49, 431), (150, 431)])
def test_header_field(length, expected):
    assert outcome(b"GET / HTTP/1.1\r\n" + HOST + header_line(length) + b"\r\n") == expected


@pytest.mark.parametrize("count, expected", [(5, "ok"), (6, 431), (50, 431)])
def test_header_count(count, expected):
    lines = HOST + b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
    assert outcome(b"GET / HTTP/1.1\r\n" + lines + b"\r\n", Limits(max_header_count=5)) == expected


@pytest.mark.parametrize("size, expected", [(200, "ok"), (201, 431), (400, 431)])
def test_head_bytes(size, expected):
    start = b"GET / HTTP/1.1\r\n" + HOST
    limits = Limits(max_request_line=64, max_header_field=48, max_head_bytes=200)
    fill = b""
    while len(start) + len(fill) + 2 + 40 <= size:  # lines of 38 bytes plus CRLF
        fill += header_line(38, b"X-%02d" % len(fill))
    fill += header_line(size - len(start) - len(fill) - 4, b"X-Z")
    head = start + fill + b"\r\n"
    assert len(head) == size
    assert outcome(head, limits) == expected


def test_every_limit_applies_to_each_head_on_a_connection():
    ok = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"
    out = replay_all(ok + ok + request_line(65) + HOST + b"\r\n", limits=SMALL)
    assert out[-1] == ("error", 414) and out.count(("end",)) == 2


def test_endless_request_line_fails_at_the_limit_not_at_the_end():
    conn = HTTPConnection(Limits())
    conn.receive_data(b"GET /" + b"a" * 8100)
    assert conn.in_head and conn.next_event() is NEED_DATA  # still waiting
    conn.receive_data(b"a" * 100)
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 414


def test_endless_header_is_refused_without_buffering_it():
    conn = HTTPConnection(Limits())
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
    sent = 0
    while conn.in_head:
        conn.receive_data(b"v" * 1000)
        sent += 1000
    assert 8000 < sent <= 9000
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 431
    for _ in range(100):  # later input is dropped, not stored
        conn.receive_data(b"v" * 100_000)
    assert len(conn._rx.events) == 1 and conn._rx.head_len < 9000


def test_endless_stream_of_small_headers():
    conn = HTTPConnection(Limits())
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n")
    for _ in range(200):
        conn.receive_data(b"X-A: b\r\n")
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 431


@pytest.mark.parametrize("length, expected", [(10, "ok"), (11, 413), (10**15, 413)])
def test_content_length_over_max_body_is_refused_before_the_body(length, expected):
    assert outcome(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % length
                   + b"x" * min(length, 10)) == expected


@pytest.mark.parametrize("chunks, expected", [
    ([b"5", b"5"], "ok"), ([b"a"], "ok"), ([b"5", b"6"], 413), ([b"b"], 413), ([b"1"] * 11, 413),
])
def test_chunked_body_over_max_body(chunks, expected):
    body = b"".join(b"%s\r\n%s\r\n" % (c, b"x" * int(c, 16)) for c in chunks) + b"0\r\n\r\n"
    out = replay_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                     limits=SMALL)
    assert out[-1] == (("end",) if expected == "ok" else ("error", expected))


def test_chunked_413_comes_with_the_chunk_size_not_after_the_data():
    conn = HTTPConnection(SMALL)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\n")
    conn.next_event()
    with pytest.raises(ProtocolError) as exc:
        conn.next_event()
    assert exc.value.status == 413


def test_no_max_body_means_no_limit():
    out = replay_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
    assert out[-1] == ("end",) and out[1] == ("data", b"x" * 100000)


@pytest.mark.parametrize("trailers, expected", [(5, "end"), (6, 431)])
def test_trailer_count(trailers, expected):
    stream = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
              + b"".join(b"T-%d: v\r\n" % i for i in range(trailers)) + b"\r\n")
    out = replay_all(stream, limits=Limits(max_header_count=5))
    assert out[-1] == (("end",) if expected == "end" else ("error", 431))


@pytest.mark.parametrize("length, expected", [(48, ("end",)), (49, ("error", 431))])
def test_trailer_line_length(length, expected):
    stream = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
              + header_line(length) + b"\r\n")
    assert replay_all(stream, limits=SMALL)[-1] == expected


@pytest.mark.parametrize("length, expected", [(48, ("end",)), (49, ("error", 400))])
def test_chunk_size_line_length(length, expected):
    ext = b"1;" + b"e" * (length - 2)
    stream = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + ext + b"\r\nx\r\n0\r\n\r\n"
    assert replay_all(stream, limits=SMALL)[-1] == expected


def test_empty_lines_before_a_request_are_bounded():
    assert replay_all(b"\r\n" * 32 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", limits=SMALL)[-1] == ("end",)
    assert replay_all(b"\r\n" * 33, limits=SMALL) == [("error", 400)]


def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limits(max_header_count=0)
    with pytest.raises(ValueError):
        Limits(max_body=-1)
    with pytest.raises(Exception):
        SMALL.max_body = 5  # frozen
