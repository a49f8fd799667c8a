"""WSGI pieces that need no server: wsgi.input over any chunking, interface detection, the thread pool."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from ringserve.threadpool import ThreadPool
from ringserve.wsgi import ClientDisconnected, InputStream, detect_interface

BODY = b"".join(b"line %d %s\n" % (i, b"x" * (i % 13)) for i in range(400)) + b"no newline at the end"


def splits(data: bytes):
    """The body whole, one byte at a time, and in random pieces (some empty)."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(1234)
    for _ in range(5):
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 40)))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def stream(chunks) -> InputStream:
    queue = list(chunks)
    return InputStream(lambda: queue.pop(0) if queue else None)


@pytest.mark.parametrize("chunks", list(splits(BODY)), ids=lambda c: f"{len(c)}-chunks")
def test_reads_of_every_kind_give_the_body(chunks):
    assert stream(chunks).read() == BODY
    assert stream(chunks).read(-1) == BODY
    assert stream(chunks).read(None) == BODY
    assert b"".join(stream(chunks).readlines()) == BODY
    assert b"".join(stream(chunks)) == BODY
    s = stream(chunks)
    assert b"".join(iter(lambda: s.read(97), b"")) == BODY
    s = stream(chunks)
    assert b"".join(iter(lambda: s.readline(10), b"")) == BODY


@pytest.mark.parametrize("chunks", list(splits(BODY))[:3], ids=lambda c: f"{len(c)}-chunks")
def test_lines_are_lines(chunks):
    lines = stream(chunks).readlines()
    assert lines == BODY.splitlines(keepends=True)
    s = stream(chunks)
    assert s.readline(3) == b"lin"
    assert s.readline() == b"e 0 \n"
    assert s.readline(0) == b""
    assert s.read(0) == b""


def test_readlines_hint_stops_early():
    lines = stream([BODY]).readlines(20)
    assert 1 <= len(lines) <= 3 and b"".join(lines) == BODY[:len(b"".join(lines))]


def test_after_the_end_reads_are_empty():
    s = stream([b"abc"])
    assert s.read(10) == b"abc"
    assert s.read(10) == b"" and s.readline() == b"" and s.read() == b""


def test_a_disconnect_surfaces_as_an_oserror():
    def take():
        raise ClientDisconnected("gone")

    with pytest.raises(OSError):
        InputStream(take).read(10)


async def asgi3(scope, receive, send):
    pass


class ASGIClass:
    async def __call__(self, scope, receive, send):
        pass


class ASGI2:
    def __init__(self, scope):
        pass


def wsgi(environ, start_response):
    return []


class WSGIObject:
    def __call__(self, environ, start_response):
        return []


class WSGIClass:
    def __init__(self, environ, start_response):
        pass

    def __iter__(self):
        return iter([])


@pytest.mark.parametrize(("app", "kind"), [
    (asgi3, "asgi"), (ASGIClass(), "asgi"), (ASGI2, "asgi"),
    (wsgi, "wsgi"), (WSGIObject(), "wsgi"), (WSGIClass, "wsgi"), (lambda *args: [], "wsgi"),
])
def test_detect_interface(app, kind):
    assert detect_interface(app) == kind


def test_detect_interface_on_the_frameworks():
    validate = pytest.importorskip("wsgiref.validate")
    assert detect_interface(validate.validator(wsgi)) == "wsgi"
    django_wsgi = pytest.importorskip("django.core.handlers.wsgi")
    django_asgi = pytest.importorskip("django.core.handlers.asgi")
    assert detect_interface(object.__new__(django_wsgi.WSGIHandler)) == "wsgi"
    assert detect_interface(object.__new__(django_asgi.ASGIHandler)) == "asgi"


def test_pool_batches_posts_into_few_wakeups():
    loop = asyncio.new_event_loop()
    try:
        pool = ThreadPool(loop, 4)
        scheduled = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: (scheduled.append(1), real(*a))[1]  # type: ignore[method-assign]
        pool.start()
        seen: list[int] = []
        for i in range(200):
            pool.submit(lambda i=i: pool.post(seen.append, i))
        deadline = time.monotonic() + 5
        while len(seen) < 200 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert sorted(seen) == list(range(200))
        assert len(scheduled) < 200  # wakeups were shared
        pool.stop()
        assert not pool.threads
    finally:
        loop.close()
