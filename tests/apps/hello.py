"""The smallest useful app: `./scripts/serve.sh` falls back to it."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        from tests.apps._util import lifespan_noop

        await lifespan_noop(receive, send)
        return
    if scope["type"] != "http":
        return
    body = b"Hello, world!\n"
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
