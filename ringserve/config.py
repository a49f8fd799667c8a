"""One frozen Config: every server option with its flag, environment variable, default and help.

Config flows one way. The CLI (cli.py), the environment (`env_options`) and Python callers
(`ringserve.run`, the gunicorn worker) all build a Config through `config_from_options()`; the
server reads it and never writes it. Loading (the app, the sockets, pre-encoded default headers)
produces new objects elsewhere: Config holds only what the user asked for.

Each field is declared with `opt()` (through one partial per group below), which puts the help
text, flag, extra environment names, parser and range check in the field's metadata. `OPTIONS`
is that metadata read back once, in field order; the CLI, the environment loader and the README's
option table are all generated from it, so a new field needs no edit anywhere else.

Precedence: CLI > environment > default. Every field `x` can come from RINGSERVE_X; a few also
from the names other servers use (WEB_CONCURRENCY, FORWARDED_ALLOW_IPS), after RINGSERVE_X.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

ENV_PREFIX = "RINGSERVE_"


class ConfigError(Exception):
    """A configuration problem. The message names the problem and the fix."""


class Choice(str, enum.Enum):
    """A string choice: compares equal to its value ('auto' == Interface.AUTO)."""

    def __str__(self) -> str:
        return str(self.value)


class Interface(Choice):
    AUTO = "auto"
    ASGI = "asgi"
    WSGI = "wsgi"


class Lifespan(Choice):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Loop(Choice):
    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class IOBackend(Choice):
    AUTO = "auto"
    URING = "uring"
    ASYNCIO = "asyncio"


class KTLS(Choice):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class WebSocketImpl(Choice):
    AUTO = "auto"
    NONE = "none"
    WSPROTO = "wsproto"


class LogLevel(Choice):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


# --- parsers: one string (a CLI argument or an environment value) -> a value -------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def parse_header(text: str) -> tuple[str, str]:
    """'Name: Value' -> ('Name', 'Value'), as --header takes it."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.match(name):
        raise ValueError(f"header {text!r} must be 'Name: Value', e.g. 'X-Frame-Options: DENY'")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"header {name!r} has a CR, LF or NUL in its value; remove it")
    return (name, value)


def _choice_parser(enum_type: type[Choice]) -> Callable[[str], Choice]:
    def parse(text: str) -> Choice:
        try:
            return enum_type(text.strip().lower())
        except ValueError:
            names = ", ".join(c.value for c in enum_type)
            raise ValueError(f"{text!r} is not one of {names}") from None

    return parse


# --- range checks: value -> None when fine, else what is wrong and what to do -----------------


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def _seconds(v: float) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a finite number of seconds > 0"


def _at_least_seconds(low: float) -> Callable[[Any], str | None]:
    def check(v: float) -> str | None:
        return None if v >= low and math.isfinite(v) else f"must be a finite number of seconds >= {low}"

    return check


def _finite_seconds(v: float) -> str | None:
    return None if v >= 0 and math.isfinite(v) else "must be a finite number of seconds >= 0"


def _power_of_two(v: int) -> str | None:
    ok = 1 <= v <= 32768 and v & (v - 1) == 0
    return None if ok else "must be a power of two from 1 to 32768 (an io_uring buffer ring limit)"


def _root_path(v: str) -> str | None:
    if v and not v.startswith("/"):
        return f"must start with '/', e.g. '/{v}'"
    return None


def _access_format(v: str) -> str | None:
    from ringserve.logs import compile_access_format  # logs never imports config: no cycle

    try:
        compile_access_format(v)
    except ValueError as exc:
        return str(exc)
    return None


# --- declaring a field ------------------------------------------------------------------------


def opt(
    default: Any,
    help: str,
    *,
    group: str,
    type: type | None = None,
    parse: Callable[[str], Any] | None = None,
    check: Callable[[Any], str | None] | None = None,
    flag: str | None = "",
    env: tuple[str, ...] = (),
    metavar: str | None = None,
    default_text: str | None = None,
    multiple: bool = False,
) -> Any:
    """A Config field. flag "" means "--" + the field name with dashes; None means positional.

    `type` is needed only when the default is None; `env` lists names read after RINGSERVE_<NAME>.
    """
    meta = dict(help=help, group=group, type=type, parse=parse, check=check, flag=flag, env=env,
                metavar=metavar, default_text=default_text, multiple=multiple)
    return field(default=default, metadata=meta)


