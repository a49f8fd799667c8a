"""The receive side: bytes in, events queued. The rules and states are explained in connection.py.

We decide where each message starts and ends and feed llhttp (through httptools) one head, one
Content-Length body or one chunk-framing line at a time, never past the end of a message. That is what
lets us enforce the size limits exactly and while the bytes arrive, report every error at its place in
the stream, and stop parsing after a request that closes the connection or switches protocols.
"""

from __future__ import annotations

from collections import deque
from typing import NoReturn

from httptools import HttpRequestParser
from httptools.parser.errors import HttpParserCallbackError, HttpParserError, HttpParserUpgrade

from .errors import Limits, ProtocolError
from .events import Data, EndOfMessage, Request

# Phases of the receive side. The last three take no more HTTP input.
HEAD, BODY, CHUNKED, UPGRADED, CLOSED, FAILED = range(6)

_END = EndOfMessage()
_new = object.__new__
_VERSIONS = {49: "1.1", 48: "1.0"}  # the minor digit of "HTTP/1.x"
_SPECIAL = frozenset((b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade"))


class RequestParser:
    """Feeds httptools, turns its callbacks into events in `events` (a deque HTTPConnection reads)."""

    __slots__ = (
        "events", "phase", "heads", "completed", "unread", "eof", "trailing", "head_len",  # shared
        "_max_line", "_max_field", "_max_count", "_max_head", "_max_body", "_fast",  # limits
        "_line_start", "_tail", "_blank", "_src", "_src_pos", "_reqline",  # scanning a head
        "_p", "_url", "_headers", "_hosts", "_rare", "_cl", "_te", "_expect", "_upgrade", "_keep",
        "_upgrading", "_body_left", "_body_seen", "_chunk_left", "_chunk_hdr", "_line", "_line_len",
        "_trailers", "_error",  # a body
    )

    def __init__(self, limits: Limits) -> None:
        self.events: deque = deque()
        self.phase = HEAD
        self.heads = 0  # Request events queued, not yet taken by HTTPConnection
        self.completed = 0  # messages parsed to their end
        self.unread = 0  # bytes in queued Data events
        self.eof = False
        self.trailing = b""  # bytes after an upgrade request's head
        self.head_len = 0  # bytes of the current head fed so far, when it spans receives
        self._max_line = limits.max_request_line
        self._max_field = limits.max_header_field
        self._max_count = limits.max_header_count
        self._max_head = limits.max_head_bytes
        self._max_body = limits.max_body
        self._fast = min(self._max_line, self._max_field, self._max_head)
        self._line_start = self._blank = self._src_pos = 0
        self._tail = b""
        self._src: bytes | None = None  # the receive holding the whole current head, if it does
        self._reqline = (0, b"")  # (length, last 8 bytes) of a request line that spanned receives
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._hosts = 0
        self._cl = self._te = self._expect = self._upgrade = None
        self._keep = self._upgrading = self._chunk_hdr = self._rare = False
        self._body_left = self._body_seen = self._chunk_left = self._line_len = 0
        self._line = b""
        self._trailers = -1  # 0 in the trailer section of a chunked body, else -1
        self._error: ProtocolError | None = None
        self._p: HttpRequestParser | None = HttpRequestParser(self)  # None once no more is parsed

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, data) -> None:
        phase = self.phase
        if phase >= UPGRADED:
            return self._feed_after(data)
        if not data:
            return self._at_eof()
        if type(data) is not bytes and not (phase == BODY and self._body_left >= len(data)):
            # A ring buffer is only ours during this call: copy it, unless it is all body (an
            # upload in 16 KiB buffers), which _feed_body hands to llhttp as the view itself and
            # whose on_body makes the one copy that is kept.
            data = bytes(memoryview(data))
        n = len(data)
        pos = 0
        try:
            while pos < n:
                phase = self.phase
                if phase == HEAD:
                    if not self.head_len and data[pos] not in b"\r\n":
                        end = data.find(b"\r\n\r\n", pos) + 4
                        if 3 < end <= pos + self._fast:  # a whole head, under every limit
                            self._src = data
                            self._src_pos = pos
                            try:
                                self._p.feed_data(data if pos == 0 and end == n else data[pos:end])
                            except HttpParserUpgrade:
                                pass  # on_message_complete has moved us to UPGRADED
                            pos = end
                            continue
                    pos = self._feed_head(data, pos, n)
                elif phase == BODY:
                    pos = self._feed_body(data, pos, n)
                elif phase == CHUNKED:
                    pos = self._feed_chunked(data, pos, n)
                else:
                    if phase == UPGRADED:
                        self.trailing += data[pos:]
                    return
        except ProtocolError as exc:
            self._fail(exc)
        except HttpParserError as exc:
            self._fail(self._error or _translate(exc))

    def _feed_after(self, data) -> None:
        """No more HTTP: keep what follows an upgrade, drop what follows a close or an error."""
        if not data:
            self.eof = True
        elif self.phase == UPGRADED:
            self.trailing += data

    def _run(self, data: bytes, pos: int, stop: int, n: int) -> None:
        try:
            self._p.feed_data(data if pos == 0 and stop == n else data[pos:stop])
        except HttpParserUpgrade:
            pass  # on_message_complete has moved us to UPGRADED; we fed nothing past the head

    def _fail(self, exc: ProtocolError) -> None:
        self.phase = FAILED
        self.events.append(exc)
        self._p = None

    def _at_eof(self) -> None:
        self.eof = True
        if self.phase == HEAD and self.head_len:
            self._fail(ProtocolError(400, "connection closed in the middle of a request head"))
        else:
            self.phase = CLOSED  # a body cut short ends with ConnectionClosed, not EndOfMessage
            self._p = None

    # -- heads -----------------------------------------------------------------------------------

    def _feed_head(self, data: bytes, pos: int, n: int) -> int:
        """Empty lines, and heads that span receives or may cross a limit (feed() does the rest)."""
        if not self.head_len and data[pos] in b"\r\n":
            pos = self._skip_blank(data, pos, n)  # RFC 9112 2.2: ignore empty lines before a head
            if pos == n:
                return n
        self._src = None
        return self._feed_head_slow(data, pos, n)

    def _skip_blank(self, data: bytes, pos: int, n: int) -> int:
        start = pos
        while pos < n and data[pos] in b"\r\n":
            pos += 1
        self._blank += pos - start
        if self._blank > self._max_line:
            raise ProtocolError(400, "too many empty lines before the request line")
        return pos

    def _feed_head_slow(self, data: bytes, pos: int, n: int) -> int:
        """A head that spans receives, or is big enough that a limit may be crossed."""
        done = self.head_len
        end = self._head_end(data, pos, done)
        cut, err = self._scan_head(data, pos, n if end < 0 else end, done)
        self._run(data, pos, cut, n)
        if err is not None:
            raise err
        if end < 0:
            self.head_len = done + n - pos
            self._tail = (self._tail + data[max(pos, n - 9):n])[-9:]
        else:
            self.head_len = self._line_start = 0
            self._tail = b""
        return cut

    def _head_end(self, data: bytes, pos: int, done: int) -> int:
        """Index just past the blank line ending the head, or -1; the CRLFCRLF may straddle receives."""
        if done:
            tail = self._tail[-3:]
            k = (tail + data[pos:pos + 3]).find(b"\r\n\r\n")
            if k >= 0:
                return pos + k + 4 - len(tail)
        end = data.find(b"\r\n\r\n", pos)
        return end + 4 if end >= 0 else -1

    def _scan_head(self, data: bytes, pos: int, stop: int, done: int) -> tuple[int, ProtocolError | None]:
        """Check the limits on data[pos:stop]; return where to stop feeding and the error found there.

        The error is placed at the first byte past a limit, so the outcome doesn't depend on how the
        stream was split: an earlier error found by llhttp still wins.
        """
        base = done - pos  # head offset of data[i] is base + i
        room = self._max_head - done
        cut, err = (pos + room, ProtocolError(431, "request head too large")) if stop - pos > room \
            else (stop, None)
        start = self._line_start
        i = pos
        while True:
            first = start == 0
            over = start - base + (self._max_line if first else self._max_field) + 1
            nl = data.find(b"\n", i, cut)
            if nl < 0 or nl > over:
                if nl >= 0 or over < cut:
                    return over, (ProtocolError(414, "request line too long") if first
                                  else ProtocolError(431, "header line too long"))
                break
            if first:  # on_headers_complete checks it
                tail = (self._tail + data[pos:nl])[-9:] if nl - 9 < pos else data[nl - 9:nl]
                self._reqline = (nl + base - 1, tail[:8])
            start = nl + 1 + base
            i = nl + 1
        self._line_start = start
        return cut, err

    # -- bodies ----------------------------------------------------------------------------------

    def _feed_body(self, data: bytes, pos: int, n: int) -> int:
        left = self._body_left
        stop = pos + left if left < n - pos else n
        self._body_left = left - (stop - pos)
        self._run(data, pos, stop, n)
        return stop

    def _feed_chunked(self, data: bytes, pos: int, n: int) -> int:
        left = self._chunk_left
        if left:  # chunk data and its CRLF
            stop = pos + left if left < n - pos else n
            self._chunk_left = left - (stop - pos)
            self._run(data, pos, stop, n)
            return stop
        nl = data.find(b"\n", pos)  # a chunk-size line or a trailer line
        stop = n if nl < 0 else nl + 1
        room = self._max_field + 1 - self._line_len
        if (nl if nl >= 0 else n) - pos > room:
            self._run(data, pos, pos + room, n)
            if self._trailers < 0:
                raise ProtocolError(400, "chunk-size line too long")
            raise ProtocolError(431, "trailer line too long")
        if self._trailers < 0:
            self._line += data[pos:stop]
        self._line_len += stop - pos
        self._run(data, pos, stop, n)
        if nl >= 0:
            self._line_len = 0
            if self._chunk_hdr:
                self._start_chunk()
        return stop

    def _start_chunk(self) -> None:
        """llhttp accepted a chunk-size line (strict hex, no overflow); learn the size it holds."""
        self._chunk_hdr = False
        size = int(self._line.split(b";", 1)[0], 16)
        self._line = b""
        if not size:
            self._trailers = 0
            return
        seen = self._body_seen + size
        if self._max_body is not None and seen > self._max_body:
            raise ProtocolError(413, "request body too large")
        self._body_seen = seen
        self._chunk_left = size + 2

    # -- httptools callbacks: keep them small, they run for every request ------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailer fields land here too, in the list made for the next head: _end_chunked drops them.
        name = name.lower()
        if value and value[-1] in b" \t":  # llhttp strips leading OWS only
            value = value.rstrip(b" \t")
        headers = self._headers
        if len(headers) == self._max_count:
            self._reject(431, "too many header fields")
        headers.append((name, value))
        if name in _SPECIAL:
            if name == b"host":
                self._hosts += 1
            else:
                self._special(name, value)

    def _special(self, name: bytes, value: bytes) -> None:
        """Headers that change framing are rare: flag the head so on_headers_complete looks."""
        self._rare = True
        if name == b"content-length":
            if self._cl is not None or not value.isdigit():  # llhttp checks too; be sure
                self._reject(400, "invalid or repeated Content-Length")
            self._cl = value
        elif name == b"transfer-encoding":
            self._te = value if self._te is None else self._te + b"," + value
        elif name == b"expect":
            self._expect = value
        else:
            self._upgrade = value

    def on_headers_complete(self) -> None:
        p = self._p
        method = p.get_method()
        target = self._url
        src = self._src
        if src is not None:  # "HTTP/1.x" must start right after "METHOD SP target SP"
            v = self._src_pos + len(method) + len(target) + 2
            version = _VERSIONS.get(src[v + 7]) if src.startswith(b"HTTP/1.", v) else None
            if version is None:
                version = self._request_line(method, target, src[v:v + 8])
        else:
            version = self._request_line(method, target, None)
        if self._rare or self._hosts != 1 or method == b"CONNECT":
            expect, upgrade = self._rare_head(version, method)
        else:
            expect = False
            upgrade = None
        if target[0] == 47 and 35 not in target:  # origin-form without "#" (int: see _split_target)
            if 63 in target:  # "?"
                path, _, query = target.partition(b"?")
            else:
                path = target
                query = b""
        else:
            path, query = _split_target(target, method)
        req = _new(Request)  # Request(...) without the __init__ frame: this runs for every request
        req.method = method
        req.target = target
        req.path = path
        req.query = query
        req.headers = self._headers
        req.http_version = version
        req.keep_alive = self._keep = p.should_keep_alive()
        req.expect_continue = expect
        req.upgrade = upgrade
        self.events.append(req)
        self.heads += 1
        self._url = b""
        self._headers = []
        self._hosts = self._blank = 0

    def _request_line(self, method: bytes, target: bytes, proto: bytes | None) -> str:
        """Check what llhttp lets through: RTSP/1.0, ICE/1.0, HTTP/2.0, HTTP/0.9 and runs of spaces
        (RFC 9112 3: request-line = method SP request-target SP HTTP-version)."""
        if proto is None:  # the request line spanned receives: _scan_head kept its end
            length, proto = self._reqline
            if length != len(method) + len(target) + 10:
                proto = b""
        version = _VERSIONS.get(proto[7]) if proto.startswith(b"HTTP/1.") else None
        if version is not None:
            return version
        if proto.startswith(b"HTTP/"):
            self._reject(505, "HTTP version not supported")
        self._reject(400, "malformed request line")

    def _rare_head(self, version: str, method: bytes) -> tuple[bool, bytes | None]:
        """Host rules, body framing, Expect and Upgrade; returns (expect_continue, upgrade)."""
        length, chunked = self._framing(version, method)
        upgrade = None
        if self._upgrade is not None and self._p.should_upgrade():
            upgrade = self._upgrade
            self._upgrading = True  # llhttp skips any body: it becomes trailing data
        elif chunked:
            self.phase = CHUNKED
        elif length:
            self.phase = BODY
            self._body_left = length
        expect = (self._expect is not None and version == "1.1" and (chunked or length > 0)
                  and self._expect.lower() == b"100-continue")
        self._cl = self._te = self._expect = self._upgrade = None
        self._rare = False
        return expect, upgrade

    def _framing(self, version: str, method: bytes) -> tuple[int, bool]:
        """Host and body framing rules (RFC 9112 3.2, 6); returns (Content-Length, chunked)."""
        hosts = self._hosts
        if hosts != 1 and (hosts or version == "1.1"):
            self._reject(400, "multiple Host headers" if hosts else "missing Host header")
        if method == b"CONNECT":
            self._reject(501, "CONNECT is not supported")
        if self._te is not None:
            if self._cl is not None:
                self._reject(400, "both Transfer-Encoding and Content-Length")
            if version == "1.0":
                self._reject(400, "Transfer-Encoding in an HTTP/1.0 request")
            _check_codings(self._te)
            return 0, True
        if self._cl is None:
            return 0, False
        length = int(self._cl)
        if self._max_body is not None and length > self._max_body:
            self._reject(413, "request body too large")
        return length, False

    def on_body(self, body: bytes) -> None:
        self.events.append(Data(body))
        self.unread += len(body)

    def on_chunk_header(self) -> None:
        self._chunk_hdr = True

    def on_message_complete(self) -> None:
        self.events.append(_END)
        self.completed += 1
        if self.phase == CHUNKED:
            self._end_chunked()
        if self._keep and not self._upgrading:
            self.phase = HEAD
        else:  # nothing more is parsed after a closing request or an upgrade
            self.phase = UPGRADED if self._upgrading else CLOSED
            self._p = None  # llhttp holds our bound methods: drop the cycle, free by refcount

    def _end_chunked(self) -> None:
        """Forget the trailer fields, which went through on_header like a head's."""
        self._trailers = -1
        self._body_seen = 0
        self._headers = []
        self._hosts = 0
        self._cl = self._te = self._expect = self._upgrade = None
        self._rare = False

    def _reject(self, status: int, reason: str) -> NoReturn:
        self._error = exc = ProtocolError(status, reason)
        raise exc


def _check_codings(te: bytes) -> None:
    """RFC 9112 6.1: chunked once and last; we decode no other coding (501)."""
    codings = [c.strip(b" \t").lower() for c in te.split(b",")]
    chunked = codings.count(b"chunked")
    if chunked > 1 or b"" in codings:
        raise ProtocolError(400, "invalid Transfer-Encoding")
    if codings[-1] != b"chunked" and chunked:
        raise ProtocolError(400, "chunked is not the final transfer coding")
    if codings != [b"chunked"]:
        raise ProtocolError(501, "unsupported transfer coding")


def _split_target(target: bytes, method: bytes) -> tuple[bytes, bytes]:
    """(path, query) of an origin-form, absolute-form or asterisk-form target; drops a fragment."""
    if target[0] != 47:  # not "/"
        if target == b"*" and method == b"OPTIONS":
            return b"*", b""
        target = _origin_of(target)
    # `bytes in bytes` first tries the needle as an int and swallows a TypeError (~10x slower
    # than `int in bytes` on CPython 3.11); hence 35 for "#" and 63 for "?".
    if 35 in target:
        target = target.split(b"#", 1)[0]
    if 63 not in target:
        return target, b""
    path, _, query = target.partition(b"?")
    return path, query


def _origin_of(target: bytes) -> bytes:
    """The path and query of an absolute-form target (http or https only)."""
    low = target[:8].lower()
    skip = 7 if low.startswith(b"http://") else 8 if low == b"https://" else 0
    if not skip:
        raise ProtocolError(400, "invalid request target")
    rest = target[skip:]
    end = len(rest)
    for sep in b"/?#":  # the authority ends at the first of these
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    if not end:
        raise ProtocolError(400, "absolute-form target without a host")
    rest = rest[end:]
    return rest if rest[:1] == b"/" else b"/" + rest


def _translate(exc: HttpParserError) -> ProtocolError:
    """An llhttp error (or one raised in a callback, which httptools wraps) as a ProtocolError."""
    if isinstance(exc, HttpParserCallbackError):
        cause = exc.__context__
        if isinstance(cause, ProtocolError):
            return cause
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt and friends are not protocol errors
        err = ProtocolError(400, f"internal parser error: {cause!r}")
        err.__cause__ = cause
        return err
    reason = str(exc)
    if "HTTP version" in reason or "PRI/Upgrade" in reason:
        return ProtocolError(505, reason)
    return ProtocolError(400, reason)
