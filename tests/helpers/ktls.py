"""Kernel TLS test helpers, shared by tests/test_ktls.py (host) and tests/ktls_guest.py (kTLS kernel).

- kernel_tls_missing(): None when the running kernel has the `tls` ULP, else why not. Nothing is loaded on
  purpose: /proc/net/tls_stat exists once the tls module is in; otherwise attaching the ULP to an
  established loopback connection is tried (the kernel may autoload the module then).
- tls_stat(): /proc/net/tls_stat as a dict.
"""

from __future__ import annotations

import os
import socket

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
