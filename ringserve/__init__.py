"""ringserve: an ASGI/WSGI application server whose network core is Linux io_uring.

Importing ringserve is cheap: it loads neither the C extension (ringserve.core) nor gunicorn.
`ringserve.Server` and `ringserve.Worker` (the gunicorn worker class) are imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

from ringserve.config import Config, ConfigError, config_from_options, env_options

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "run", "__version__"]

_LAZY = {"Server": ("ringserve.server", "Server"), "Worker": ("ringserve_gunicorn", "Worker")}


def run(app: Any, **options: Any) -> None:
    """Serve `app` (an app object or '<module>:<attribute>') until shut down.

    `options` are Config field names (port=8000, workers=2, ...); options not given are read from
    RINGSERVE_* environment variables, then defaults. Raises ConfigError for a bad option, and
    SystemExit with the server's exit code when it fails (app import, address in use, ...).
    """
    from ringserve.logs import configure_logging

    config = config_from_options(**{**env_options(os.environ), "app": app, **options})
    configure_logging(config)
    from ringserve.server import serve

    code = serve(config)
    if code:
        raise SystemExit(code)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ringserve' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if name == "Worker" and exc.name == "gunicorn":
            raise ImportError("ringserve.Worker needs gunicorn: pip install 'ringserve[gunicorn]'",
                              name="gunicorn") from exc
        raise
    return getattr(module, attribute)