application = partial(opt, group="Application")
binding = partial(opt, group="Binding")
behaviour = partial(opt, group="HTTP behaviour")
limits = partial(opt, group="HTTP limits")
timeouts = partial(opt, group="Timeouts")
logging_ = partial(opt, group="Logging")
uring = partial(opt, group="io_uring")
workers_ = partial(opt, group="Workers")
reload_ = partial(opt, group="Reload (development)")
websockets_ = partial(opt, group="WebSockets")
tls_ = partial(opt, group="TLS (HTTPS)")

DEFAULT_ACCESS_LOG_FORMAT = '%(client)s - "%(r)s" %(s)s'


@dataclass(frozen=True)
class Config:
    """Everything the user can set. Build it with config_from_options(); read-only after that."""

    # --- application ---
    app: Any = application(
        None, "The application as '<module>:<attribute>' (or, from Python, the app object).",
        type=object, parse=str, flag=None, metavar="APP")
    factory: bool = application(
        False, "Treat APP as a factory: a callable that takes no arguments and returns the app.")
    app_dir: str = application(
        ".", "Look for APP in this directory (it is put first on sys.path).")
    interface: Interface = application(
        Interface.AUTO, "Application interface; auto detects it from the application object.")

    # --- binding ---
    host: str = binding(
        "127.0.0.1", "Bind to this host (an address containing ':' is IPv6); 0.0.0.0 or :: for "
        "every interface.")
    port: int = binding(
        8000, "Bind to this TCP port; 0 picks a free one.", check=_between(0, 65535))
    uds: str | None = binding(
        None, "Bind to this UNIX domain socket path instead of host:port (a stale socket file is "
        "removed first).", type=str, metavar="PATH")
    fd: int | None = binding(
        None, "Serve on the listening socket inherited as this file descriptor (its family is "
        "detected).", type=int, check=_at_least(0))
    backlog: int = binding(
        2048, "Listen backlog: connections the kernel queues before accept.", check=_at_least(1))
    reuse_port: bool | None = binding(
        None, "Give each worker its own listening socket with SO_REUSEPORT, so the kernel spreads "
        "connections evenly (a listener shared by io_uring workers sends nearly every connection "
        "to one of them: docs/design.md); --no-reuse-port shares one listener. With one worker, "
        "--reuse-port sets SO_REUSEPORT on its listener.", type=bool,
        default_text="on with --workers > 1")

    # --- TLS (uvicorn's flag names; ringserve/tls.py) ---
    ssl_certfile: str | None = tls_(
        None, "Serve HTTPS with this certificate (PEM; the chain after the leaf, and the key too "
        "if --ssl-keyfile is not given).", type=str, metavar="PATH")
    ssl_keyfile: str | None = tls_(
        None, "The private key of --ssl-certfile (PEM).", type=str, metavar="PATH")
    ssl_keyfile_password: str | None = tls_(
        None, "Password that decrypts --ssl-keyfile.", type=str, metavar="PASSWORD")
    ssl_version: int = tls_(
        17, "SSL context protocol, as Python's ssl.PROTOCOL_* number (17 = PROTOCOL_TLS_SERVER: "
        "TLS 1.2 and 1.3).", check=_between(0, 32))
    ssl_cert_reqs: int = tls_(
        0, "Client certificates (mutual TLS): 0 none, 1 optional, 2 required; checked against "
        "--ssl-ca-certs.", check=_between(0, 2))
    ssl_ca_certs: str | None = tls_(
        None, "CA certificates (PEM) that client certificates must chain to.", type=str,
        metavar="PATH")
    ssl_ciphers: str | None = tls_(
        None, "TLS 1.2 cipher list, in OpenSSL's syntax (TLS 1.3 suites are OpenSSL's). The "
        "default is Python's: ECDHE with AES-GCM or ChaCha20 first, no SHA-1 (uvicorn's 'TLSv1' "
        "would put CBC-SHA1 suites, which kTLS cannot take, first).", type=str, metavar="CIPHERS",
        default_text="Python's ssl default")
    ktls: KTLS = tls_(
        KTLS.AUTO, "Kernel TLS: after the handshake the kernel encrypts (and for TLS 1.2 also "
        "decrypts), so the ring sends plaintext and files go out by splice. auto uses it where "
        "the kernel has the tls module and the cipher allows it (and says why not at start-up); "
        "on refuses to start without it; off keeps TLS in OpenSSL.")
    timeout_tls_handshake_s: float = tls_(
        10.0, "Close a connection whose TLS handshake has not finished this many seconds after "
        "it was accepted.", flag="--timeout-tls-handshake", check=_seconds)

    # --- HTTP behaviour ---
    root_path: str = behaviour(
        "", "The ASGI 'root_path' (WSGI SCRIPT_NAME) for an app mounted below a URL prefix, "
        "e.g. /api.", check=_root_path)
    lifespan: Lifespan = behaviour(
        Lifespan.AUTO, "ASGI lifespan events: auto runs them if the app supports them, on "
        "requires them, off skips them.")
    headers: tuple[tuple[str, str], ...] = behaviour(
        (), "Add this default response header, as 'Name: Value'; repeat for more (in the "
        "environment, one per line).", parse=parse_header, flag="--header",
        metavar="'NAME: VALUE'", default_text="none", multiple=True)
    server_header: bool = behaviour(
        True, "Send a default 'server: ringserve' response header.")
    date_header: bool = behaviour(
        True, "Send a default 'date' response header.")
    proxy_headers: bool = behaviour(
        True, "Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
        "when the peer is in --forwarded-allow-ips.")
    forwarded_allow_ips: str = behaviour(
        "127.0.0.1,::1", "Comma-separated addresses or networks trusted to send proxy headers; "
        "'*' trusts everyone.", env=("FORWARDED_ALLOW_IPS",), metavar="IPS")

    # --- HTTP limits (past each one the server answers with the status in brackets) ---
    limit_concurrency: int | None = limits(
        None, "Most connections served at once; past it new requests get 503.", type=int,
        check=_at_least(1), default_text="unlimited")
    limit_request_line: int = limits(
        8190, "Longest request line in bytes [414].", check=_at_least(1), metavar="BYTES")
    limit_request_fields: int = limits(
        100, "Most header fields in a request [431].", check=_at_least(1))
    limit_request_field_size: int = limits(
        8190, "Longest header field (name and value) in bytes [431].", check=_at_least(1),
        metavar="BYTES")
    limit_request_head: int = limits(
        65536, "Largest request head (request line and headers) in bytes [431].",
        check=_at_least(1), metavar="BYTES")
    limit_request_body: int | None = limits(
        None, "Largest request body in bytes [413].", type=int, check=_at_least(0),
        default_text="unlimited", metavar="BYTES")

    # --- timeouts (seconds) ---
    timeout_keep_alive_s: float = timeouts(
        5.0, "Close an idle keep-alive connection after this many seconds.",
        flag="--timeout-keep-alive", check=_seconds)
    timeout_request_head_s: float = timeouts(
        10.0, "Close a connection whose request head is not complete this many seconds after "
        "its first byte (slowloris).", flag="--timeout-request-head", check=_seconds)
    timeout_graceful_shutdown_s: float = timeouts(
        30.0, "On shutdown, wait this many seconds for requests in flight, then close their "
        "connections.", flag="--timeout-graceful-shutdown", check=_finite_seconds)

    # --- websockets (ASGI apps; ringserve/ws.py) ---
    ws: WebSocketImpl = websockets_(
        WebSocketImpl.AUTO, "WebSocket support: wsproto frames them; auto is wsproto when it is "
        "installed; none answers upgrade requests with 400 (as it does for WSGI apps).")
    ws_max_size: int = websockets_(
        16 * 1024 * 1024, "Largest incoming WebSocket message in bytes (after decompression); a "
        "bigger one closes the connection with 1009.", check=_at_least(1), metavar="BYTES")
    ws_ping_interval_s: float = websockets_(
        20.0, "Ping each WebSocket client this often (seconds); 0 sends no pings.",
        flag="--ws-ping-interval", check=_finite_seconds)
    ws_ping_timeout_s: float = websockets_(
        20.0, "Close a WebSocket (1011) whose client has not answered a ping within this many "
        "seconds; 0 waits forever.", flag="--ws-ping-timeout", check=_finite_seconds)
    ws_per_message_deflate: bool = websockets_(
        True, "Compress WebSocket messages (permessage-deflate) when the client offers it. Costs "
        "~47 KiB of memory per compressing connection (4 KiB zlib windows; 120 KiB with zlib's "
        "defaults, as uvicorn: docs/design.md).")

    # --- logging ---
    log_level: LogLevel = logging_(
        LogLevel.INFO, "Log level of the ringserve loggers.")
    access_log: bool = logging_(
        True, "Log one line per response to the 'ringserve.access' logger.")
    access_log_format: str = logging_(
        DEFAULT_ACCESS_LOG_FORMAT, "Access log line, in gunicorn's atoms plus %(client)s = "
        "host:port (see ringserve/logs.py).", check=_access_format, metavar="FORMAT")

    # --- event loop and io_uring ---
    loop: Loop = uring(
        Loop.AUTO, "asyncio event loop that runs the application's coroutines.")
    io: IOBackend = uring(
        IOBackend.AUTO, "Network I/O backend: uring, or asyncio transports (epoll); auto uses uring "
        "and, where io_uring is unavailable, says why and falls back to asyncio.")
    sqpoll: bool = uring(
        False, "Let a kernel thread poll the submission queue (IORING_SETUP_SQPOLL): fewer "
        "syscalls, one busy CPU.")
    ring_entries: int = uring(
        4096, "Submission queue entries of the ring (the kernel rounds up to a power of two).",
        check=_between(1, 32768))
    ring_buffers: int = uring(
        1024, "Receive buffers in the provided-buffer ring (the most receives one loop iteration "
        "can take before the ring runs dry and re-arms).", check=_power_of_two)
    ring_buffer_size: int = uring(
        16384, "Size of each receive buffer in bytes: 1024 x 16 KiB = 16 MiB per worker; bigger "
        "buffers mean fewer completions (and Python calls) per upload.", check=_between(64, 1 << 24),
        metavar="BYTES")

    # --- workers ---
    limit_max_requests: int | None = workers_(
        None, "Restart a worker (gracefully, no request dropped) after it served this many requests.",
        type=int, check=lambda v: None if v is None or v >= 1 else "must be at least 1")
    limit_max_requests_jitter: int = workers_(
        0, "Add a random 0..N to --limit-max-requests per worker, so workers don't restart together.",
        check=_at_least(0))
    workers: int = workers_(
        1, "Worker processes, each with its own ring.", env=("WEB_CONCURRENCY",),
        check=_at_least(1))
    threads: int = workers_(
        10, "Threads per worker that run a WSGI app (10, like uvicorn's WSGI middleware).",
        check=_at_least(1))
    timeout_worker_healthcheck_s: float = workers_(
        30.0, "With a supervisor (--workers > 1 or --reload): replace a worker whose event loop "
        "has not run for this many seconds (an app stuck in a CPU loop), after logging its stack.",
        flag="--timeout-worker-healthcheck", check=_at_least_seconds(1.0))
    pid_file: str | None = workers_(
        None, "Write the process id (the supervisor's, with workers) to this file; removed at "
        "exit.", type=str, flag="--pid", metavar="PATH")

    # --- reload (development) ---
    reload: bool = reload_(
        False, "Restart the workers when files change (development; needs watchfiles: pip "
        "install 'ringserve[reload]'). A new worker that fails to import leaves the old one "
        "serving.")
    reload_dirs: tuple[str, ...] = reload_(
        (), "Watch this directory for --reload; repeat for more (in the environment, one per "
        "line).", parse=str, flag="--reload-dir", metavar="DIR",
        default_text="the current directory", multiple=True)
    reload_includes: tuple[str, ...] = reload_(
        (), "Reload when a file matching this glob changes (matched against the file name, or "
        "the path's end for a pattern with '/'); repeat for more.", parse=str,
        flag="--reload-include", metavar="GLOB", default_text="*.py", multiple=True)
    reload_excludes: tuple[str, ...] = reload_(
        (), "Ignore files, and directories below a --reload-dir, matching this glob; repeat for "
        "more.", parse=str, flag="--reload-exclude", metavar="GLOB",
        default_text=".*, *.py[cod], *.sw.*, ~*, __pycache__", multiple=True)

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.name)
            new = option.coerce(value)
            if new is not value:
                object.__setattr__(self, option.name, new)
        _check_combination(self)

    def replace(self, **changes: Any) -> Config:
        """A copy with these fields changed (validated like config_from_options)."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Option:
    """One Config field as the CLI, the environment and the docs see it."""

    name: str
    group: str
    help: str
    default: Any
    type: type
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None] | None
    flag: str | None
    env: tuple[str, ...]
    choices: tuple[str, ...] | None
    metavar: str | None
    default_text: str
    multiple: bool

    @property
    def display(self) -> str:
        """How the user names it: '--port', or 'APP' for the positional."""
        return self.flag or self.metavar or self.name.upper()

    def coerce(self, value: Any) -> Any:
        """A valid value for this field from a Python value or a string, else ConfigError."""
        try:
            value = self._convert(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid {self.name} ({self.display}): {exc}.") from None
        problem = self.check(value) if self.check and value is not None else None
        if problem:
            raise ConfigError(f"Invalid {self.name} ({self.display}) {value!r}: {problem}.")
        return value

    def _convert(self, value: Any) -> Any:
        if value is None and (self.default is None or self.type is object):
            return None
        if self.multiple:
            items = value.splitlines() if isinstance(value, str) else value
            return tuple(self.parse(i) if isinstance(i, str) else _pair(i) for i in items if i)
        if self.name == "forwarded_allow_ips" and isinstance(value, (list, tuple)):
            value = ",".join(value)
        if isinstance(value, str) and self.type is not str and self.type is not object:
            return self.parse(value)  # also turns a Choice member or 'AUTO' into the member
        return _typecheck(value, self.type)


def _pair(item: Any) -> tuple[str, str]:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(f"expected 'Name: Value' strings or (name, value) pairs, got {item!r}")
    return parse_header(f"{item[0]}: {item[1]}")


def _typecheck(value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    if expected is object or isinstance(value, expected):
        return value
    raise TypeError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")


def _option(f: dataclasses.Field[Any]) -> Option:
    m = f.metadata
    kind: Any = m["type"] or type(f.default)
    is_choice = isinstance(kind, type) and issubclass(kind, Choice)
    choices = tuple(c.value for c in kind) if is_choice else None
    parse = m["parse"] or _default_parser(kind)
    flag = "--" + f.name.replace("_", "-") if m["flag"] == "" else m["flag"]
    env = (ENV_PREFIX + f.name.upper(), *m["env"])
    text = m["default_text"] or _default_text(f.default)
    return Option(f.name, m["group"], m["help"], f.default, kind, parse, m["check"], flag, env,
                  choices, m["metavar"], text, m["multiple"])


def _default_parser(kind: type) -> Callable[[str], Any]:
    if issubclass(kind, Choice):
        return _choice_parser(kind)
    return {bool: parse_bool, int: parse_int, float: parse_float}.get(kind, str)


def _default_text(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default) if default != "" else "''"


OPTIONS: tuple[Option, ...] = tuple(_option(f) for f in dataclasses.fields(Config))
OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def _check_combination(config: Config) -> None:
    if config.ssl_certfile is None:
        given = [name for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs")
                 if getattr(config, name) is not None]
        if config.ssl_cert_reqs:
            given.append("ssl_cert_reqs")
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{flags} given without --ssl-certfile: pass the server certificate "
                              "with --ssl-certfile to serve HTTPS.")
    if config.ssl_cert_reqs and config.ssl_ca_certs is None:
        raise ConfigError(f"--ssl-cert-reqs {config.ssl_cert_reqs} asks for client certificates "
                          "but there is nothing to check them against: add --ssl-ca-certs PATH.")
    if config.uds is not None and config.fd is not None:
        raise ConfigError("--uds and --fd were both given; pass only one of them.")
    if config.reload and config.app is not None and not isinstance(config.app, str):
        raise ConfigError("--reload needs the app as an import string '<module>:<attribute>' "
                          "(each new worker imports it afresh); pass the string instead of the "
                          "app object.")
    if config.workers > 1 and config.app is not None and not isinstance(config.app, str):
        raise ConfigError(f"--workers {config.workers} needs the app as an import string "
                          "'<module>:<attribute>' (each worker imports it); pass the string "
                          "instead of the app object, or use workers=1.")


def _reject_unknown(options: Mapping[str, Any]) -> None:
    for name in options:
        if name not in OPTIONS_BY_NAME:
            close = difflib.get_close_matches(name, OPTIONS_BY_NAME, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown option '{name}'.{hint} "
                              "See 'ringserve --help' for every option.")


def config_from_options(**options: Any) -> Config:
    """A validated Config from keyword options (field names); the app is required."""
    _reject_unknown(options)
    if options.get("app") in (None, ""):
        raise ConfigError("No application given. Pass it as 'ringserve <module>:<attribute>' "
                          "(e.g. 'ringserve main:app') or set RINGSERVE_APP.")
    return Config(**options)


def env_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The options set in this environment, parsed; an empty value counts as unset."""
    found: dict[str, Any] = {}
    for option in OPTIONS:
        for name in option.env:
            text = environ.get(name)
            if text is None or text.strip() == "":
                continue
            found[option.name] = _parse_env(option, name, text)
            break
    return found


