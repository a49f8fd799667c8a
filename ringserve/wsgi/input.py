"""wsgi.input: the request body as a blocking, read-only stream on a pool thread.

The stream pulls chunks through `take()` (WSGICycle.take: the next chunk, waiting for it, None at
the end of the body; it raises ClientDisconnected if the client goes away first). Bytes taken but
not yet returned wait in `buf` from offset `pos`, so reads and readlines never copy the rest of
the buffer. With wsgi.input_terminated, read() without a size returns the whole body whatever
CONTENT_LENGTH says (a chunked request has none).
"""

from __future__ import annotations

from typing import Callable, Iterator


class ClientDisconnected(OSError):
    """The client closed the connection while the app was reading its body or sending to it."""


class InputStream:
    __slots__ = ("take", "buf", "pos", "eof")

    def __init__(self, take: Callable[[], bytes | None]) -> None:
        self.take = take
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _fill(self, want: int) -> int:
        """Take chunks until `want` bytes are buffered (want < 0: until the end); return how many are."""
        have = len(self.buf) - self.pos
        if self.eof or 0 <= want <= have:
            return have
        parts = [self.buf[self.pos:]] if have else []
        take = self.take
        while want < 0 or have < want:
            chunk = take()
            if chunk is None:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos = 0
        return have

    def _cut(self, n: int) -> bytes:
        pos = self.pos
        data = self.buf[pos:pos + n] if pos or n < len(self.buf) else self.buf
        self.pos = pos + len(data)
        if self.pos >= len(self.buf):
            self.buf, self.pos = b"", 0
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._cut(self._fill(-1))
        return self._cut(min(size, self._fill(size)))

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        start = 0
        while True:
            buf, pos = self.buf, self.pos
            index = buf.find(b"\n", pos + start)
            have = len(buf) - pos
            if index >= 0:
                n = index - pos + 1
                break
            if 0 <= limit <= have:
                n = limit
                break
            start = have
            if self._fill(have + 1) <= have:
                n = have
                break
        return self._cut(n if limit < 0 else min(n, limit))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
