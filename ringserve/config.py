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
    reuse_port: bool = binding(
        False, "Set SO_REUSEPORT so several processes can bind the same port and the kernel "
        "balances connections between them.")

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
        4096, "Receive buffers in the provided-buffer ring.", check=_power_of_two)
    ring_buffer_size: int = uring(
        4096, "Size of each receive buffer in bytes.", check=_between(64, 1 << 24),
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
    if config.uds is not None and config.fd is not None:
        raise ConfigError("--uds and --fd were both given; pass only one of them.")
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
