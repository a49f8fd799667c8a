"""Raw ASGI apps: no framework, so the server's own cost dominates.

plaintext: GET -> 200 "Hello, world!" (13 bytes)
big:       GET -> 200 with a 1 MiB body, sent in one message
echo:      POST -> 200 echoing the request body (the benchmark sends 64 KiB)
"""

HELLO = b"Hello, world!"
BIG = b"x" * (1 << 20)


def _start(length, content_type=b"text/plain"):
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", content_type), (b"content-length", str(length).encode())],
    }


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def plaintext(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send(_start(len(HELLO)))
    await send({"type": "http.response.body", "body": HELLO})


async def big(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send(_start(len(BIG), b"application/octet-stream"))
    await send({"type": "http.response.body", "body": BIG})


async def echo(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    await send(_start(len(body), b"application/octet-stream"))
    await send({"type": "http.response.body", "body": body})
