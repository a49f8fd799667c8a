"""ASGI app for the gunicorn worker tests (standard library only).

Lifespan startup/shutdown append 'startup <pid>' / 'shutdown <pid>' to $LIFESPAN_LOG; with
$LIFESPAN_FAIL set, startup fails with that message.
  /            'hello' with x-pid: the worker's pid
  /block?s=S   time.sleep(S) inside the event loop: a blocked worker
  /sleep?s=S   await asyncio.sleep(S), then 'slept'
"""

import asyncio
import os
import time

from tests.apps._util import query, send_bytes


def _log(line: str) -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{line} {os.getpid()}\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            if kind == "startup" and os.environ.get("LIFESPAN_FAIL"):
                await send({"type": "lifespan.startup.failed", "message": os.environ["LIFESPAN_FAIL"]})
                return
            _log(kind)
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    pid = [(b"x-pid", str(os.getpid()).encode())]
    if scope["path"] == "/block":
        time.sleep(float(query(scope).get("s", "60")))  # noqa: ASYNC251 - the point: a blocked loop
    elif scope["path"] == "/sleep":
        await asyncio.sleep(float(query(scope).get("s", "0.1")))
        await send_bytes(send, b"slept", headers=pid)
        return
    await send_bytes(send, b"hello", headers=pid)
