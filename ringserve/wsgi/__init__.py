"""WSGI (PEP 3333) on the io_uring core: the same connections and sans-IO HTTP layer as ASGI, the app
on a bounded thread pool.

  __init__.py  WSGIApp (what resolve_interface() returns for a WSGI app), PoolLife, detect_interface
  cycle.py     WSGICycle: one request; its loop side, the only code that touches the connection
  appside.py   the same cycle's pool-thread side: start_response, write(), the iterable, close()
  environ.py   the environ, FileWrapper (wsgi.file_wrapper)
  input.py     InputStream (wsgi.input), ClientDisconnected
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ringserve.threadpool import ThreadPool

from .cycle import WSGICycle
from .environ import FileWrapper
from .input import ClientDisconnected, InputStream

__all__ = ["ClientDisconnected", "FileWrapper", "InputStream", "PoolLife", "WSGIApp", "WSGICycle",
           "detect_interface"]

logger = logging.getLogger("ringserve.error")


class WSGIApp:
    """A WSGI callable chosen by resolve_interface(); bind() makes what the server runs it with."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def bind(self, config: Any, loop: Any) -> tuple[type, "PoolLife"]:
        """(cycle class, lifespan stand-in that starts and stops the thread pool)."""
        pool = ThreadPool(loop, config.threads, "ringserve-wsgi")
        root = config.root_path.encode("utf-8").decode("latin-1")  # a WSGI "native string"
        base = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": config.threads > 1,
            "wsgi.multiprocess": config.workers > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": "ringserve",
            "SCRIPT_NAME": root,
        }
        attrs = {"submit": staticmethod(pool.submit), "post": staticmethod(pool.post),
                 "wsgi": staticmethod(self.app), "base": base, "root": root}
        return type("WSGICycle", (WSGICycle,), attrs), PoolLife(pool)


class PoolLife:
    """Stands in for ASGI lifespan (WSGI has none): the thread pool lives as long as the server."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    async def startup(self) -> bool:
        self.pool.start()
        logger.info("WSGI: %d thread(s) per worker", self.pool.size)
        return True

    async def shutdown(self) -> None:
        self.pool.stop()


def detect_interface(app: Any) -> str:
    """"asgi" or "wsgi". Async callables are ASGI 3; a sync one taking exactly one (ASGI 2's scope)
    or three positional arguments is ASGI; any other sync callable, WSGI (environ, start_response)."""
    if getattr(app, "_asgi_single_callable", False) or getattr(app, "_asgi_double_callable", False):
        return "asgi"
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None)):
        return "asgi"
    try:
        params = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        return "wsgi"
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "wsgi"  # e.g. wsgiref.validate.validator(app)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is p.empty]
    return "asgi" if len(required) in (1, 3) else "wsgi"
