"""Raw WSGI app: GET -> 200 "Hello, world!" (13 bytes)."""

HELLO = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]


def plaintext(environ, start_response):
    start_response("200 OK", HEADERS)
    return [HELLO]
