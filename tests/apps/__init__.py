"""Raw ASGI 3 applications used by the integration tests (no frameworks).

Each module exposes ``app``. ``combined`` routes by the first path segment to
all of them, so most test modules need one server process per configuration.
"""
