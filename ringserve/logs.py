"""Logging: the "ringserve.error" and "ringserve.access" loggers, a TRACE level, access-log lines.

Lines look like uvicorn's ("INFO:     message"). The error logger writes to stderr and the access
logger to stdout, so log collectors that already parse uvicorn's output keep working.

Access log. The server fills one `AccessInfo` per response, and only when
`access_logger.isEnabledFor(logging.INFO)` (false with --no-access-log or --log-level warning),
then calls `log_access(config.access_log_format, info)`. The format uses gunicorn's atoms, so a
gunicorn `access_log_format` carries over unchanged:

    h  client address ('-' on a UNIX socket)      l  '-'
    u  user from 'Authorization: Basic'           t  time, [10/Oct/2000:13:55:36 +0000]
    r  request line 'GET /p?q=1 HTTP/1.1'         m  method
    U  path as received (still percent-encoded)   q  query string, without '?'
    H  protocol 'HTTP/1.1'                        s  status (an int)
    B  response body bytes (an int)               b  body bytes, '-' when 0
    f  Referer header                             a  User-Agent header
    T  request time, whole seconds (int)          D  request time, microseconds (int)
    M  request time, milliseconds (int)           L  request time, seconds '0.001234'
    p  process id '<1234>' (gunicorn's meaning: not a port)
    {name}i  request header    {name}o  response header   (names case-insensitive, '-' if absent)
plus one atom of ringserve's own:
    client   'host:port' of the client, like uvicorn's access line ('-' on a UNIX socket)

The default, '%(client)s - "%(r)s" %(s)s', prints uvicorn's line without the reason phrase:
    INFO:     127.0.0.1:51234 - "GET / HTTP/1.1" 200
Header values and the request target are escaped (\\xNN) when they hold control characters, so a
client cannot forge log lines or send terminal escapes.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TRACE = 5
LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE}

error_logger = logging.getLogger("ringserve.error")
access_logger = logging.getLogger("ringserve.access")

# The http layer's request headers (names lower-case) and ASGI's response headers.
Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class AccessInfo:
    """What the access log may need about one request/response; built only when it is enabled.

    Byte fields are as the http layer gives them (Request.method/path/query/headers); header names
    of the request are lower-case. start/end are time.monotonic() values; end 0.0 means "now".
    """

    client_addr: str | None
    client_port: int | None
    method: bytes
    path: bytes
    query: bytes = b""
    http_version: str = "1.1"
    status: int = 0
    response_bytes: int = 0
    request_headers: Headers = field(default_factory=list)
    response_headers: Headers = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0


# --- atoms ---------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _escape(text: str) -> str:
    """Make a client-supplied string safe for one log line."""
    if text.isprintable() and "\\" not in text:
        return text
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text(data: bytes | str) -> str:
    return _escape(data.decode("latin-1") if isinstance(data, (bytes, bytearray)) else data)


def _header(headers: Headers, name: bytes) -> str:
    """All values of a header joined with ',' (RFC 9110 field combination), or '-'."""
    values = [v for k, v in headers if k.lower() == name]
    if not values:
        return "-"
    return _text(b",".join(v if isinstance(v, bytes) else v.encode("latin-1") for v in values))


def _target(i: AccessInfo) -> str:
    return _text(i.path + b"?" + i.query if i.query else i.path)


def _seconds(i: AccessInfo) -> float:
    return max(0.0, (i.end or time.monotonic()) - i.start)


def _user(i: AccessInfo) -> str:
    auth = _header(i.request_headers, b"authorization")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        user = base64.b64decode(credentials, validate=True).decode("latin-1").partition(":")[0]
    except ValueError:
        return "-"
    return _escape(user) or "-"


def _client(i: AccessInfo) -> str:
    if not i.client_addr:
        return "-"
    return f"{i.client_addr}:{i.client_port}" if i.client_port is not None else i.client_addr


ATOMS: dict[str, Callable[[AccessInfo], Any]] = {
    "h": lambda i: i.client_addr or "-",
    "l": lambda i: "-",
    "u": _user,
    "t": lambda i: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda i: f"{_text(i.method)} {_target(i)} HTTP/{i.http_version}",
    "m": lambda i: _text(i.method),
    "U": lambda i: _text(i.path),
    "q": lambda i: _text(i.query),
    "H": lambda i: f"HTTP/{i.http_version}",
    "s": lambda i: i.status,
    "B": lambda i: i.response_bytes,
    "b": lambda i: str(i.response_bytes) if i.response_bytes else "-",
    "f": lambda i: _header(i.request_headers, b"referer"),
    "a": lambda i: _header(i.request_headers, b"user-agent"),
    "T": lambda i: int(_seconds(i)),
    "D": lambda i: int(_seconds(i) * 1_000_000),
    "M": lambda i: int(_seconds(i) * 1_000),
    "L": lambda i: f"{_seconds(i):.6f}",
    "p": lambda i: f"<{os.getpid()}>",
    "client": _client,
}

_KEY = re.compile(r"%\(([^)]*)\)")
_HEADER_KEY = re.compile(r"\{([^}]+)\}([io])")
_SAMPLE = AccessInfo("127.0.0.1", 1, b"GET", b"/", start=1.0, end=1.0)


def _getter(key: str) -> Callable[[AccessInfo], Any]:
    if key in ATOMS:
        return ATOMS[key]
    match = _HEADER_KEY.fullmatch(key)
    if match is None:
        known = ", ".join(ATOMS)
        raise ValueError(f"unknown atom '%({key})s'; use one of {known}, {{header}}i, {{header}}o")
    name = match.group(1).lower().encode("latin-1")
    if match.group(2) == "i":
        return lambda i: _header(i.request_headers, name)
    return lambda i: _header(i.response_headers, name)


@functools.lru_cache(maxsize=16)
def compile_access_format(fmt: str) -> Callable[[AccessInfo], str]:
    """A function AccessInfo -> line that computes only the atoms `fmt` uses; ValueError if bad."""
    getters = [(key, _getter(key)) for key in dict.fromkeys(_KEY.findall(fmt))]

    def format_line(info: AccessInfo) -> str:
        return fmt % {key: get(info) for key, get in getters}

    try:
        format_line(_SAMPLE)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"format {fmt!r} does not work ({exc}); write each atom as %(name)s "
                         "and a literal % as %%") from None
    return format_line


def format_access(fmt: str, info: AccessInfo) -> str:
    return compile_access_format(fmt)(info)


def log_access(fmt: str, info: AccessInfo) -> None:
    """One access-log line; the caller has checked access_logger.isEnabledFor(logging.INFO)."""
    access_logger.info("%s", compile_access_format(fmt)(info), extra={"access": info})


# --- handlers and configure_logging -------------------------------------------------------------


class LevelPrefixFormatter(logging.Formatter):
    """'INFO:     message', uvicorn's layout (the level name padded to 9 columns)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.levelname + ':':<9} {record.getMessage()}"


class StdStreamHandler(logging.StreamHandler):
    """Writes to sys.stdout or sys.stderr as they are at each emit (so redirection and test
    capture of those streams also catch log lines)."""

    def __init__(self, stream_name: str) -> None:
        self._stream_name = stream_name
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _install(logger: logging.Logger, stream_name: str) -> None:
    for handler in [h for h in logger.handlers if getattr(h, "_ringserve", False)]:
        logger.removeHandler(handler)
    handler = StdStreamHandler(stream_name)
    handler.setFormatter(LevelPrefixFormatter())
    handler._ringserve = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def configure_logging(config: Any) -> None:
    """Set up ringserve's loggers from config.log_level and config.access_log; idempotent.

    'ringserve' (and so 'ringserve.error' and any other 'ringserve.*') logs to stderr;
    'ringserve.access' logs to stdout and is disabled when config.access_log is false.
    """
    logging.addLevelName(TRACE, "TRACE")
    level = LEVELS[str(config.log_level)]
    parent = logging.getLogger("ringserve")
    _install(parent, "stderr")
    parent.setLevel(level)
    error_logger.setLevel(logging.NOTSET)
    _install(access_logger, "stdout")
    access_logger.setLevel(level)
    access_logger.disabled = not config.access_log
