"""The ASGI entry point: `ringserve mysite.asgi:application` or `uvicorn mysite.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()

from mysite.bootstrap import prepare  # noqa: E402  (needs the configured Django above)

prepare()
