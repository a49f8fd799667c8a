"""ASGI app for tests/test_tls.py (raw ASGI), routed by the first path segment.

  /tls       JSON: scheme, http_version, client, server, the extension names, and the TLS extension
             (scope["extensions"]["tls"]) as "tls" (null when absent) with the type name of each value
             as "tls_types" (values JSON cannot carry are sent as their repr)
  /upload    JSON: size and sha256 of the request body
  /big       tests/apps/big.py (size=N bytes, x-sha256 header)
  /pathsend  tests/apps/pathsend.py (path=P: the file, by http.response.pathsend when offered)
  /slow      print "slow-start <tag>", sleep `delay` seconds, then the /tls JSON
  websocket  accept, send the /tls JSON as a text message, then echo until the client closes
"""

from __future__ import annotations

import asyncio
import json

from tests.apps import big, pathsend
from tests.apps._util import hash_body, lifespan_noop, query, send_json, ws_echo


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def describe(scope) -> dict:
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls")
    return {
        "type": scope["type"],
        "scheme": scope.get("scheme"),
        "http_version": scope.get("http_version"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "extensions": sorted(extensions),
        "tls": None if tls is None else {k: _jsonable(v) for k, v in tls.items()},
        "tls_types": None if tls is None else {k: type(v).__name__ for k, v in tls.items()},
    }


async def upload(receive, send):
    hashed = await hash_body(receive)
    if hashed is not None:
        await send_json(send, {"size": hashed[0], "sha256": hashed[1]})


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
    await ws_echo(receive, send)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    route = scope["path"].lstrip("/").split("/", 1)[0]
    if route == "upload":
        await upload(receive, send)
    elif route == "big":
        await big.app(scope, receive, send)
    elif route == "pathsend":
        await pathsend.app(scope, receive, send)
    elif route == "slow":
        args = query(scope)
        print(f"slow-start {args.get('tag', '')}", flush=True)
        await asyncio.sleep(float(args.get("delay", 1)))
        await send_json(send, describe(scope))
    else:
        while (await receive()).get("more_body"):  # drain the request body, if any
            pass
        await send_json(send, describe(scope))
