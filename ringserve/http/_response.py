"""The send side: response heads, chunk framing and error responses, as bytes.

Pure functions over precomputed tables; HTTPConnection keeps the state. What the app gives is
checked before it is joined: a header name must be a token, a value must hold no control character
but HTAB (RFC 9110 5.5: no CR, LF or NUL to inject a header or split the response). Names and
values that passed are remembered in bounded caches, since apps send the same ones again and again;
status lines are precomputed and default_headers are checked once per distinct bytes object.
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
_NOT_CTL = bytes(c for c in range(256) if c == 9 or 0x20 <= c != 0x7f)  # what a value may hold
_CACHE_MAX = 4096
_NAMES: dict[bytes, bytes] = {}  # header name as the app spells it -> lower-cased; known valid
_VALUES: set[bytes] = set()  # short header values known valid
_FRAMING = {b"content-length": 1, b"transfer-encoding": 2, b"connection": 3}
_DEFAULT_CLASH = 4  # an app header that replaces a default header line
# (default_headers object, kinds by lower-cased name, [(name, line)])
_defaults: tuple = (b"", _FRAMING, [])


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
    if len(_NAMES) < _CACHE_MAX:
        _NAMES[name] = low
    return low


def _learn_value(value: bytes) -> None:
    if type(value) is not bytes:
        raise LocalProtocolError(f"header values must be bytes, not {type(value).__name__}")
    if value.translate(None, _NOT_CTL):
        raise LocalProtocolError(f"control character (CR, LF, NUL...) in header value {value!r}")
    if len(value) <= 64 and len(_VALUES) < _CACHE_MAX:
        _VALUES.add(value)


def _parse_defaults(defaults: bytes) -> tuple:
    """Check and split pre-serialised default header lines once per distinct bytes object (the
    server makes a new one when its date changes, once a second)."""
    global _defaults
    cached = _defaults
    if cached[0] == defaults:
        _defaults = cached = (defaults, cached[1], cached[2])
        return cached
    if type(defaults) is not bytes or not defaults.endswith(b"\r\n") and defaults:
        raise LocalProtocolError("default_headers must be bytes of CRLF-terminated lines")
    kinds = dict(_FRAMING)
    lines = []
    for line in defaults[:-2].split(b"\r\n") if defaults else ():
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or value.translate(None, _NOT_CTL):
            raise LocalProtocolError(f"invalid default header line {line!r}")
        kinds.setdefault(name.lower(), _DEFAULT_CLASH)
        lines.append((name.lower(), line + b"\r\n"))
    _defaults = cached = (defaults, kinds, lines)
    return cached


def _has_token(value: bytes, token: bytes) -> bool:
    return token in [t.strip(b" \t") for t in value.lower().split(b",")]


def _bad_length(value: bytes) -> None:
    raise LocalProtocolError(f"invalid or repeated content-length {value!r}")


def _app_headers(parts: list, headers, kinds: dict) -> tuple:
    """Check the app's headers and append their lines to parts; return (content-length,
    connection, names replacing default lines)."""
    length = conn = clash = None
    names = _NAMES
    good = _VALUES
    try:
        for name, value in headers:
            low = names.get(name) or _learn_name(name)
            kind = kinds.get(low)
            if kind == 1:
                if length is not None or type(value) is not bytes or not value.isdigit():
                    _bad_length(value)
                length = int(value)
            elif value not in good:
                _learn_value(value)
            if kind is not None and kind != 1:
                if kind == 2:
                    _app_coding(value)
                    continue  # the framing is ours to choose
                if kind == 3:
                    conn = value if conn is None else conn + b"," + value
                else:
                    clash = {low} if clash is None else clash | {low}
            parts += (name, b": ", value, b"\r\n")
    except LocalProtocolError:
        raise
    except (TypeError, ValueError):  # a str, None, an unhashable name, not a pair...
        raise LocalProtocolError("headers must be (bytes, bytes) pairs") from None
    return length, conn, clash


def build_head(line: bytes, headers, defaults: bytes, no_body: bool, http11: bool,
               keep_alive: bool) -> tuple[bytes, int, int, bool]:
    """Serialise a final response head after its status line; returns (head, framing, bytes of
    body to send when framed by Content-Length, keep_alive)."""
    cached = _defaults
    if cached[0] is not defaults:
        cached = _parse_defaults(defaults)
    parts = [line]
    length, conn, clash = _app_headers(parts, headers, cached[1])
    if no_body:
        framing = NO_BODY
    elif length is not None:
        framing = LENGTH
    elif http11:
        framing = CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
    else:
        framing = UNTIL_CLOSE
        keep_alive = False
    if conn is not None and _has_token(conn, b"close"):
        keep_alive = False
    elif not keep_alive or (not http11 and conn is None):
        parts.append(b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
    if clash is None:
        parts.append(defaults)
    else:
        parts += [text for name, text in cached[2] if name not in clash]
    parts.append(b"\r\n")
    return b"".join(parts), framing, length if framing == LENGTH else 0, keep_alive


def _app_coding(value: bytes) -> None:
    if value.strip().lower() != b"chunked":
        raise LocalProtocolError(f"unsupported transfer-encoding {value!r}; leave framing to the server")


def informational_head(line: bytes, headers) -> bytes:
    """A 1xx response other than 101: just the status line and the app's headers."""
    parts = [line]
    _app_headers(parts, headers, {})
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


_ERROR_HEADERS = {b"content-type", b"content-length", b"connection"}


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
