"""The per-request Python path, in process: request bytes in, the app, response bytes out.

No socket and no ring: a real Server and RingEventLoop, a Connection whose transport only
counts writes, and `data_received()` called N times with one keep-alive GET (the app finishes
without waiting, so each call is one whole request cycle: parse, scope, task, app, head,
write, next request).

    .venv/bin/python bench/scripts/path_cost.py [N]          # best-of-15 wall time per request
    bench/scripts/path_cost.sh [SRC] [N]                     # instructions per request (valgrind)
    APP=fastapi_app:app URL=/json ...                        # another app from bench/apps

Wall time on a shared VM drifts by 10-20 % between runs; the instruction count from
path_cost.sh repeats within 0.5 %, which is what makes A/B comparisons of small changes
possible here (SRC: another checkout, put first on PYTHONPATH). The count only covers the
measured loop (callgrind toggles collection on the deque() that drives it).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps"))

from ringserve.config import config_from_options  # noqa: E402
from ringserve.connection import Connection  # noqa: E402
from ringserve.server import Server, make_backend  # noqa: E402

URL = os.environ.get("URL", "/")
REQUEST = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n" % URL.encode()  # what wrk sends


class CountingConnection(Connection):
    """A transport that keeps nothing: it counts the responses written."""

    __slots__ = ("writes",)

    write_blocked = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def write_parts(self, parts: list) -> None:
        self.writes += 1

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self._closed_now()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    reps = int(os.environ.get("REPS", "15"))
    target = os.environ.get("APP", "raw_asgi:plaintext")
    config = config_from_options(app=target, io="uring")
    module, _, attr = target.partition(":")
    app = getattr(__import__(module), attr)
    backend, loop = make_backend(config)
    asyncio.set_event_loop(loop)
    server = Server(config, app, [], backend, loop)
    conn = CountingConnection(server, 1, ("127.0.0.1", 40000), ("127.0.0.1", 8000))
    conn.writes = 0
    server.conns[1] = conn
    view = memoryview(REQUEST)  # as the ring hands it over
    best = float("inf")
    # Outside a running task, as in the ring's dispatch: each cycle's first step runs eagerly.
    for _ in range(reps):
        start = time.perf_counter()
        collections.deque(map(conn.data_received, itertools.repeat(view, n)), maxlen=0)
        best = min(best, (time.perf_counter() - start) / n)
    if conn.writes != reps * n or conn.closed:
        sys.exit(f"expected {reps * n} responses on an open connection, got {conn.writes}")
    print(f"{best * 1e6:.2f} us/request (best of {reps} x {n}, {target} {URL})")
    backend.close()


if __name__ == "__main__":
    main()
