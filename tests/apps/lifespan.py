"""Lifespan: startup and shutdown are appended to the file named by $LIFESPAN_LOG; state reaches requests.

Startup sets state["token"] and state["hits"] (a list, shared by the shallow copies each request gets).
With $LIFESPAN_FAIL set, startup reports lifespan.startup.failed with that message.
GET /state -> {"token", "hits": len(hits) after this request appended, "leaked": whether a key set on
a previous request's scope["state"] is visible (it must not be: each request gets a shallow copy)}.
"""

import asyncio
import os

from tests.apps._util import send_json


def _log(line: str) -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            failure = os.environ.get("LIFESPAN_FAIL")
            if failure:
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            await asyncio.sleep(0.2)  # the server must not report readiness before startup completes
            scope["state"]["token"] = "from-startup"
            scope["state"]["hits"] = []
            _log("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _log("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    state = scope.get("state", {})
    hits = state.get("hits")
    if hits is not None:
        hits.append(1)
    leaked = "per_request" in state
    state["per_request"] = True
    await send_json(send, {"token": state.get("token"), "hits": len(hits) if hits is not None else None,
                           "leaked": leaked})
