"""Django's own WSGI handler for the tests' project."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.wsgi_django.settings")
application = get_wsgi_application()
