"""WebSocket routes for tests/test_websocket.py (raw ASGI), routed by path; query `id` names a run.

  /echo               accept (the subprotocol in ?choose=, if any), echo every message
  /scope              accept, send the scope as JSON text, then echo
  /close?code&reason  accept, then close with that code and reason
  /reject             websocket.close before accept (403)
  /deny               websocket.http.response: 401 with a two-part body
  /raise-before       raise before accepting (500)
  /raise-after        accept, then raise (1011)
  /return             accept, then return (the server closes)
  /flood?size&count   accept, send `count` binary messages of `size` bytes as fast as send() allows
  /sink?delay         accept, sleep `delay` seconds without receiving, then receive until disconnect
  /wait               accept, receive until disconnect

Every websocket run records what happened under its `id`: "sent" (messages sent), "received",
"disconnect" ([code, reason]); HTTP GET /log?id=... returns it as JSON. The disconnect is also
printed as "ws-disconnect <id> <code>" for tests that read it after a shutdown.
"""

from __future__ import annotations

import asyncio
import json

from tests.apps._util import lifespan_noop, query, send_bytes, ws_echo

LOG: dict[str, dict] = {}


def record(run: str, **changes) -> dict:
    entry = LOG.setdefault(run, {"sent": 0, "received": 0, "disconnect": None})
    entry.update(changes)
    return entry


async def finish(run: str, receive) -> None:
    """Receive (counting messages) until the disconnect, and record it."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code, reason = message.get("code", 1000), message.get("reason", "")
            record(run, disconnect=[code, reason])
            print(f"ws-disconnect {run} {code}", flush=True)
            return
        record(run, received=LOG[run]["received"] + 1)


async def echo(scope, receive, send, args):
    message = await ws_echo(receive, send)
    record(args.get("id", ""), disconnect=[message.get("code"), message.get("reason", "")])
    print(f"ws-disconnect {args.get('id', '')} {message.get('code')}", flush=True)


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    args = query(scope)
    run = args.get("id", "")
    record(run)
    route = scope["path"].strip("/")
    if route == "reject":
        await send({"type": "websocket.close"})
        return
    if route == "deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"denied: ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"no token"})
        return
    if route == "raise-before":
        raise RuntimeError("raised before accept (expected by the test)")
    accept = {"type": "websocket.accept", "headers": [(b"x-ws-app", b"ringserve-tests")]}
    if "choose" in args:
        accept["subprotocol"] = args["choose"]
    await send(accept)
    if route == "scope":
        await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
        await echo(scope, receive, send, args)
    elif route == "close":
        await send({"type": "websocket.close", "code": int(args.get("code", 1000)),
                    "reason": args.get("reason", "")})
        await finish(run, receive)
    elif route == "raise-after":
        raise RuntimeError("raised after accept (expected by the test)")
    elif route == "return":
        return
    elif route == "flood":
        await flood(run, send, int(args.get("size", 65536)), int(args.get("count", 100)))
        await finish(run, receive)
    elif route == "sink":
        await asyncio.sleep(float(args.get("delay", 1)))
        await finish(run, receive)
    elif route == "wait":
        await finish(run, receive)
    else:
        await echo(scope, receive, send, args)


async def flood(run: str, send, size: int, count: int) -> None:
    payload = b"x" * size
    for i in range(count):
        await send({"type": "websocket.send", "bytes": payload})
        record(run, sent=i + 1)


def describe(scope) -> dict:
    return {
        "type": scope["type"],
        "asgi": scope.get("asgi"),
        "http_version": scope.get("http_version"),
        "scheme": scope.get("scheme"),
        "path": scope.get("path"),
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "root_path": scope.get("root_path"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])],
        "subprotocols": scope.get("subprotocols"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "extensions": sorted((scope.get("extensions") or {}).keys()),
        "has_state": "state" in scope,
        "has_method": "method" in scope,
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:  # http: /log?id=... (or 404)
        if scope["path"] == "/log":
            entry = LOG.get(query(scope).get("id", ""), {})
            await send_bytes(send, json.dumps(entry).encode(), content_type=b"application/json")
        else:
            await send_bytes(send, b"not a websocket route", status=404)