def _parse_env(option: Option, name: str, text: str) -> Any:
    try:
        if option.multiple:
            return tuple(option.parse(line) for line in text.splitlines() if line.strip())
        return option.parse(text)
    except ValueError as exc:
        raise ConfigError(f"Environment variable {name}={text!r} is invalid for "
                          f"{option.display}: {exc}. Fix or unset it.") from None


# --- gunicorn: `gunicorn -k ringserve.Worker` ---------------------------------------------------

_GUNICORN_MAX_REQUEST_LINE = 8190  # gunicorn's own clamps (gunicorn/http/message.py)
_GUNICORN_MAX_HEADERS = 32768
_GUNICORN_FIELD_SIZE = 8190
_GUNICORN_ATOM = re.compile(r"%%|%\(([^)]*)\)([#0 +-]*\d*(?:\.\d+)?[a-zA-Z])")
_GUNICORN_ENVIRON_ATOMS = {"remote_addr": "h", "request_method": "m", "path_info": "U",
                           "query_string": "q", "server_protocol": "H"}
# What gunicorn's arbiter does itself (sockets, processes, reload): never read from RINGSERVE_*.
_GUNICORN_OWNS = frozenset({"host", "port", "uds", "fd", "backlog", "reuse_port", "workers", "reload",
                            "reload_dirs", "reload_includes", "reload_excludes", "pid_file",
                            "timeout_worker_healthcheck_s"})


