"""Errors of the HTTP layer and the limits that produce some of them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "LocalProtocolError", "ProtocolError"]


class ProtocolError(Exception):
    """The peer sent something we will not serve; answer with `status` and close.

    `status` is one of 400, 413, 414, 431, 501, 505; `reason` says what was wrong (for logs, not for
    the client: the error response carries only the status phrase).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class LocalProtocolError(ValueError):
    """We (the server or the app) asked for something HTTP does not allow: bad status, header
    injection, too much body, a call out of order."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits on what a peer may send; each is enforced while the bytes arrive.

    max_request_line: bytes in the request line, CRLF excluded (414 past it).
    max_header_count: header fields in a head, or trailer fields in a chunked body (431).
    max_header_field: bytes in one header line, CRLF excluded (431); also bounds a chunk-size line.
    max_head_bytes: bytes in a whole head, request line and final blank line included (431).
    max_body: bytes of request body (413), None for no limit.
    """

    max_request_line: int = 8190
    max_header_count: int = 100
    max_header_field: int = 8190
    max_head_bytes: int = 65536
    max_body: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_count", "max_header_field", "max_head_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")
        if self.max_body is not None and (type(self.max_body) is not int or self.max_body < 0):
            raise ValueError(f"Limits.max_body must be None or an int >= 0, not {self.max_body!r}")
