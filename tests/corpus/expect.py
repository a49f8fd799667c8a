"""What each tests/corpus/NAME.http must produce, replayed whole, by lines, by bytes and in random
splits (tests/test_http_corpus.py). The driver answers every request with an empty 200 and stops
when the connection can't be kept alive (("close",)) or on the first ProtocolError (("error", status)).

`req(...)` (from harness.py) builds the tuple for a Request; headers default to the Host header.
"""

from __future__ import annotations

H = (b"host", b"example.com")
END = ("end",)
CLOSE = ("close",)


def data(b: bytes) -> tuple:
    return ("data", b)


def error(status: int) -> list[tuple]:
    return [("error", status)]


def expectations(req) -> dict[str, list[tuple]]:
    return {**_valid(req), **_invalid(req)}


def _valid(req) -> dict[str, list[tuple]]:
    post_chunked = req(b"POST", b"/upload", [H, (b"transfer-encoding", b"chunked")])
    return {
        "get_simple": [req(), END],
        "get_headers_ows": [req(b"GET", b"/search?q=ring&lang=en", [
            H, (b"user-agent", b"curl/8.0"), (b"accept", b"*/*"), (b"x-empty", b""),
            (b"x-obs-text", b"caf\xe9 \x80\xff")]), END],
        "get_absolute_form": [req(b"GET", b"http://example.com/over/there?name=ferret",
                                  path=b"/over/there", query=b"name=ferret"), END],
        "get_absolute_form_no_path": [req(b"GET", b"HTTPS://example.com:8443", path=b"/"), END],
        "get_percent_and_fragment": [req(b"GET", b"/a%20b/%2F?x=%26&y#frag", path=b"/a%20b/%2F",
                                         query=b"x=%26&y"), END],
        "options_star": [req(b"OPTIONS", b"*"), END],
        "post_content_length": [req(b"POST", b"/submit", [H, (b"content-type", b"text/plain"),
                                                           (b"content-length", b"11")]),
                                data(b"hello world"), END],
        "post_content_length_zero": [req(b"POST", b"/empty", [H, (b"content-length", b"0")]), END],
        "post_chunked": [post_chunked, data(b"hello, chunked!"), END],
        "post_chunked_ext_trailers": [
            req(b"POST", b"/upload", [H, (b"transfer-encoding", b"Chunked")]),
            data(b"Wikipedia in\r\n\r\nchunks."), END],
        "head_request": [req(b"HEAD", b"/doc"), END],
        "http10_plain": [req(b"GET", b"/old", [], "1.0"), END, CLOSE],
        "http10_keep_alive": [req(b"GET", b"/a", [(b"connection", b"Keep-Alive")], "1.0", True), END,
                              req(b"GET", b"/b", [H], "1.0"), END, CLOSE],
        "connection_close_pipelined": [req(b"GET", b"/a", [H, (b"connection", b"close")],
                                           keep_alive=False), END, CLOSE],
        "pipelined_three": [req(b"GET", b"/1"), END,
                            req(b"POST", b"/2", [H, (b"content-length", b"3")]), data(b"abc"), END,
                            req(b"POST", b"/3", [H, (b"transfer-encoding", b"chunked")]), data(b"x"),
                            END],
        "expect_continue": [req(b"PUT", b"/big", [H, (b"content-length", b"4"),
                                                  (b"expect", b"100-Continue")], expect=True),
                            data(b"data"), END],
        "expect_continue_no_body": [req(b"GET", b"/", [H, (b"expect", b"100-continue")]), END],
        "upgrade_websocket": [req(b"GET", b"/ws", [
            H, (b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"websocket"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"sec-websocket-version", b"13")],
            upgrade=b"websocket"), END, CLOSE],
        "upgrade_without_connection_token": [req(b"GET", b"/ws", [H, (b"upgrade", b"websocket")]),
                                             END],
        "leading_empty_lines": [req(), END],
        "valid_then_garbage": [req(), END, ("error", 400)],
        "chunked_trailers_then_get": [  # trailer fields never reach the next request
            req(b"POST", b"/t", [H, (b"transfer-encoding", b"chunked")]), data(b"hi"), END,
            req(b"GET", b"/next"), END],
        "body_then_extra_crlf": [req(b"POST", b"/", [H, (b"content-length", b"2")]), data(b"ok"), END,
                                 req(b"GET", b"/next"), END],
    }


def _invalid(req) -> dict[str, list[tuple]]:
    chunked_root = req(b"POST", b"/", [H, (b"transfer-encoding", b"chunked")])
    invalid = {name: error(400) for name in (
        "te_and_cl", "cl_and_te", "cl_duplicate_same", "cl_duplicate_different", "cl_list",
        "cl_negative", "cl_plus", "cl_empty", "cl_hex", "cl_inner_space", "cl_overflow",
        "te_chunked_gzip", "te_chunked_twice", "te_two_headers", "te_http10", "te_empty",
        "obs_fold_space", "obs_fold_tab", "space_before_first_header", "header_nul", "header_ctl",
        "header_del", "header_bare_cr", "header_bare_lf", "name_space_colon", "name_tab_colon",
        "name_invalid_char", "name_empty", "name_without_colon", "missing_host", "multiple_host",
        "multiple_host_http10", "method_lowercase", "method_invalid_char", "method_unknown", "http09",
        "rtsp", "lowercase_http", "bare_lf_request", "trailing_space_version", "url_space", "url_ctl",
        "url_high_byte", "url_relative", "url_star_not_options", "url_absolute_ftp",
        "url_absolute_no_host", "tls_client_hello", "request_line_double_space",
        "request_line_double_space_after_target", "ice_source", "rtsp11")}
    invalid.update({name: error(501) for name in ("te_gzip", "te_identity", "te_gzip_chunked",
                                                  "connect")})
    invalid.update({name: error(505) for name in ("http2_preface", "http20", "http12", "http30",
                                                  "http09_versioned")})
    body_errors = {  # the head was fine: the Request is delivered, the body then fails
        "chunk_size_nonhex": [chunked_root, ("error", 400)],
        "chunk_size_negative": [chunked_root, ("error", 400)],
        "chunk_size_0x": [chunked_root, ("error", 400)],
        "chunk_size_overflow": [chunked_root, ("error", 400)],
        "chunk_size_space": [chunked_root, ("error", 400)],
        "chunk_bare_lf": [chunked_root, ("error", 400)],
        "chunk_missing_crlf": [chunked_root, data(b"abc"), ("error", 400)],
        "chunk_too_long": [chunked_root, data(b"abc"), ("error", 400)],
        "chunked_trailer_content_length": [  # llhttp refuses framing fields in trailers
            req(b"POST", b"/t", [H, (b"transfer-encoding", b"chunked")]), data(b"hi"),
            ("error", 400)],
    }
    return {**invalid, **body_errors}
