"""The fixtures every WSGI test module shares: the server kinds (ringserve on both backends, gunicorn as
the oracle) and the raw and wsgiref-validated apps, with the server's log checked for complaints."""

from __future__ import annotations

import pytest

WSGI_APPS = {"raw": "tests.apps.wsgi_app:app", "validated": "tests.apps.wsgi_app:validated"}
COMPLAINTS = ("WSGIWarning", "Exception ignored", "garbage collected without being closed")


def wsgi_fixtures(complaints: tuple[str, ...] = COMPLAINTS):
    """(server_kind, server) fixtures for a test module: `server_kind, server = wsgi_fixtures()`."""

    @pytest.fixture(scope="module", params=("ringserve", "ringserve-asyncio", "gunicorn"))
    def server_kind(request):
        if request.param == "gunicorn":
            pytest.importorskip("gunicorn", reason="the WSGI oracle: pip install gunicorn")
        return request.param

    @pytest.fixture(scope="module", params=sorted(WSGI_APPS))
    def server(request, serve):
        server = serve(WSGI_APPS[request.param])
        yield server
        output = server.output()
        assert not [c for c in complaints if c in output], output

    return server_kind, server
