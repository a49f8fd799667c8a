"""gunicorn settings for the worker tests (`-c python:tests.apps.gunicorn_hooks`): every server
hook below prints 'HOOK <name> <pid>' to stderr, so a test can see which ran, where and how often.
pre_request is set on purpose: ringserve.Worker does not call it and must say so at start."""

import os
import sys


def _say(name: str) -> None:
    print(f"HOOK {name} {os.getpid()}", file=sys.stderr, flush=True)


def when_ready(server):
    _say("when_ready")


def post_fork(server, worker):
    _say("post_fork")


def post_worker_init(worker):
    _say("post_worker_init")


def worker_int(worker):
    _say("worker_int")


def worker_abort(worker):
    _say("worker_abort")


def worker_exit(server, worker):
    _say("worker_exit")


def pre_request(worker, req):
    _say("pre_request")
