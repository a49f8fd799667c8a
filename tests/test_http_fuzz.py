"""Property tests by seeded random mutation (hypothesis isn't available): whatever the bytes, the
connection yields events or a ProtocolError with a known status, the same for every split, in a
well-formed order; whatever the app asks, response_head returns a valid head or LocalProtocolError."""

from __future__ import annotations

import random

import httptools
import pytest
from test_http_corpus import harness  # the corpus replay harness, loaded once

from ringserve.http import EndOfMessage, HTTPConnection, Limits, LocalProtocolError

SEEDS = [harness.load_http(p.stem) for p in sorted(harness.CORPUS.glob("*.http"))]
TOKENS = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"?", b"#",
          b"\xff", b"\x7f", b"chunked", b"gzip", b"0", b"1", b"f" * 17, b"-", b"+", b"HTTP/1.1",
          b"HTTP/1.0", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n",
          b"Host: h\r\n", b"Connection: close\r\n", b"Connection: upgrade\r\nUpgrade: x\r\n",
          b"Expect: 100-continue\r\n", b"0\r\n\r\n", b"3\r\nabc\r\n", b"GET / HTTP/1.1\r\n"]
LIMITS = Limits(max_request_line=120, max_header_count=8, max_header_field=80, max_head_bytes=400,
                max_body=64)
STATUSES = {400, 413, 414, 431, 501, 505}
CASES = 3000


def mutate(rnd: random.Random, data: bytes) -> bytes:
    for _ in range(rnd.randrange(1, 4)):
        op = rnd.randrange(6)
        i = rnd.randrange(len(data) + 1)
        if op == 0 and data:
            data = data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:]
        elif op == 1:
            data = data[:i] + rnd.choice(TOKENS) + data[i:]
        elif op == 2:
            data = data[:i] + data[i + rnd.randrange(1, 8):]
        elif op == 3:
            j = rnd.randrange(len(data) + 1)
            data = data[:i] + data[min(i, j):max(i, j)] + data[i:]
        elif op == 4:
            data = data + rnd.choice(SEEDS)
        else:
            data = data[:i]
    return data


def check_grammar(out: list[tuple]) -> None:
    """request (data)* end ... then optionally: request (data)* closed | error | close | closed."""
    state = "idle"
    for i, item in enumerate(out):
        kind = item[0]
        last = i == len(out) - 1
        if kind == "request":
            assert state == "idle", out
            state = "body"
        elif kind == "data":
            assert state == "body" and item[1], out
        elif kind == "end":
            assert state == "body", out
            state = "idle"
        else:
            assert last, out
            if kind == "error":
                assert item[1] in STATUSES, out
            elif kind == "close":
                assert state == "idle", out
            else:
                assert kind == "closed", out


@pytest.mark.parametrize("block", range(10))
def test_mutated_requests(block):
    rnd = random.Random(block)
    for case in range(CASES // 10):
        data = mutate(rnd, rnd.choice(SEEDS))
        limits = LIMITS if case % 3 == 0 else None
        eof = case % 2 == 0
        whole = harness.replay(data, "whole", limits=limits, eof=eof)
        check_grammar(whole)
        split = harness.replay(data, "random", seed=case, limits=limits, eof=eof, views=True)
        assert split == whole, data
        if case % 10 == 0:
            assert harness.replay(data, "bytes", limits=limits, eof=eof) == whole, data


def test_random_bytes():
    rnd = random.Random(99)
    for case in range(500):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64)))
        whole = harness.replay(data, "whole", eof=True)
        check_grammar(whole)
        assert harness.replay(data, "bytes", eof=True) == whole


# -- response side --------------------------------------------------------------------------------

NAME_BYTES = b"abcXYZ-_09!#~ :\r\n\x00\x7f\xff(),/\t"
VALUE_BYTES = b"abc XYZ-09;=,\"/\t:\r\n\x00\x7f\xff"


class _Heads:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def random_header(rnd: random.Random) -> tuple:
    if rnd.random() < 0.7:
        name = rnd.choice([b"content-type", b"x-custom", b"Set-Cookie", b"content-length",
                           b"connection", b"server", b"transfer-encoding"])
    else:
        name = bytes(rnd.choice(NAME_BYTES) for _ in range(rnd.randrange(0, 6)))
    if rnd.random() < 0.7:
        value = {b"content-length": b"%d" % rnd.randrange(3), b"connection": b"close",
                 b"transfer-encoding": b"chunked"}.get(name.lower(), b"text/plain")
    else:
        value = bytes(rnd.choice(VALUE_BYTES) for _ in range(rnd.randrange(0, 6)))
    if rnd.random() < 0.02:
        value = value.decode("latin-1")
    return name, value


def test_random_response_heads():
    rnd = random.Random(7)
    made = 0
    for case in range(3000):
        conn = HTTPConnection()
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        while type(conn.next_event()) is not EndOfMessage:
            pass
        status = rnd.choice([200, 201, 204, 304, 404, 500, 599, 99, 1000, 0])
        headers = [random_header(rnd) for _ in range(rnd.randrange(4))]
        try:
            head = conn.response_head(status, headers, b"server: s\r\n")
        except LocalProtocolError:
            assert not conn.response_started
            continue
        made += 1
        parsed = _Heads()
        parser = httptools.HttpResponseParser(parsed)
        parser.feed_data(head)
        assert parsed.complete and parser.get_status_code() == status, head
        expected = [(n.lower(), v.strip(b" \t")) for n, v in headers
                    if n.lower() != b"transfer-encoding"]
        got = [(n.lower(), v.strip(b" \t")) for n, v in parsed.headers]
        assert got[:len(expected)] == expected, head
    assert made > 1000
