"""Django's WSGIHandler (tests/apps/wsgi_django) on ringserve, with gunicorn as the oracle."""

from __future__ import annotations

import hashlib
import os

import pytest

pytest.importorskip("django")

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.wsgi_django.wsgi:application"


@pytest.fixture(scope="module", params=("ringserve", "ringserve-asyncio", "gunicorn"))
def server_kind(request):
    if request.param == "gunicorn":
        pytest.importorskip("gunicorn", reason="the WSGI oracle: pip install gunicorn")
    return request.param


@pytest.fixture(scope="module")
def server(serve):
    return serve(APP)


def test_get(server):
    with server.client() as client:
        resp = client.get("/hello/")
    assert resp.status_code == 200
    assert resp.text == "Hello from Django"
    assert resp.headers["content-type"] == "text/plain"


def test_common_middleware_redirect(server):
    with server.client() as client:
        resp = client.get("/hello")
    assert resp.status_code == 301 and resp.headers["location"] == "/hello/"


def test_post_urlencoded_form(server):
    with server.client() as client:
        resp = client.post("/form/", data={"name": "ringserve", "tag": ["a", "b"], "text": "caf\xe9 & more"})
    assert resp.status_code == 200
    assert resp.json()["post"] == {"name": ["ringserve"], "tag": ["a", "b"], "text": ["caf\xe9 & more"]}


def test_post_multipart_upload(server):
    data = os.urandom(3 * 1024 * 1024 + 7)
    with server.client() as client:
        resp = client.post("/form/", data={"field": "value"}, files={"upload": ("blob.bin", data)})
    assert resp.status_code == 200
    body = resp.json()
    assert body["post"] == {"field": ["value"]}
    assert body["files"]["upload"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_post_json(server):
    payload = {"a": 1, "list": [1, 2, 3], "text": "ünïcode"}
    with server.client() as client:
        resp = client.post("/json/", json=payload)
    assert resp.status_code == 200
    assert resp.json() == {"received": payload, "content_type": "application/json"}


def test_bad_json_is_400(server):
    with server.client() as client:
        resp = client.post("/json/", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400


def test_streaming_response(server):
    with server.client() as client:
        resp = client.get("/stream/")
    assert resp.status_code == 200
    assert resp.content == b"".join(b"part %d\n" % i for i in range(5))


def test_request_meta(server):
    with server.client() as client:
        resp = client.get("/meta/?x=1&y=%C3%A9", headers={"X-Forwarded-Proto": "https"})
    assert resp.json() == {"path": "/meta/", "path_info": "/meta/", "script_name": "", "host": f"127.0.0.1:{server.port}",
                           "secure": True, "query": {"x": "1", "y": "é"}, "remote": "127.0.0.1"}


def test_script_name(serve):
    server = serve(APP, "--root-path", "/site")
    with server.client() as client:
        resp = client.get("/site/meta/")
    assert resp.json()["path"] == "/site/meta/"
    assert resp.json()["path_info"] == "/meta/"
    assert resp.json()["script_name"] == "/site"


def test_not_found(server):
    with server.client() as client:
        resp = client.get("/nope/")
    assert resp.status_code == 404
