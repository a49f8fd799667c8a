"""First start: create the SQLite database by running the migrations, and the admin user.

wsgi.py and asgi.py call prepare() when the server imports them, so `ringserve mysite.wsgi` works on an
empty EXAMPLE_DATA_DIR with nothing to run first. Several workers import the app at the same time:
an exclusive file lock makes one of them migrate while the others wait, then find nothing to do.

The admin user comes from the environment variables Django's `createsuperuser --noinput` reads:
DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD (and DJANGO_SUPERUSER_EMAIL). It is created
only if no user of that name exists; an existing user's password is left alone. Without them, create
one with `python manage.py createsuperuser`.
"""

import fcntl
import os
import sys
import threading


def prepare() -> None:
    # Django refuses ORM calls from a thread that runs an event loop (SynchronousOnlyOperation), and
    # ASGI servers may import the app inside their loop (uvicorn does): run in a plain thread.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _prepare()
        except BaseException as exc:  # re-raised in the importing thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="django-bootstrap")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _prepare() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    with open(settings.DATA_DIR / ".bootstrap.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            call_command("migrate", interactive=False, verbosity=0)
            _create_superuser()
        finally:
            connections.close_all()
            fcntl.flock(lock, fcntl.LOCK_UN)


def _create_superuser() -> None:
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
    if not username:
        return
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    if not password:
        print("mysite: DJANGO_SUPERUSER_USERNAME without DJANGO_SUPERUSER_PASSWORD; no admin user created",
              file=sys.stderr)
        return
    from django.contrib.auth import get_user_model

    users = get_user_model()
    if not users.objects.filter(username=username).exists():
        users.objects.create_superuser(username, os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password)
        print(f"mysite: created the admin user {username!r}", file=sys.stderr)
