"""A bounded pool of threads for blocking apps, and the one way back to the loop thread.

Theory of operation
-------------------
The ring is SINGLE_ISSUER: only the loop thread may touch it, so a pool thread never calls a
Connection. It `post()`s (function, argument) pairs instead, and the loop thread runs them, in
order, in `flush()`.

- Jobs reach the threads through one SimpleQueue (a C queue; put() never blocks); `size`
  threads block in get(). Nothing else bounds the queue: it holds at most one job per request
  the connections have admitted.
- Actions come back through a deque (append and popleft are atomic under the GIL) and ONE
  `loop.call_soon_threadsafe(flush)` per batch: only a post() that finds no flush scheduled
  schedules one, so completions from many threads between two loop iterations share a single
  wake-up (on the ring's loop an eventfd write, and no syscall on the loop thread: loop.py).
- `scheduled` is written by both sides without a lock, and the order makes that safe: post()
  appends before it reads the flag; flush() clears the flag before it drains the deque. A post()
  that sees True is covered by a flush that has not cleared it yet, so it will see the item. Two
  posts that both see False schedule two flushes; the second finds the deque empty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from queue import SimpleQueue
from typing import Any, Callable

logger = logging.getLogger("ringserve.error")


class ThreadPool:
    """`size` threads running submitted callables; `post()` hands work back to the loop thread."""

    def __init__(self, loop: Any, size: int, name: str = "ringserve-worker") -> None:
        self.loop = loop
        self.size = size
        self.name = name
        self.jobs: SimpleQueue = SimpleQueue()
        self.submit: Callable[[Callable[[], None]], None] = self.jobs.put  # loop thread
        self.actions: deque = deque()
        self.scheduled = False
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _work(self) -> None:
        get = self.jobs.get
        while True:
            job = get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # a job handles its own errors; this is a bug, keep the thread
                logger.exception("Unexpected error in a pool thread")
            job = None  # don't keep the last request alive while idle

    # -- pool thread -> loop thread ------------------------------------------------

    def post(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run fn(arg) on the loop thread soon (callable from any thread)."""
        self.actions.append((fn, arg))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.flush)
            except RuntimeError:  # the loop is closed: the server has stopped
                pass

    def flush(self) -> None:
        self.scheduled = False
        actions = self.actions
        pop = actions.popleft
        while actions:
            fn, arg = pop()
            try:
                fn(arg)
            except Exception:
                logger.exception("Unexpected error handing a pool thread's work to the loop")

    # -- life cycle -------------------------------------------------------------------

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask every thread to finish after its current job; wait up to timeout_s in all."""
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + timeout_s
        busy = 0
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            busy += thread.is_alive()
        if busy:
            logger.warning("%d pool thread(s) still running application code at exit.", busy)
        self.threads.clear()
