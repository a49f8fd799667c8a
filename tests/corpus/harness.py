"""Shared helpers for tests/test_http_*.py: feed a byte stream split in various ways, record what an
HTTPConnection makes of it as plain tuples. Loaded by path (see load_harness in the test modules)."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

from ringserve.http import (NEED_DATA, PAUSED, ConnectionClosed, Data, EndOfMessage, HTTPConnection,
                            Limits, ProtocolError, Request)

CORPUS = Path(__file__).parent
SPLITS = ("whole", "bytes", "lines", "random")
SEEDS = (1, 2, 3)
END = ("end",)
CLOSED = ("closed",)
OK_HEADERS = [(b"content-length", b"0")]


def load_http(name: str) -> bytes:
    """A corpus file: real newlines are ignored, escapes (\\r \\n \\t \\xHH \\\\) are decoded."""
    raw = (CORPUS / f"{name}.http").read_bytes()
    return codecs.escape_decode(raw.replace(b"\r", b"").replace(b"\n", b""))[0]


def pieces(data: bytes, how: str, seed: int = 0) -> list[bytes]:
    if how == "whole":
        return [data] if data else []  # b"" would mean EOF
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    if how == "lines":
        return [line for line in data.splitlines(keepends=True)]
    rnd = random.Random(seed)
    cuts = sorted({rnd.randrange(1, len(data)) for _ in range(rnd.randrange(1, 12))}) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def as_tuple(ev) -> tuple:
    if type(ev) is Request:
        return ("request", ev.method, ev.target, ev.path, ev.query, ev.headers, ev.http_version,
                ev.keep_alive, ev.expect_continue, ev.upgrade)
    if type(ev) is Data:
        return ("data", ev.data)
    if type(ev) is EndOfMessage:
        return END
    if type(ev) is ConnectionClosed:
        return CLOSED
    raise AssertionError(f"unexpected event {ev!r}")


class Recorder:
    """Drives a connection like a server would: answers each request with an empty 200."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.conn = HTTPConnection(limits)
        self.out: list[tuple] = []
        self.done = False

    def feed(self, data: bytes, as_view: bool = False) -> None:
        if not self.done:
            self.conn.receive_data(memoryview(bytearray(data)) if as_view else data)
            self.pump()

    def pump(self) -> None:
        conn = self.conn
        while not self.done:
            try:
                ev = conn.next_event()
            except ProtocolError as exc:
                self.out.append(("error", exc.status))
                self.done = True
                return
            if ev is NEED_DATA:
                return
            if ev is PAUSED:
                if not self.respond():
                    return
                continue
            tup = as_tuple(ev)
            if tup[0] == "data" and self.out and self.out[-1][0] == "data":
                self.out[-1] = ("data", self.out[-1][1] + tup[1])  # splits change Data granularity
            else:
                self.out.append(tup)
            if tup is CLOSED:
                self.done = True

    def respond(self) -> bool:
        conn = self.conn
        if conn.response_complete:
            return False  # paused and already answered: nothing to do until more input
        conn.response_head(200, OK_HEADERS, b"")
        conn.response_end()
        if not conn.keep_alive:
            self.out.append(("close",))
            self.done = True
            return False
        conn.start_next_cycle()
        return True


def replay(data: bytes, how: str, seed: int = 0, limits: Limits | None = None, eof: bool = False,
           views: bool = False) -> list[tuple]:
    rec = Recorder(limits)
    for piece in pieces(data, how, seed):
        rec.feed(piece, as_view=views)
    if eof:
        rec.feed(b"")
    return rec.out


def replay_all(data: bytes, limits: Limits | None = None, eof: bool = False) -> list[tuple]:
    """Replay every way; assert they agree and return the common outcome."""
    first = replay(data, "whole", limits=limits, eof=eof)
    for how in SPLITS[1:]:
        for seed in SEEDS if how == "random" else (0,):
            got = replay(data, how, seed, limits=limits, eof=eof, views=seed == 2)
            assert got == first, f"split {how!r} (seed {seed}) disagrees:\n{got}\nvs whole:\n{first}"
    return first


def req(method: bytes = b"GET", target: bytes = b"/", headers=None, version: str = "1.1",
        keep_alive: bool | None = None, expect: bool = False, upgrade: bytes | None = None,
        path: bytes | None = None, query: bytes | None = None) -> tuple:
    """The tuple as_tuple() gives for a Request, with defaults."""
    if path is None:
        path, _, rest = target.partition(b"?")
        query = rest if query is None else query
    if headers is None:
        headers = [(b"host", b"example.com")]
    if keep_alive is None:
        keep_alive = version == "1.1"
    return ("request", method, target, path, query or b"", headers, version, keep_alive, expect,
            upgrade)
