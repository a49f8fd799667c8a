"""The pool-thread side of a WSGICycle: the app call, start_response, write() and the iterable.

Nothing here touches the connection or the http layer: results go to the loop thread as
`post(fn, arg)` actions (cycle.py). See cycle.py for which side writes which field.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from typing import Any, Callable

from ringserve.asgi import BODY_HIGH_WATER

from .environ import FileWrapper, build_environ
from .input import ClientDisconnected

logger = logging.getLogger("ringserve.error")

END = 1  # the last action of a response
WINDOW = 256 * 1024  # response bytes a thread may run ahead of the loop
_local = threading.local()  # each pool thread's Event, reused for every wait
_STATUS: dict[str, int] = {}


class AppSide:
    """Mixed into WSGICycle; these methods run on a pool thread."""

    __slots__ = ()

    def call(self) -> None:
        """The whole request on a pool thread; ends with exactly one final post."""
        result = None
        try:
            result = self.wsgi(build_environ(self), self.start_response)
            final = self.respond(result)
        except BaseException as exc:
            final = self.failure(exc)
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as exc:
                logger.error("Exception closing the WSGI response iterable", exc_info=exc)
        self.post(*final)

    def failure(self, exc: BaseException) -> tuple:
        if self.disconnected:  # ClientDisconnected, or whatever the app made of it
            logger.debug("WSGI request ended by a disconnect: %r", exc)
            return self.finish, None
        logger.error("Exception in WSGI application", exc_info=exc)
        return self.fail_and_finish, None

    def respond(self, result: Any) -> tuple:
        """Send the app's iterable; return the final action."""
        if type(result) is list or type(result) is tuple:
            if len(result) == 1 and type(result[0]) is bytes:
                body = result[0]
            else:
                body = b"".join(result)
            if self.left is not None:
                body = self.clip(body)
            return self.out, (self.head(), body, END)
        if type(result) is FileWrapper:
            final = self.respond_file(result)
            if final is not None:
                return final
        send = self.send
        for block in result:
            if type(block) is not bytes:
                raise TypeError(f"the WSGI iterable yielded {type(block).__name__}, not bytes")
            if block:
                send(block)
            elif self.disconnected:
                raise ClientDisconnected("client disconnected")
        return self.out, (self.head(), b"", END)

    def respond_file(self, wrapper: FileWrapper) -> tuple | None:
        """Hand a real file to the loop to splice; None to send it block by block instead."""
        fd = _regular_fd(wrapper.filelike)
        if fd is None:
            return None
        head = self.head()
        tell = getattr(wrapper.filelike, "tell", None)
        offset = tell() if tell is not None else 0
        count = max(0, os.fstat(fd).st_size - offset)
        if self.left is not None:
            count = min(count, self.left)
        self.post(self.send_file, (head, fd, offset, count))
        self.wait(lambda: self.file_done)  # the file must stay open until the splices are done
        return self.finish, None

    def head(self) -> tuple | None:
        """The head to post with the first block (None once posted)."""
        if self.head_posted:
            return None
        if self.out_headers is None:
            raise RuntimeError("the WSGI application did not call start_response()")
        self.head_posted = True
        return self.status_code, self.out_headers

    def clip(self, data: bytes) -> bytes:
        """Never send more than the app's Content-Length (gunicorn does the same)."""
        left = self.left
        if len(data) > left:
            data = data[:left]
        self.left = left - len(data)
        return data

    def send(self, data: bytes) -> None:
        """Post one non-empty body block; block while the loop is WINDOW bytes behind."""
        if self.left is not None:
            data = self.clip(data)
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if not data:
            return
        head = self.head()
        self.posted += len(data)
        self.post(self.out, (head, data, 0))
        if self.posted - self.released > WINDOW:
            self.wait(lambda: self.posted - self.released <= WINDOW or self.disconnected)
            if self.disconnected:
                raise ClientDisconnected("client disconnected")

    def write(self, data: bytes) -> None:
        """The write() callable start_response returns (PEP 3333: for legacy apps)."""
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if self.out_headers is None:
            raise AssertionError("write() before start_response()")
        if data:
            self.send(data)

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        if exc_info is not None:
            try:
                if self.head_posted:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.out_headers is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        code = _STATUS.get(status) if type(status) is str else None
        if code is None:
            code = _parse_status(status)
        self.out_headers, self.left = _encode_headers(headers)
        self.status_code = code
        return self.write

    def wait(self, ready: Callable[[], bool]) -> None:
        """Sleep until ready(), woken by the loop through `waiter`."""
        if ready():
            return
        event = getattr(_local, "event", None)
        if event is None:
            event = _local.event = threading.Event()
        while True:
            event.clear()
            self.waiter = event
            if ready():
                break
            event.wait()
        self.waiter = None

    # -- the request body, for wsgi.input ----------------------------------------------------

    def take(self) -> bytes | None:
        """The next body chunk, waiting for it; None at the end of the body."""
        chunks = self.chunks
        while True:
            ended = not self.more_body  # read before chunks: the loop appends, then ends
            if chunks:
                chunk = chunks.popleft()
                self.consumed += len(chunk)
                self.ask_resume()
                return chunk
            if ended:
                return None
            if self.disconnected:
                raise ClientDisconnected("client disconnected before the end of the request body")
            if not self.continued:
                self.continued = True
                if self.request.expect_continue:
                    self.post(self.send_continue, None)
            self.ask_resume()
            self.wait(lambda: bool(chunks) or not self.more_body or self.disconnected)

    def ask_resume(self) -> None:
        if self.paused and not self.resume_asked and self.received - self.consumed <= BODY_HIGH_WATER // 2:
            self.resume_asked = True
            self.post(self.resume, None)


def _parse_status(status: Any) -> int:
    if type(status) is not str:
        raise TypeError(f"status must be a str like '200 OK', not {type(status).__name__}")
    code = status[:3]
    if not (code.isdigit() and code.isascii()) or status[3:4] not in ("", " ") or int(code) < 100:
        raise ValueError(f"invalid WSGI status {status!r}; want e.g. '200 OK'")
    if len(_STATUS) < 1024:
        _STATUS[status] = int(code)
    return int(code)


def _encode_headers(headers: Any) -> tuple[list, int | None]:
    """[(str, str)] -> ([(bytes, bytes)], Content-Length or None); raises for bad types."""
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    out = []
    length = None
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header names and values must be str: {name!r}: {value!r}")
        if len(name) == 14 and name.lower() == "content-length" and value.isdigit():
            length = int(value)
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out, length


def _regular_fd(filelike: Any) -> int | None:
    try:
        fd = filelike.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError, TypeError):
        return None
