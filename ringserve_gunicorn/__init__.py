"""The gunicorn worker class: `gunicorn -k ringserve.Worker app:app` (or `-k ringserve_gunicorn.Worker`).

This package is the only place ringserve imports gunicorn; `ringserve.Worker` resolves here lazily.
See ringserve_gunicorn/worker.py for the settings, signals, hooks and exit codes.
"""

from ringserve_gunicorn.worker import Worker

__all__ = ["Worker"]