def from_gunicorn(cfg: Any, app: Any = None, environ: Mapping[str, str] | None = None) -> Config:
    """The Config a gunicorn worker serves with, from gunicorn's settings object `cfg`.

    gunicorn's settings decide every field they cover (ringserve_gunicorn's docstring has the
    table); ringserve's own options (io, ring sizes, headers, interface...) come from RINGSERVE_*
    in `environ` (os.environ by default; gunicorn's `-e RINGSERVE_IO=asyncio` sets them), then
    defaults; what the arbiter owns (binding, processes, reload) never comes from there.
    ConfigError for what the worker cannot serve: TLS, PROXY protocol, the uwsgi protocol.
    """
    import os

    fatal = []
    if str(getattr(cfg, "proxy_protocol", "off")).lower() not in ("off", "false", "none"):
        fatal.append("proxy_protocol is on but ringserve does not parse PROXY headers yet: turn it "
                     "off (and use forwarded_allow_ips with X-Forwarded-*), or use -k asgi / -k sync")
    if getattr(cfg, "protocol", "http") != "http":
        fatal.append(f"protocol {cfg.protocol!r}: ringserve serves HTTP/1.1 only; use protocol 'http'")
    if fatal:
        raise ConfigError("gunicorn -k ringserve.Worker: " + "; ".join(fatal) + ".")
    line = cfg.limit_request_line  # 0 is "unlimited": gunicorn's fast parser stops at 1 MiB
    if line == 0:
        line = 1 << 20
    elif not 0 < line <= _GUNICORN_MAX_REQUEST_LINE:
        line = _GUNICORN_MAX_REQUEST_LINE
    fields = cfg.limit_request_fields
    fields = fields if 0 < fields <= _GUNICORN_MAX_HEADERS else _GUNICORN_MAX_HEADERS
    field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else _GUNICORN_FIELD_SIZE
    level = str(cfg.loglevel).lower()
    mapped = {
        "app": app or getattr(cfg, "wsgi_app", None) or "gunicorn",
        "workers": cfg.workers,  # for wsgi.multiprocess: the arbiter runs the processes
        "threads": cfg.threads,
        "root_path": getattr(cfg, "root_path", "") or "",
        "lifespan": getattr(cfg, "asgi_lifespan", "auto"),
        "loop": getattr(cfg, "asgi_loop", "auto"),
        "ws_max_size": getattr(cfg, "websocket_max_message_size", 16 * 1024 * 1024),
        "limit_concurrency": cfg.worker_connections or None,
        "limit_max_requests": cfg.max_requests if cfg.max_requests > 0 else None,
        "limit_max_requests_jitter": max(cfg.max_requests_jitter, 0) if cfg.max_requests > 0 else 0,
        # gunicorn has no separate head limit: its bound is the line plus every field at full size
        "limit_request_line": line,
        "limit_request_fields": fields,
        "limit_request_field_size": field_size,
        "limit_request_head": line + 4 + fields * (field_size + 2),
        # keepalive 0 (no keep-alive) has no exact equivalent: idle connections close at once
        "timeout_keep_alive_s": cfg.keepalive if cfg.keepalive > 0 else 0.001,
        "timeout_graceful_shutdown_s": cfg.graceful_timeout,
        "forwarded_allow_ips": ",".join(cfg.forwarded_allow_ips),
        "proxy_headers": "X-FORWARDED-PROTO" in {k.upper() for k in cfg.secure_scheme_headers},
        "log_level": level if level in {choice.value for choice in LogLevel} else "info",
        "access_log": bool(cfg.accesslog or cfg.logconfig or getattr(cfg, "logconfig_dict", None)
                        or getattr(cfg, "logconfig_json", None)
                        or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)),
        "access_log_format": gunicorn_access_format(cfg.access_log_format),
    }
    if cfg.is_ssl:  # gunicorn's certfile, keyfile, ca_certs, cert_reqs, ciphers (not the deprecated ssl_version)
        mapped.update(
            ssl_certfile=cfg.certfile, ssl_keyfile=cfg.keyfile, ssl_ca_certs=cfg.ca_certs,
            ssl_cert_reqs=int(cfg.cert_reqs),
        )
        if cfg.ciphers:
            mapped["ssl_ciphers"] = cfg.ciphers
    own = env_options(os.environ if environ is None else environ)
    own = {k: v for k, v in own.items() if k not in mapped and k not in _GUNICORN_OWNS}
    return config_from_options(**own, **mapped)


def gunicorn_access_format(fmt: str) -> str:
    """gunicorn's access_log_format in ringserve's atoms: a `{VAR}e` (environ) atom becomes the
    atom or `{header}i` it stands for; any other atom ringserve lacks prints '-', as gunicorn
    prints for an atom it does not know."""
    from ringserve.logs import ATOMS

    def convert(match: re.Match[str]) -> str:
        key, spec = match.group(1), match.group(2)
        if key is None or key in ATOMS or re.fullmatch(r"\{[^}]+\}[io]", key):
            return match.group(0)
        var = key.lower()[1:-2] if re.fullmatch(r"\{[^}]+\}e", key, re.IGNORECASE) else ""
        if var in _GUNICORN_ENVIRON_ATOMS:
            return f"%({_GUNICORN_ENVIRON_ATOMS[var]}){spec}"
        if var.startswith("http_"):
            return "%({" + var[5:].replace("_", "-") + "}i)" + spec
        return "-"

    return _GUNICORN_ATOM.sub(convert, fmt)
