"""A raw PEP 3333 app for the WSGI tests (standard library only), routed by the first path segment.

`app` is the app; `validated` is the same app inside wsgiref.validate.validator, with the
validator's WSGIWarning turned into an error so a lapse fails the request (and shows in the log).
Every route is written to pass the validator (wsgi.input.read always gets a size, every response
has a content-type), so both run the same tests.

  /environ                  JSON: every str environ value, plus the wsgi.* facts the tests check
  /body?mode=chunks|lines|all|readlines  JSON: length and sha256 of wsgi.input, read that way
                            (all = read() without a size: not validator-safe)
  /upload?delay=S           read 64 KiB at a time, hashing, sleeping S per read: JSON size/sha256
  /write                    the legacy write() callable, then one block from the iterable
  /gen?id=K&n=N             a generator of N blocks whose close() is recorded under K
  /endless?id=K             blocks every 10 ms until the client goes away; close() recorded under K
  /closed?id=K&timeout=S    JSON {"closed": bool}: waits up to S for K's close()
  /big?size=N               N bytes in 64 KiB blocks from a generator (x-sha256 header)
  /raise?when=before|after|iter&msg=M   RuntimeError(M) before start_response / after a block
  /excinfo?mode=replace|after|twice     start_response's exc_info rules
  /file?path=P&offset=O&cl=N&blksize=B  wsgi.file_wrapper over the open file (optional seek,
                            optional Content-Length)
  /sleep?s=S                time.sleep(S), then "slept"
  /bad?what=header|notbytes|close   an invalid response (not for the validator): a CR/LF in a header
                            value, a str block, or a close() that raises after a good response
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import urllib.parse
import warnings
from wsgiref.validate import WSGIWarning, validator

from tests.apps import big

warnings.simplefilter("error", WSGIWarning)

_closed: dict[str, threading.Event] = {}
_lock = threading.Lock()


def _event(key: str) -> threading.Event:
    with _lock:
        return _closed.setdefault(key, threading.Event())


def _query(environ) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))


def _json(start_response, payload, status="200 OK"):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _text(start_response, body: bytes, status="200 OK", length=True):
    headers = [("Content-Type", "text/plain")]
    if length:
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


def environ_view(environ, start_response):
    out = {k: v for k, v in environ.items() if type(v) is str}
    out["wsgi"] = {
        "version": list(environ["wsgi.version"]),
        "url_scheme": environ["wsgi.url_scheme"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_terminated": environ.get("wsgi.input_terminated"),
        "file_wrapper": callable(environ.get("wsgi.file_wrapper")),
        "errors": all(hasattr(environ["wsgi.errors"], a) for a in ("write", "writelines", "flush")),
    }
    environ["wsgi.errors"].write("environ viewed\n")
    environ["wsgi.errors"].flush()
    return _json(start_response, out)


def body_view(environ, start_response):
    stream, mode = environ["wsgi.input"], _query(environ).get("mode", "chunks")
    digest, size, reads = hashlib.sha256(), 0, 0
    if mode == "all":
        pieces = [stream.read()]
    elif mode == "lines":
        pieces = iter(stream.readline, b"")
    elif mode == "readlines":
        pieces = stream.readlines()
    else:
        pieces = iter(lambda: stream.read(7919), b"")  # an odd size: splits chunks anywhere
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
        reads += 1
    payload = {"size": size, "sha256": digest.hexdigest(), "reads": reads,
               "content_length": environ.get("CONTENT_LENGTH"), "content_type": environ.get("CONTENT_TYPE")}
    return _json(start_response, payload)


def upload(environ, start_response):
    stream, delay = environ["wsgi.input"], float(_query(environ).get("delay", 0))
    digest, size = hashlib.sha256(), 0
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
        if delay:
            time.sleep(delay)
    return _json(start_response, {"size": size, "sha256": digest.hexdigest()})


def write_view(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one ")
    write(b"")
    write(b"two ")
    return [b"three"]


class Recorded:
    """An iterable whose close() is recorded, so tests can see that the server called it."""

    def __init__(self, key: str, blocks, pause: float = 0.0):
        self.key, self.blocks, self.pause = key, blocks, pause

    def __iter__(self):
        for block in self.blocks:
            if self.pause:
                time.sleep(self.pause)
            yield block

    def close(self):
        _event(self.key).set()


def gen_view(environ, start_response):
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Recorded(q["id"], [b"block %d\n" % i for i in range(int(q.get("n", 3)))])


def endless_view(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    block = b"x" * 16384
    return Recorded(_query(environ)["id"], iter(lambda: block, None), pause=0.01)


def closed_view(environ, start_response):
    q = _query(environ)
    closed = _event(q["id"]).wait(float(q.get("timeout", 5)))
    return _json(start_response, {"closed": closed})


def big_view(environ, start_response):
    size = int(_query(environ).get("size", 8 * 1024 * 1024))
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size)),
                              ("X-Sha256", big.digest(size))])
    return big.chunks(size)


def raise_view(environ, start_response):
    q = _query(environ)
    when, msg = q.get("when", "before"), q.get("msg", "boom")
    if when == "before":
        raise RuntimeError(msg)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def blocks():
        yield b"partial-10"
        raise RuntimeError(msg)

    return blocks()


def excinfo_view(environ, start_response):
    mode = _query(environ).get("mode", "replace")
    headers = [("Content-Type", "text/plain")]
    if mode == "twice":
        start_response("200 OK", headers)
        try:
            start_response("201 Created", headers)
        except Exception as exc:
            return [b"second call raised " + type(exc).__name__.encode()]
        return [b"second call accepted"]
    start_response("200 OK", headers)
    if mode == "replace":  # nothing sent yet: the error response replaces the first
        try:
            raise ValueError("replace me")
        except ValueError:
            start_response("500 Internal Server Error", headers + [("X-Replaced", "yes")], sys.exc_info())
        return [b"replaced"]

    def blocks():  # mode == "after": a block has gone out, so start_response must re-raise
        yield b"first block"
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", headers, sys.exc_info())
        yield b"never sent"

    return blocks()


def file_view(environ, start_response):
    q = _query(environ)
    f = open(q["path"], "rb")
    if "offset" in q:
        f.seek(int(q["offset"]))
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, int(q.get("blksize", 8192)))


def sleep_view(environ, start_response):
    time.sleep(float(_query(environ).get("s", 1)))
    return _text(start_response, b"slept")


def bad_view(environ, start_response):
    what = _query(environ).get("what", "header")
    if what == "header":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nInjected: yes")])
        return [b"should not be sent"]
    if what == "notbytes":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return CloseRaises([b"closed badly"])


class CloseRaises(list):
    def close(self):
        raise RuntimeError("close-raises")


ROUTES = {
    "environ": environ_view, "body": body_view, "upload": upload, "write": write_view, "gen": gen_view,
    "endless": endless_view, "closed": closed_view, "big": big_view, "raise": raise_view,
    "excinfo": excinfo_view, "file": file_view, "sleep": sleep_view, "bad": bad_view,
}


def app(environ, start_response):
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, environ_view)(environ, start_response)


validated = validator(app)
