"""For the process-model tests: every response says which worker (pid) served it.

GET /            -> "<pid>\\n"
GET /slow?delay=S -> the head and "started <pid>\\n" at once, "done <pid>\\n" after S seconds
GET /stream      -> a chunk every 0.1 s, forever (a long-lived response that must not hold shutdown)
GET /block?seconds=S -> blocks the event loop (time.sleep) for S seconds, then answers
Lifespan: startup and shutdown lines go to the file named by $WORKERS_LIFESPAN_LOG, with the pid.
"""

import asyncio
import os
import time

from tests.apps._util import query, send_bytes


def _log(line: str) -> None:
    path = os.environ.get("WORKERS_LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{line} {os.getpid()}\n")


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _log("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _log("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    pid = str(os.getpid()).encode()
    path, q = scope["path"], query(scope)
    if path == "/slow":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"started " + pid + b"\n", "more_body": True})
        await asyncio.sleep(float(q.get("delay", 1)))
        await send({"type": "http.response.body", "body": b"done " + pid + b"\n"})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        while True:
            await send({"type": "http.response.body", "body": b"tick " + pid + b"\n", "more_body": True})
            await asyncio.sleep(0.1)
    elif path == "/block":
        time.sleep(float(q.get("seconds", 1)))  # noqa: ASYNC251 (blocks the event loop on purpose)
        await send_bytes(send, pid + b"\n")
    else:
        await send_bytes(send, pid + b"\n")
