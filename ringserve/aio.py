"""The asyncio-transport backend (`--io asyncio`): epoll readiness, for hosts where io_uring
is blocked (Docker >= 25 and containerd 2 block it by default) and to measure io_uring against.

It shares everything above the transport with the ring backend: the same sans-IO HTTP
layer, the same Connection logic and the same ASGI/WSGI cycles.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ringserve.connection import LINGER_S, Connection, done_future, monotonic
from ringserve.uring import sockname_of



class StreamConnection(Connection, asyncio.Protocol):
    __slots__ = ("transport", "write_paused", "drainer")

    def __init__(self, server: Any, key: int, sockname: Any) -> None:
        super().__init__(server, key, None, sockname)
        self.transport: Any = None
        self.write_paused = False
        self.drainer: Any = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (peer[0], peer[1])
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:  # asyncio finished the handshake before calling us
            from ringserve.tls import ConnectionTLS

            self.scheme = "https"
            self.tls = ConnectionTLS(self.server.tls, sslobj)
            self.extensions = self.tls.extensions(self.extensions)
        self.server.conns[self.key] = self  # accepted while draining: served once, then closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._closed_now()
        self._wake_drainer()

    def eof_received(self) -> bool:
        self.peer_closed()
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drainer()

    # -- the transport surface the cycles use --------------------------------------

    @property
    def write_blocked(self) -> bool:
        return self.write_paused

    def write(self, data: bytes) -> None:
        if not self.closed and not self.close_after:
            self.transport.write(data)

    def write_parts(self, parts: list[bytes]) -> None:
        if not self.closed and not self.close_after:
            self.transport.writelines(parts)

    def drain(self) -> Any:
        if self.closed or not self.write_paused:
            return done_future(self.loop)
        if self.drainer is None:
            self.drainer = self.loop.create_future()
        return self.drainer

    def _wake_drainer(self) -> None:
        drainer, self.drainer = self.drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    # uvloop has no loop.sendfile; the io_uring backend splices instead
    sendfile = Connection.copy_file

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.closed or self.close_after:
            return
        self.close_after = True
        if self.linger and self.transport.can_write_eof():
            # Half-close and keep reading (and discarding) until EOF or LINGER_S,
            # so the client sees our error response instead of a reset.
            self.lingering = True
            self.deadline = monotonic() + LINGER_S
            self.transport.write_eof()
            self.transport.resume_reading()
            return
        self.transport.close()
        self._closed_now()

    def abort(self) -> None:
        if self.closed:
            return
        self._closed_now()
        self.transport.abort()

    def close_idle(self) -> None:
        if self.tls is not None:  # asyncio's SSL transport sends close_notify on close()
            self.close()
        else:
            self.abort()


class AsyncioBackend:
    name = "asyncio"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.servers: list[asyncio.AbstractServer] = []
        self.next_key = 1

    def _protocol(self, sockname: Any) -> StreamConnection:
        key = self.next_key
        self.next_key = key + 1
        return StreamConnection(self.server, key, sockname)

    async def start_async(self, server: Any, socks: list[socket.socket]) -> None:
        self.server = server
        tls = server.tls
        kw: dict[str, Any] = {}
        if tls is not None:
            kw = {"ssl": tls.context, "ssl_handshake_timeout": tls.handshake_timeout}
        for sock in socks:
            sockname = sockname_of(sock)
            if sock.family == socket.AF_UNIX:
                srv = await self.loop.create_unix_server(lambda s=sockname: self._protocol(s), sock=sock, **kw)
            else:
                srv = await self.loop.create_server(lambda s=sockname: self._protocol(s), sock=sock, **kw)
            self.servers.append(srv)

    def stop_accepting(self) -> None:
        for srv in self.servers:
            srv.close()

    def describe(self) -> str:
        return f"asyncio transports ({type(self.loop).__module__.split('.')[0]} loop, epoll)"

    def settle(self) -> None:
        pass

    def stats(self, conns: int) -> str:
        return f"ring stats at exit: io=asyncio conns={conns} (no ring: nothing else to count)"

    def close(self) -> None:
        pass
