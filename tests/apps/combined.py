"""One app for most protocol tests: routes by the first path segment, scope untouched.

  /stream /slow /raise /pieces /disconnect /big /pathsend   -> the module of that name
  /noread                                                   -> 200 "ok" without reading the body
  anything else                                             -> echo
"""

from tests.apps import big, disconnect, echo, pathsend, pieces, raises, slow, stream
from tests.apps._util import lifespan_noop, send_bytes

ROUTES = {
    "stream": stream.app,
    "slow": slow.app,
    "raise": raises.app,
    "pieces": pieces.app,
    "disconnect": disconnect.app,
    "big": big.app,
    "pathsend": pathsend.app,
}


async def noread(scope, receive, send):
    await send_bytes(send, b"ok")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    first = path.lstrip("/").split("/", 1)[0]
    if first == "noread":
        await noread(scope, receive, send)
        return
    await ROUTES.get(first, echo.app)(scope, receive, send)
