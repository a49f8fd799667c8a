"""WSGI app for the gunicorn worker tests (standard library only).

  /          'hello' with x-pid: the worker's pid
  /environ   JSON: wsgi.multithread, wsgi.multiprocess, wsgi.url_scheme, REMOTE_ADDR, SCRIPT_NAME
  /sleep?s=S time.sleep(S) on the pool thread, then 'slept'
"""

import json
import os
import time
import urllib.parse


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = b"hello"
    if path == "/environ":
        keys = ("wsgi.multithread", "wsgi.multiprocess", "wsgi.url_scheme", "REMOTE_ADDR", "SCRIPT_NAME")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
    elif path == "/sleep":
        time.sleep(float(urllib.parse.parse_qs(environ["QUERY_STRING"]).get("s", ["0.1"])[0]))
        body = b"slept"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("X-Pid", str(os.getpid()))])
    return [body]
