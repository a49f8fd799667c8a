"""The PEP 3333 environ of a request, and wsgi.file_wrapper.

build_environ() runs on the pool thread: it only reads what does not change during the request (the
Request event, the connection's addresses). Strings are WSGI "native strings": the bytes as
received, each as one latin-1 character, PATH_INFO after %-decoding.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from .input import InputStream

_HEADER_KEYS: dict[bytes, str] = {}  # b"x-foo" -> "HTTP_X_FOO" ("" = dropped)
_SCHEMES = {"ws": "http", "wss": "https"}


class FileWrapper:
    """wsgi.file_wrapper: a file-like the server sends by splice when it has a real descriptor,
    else block by block (PEP 3333, Optional Platform-Specific File Handling)."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def build_environ(cycle: Any) -> dict:
    request = cycle.request
    env = cycle.base.copy()
    raw = request.path
    path = unquote_to_bytes(raw).decode("latin-1") if b"%" in raw else raw.decode("latin-1")
    root = cycle.root  # SCRIPT_NAME, in base
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        path = path[len(root):]  # the client sent the prefix; otherwise a proxy stripped it already
    env["PATH_INFO"] = path
    env["REQUEST_METHOD"] = request.method.decode("latin-1")
    env["QUERY_STRING"] = request.query.decode("latin-1")
    env["RAW_URI"] = env["REQUEST_URI"] = request.target.decode("latin-1")
    env["SERVER_PROTOCOL"] = "HTTP/" + request.http_version
    _add_headers(env, request.headers)
    _add_addresses(env, cycle)
    env["wsgi.input"] = InputStream(cycle.take)
    env["wsgi.errors"] = sys.stderr
    return env


def _add_headers(env: dict, headers: list) -> None:
    keys = _HEADER_KEYS
    for name, value in headers:
        key = keys.get(name)
        if key is None:
            key = _header_key(name)
        if not key:
            continue
        text = value.decode("latin-1")
        if key in env and key != "CONTENT_LENGTH":
            env[key] += ", " + text
        else:
            env[key] = text


def _header_key(name: bytes) -> str:
    """b"x-foo" -> "HTTP_X_FOO"; "" (dropped) for a name with "_", which would alias a "-" one."""
    text = name.decode("latin-1")
    if "_" in text:
        key = ""
    elif text in ("content-type", "content-length"):
        key = text.upper().replace("-", "_")
    else:
        key = "HTTP_" + text.upper().replace("-", "_")
    if len(_HEADER_KEYS) < 1024:
        _HEADER_KEYS[name] = key
    return key


def _add_addresses(env: dict, cycle: Any) -> None:
    """REMOTE_*, SERVER_* and wsgi.url_scheme, after proxy headers from trusted peers."""
    conn = cycle.conn
    client = conn.client
    scheme = conn.scheme
    proxy = cycle.shared.proxy
    if proxy is not None and ("HTTP_X_FORWARDED_FOR" in env or "HTTP_X_FORWARDED_PROTO" in env):
        view = {"client": client, "headers": cycle.request.headers, "scheme": scheme}
        proxy.apply(view)
        client = view["client"]
        scheme = _SCHEMES.get(view["scheme"], view["scheme"])
        cycle.scope["client"] = client  # for the access log
    env["wsgi.url_scheme"] = scheme
    if conn.tls is not None:
        env.update(conn.tls.wsgi)
    if client is not None:
        env["REMOTE_ADDR"] = client[0]
        env["REMOTE_PORT"] = str(client[1])
    host, port = conn.sockname
    if port is None:  # a UNIX socket: the Host header is all there is
        host, port = _split_host(env.get("HTTP_HOST", ""), scheme)
    env["SERVER_NAME"] = host
    env["SERVER_PORT"] = str(port)


def _split_host(host: str, scheme: str) -> tuple[str, str]:
    name, sep, port = host.rpartition(":")
    if sep and name and port.isdigit():  # "[::1]" splits as "[:" and "1]": no port
        return name, port
    return host or "localhost", "443" if scheme == "https" else "80"
