"""The send side: response heads, chunk framing and error responses, as bytes.

Pure functions over precomputed tables; HTTPConnection keeps the state. Header values are validated
once per head: deleting every byte but the control characters from the joined head must leave
exactly one CRLF per line (so no CR, LF, NUL or other CTL but HTAB hides in a value, RFC 9110 5.5);
names through a cache of names already checked. The common response costs one join and one
translate.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from .errors import LocalProtocolError

# Body framing of a response
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

_STATUS_LINES = {int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("ascii")) for s in HTTPStatus}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NAMES: dict[bytes, bytes] = {}  # header name as the app spells it -> lower-cased, known valid
_NAMES_MAX = 4096
_FRAMING = {b"content-length": 1, b"transfer-encoding": 2, b"connection": 3}
_DEFAULT_CLASH = 4  # an app header that replaces a default header line
_NOT_CTL = bytes(c for c in range(256) if c == 9 or 0x20 <= c != 0x7f)  # deleted by the check
_CRLFS = [b"\r\n" * n for n in range(128)]
# (default_headers object, kinds by lower-cased name, [(name, line)], line count)
_defaults: tuple = (b"", _FRAMING, [], 0)


def status_line(status: int) -> bytes:
    """The precomputed status line; raises LocalProtocolError unless status is an int in 100..999."""
    if type(status) is int:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
    elif isinstance(status, int) and not isinstance(status, bool):
        status = int(status)  # an IntEnum such as HTTPStatus.OK
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
    else:
        raise LocalProtocolError(f"invalid status code {status!r}")
    if not 100 <= status <= 999:
        raise LocalProtocolError(f"invalid status code {status!r}")
    line = b"HTTP/1.1 %d \r\n" % status  # RFC 9112 4: the reason-phrase may be empty
    if len(_STATUS_LINES) < 1000:
        _STATUS_LINES[status] = line
    return line


def _learn_name(name: bytes) -> bytes:
    if type(name) is not bytes or not _TOKEN.fullmatch(name):
        raise LocalProtocolError(f"invalid header name {name!r}")
    low = name.lower()
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = low
    return low


def _parse_defaults(defaults: bytes) -> tuple:
    """Split pre-serialised default header lines once per distinct bytes object (about 1/s)."""
    global _defaults
    cached = _defaults
    if cached[0] is defaults or cached[0] == defaults:
        return cached
    kinds = dict(_FRAMING)
    lines = []
    for line in defaults.split(b"\r\n"):
        if line:
            name = line.split(b":", 1)[0].strip().lower()
            kinds.setdefault(name, _DEFAULT_CLASH)
            lines.append((name, line + b"\r\n"))
    _defaults = cached = (defaults, kinds, lines, len(lines))
    return cached


def _bad_length(value: bytes) -> None:
    raise LocalProtocolError(f"invalid or repeated content-length {value!r}")


def _has_token(value: bytes, token: bytes) -> bool:
    if type(value) is not bytes:
        raise LocalProtocolError(f"invalid connection header {value!r}")
    return token in [t.strip(b" \t") for t in value.lower().split(b",")]


def _app_headers(parts: list, headers, kinds: dict) -> tuple:
    """Append the app's header lines to parts; return (content-length, connection, clashes)."""
    length = conn = clash = None
    names = _NAMES
    try:
        for name, value in headers:
            low = names.get(name) or _learn_name(name)
            kind = kinds.get(low)
            if kind is not None:
                if kind == 1:
                    if length is not None or not value.isdigit():
                        _bad_length(value)
                    length = int(value)
                elif kind == 2:
                    _app_coding(value)
                    continue  # the framing is ours to choose
                elif kind == 3:
                    conn = value if conn is None else conn + b"," + value  # TypeError unless bytes
                else:
                    clash = {low} if clash is None else clash | {low}
            parts += (name, b": ", value, b"\r\n")
    except TypeError:
        raise LocalProtocolError("headers must be (bytes, bytes) pairs") from None
    return length, conn, clash


def build_head(line: bytes, headers, defaults: bytes, no_body: bool, http11: bool,
               keep_alive: bool) -> tuple[bytes, int, int, bool]:
    """Serialise a final response head after its status line; returns (head, framing, bytes of
    body to send when framed by Content-Length, keep_alive)."""
    cached = _defaults
    if cached[0] is not defaults:
        cached = _parse_defaults(defaults)
    _, kinds, default_lines, lines = cached
    parts = [line]
    length, conn, clash = _app_headers(parts, headers, kinds)
    crlf = (len(parts) - 1) // 4 + lines + 2  # status line, app headers, defaults, blank line
    if no_body:
        framing = NO_BODY
    elif length is not None:
        framing = LENGTH
    elif http11:
        framing = CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
        crlf += 1
    else:
        framing = UNTIL_CLOSE
        keep_alive = False
    if conn is not None and _has_token(conn, b"close"):
        keep_alive = False
    elif not keep_alive or (not http11 and conn is None):
        parts.append(b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
        crlf += 1
    if clash is None:
        parts.append(defaults)
    else:
        kept = [text for name, text in default_lines if name not in clash]
        parts += kept
        crlf += len(kept) - lines
    parts.append(b"\r\n")
    return _join(parts, crlf), framing, length if framing == LENGTH else 0, keep_alive


def _app_coding(value: bytes) -> None:
    if type(value) is not bytes or value.strip().lower() != b"chunked":
        raise LocalProtocolError(f"unsupported transfer-encoding {value!r}; leave framing to the server")


def _join(parts: list, crlf: int) -> bytes:
    """Join a head of `crlf` lines, refusing control characters (CR, LF, NUL...) inside them."""
    try:
        head = b"".join(parts)
    except TypeError:
        raise LocalProtocolError("header names and values must be bytes") from None
    if head.translate(None, _NOT_CTL) != (_CRLFS[crlf] if crlf < 128 else b"\r\n" * crlf):
        raise LocalProtocolError("control character (CR, LF, NUL...) in a header value")
    return head


def informational_head(line: bytes, headers) -> bytes:
    """A 1xx response other than 101: just the status line and the app's headers."""
    parts = [line]
    _app_headers(parts, headers, {})
    parts.append(b"\r\n")
    return _join(parts, (len(parts) - 2) // 4 + 2)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


_ERROR_HEADERS = {b"content-type": 1, b"content-length": 1, b"connection": 1}


def error_response(status: int, defaults: bytes, head_only: bool) -> bytes:
    """A whole minimal plain-text response that closes the connection."""
    line = status_line(status)
    try:
        body = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        body = b"Error"
    parts = [line, b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
             b"connection: close\r\n" % len(body)]
    if defaults:
        parts += [text for name, text in _parse_defaults(defaults)[2] if name not in _ERROR_HEADERS]
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
