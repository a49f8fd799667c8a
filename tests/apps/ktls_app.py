"""ASGI app for the kernel-TLS tests (tests/ktls_guest.py), routed by the first path segment.

  /info      drain the request body, then JSON: "ktls" (scope["extensions"]["ringserve.ktls"], null when
             absent), "tls_version" and "cipher_suite" (from the ASGI tls extension), "pid" (the process
             serving the request, so the test can find the server's socket), "http_version"
  /upload    the /info JSON plus "size" and "sha256" of the request body
  /big       tests/apps/big.py (size=N bytes, x-sha256 header)
  /pathsend  tests/apps/pathsend.py (path=P: the file, by http.response.pathsend when offered)
  websocket  accepts, sends the /info JSON as text, then echoes until the client leaves
"""

from __future__ import annotations

import json
import os

from tests.apps import big, pathsend
from tests.apps._util import hash_body, lifespan_noop, send_json, ws_echo


def info(scope) -> dict:
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls") or {}
    ktls = extensions.get("ringserve.ktls")
    return {
        "ktls": dict(ktls) if ktls is not None else None,
        "tls_version": tls.get("tls_version"),
        "cipher_suite": tls.get("cipher_suite"),
        "pid": os.getpid(),
        "http_version": scope.get("http_version"),
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(info(scope))})
        await ws_echo(receive, send)
        return
    route = scope["path"].lstrip("/").split("/", 1)[0]
    if route == "big":
        await big.app(scope, receive, send)
        return
    if route == "pathsend":
        await pathsend.app(scope, receive, send)
        return
    hashed = await hash_body(receive)
    if hashed is None:
        return  # the client went away
    payload = info(scope)
    if route == "upload":
        payload.update(size=hashed[0], sha256=hashed[1])
    await send_json(send, payload)
