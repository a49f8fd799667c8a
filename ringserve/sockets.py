"""Listening sockets from a Config: TCP host:port, --uds PATH, --fd N, or systemd socket activation.

Every socket returned is listening and non-blocking. Which one is used, first match wins:
--fd, --uds, systemd's LISTEN_FDS (when LISTEN_PID is this process), then --host/--port.
Failures raise ConfigError whose message says what to change.

Sockets are not inheritable (the app's subprocesses do not get them); a supervisor that execs
workers must call set_inheritable(True) itself. Forked workers share them as they are.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Mapping
from typing import Any

from ringserve.config import ConfigError

SD_LISTEN_FDS_START = 3
_FAMILIES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6", socket.AF_UNIX: "UNIX"}


def bind_listeners(config: Any, environ: Mapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets `config` asks for; ConfigError naming the fix when that fails."""
    if config.fd is not None:
        return [adopt_fd(config.fd, "--fd")]
    if config.uds:
        return [bind_unix(config.uds, config.backlog)]
    inherited = systemd_listeners(os.environ if environ is None else environ)
    if inherited:
        return inherited
    return [bind_tcp(config.host, config.port, config.backlog, config.reuse_port)]


def close_listeners(sockets: list[socket.socket], config: Any) -> None:
    """Close the listeners; remove the --uds socket file this process created."""
    for sock in sockets:
        sock.close()
    if config.uds and config.fd is None:
        try:
            if stat.S_ISSOCK(os.lstat(config.uds).st_mode):
                os.unlink(config.uds)
        except OSError:
            pass


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """'http://127.0.0.1:8000', 'https://[::1]:8000' or 'unix:/run/app.sock' for startup logs."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):  # Linux abstract namespace: b"\0name"
            address = "@" + address[1:].decode("utf-8", "replace")
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"{scheme}://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{scheme}://{host}:{port}"


# --- TCP -----------------------------------------------------------------------------------------


def bind_tcp(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(f"Cannot create an {_FAMILIES[family]} socket for {where}: "
                          f"{exc.strerror}. Use an IPv4 --host such as 127.0.0.1.") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Linux copies TCP_NODELAY from the listener to every accepted socket: one setsockopt here
        # instead of one per connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise tcp_bind_error(exc, host, port, where) from exc
    return sock


def tcp_bind_error(exc: OSError, host: str, port: int, where: str) -> ConfigError:
    """The ConfigError for a failed TCP bind, by errno."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"Cannot resolve --host '{host}': {exc.strerror}. Use an IP address "
                           "(127.0.0.1, 0.0.0.0, ::1, ::) or a name this machine resolves.")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"Address {where} is already in use. Stop the other server or choose "
                           "another --port.")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return ConfigError(f"Permission denied binding {where}: ports below 1024 need root or "
                           "CAP_NET_BIND_SERVICE; choose --port >= 1024.")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"Cannot bind {where}: {host} is not an address of this machine. "
                           "Use one of its addresses, 127.0.0.1 for this machine only, or "
                           "0.0.0.0 (:: for IPv6) for every interface.")
    return ConfigError(f"Cannot bind {where}: {exc.strerror or exc}. Check --host and --port.")


# --- UNIX domain socket --------------------------------------------------------------------------


def bind_unix(path: str, backlog: int) -> socket.socket:
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)  # like uvicorn: any local user (the proxy) may connect
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot bind unix:{path}: {exc.strerror or exc}. Check that the "
                          "directory exists and is writable, or choose another --uds "
                          "path.") from exc
    return sock


def _remove_stale(path: str) -> None:
    """Remove a socket file that no server listens on; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # let bind() report it
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--uds {path} exists and is not a socket. Remove it or choose another "
                          "--uds path.")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: left by a server that did not clean up
        return
    except OSError:
        return  # e.g. EACCES: let bind() report it
    finally:
        probe.close()
    raise ConfigError(f"Unix socket {path} is in use by a running server. Stop it or choose "
                      "another --uds path.")


# --- inherited sockets: --fd and systemd ---------------------------------------------------------


def adopt_fd(fd: int, what: str, take: bool = False) -> socket.socket:
    """A socket object for an inherited listening socket, its family read from the kernel.

    The socket gets a dup of `fd` (the caller keeps `fd`) unless `take`, when it owns `fd`.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise ConfigError(f"{what} {fd} is not an open file descriptor. Pass the number of a "
                          "listening socket that this process inherited.") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{what} {fd} is not a socket. Pass the number of a listening socket.")
    sock = _socket_on(fd if take else os.dup(fd))
    problem = _listener_problem(sock)
    if problem:
        sock.close()
        raise ConfigError(f"{what} {fd} {problem}")
    sock.setblocking(False)
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _socket_on(fd: int) -> socket.socket:
    """A socket object with the family, type and protocol the kernel reports for `fd`
    (not assumed: uvicorn#295 wrapped every --fd as AF_UNIX)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=fd)
    try:
        family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        proto = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    finally:
        probe.detach()
    return socket.socket(family, kind, proto, fileno=fd)


def _listener_problem(sock: socket.socket) -> str | None:
    if sock.family not in _FAMILIES:
        return f"is a socket of family {sock.family!r}; pass an IPv4, IPv6 or UNIX socket."
    if sock.type != socket.SOCK_STREAM:
        return "is not a stream socket; pass a SOCK_STREAM (TCP or UNIX stream) socket."
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return "is not listening; call listen() on it before passing it."
    return None


def systemd_listeners(environ: Mapping[str, str]) -> list[socket.socket]:
    """The sockets systemd passed (fds 3, 4, ...), or [] when none were passed to this process."""
    count, pid = environ.get("LISTEN_FDS"), environ.get("LISTEN_PID")
    if not count or not pid:
        return []
    try:
        if int(pid) != os.getpid():
            return []  # meant for the process that started us
        n = int(count)
    except ValueError:
        raise ConfigError(f"LISTEN_FDS={count!r} / LISTEN_PID={pid!r} are not numbers; unset them "
                          "or fix the unit that sets them.") from None
    return [adopt_fd(fd, "LISTEN_FDS descriptor", take=True)
            for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n)]
