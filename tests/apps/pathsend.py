"""Serve a file with the `http.response.pathsend` extension when the server advertises it.

Query: path (absolute path of the file). Header x-pathsend: 1 when the extension was used,
0 when the app fell back to reading the file and sending it as body.
"""

import os

from tests.apps._util import lifespan_noop, query


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    path = query(scope)["path"]
    size = os.path.getsize(path)
    use_pathsend = "http.response.pathsend" in (scope.get("extensions") or {})
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode()),
            (b"x-pathsend", b"1" if use_pathsend else b"0"),
        ],
    })
    if use_pathsend:
        await send({"type": "http.response.pathsend", "path": path})
        return
    with open(path, "rb") as f:
        while True:
            data = f.read(64 * 1024)
            await send({"type": "http.response.body", "body": data, "more_body": bool(data)})
            if not data:
                break
