"""ASGI app for the kernel-TLS tests (tests/ktls_guest.py), routed by the first path segment.

  /info      drain the request body, then JSON: "ktls" (scope["extensions"]["ringserve.ktls"], null when
             absent), "tls_version" and "cipher_suite" (from the ASGI tls extension), "pid" (the process
             serving the request, so the test can find the server's socket), "http_version"
  /upload    the /info JSON plus "size" and "sha256" of the request body
  /big       tests/apps/big.py (size=N bytes, x-sha256 header)
  /pathsend  tests/apps/pathsend.py (path=P: the file, by http.response.pathsend when offered)
  websocket  accepts, sends the /info JSON as text, then echoes text until the client leaves
"""

from __future__ import annotations

import hashlib
import json
import os

from tests.apps import big, pathsend
from tests.apps._util import lifespan_noop, send_json


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
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    route = scope["path"].lstrip("/").split("/", 1)[0]
    if route == "big":
        await big.app(scope, receive, send)
        return
    if route == "pathsend":
        await pathsend.app(scope, receive, send)
        return
    digest, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        body = message.get("body", b"")
        digest.update(body)
        size += len(body)
        if not message.get("more_body", False):
            break
    payload = info(scope)
    if route == "upload":
        payload.update(size=size, sha256=digest.hexdigest())
    await send_json(send, payload)
