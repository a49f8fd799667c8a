"""An asyncio event loop whose selector is the io_uring ring.

Theory of operation
-------------------
asyncio.SelectorEventLoop calls `selector.select(timeout)` once per iteration.
Here that call is ONE io_uring_enter that submits every SQE prepared since the
last iteration (sends, re-armed receives, polls) and waits for completions.

- Descriptors asyncio registers (its self-pipe, which now carries only signal
  numbers, a database driver's socket) get one-shot POLL_ADD requests, re-armed on every select()
  while they stay registered: the level-triggered contract asyncio expects.
- Every other completion belongs to the server: select() hands the whole batch
  to `self.dispatch` (one call per batch), which gives the poll and wake-up
  completions back (`polled`, `woken`) as it meets them; select() then returns
  the poll events. Callbacks the server schedules run in the same loop iteration.
- Other threads wake the loop (`call_soon_threadsafe`: asgiref's sync_to_async,
  run_in_executor, the WSGI pool) through an eventfd the ring keeps a read on:
  the waking thread writes it only if no wake-up is pending yet (uvloop's
  uv_async_send coalesces the same way), and the loop thread makes no syscall to
  be woken. asyncio's self-pipe costs a send() per call_soon_threadsafe on the
  calling thread and a recv() with the GIL released on the loop thread (an
  opening for the very threads that woke it), and when threads fill it, the
  byte of a signal arriving then is dropped. Should the eventfd read ever fail,
  call_soon_threadsafe goes back to the self-pipe.

With DEFER_TASKRUN the kernel posts completions only when this thread enters
the ring, which it does in every select(), so nothing is left waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
from typing import Any, Callable

from ringserve.core.ring import OP_CANCEL, OP_CLOSE, OP_POLL, OP_WAKE, Ring

POLLIN = 0x001
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010

logger = logging.getLogger("ringserve.error")

Dispatch = Callable[[list], None]
_Task = asyncio.Task
# asyncio.current_task(loop) is a Python function over this dict on 3.11 (C from 3.12): use the dict
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
if isinstance(_current_tasks, dict):
    _current_task = _current_tasks.get
else:  # pragma: no cover - a Python that keeps current tasks elsewhere
    _current_task = asyncio.current_task
TASK_NAME = "ringserve.cycle"  # one name for every request task: no "Task-<n>" formatted per request


class RingSelector(selectors.BaseSelector):
    """selectors API over one-shot io_uring polls; server CQEs go to `dispatch`."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.dispatch: Dispatch = self.dispatch_own  # until the server installs itself
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._armed: dict[int, int] = {}  # fd -> poll token in flight
        self._tokens: dict[int, int] = {}  # token -> fd
        self._next_token = 1
        self._ready: list = []  # (key, events) of the select() under way
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        # the read's target: lives as long as this selector, which the loop and the backend's hub
        # keep until after backend.settle() has reaped the read's last CQE
        self._wake_buf = ring.ffi.new("uint64_t *")
        self.wake_pending = False
        self.waker_ok = True  # False: call_soon_threadsafe uses asyncio's self-pipe (see woken)
        self._arm_wake()

    # -- registration ---------------------------------------------------------

    def register(self, fileobj, events, data=None):
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        key = self._keys.pop(fd)
        self._disarm(fd)
        return key

    def modify(self, fileobj, events, data=None):
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        old = self._keys.get(fd)
        if old is None:
            raise KeyError(f"{fileobj!r} is not registered")
        if old.events != events:
            self.unregister(fileobj)
            return self.register(fileobj, events, data)
        key = old._replace(data=data)
        self._keys[fd] = key
        return key

    def get_map(self):
        return self._keys

    def get_key(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        return self._keys[fd]

    def close(self) -> None:
        for fd in list(self._armed):
            self._disarm(fd)
        self._keys.clear()
        fd, self._wake_fd = self._wake_fd, -1
        if fd < 0:
            return
        if self.ring.closed:  # the ring went first: its read died with it
            os.close(fd)
        else:  # cancels the pending read, then closes; _wake_buf outlives both
            self.ring.close_fd(fd, OP_CLOSE)

    # -- wake-ups from other threads -------------------------------------------

    def wake(self) -> None:
        """Make select() return soon (any thread). Coalesced: a wake-up still pending covers us,
        because woken() clears the flag before the loop runs its ready callbacks: a thread that
        saw True queued its callback before that, and the loop will see it."""
        if not self.wake_pending:
            self.wake_pending = True
            fd = self._wake_fd
            if fd >= 0:
                try:
                    os.eventfd_write(fd, 1)
                except OSError:  # closed meanwhile (as asyncio's _write_to_self, say nothing)
                    pass

    def woken(self, res: int) -> None:
        """The eventfd read completed: allow the next wake-up, and read again."""
        self.wake_pending = False
        if self._wake_fd < 0:
            return  # closing: this was the read's cancellation
        if res < 0:
            logger.warning("Reading the loop's wake-up eventfd failed (%s); threads wake the loop "
                           "through asyncio's self-pipe from now on.", os.strerror(-res))
            self.waker_ok = False
            return
        self._arm_wake()

    def _arm_wake(self) -> None:
        ret = self.ring.read(self._wake_fd, self._wake_buf, 8, OP_WAKE)
        if ret < 0:  # no SQE even after a submit: never seen, but a lost wake-up would hang the loop
            logger.warning("Could not queue the read of the loop's wake-up eventfd (%s); threads "
                           "wake the loop through asyncio's self-pipe from now on.", os.strerror(-ret))
            self.waker_ok = False

    # -- polling ----------------------------------------------------------------

    def _arm(self, fd: int, events: int) -> None:
        token = self._next_token
        self._next_token += 1
        mask = (POLLIN if events & selectors.EVENT_READ else 0) | (
            POLLOUT if events & selectors.EVENT_WRITE else 0
        )
        self._armed[fd] = token
        self._tokens[token] = fd
        self.ring.poll(fd, mask, (token << 8) | OP_POLL)

    def _disarm(self, fd: int) -> None:
        token = self._armed.pop(fd, None)
        if token is not None:
            self._tokens.pop(token, None)
            self.ring.cancel((token << 8) | OP_POLL, OP_CANCEL)

    def select(self, timeout=None):
        keys = self._keys
        if len(self._armed) != len(keys):
            for fd, key in keys.items():
                if fd not in self._armed:
                    self._arm(fd, key.events)
        if timeout is None:
            timeout_ns = -1
        elif timeout <= 0:
            timeout_ns = 0
        else:
            timeout_ns = int(timeout * 1e9) or 1
        cqes = self.ring.wait(timeout_ns)
        if not cqes:
            return []
        self.dispatch(cqes)  # calls polled() and woken() for ours
        ready = self._ready
        if ready:
            self._ready = []
        return ready

    def dispatch_own(self, cqes: list) -> None:
        """The dispatch before a server installs its own (which passes these two kinds back)."""
        for i in range(0, len(cqes), 3):
            op = cqes[i] & 0xFF
            if op == OP_POLL:
                self.polled(cqes[i], cqes[i + 1])
            elif op == OP_WAKE:
                self.woken(cqes[i + 1])

    def polled(self, ud: int, res: int) -> None:
        """A one-shot poll completed: note the descriptor's events for this select()."""
        fd = self._tokens.pop(ud >> 8, None)
        if fd is None:
            return  # cancelled: the descriptor was unregistered
        del self._armed[fd]
        key = self._keys.get(fd)
        if key is None or res < 0:
            return
        events = 0
        if res & (POLLIN | POLLERR | POLLHUP):
            events |= selectors.EVENT_READ
        if res & (POLLOUT | POLLERR | POLLHUP):
            events |= selectors.EVENT_WRITE
        events &= key.events
        if events:
            self._ready.append((key, events))


class RingEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, driven by the ring; `loop.ring` is the Ring."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.ring_selector = RingSelector(ring)
        self._eager = False
        super().__init__(self.ring_selector)

    def _write_to_self(self) -> None:
        """call_soon_threadsafe's wake-up: the ring's eventfd instead of asyncio's self-pipe."""
        if self.ring_selector.waker_ok:
            self.ring_selector.wake()
        else:
            super()._write_to_self()

    def create_eager_task(self, coro: Any) -> asyncio.Task:
        """A Task whose first step runs now, inside this call, as Python 3.12's eager tasks do.

        Task.__init__ schedules its first step with loop.call_soon() once the task is fully set
        up; in eager mode that one call runs the step at once instead (the task is current while
        it runs, so asyncio.current_task(), anyio and sniffio see a real task). An app that
        finishes without waiting costs no Handle and no loop round trip."""
        if self._task_factory is not None or _current_task(self) is not None:
            # a custom factory decides what a task is; inside another task a step can't nest
            return self.create_task(coro)
        self._eager = True
        try:
            return _Task(coro, loop=self, name=TASK_NAME)
        finally:
            self._eager = False

    def call_soon(self, callback, *args, context=None):
        if self._eager:
            # The new task's first step (the only call_soon in Task.__init__). It runs here,
            # without a Handle: Task.__step catches what the coroutine raises, and what it
            # re-raises (SystemExit, KeyboardInterrupt) a Handle would re-raise too.
            self._eager = False
            if context is None:
                callback(*args)
            else:
                context.run(callback, *args)
            return None
        return super().call_soon(callback, *args, context=context)


class EventfdDriver:
    """Drive the ring from a loop we do not own (uvloop): readiness of an eventfd.

    The eventfd registered with the ring wakes the loop when completions may be
    ready; `run()` then submits and reaps in one io_uring_enter.  Requests
    prepared outside `run()` (a response sent from an app task) schedule one
    `run()` with call_soon, so they go out in the next loop iteration, batched.
    This costs an epoll_wait and an eventfd read per batch on top of the enter,
    which is why `--loop auto` prefers RingEventLoop.
    """

    PREPARING = ("accept", "recv", "send", "sendmsg", "splice", "splice_out", "poll",
                 "cancel", "close_fd", "shutdown", "nop")

    def __init__(self, loop: asyncio.AbstractEventLoop, ring: Ring) -> None:
        import os

        self.loop = loop
        self.ring = ring
        self.dispatch: Dispatch = self.dispatch_own  # until the server installs itself
        self.scheduled = False
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        ret = ring.register_eventfd(self.efd)
        if ret < 0:
            os.close(self.efd)
            raise OSError(-ret, "io_uring_register_eventfd: " + os.strerror(-ret))
        for name in self.PREPARING:
            setattr(ring, name, self._kicking(getattr(ring, name)))
        loop.add_reader(self.efd, self._on_eventfd)

    def _kicking(self, prepare: Callable) -> Callable:
        def call(*args):
            ret = prepare(*args)
            if not self.scheduled:
                self.scheduled = True
                self.loop.call_soon(self.run)
            return ret

        return call

    def dispatch_own(self, cqes: list) -> None:
        """No polls or wake-ups go through the ring here (uvloop polls and wakes itself), so a
        batch before the server starts holds nothing of ours: drop it."""

    def polled(self, ud: int, res: int) -> None:  # never called: see dispatch_own
        pass

    def woken(self, res: int) -> None:
        pass

    def _on_eventfd(self) -> None:
        import os

        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass
        self.run()

    def run(self) -> None:
        self.scheduled = False
        cqes = self.ring.wait(0)
        if cqes:
            self.dispatch(cqes)

    def close(self) -> None:
        import os

        self.loop.remove_reader(self.efd)
        os.close(self.efd)


def new_loop(kind: str, ring: Ring):
    """(loop, hub): hub.dispatch receives the server's completions.

    auto and asyncio: RingEventLoop (one io_uring_enter per iteration);
    uvloop: uvloop with an EventfdDriver.
    """
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise RuntimeError(
                "--loop uvloop needs uvloop: pip install uvloop (or use --loop auto)"
            ) from exc
        loop = uvloop.new_event_loop()
        return loop, EventfdDriver(loop, ring)
    loop = RingEventLoop(ring)
    return loop, loop.ring_selector
