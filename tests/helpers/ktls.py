"""Kernel TLS test helpers, shared by tests/test_ktls.py (host) and tests/ktls_guest.py (kTLS kernel).

- kernel_tls_missing(): None when the running kernel has the `tls` ULP, else why not. Nothing is loaded on
  purpose: /proc/net/tls_stat exists once the tls module is in; otherwise attaching the ULP to an
  established loopback connection is tried (the kernel may autoload the module then).
- tls_stat(): /proc/net/tls_stat as a dict.
- make_certs(dir): a trustme CA and a server certificate for 127.0.0.1 (ECDSA, trustme's default).
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

TCP_ULP = 31  # linux/tcp.h; Python 3.11's socket module has no constant for it
TLS_STAT = "/proc/net/tls_stat"


def kernel_tls_missing() -> str | None:
    """None when the kernel has kTLS, else why not."""
    if os.path.exists(TLS_STAT):
        return None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            accepted, _ = listener.accept()
            with accepted:
                try:
                    client.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
                except OSError as exc:
                    return f"kernel {os.uname().release} has no TLS ULP: setsockopt(TCP_ULP, 'tls'): {exc}"
    return None


def tls_stat() -> dict[str, int]:
    """/proc/net/tls_stat as {counter: value} ({} when absent)."""
    try:
        with open(TLS_STAT) as f:
            return {name: int(value) for name, value in (line.split() for line in f if line.strip())}
    except FileNotFoundError:
        return {}


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path

    def server_args(self, *extra: str) -> tuple[str, ...]:
        return ("--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key), *extra)

    def client_context(self, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A verifying client context; with `version`, exactly that TLS version."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # a missing close_notify must show
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        return ctx


def make_certs(directory: Path) -> Certs:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="ringserve ktls tests")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certs(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    ca.cert_pem.write_to_path(str(certs.ca))
    certs.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(certs.key))
    return certs
