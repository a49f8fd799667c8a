"""Config, CLI, importer, sockets and access-log tests: plain function calls, no server."""

from __future__ import annotations

import base64
import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import pytest

import ringserve
from ringserve import cli
from ringserve.config import (
    OPTIONS,
    Config,
    ConfigError,
    Interface,
    LogLevel,
    config_from_options,
    env_options,
)
from ringserve.importer import import_app
from ringserve.logs import AccessInfo, compile_access_format, configure_logging, format_access
from ringserve.sockets import adopt_fd, bind_listeners, describe, systemd_listeners

ROOT = Path(__file__).resolve().parent.parent


def make_config(**options: object) -> Config:
    return config_from_options(app="main:app", **options)


# --- Config and environment ----------------------------------------------------------------------


def test_defaults() -> None:
    c = Config()
    assert (c.host, c.port, c.backlog, c.workers, c.threads) == ("127.0.0.1", 8000, 2048, 1, 10)
    assert c.interface == "auto" and c.interface is Interface.AUTO
    assert (c.timeout_keep_alive_s, c.timeout_request_head_s, c.timeout_graceful_shutdown_s) == (
        5.0, 10.0, 30.0)
    assert c.limit_request_body is None and c.limit_concurrency is None
    assert c.proxy_headers and c.access_log and c.server_header and c.date_header


def test_config_is_frozen_and_replace_validates() -> None:
    c = make_config()
    with pytest.raises(AttributeError):
        c.port = 1  # type: ignore[misc]
    assert c.replace(port=9000).port == 9000 and c.port == 8000
    with pytest.raises(ConfigError, match="between 0 and 65535"):
        c.replace(port=70000)


def test_unknown_option_names_closest() -> None:
    with pytest.raises(ConfigError, match=r"Unknown option 'prot'\. Did you mean 'port'\?"):
        make_config(prot=80)
    with pytest.raises(ConfigError, match="Did you mean 'timeout_keep_alive_s'"):
        make_config(timeout_keep_alive=5)


def test_missing_app() -> None:
    with pytest.raises(ConfigError, match="No application given"):
        config_from_options(port=1)


@pytest.mark.parametrize("options, message", [
    ({"port": -1}, "between 0 and 65535"),
    ({"port": True}, "expected an integer"),
    ({"workers": 0}, ">= 1"),
    ({"timeout_graceful_shutdown_s": float("inf")}, "finite"),
    ({"ring_buffers": 1000}, "power of two"),
    ({"root_path": "api"}, "e.g. '/api'"),
    ({"log_level": "loud"}, "not one of critical"),
    ({"access_log_format": "%(nope)s"}, "unknown atom"),
    ({"access_log_format": "100%"}, "literal % as %%"),
    ({"uds": "/tmp/x.sock", "fd": 3}, "only one of them"),
    ({"workers": 2, "app": object()}, "import string"),
    ({"ssl_keyfile": "k.pem"}, "--ssl-keyfile given without --ssl-certfile"),
    ({"ssl_cert_reqs": 2, "ssl_ca_certs": "ca.pem"}, "--ssl-ca-certs, --ssl-cert-reqs given without --ssl-certfile"),
    ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 1}, "add --ssl-ca-certs PATH"),
    ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 3}, "between 0 and 2"),
    ({"ssl_certfile": "c.pem", "ktls": "maybe"}, "not one of auto"),
])
def test_invalid_values(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_options(**{"app": "main:app", **options})


def test_strings_and_lists_are_coerced() -> None:
    c = make_config(port="9000", interface="WSGI", log_level="debug", timeout_keep_alive_s=2,
                    forwarded_allow_ips=["10.0.0.1", "10.1.0.0/16"], access_log="no")
    assert c.port == 9000 and c.interface is Interface.WSGI and c.log_level is LogLevel.DEBUG
    assert c.timeout_keep_alive_s == 2.0 and isinstance(c.timeout_keep_alive_s, float)
    assert c.forwarded_allow_ips == "10.0.0.1,10.1.0.0/16" and c.access_log is False


def test_env_options_parse_and_aliases() -> None:
    env = {"RINGSERVE_PORT": "9001", "RINGSERVE_ACCESS_LOG": "no", "WEB_CONCURRENCY": "3",
           "FORWARDED_ALLOW_IPS": "*", "RINGSERVE_HEADERS": "X-A: 1\nX-B: two words",
           "RINGSERVE_HOST": "", "UNRELATED": "x"}
    assert env_options(env) == {"port": 9001, "access_log": False, "workers": 3,
                                "forwarded_allow_ips": "*",
                                "headers": (("X-A", "1"), ("X-B", "two words"))}


def test_ringserve_env_beats_alias() -> None:
    assert env_options({"RINGSERVE_WORKERS": "2", "WEB_CONCURRENCY": "5"}) == {"workers": 2}


@pytest.mark.parametrize("text, value", [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("False", False), ("no", False), ("off", False),
])
def test_env_booleans(text: str, value: bool) -> None:
    assert env_options({"RINGSERVE_REUSE_PORT": text}) == {"reuse_port": value}


def test_env_bad_value_names_variable() -> None:
    with pytest.raises(ConfigError, match=r"RINGSERVE_PORT='eighty'.*Fix or unset it"):
        env_options({"RINGSERVE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="RINGSERVE_SQPOLL"):
        env_options({"RINGSERVE_SQPOLL": "maybe"})


def test_precedence_cli_over_env_over_default() -> None:
    env = {"RINGSERVE_PORT": "9001", "RINGSERVE_HOST": "0.0.0.0", "RINGSERVE_APP": "env:app"}
    c = cli.config_from_argv(["--port", "9002"], env)
    assert (c.app, c.host, c.port, c.backlog) == ("env:app", "0.0.0.0", 9002, 2048)
    c = cli.config_from_argv(["cli:app", "--no-access-log"], {"RINGSERVE_ACCESS_LOG": "1"})
    assert c.app == "cli:app" and c.access_log is False


# --- CLI -----------------------------------------------------------------------------------------


def test_header_flag_repeats() -> None:
    c = cli.config_from_argv(["m:a", "--header", "X-A: 1", "--header", "X-B:b:c"], {})
    assert c.headers == (("X-A", "1"), ("X-B", "b:c"))


@pytest.mark.parametrize("bad", ["NoColon", "Bad Name: x", ": empty"])
def test_bad_header_is_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.config_from_argv(["m:a", "--header", bad], {})
    assert exc.value.code == 2
    assert "must be 'Name: Value'" in capsys.readouterr().err


def test_unrecognized_flag_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.config_from_argv(["m:a", "--prot", "80"], {})
    assert exc.value.code == 2
    assert "did you mean --port?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.config_from_argv(["m:a", "--use-colors"], {})
    assert "uvicorn option" in capsys.readouterr().err


def test_missing_app_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.config_from_argv([], {})
    assert exc.value.code == 2 and "APP" in capsys.readouterr().err


def _reset_ringserve_loggers() -> None:
    for name in ("ringserve", "ringserve.access"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate, logger.disabled = True, False
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """ringserve.server replaced by a stub whose serve() records its Config and returns 0."""
    served: list[Config] = []

    def serve(config: Config) -> int:
        served.append(config)
        return 0

    monkeypatch.setitem(sys.modules, "ringserve.server", types.SimpleNamespace(serve=serve))
    yield served
    _reset_ringserve_loggers()


def test_main_serves_config(fake_server: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGSERVE_WORKERS", "2")
    assert cli.main(["m:a", "--port", "0", "--log-level", "warning"]) == 0
    assert [(c.app, c.port, c.workers) for c in fake_server] == [("m:a", 0, 2)]
    assert logging.getLogger("ringserve.access").getEffectiveLevel() == logging.WARNING


def test_main_config_error_exits_1(fake_server: list[Config],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["m:a", "--port", "70000"]) == 1
    assert capsys.readouterr().err.startswith("Error: Invalid port (--port) 70000")
    assert fake_server == []


def test_main_reports_config_error_from_serve(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def serve(config: Config) -> int:
        raise ConfigError("Address 127.0.0.1:8000 is already in use.")

    monkeypatch.setitem(sys.modules, "ringserve.server", types.SimpleNamespace(serve=serve))
    try:
        assert cli.main(["m:a"]) == 1
    finally:
        _reset_ringserve_loggers()
    assert capsys.readouterr().err == "Error: Address 127.0.0.1:8000 is already in use.\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert f"ringserve {ringserve.__version__}" in capsys.readouterr().out


def test_python_m_help_lists_every_flag_with_default() -> None:
    out = subprocess.run([sys.executable, "-m", "ringserve", "--help"], cwd=ROOT, timeout=30,
                         env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True,
                         check=True).stdout
    for option in OPTIONS:
        assert (option.flag or option.metavar) in out
    assert "default: 8000" in out and "RINGSERVE_PORT" in out


def test_options_table_has_every_field() -> None:
    table = cli.options_table()
    for option in OPTIONS:
        assert f"`{option.flag or option.metavar}" in table
        for env in option.env:
            assert f"`{env}`" in table
    assert "`--no-access-log`" not in table and "--access-log / --no-access-log" in table
    assert all(line.count("|") - line.count("\\|") == 5 for line in table.splitlines())


def test_import_ringserve_is_light() -> None:
    code = ("import sys, ringserve; bad = [m for m in sys.modules if m.startswith("
            "('gunicorn', 'ringserve.core', 'ringserve.server', '_cffi'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_passes_options(fake_server: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGSERVE_BACKLOG", "16")
    app = object()
    ringserve.run(app, port=0)
    assert fake_server[0].app is app and fake_server[0].port == 0
    assert fake_server[0].backlog == 16
    with pytest.raises(ConfigError, match="Did you mean 'port'"):
        ringserve.run(app, prot=0)


def test_run_raises_system_exit_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ringserve.server", types.SimpleNamespace(serve=lambda c: 3))
    try:
        with pytest.raises(SystemExit) as exc:
            ringserve.run(object())
    finally:
        _reset_ringserve_loggers()
    assert exc.value.code == 3


def test_worker_is_resolved_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = type("Worker", (), {})
    monkeypatch.setitem(sys.modules, "ringserve_gunicorn", types.SimpleNamespace(Worker=worker))
    assert ringserve.Worker is worker


def test_unknown_attribute_of_package() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ringserve.Nope  # noqa: B018


# --- importer ------------------------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary app directory; sys.path and the modules imported from it are restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(directory: Path, source: str) -> str:
    name = f"app_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def test_import_app_ok(app_dir: Path) -> None:
    name = write_module(app_dir, "class Inner:\n    app = 'nested'\napp = 'the app'\n")
    assert import_app(f"{name}:app", str(app_dir)) == "the app"
    assert import_app(f"{name}:Inner.app", str(app_dir)) == "nested"


def test_import_app_object_passes_through() -> None:
    app = object()
    assert import_app(app) is app


@pytest.mark.parametrize("spec", ["main", "main:", ":app", ""])
def test_bad_import_string(spec: str) -> None:
    expected = "No application" if spec == "" else "must be in format '<module>:<attribute>'"
    with pytest.raises(ConfigError, match=expected):
        import_app(spec)


def test_file_name_instead_of_module() -> None:
    with pytest.raises(ConfigError, match=r"module name instead: 'main:app' --app-dir src"):
        import_app("src/main.py:app")


def test_module_not_found(app_dir: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        import_app("no_such_module_xyz:app", str(app_dir))
    assert str(exc.value) == ("Could not import module 'no_such_module_xyz': No module named "
                              f"'no_such_module_xyz'. Check the name and that --app-dir (now "
                              f"'{app_dir}') contains it.")


def test_missing_package_of_dotted_module(app_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"Could not import module 'nopkg_xyz\.main'"):
        import_app("nopkg_xyz.main:app", str(app_dir))


def test_missing_dependency_inside_app_shows_traceback(app_dir: Path) -> None:
    name = write_module(app_dir, "import dependency_not_installed_xyz\napp = 1\n")
    with pytest.raises(ConfigError) as exc:
        import_app(f"{name}:app", str(app_dir))
    message = str(exc.value)
    assert f"Module '{name}' was found" in message and "Traceback" in message
    assert f"{name}.py" in message and "dependency_not_installed_xyz" in message
    assert "Could not import module" not in message and "<frozen importlib" not in message


def test_error_inside_app_shows_traceback(app_dir: Path) -> None:
    name = write_module(app_dir, "def boom():\n    raise RuntimeError('db down')\nboom()\n")
    with pytest.raises(ConfigError, match=r"(?s)raised RuntimeError.*line 2, in boom.*db down"):
        import_app(f"{name}:app", str(app_dir))


def test_attribute_not_found_lists_available(app_dir: Path) -> None:
    name = write_module(app_dir, "import os\napplication = 1\ndef create(): pass\n_private = 2\n")
    with pytest.raises(ConfigError) as exc:
        import_app(f"{name}:app", str(app_dir))
    assert str(exc.value) == (f"Attribute 'app' not found in module '{name}'. Available: "
                              f"application, create. Did you mean '{name}:application'?")


def test_app_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--app-dir .* is not a directory"):
        import_app("main:app", str(tmp_path / "missing"))


def test_factory(app_dir: Path) -> None:
    name = write_module(app_dir, """
        def create_app():
            return "made"
        def broken():
            raise ValueError("no config")
        not_callable = 3
    """)
    assert import_app(f"{name}:create_app", str(app_dir), factory=True) == "made"
    with pytest.raises(ConfigError, match=r"(?s)app factory .*broken.*no config"):
        import_app(f"{name}:broken", str(app_dir), factory=True)
    with pytest.raises(ConfigError, match="--factory was given but .* is not callable"):
        import_app(f"{name}:not_callable", str(app_dir), factory=True)
    assert import_app(lambda: "obj", factory=True) == "obj"


# --- sockets -------------------------------------------------------------------------------------


def test_bind_tcp_port_zero() -> None:
    [sock] = bind_listeners(make_config(port=0, reuse_port=True))
    with sock:
        assert sock.family == socket.AF_INET and not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert describe(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_bind_tcp_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        [sock] = bind_listeners(make_config(host="::1", port=0))
    except ConfigError as exc:
        pytest.skip(f"IPv6 loopback unavailable here: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6
        assert describe(sock) == f"http://[::1]:{sock.getsockname()[1]}"


def test_address_in_use() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ConfigError) as exc:
            bind_listeners(make_config(port=port))
    assert str(exc.value) == (f"Address 127.0.0.1:{port} is already in use. Stop the other "
                              "server or choose another --port.")


def test_address_not_available() -> None:
    if Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip() != "0":
        pytest.skip("net.ipv4.ip_nonlocal_bind is set: any address can be bound")
    with pytest.raises(ConfigError, match="203.0.113.1 is not an address of this machine"):
        bind_listeners(make_config(host="203.0.113.1", port=0))


def test_unresolvable_host() -> None:
    with pytest.raises(ConfigError, match="Cannot resolve --host 'no-such-host.invalid'"):
        bind_listeners(make_config(host="no-such-host.invalid", port=0))


def test_privileged_port_denied() -> None:
    """A real EACCES: as root, from a child without CAP_NET_BIND_SERVICE."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 80:
        pytest.skip(f"ip_unprivileged_port_start={start}: everyone may bind port 80 here")
    expected = ("Permission denied binding 127.0.0.1:80: ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE; choose --port >= 1024.")
    if os.geteuid() != 0:
        with pytest.raises(ConfigError) as exc:
            bind_listeners(make_config(port=80))
        assert str(exc.value) == expected
        return
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing to drop the capability")
    code = ("from ringserve.config import *; from ringserve.sockets import bind_listeners\n"
            "try: bind_listeners(config_from_options(app='m:a', port=80))\n"
            "except ConfigError as e: print(e)\n")
    result = subprocess.run(["setpriv", "--bounding-set", "-net_bind_service", sys.executable,
                             "-c", code], cwd=ROOT, timeout=30, capture_output=True, text=True)
    assert result.stdout.strip() == expected, result.stderr


def test_uds_replaces_stale_file(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # bound, never listening, then closed: a stale file
    assert os.path.exists(path)
    [sock] = bind_listeners(make_config(uds=path))
    with sock:
        assert sock.family == socket.AF_UNIX and describe(sock) == f"unix:{path}"
        assert os.stat(path).st_mode & 0o777 == 0o666
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


def test_uds_in_use_and_not_a_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "live.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        with pytest.raises(ConfigError, match="in use by a running server"):
            bind_listeners(make_config(uds=path))
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        bind_listeners(make_config(uds=str(regular)))
    assert regular.read_text() == "keep me"


def test_fd_detects_unix_family(tmp_path: Path) -> None:
    path = str(tmp_path / "fd.sock")
    with socket.socket(socket.AF_UNIX) as original:
        original.bind(path)
        original.listen()
        [sock] = bind_listeners(make_config(fd=original.fileno()))
        with sock:
            assert sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM
            assert sock.fileno() != original.fileno() and not sock.getblocking()
            assert describe(sock) == f"unix:{path}"


def test_fd_detects_inet6_family() -> None:
    try:
        original = socket.socket(socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 sockets: {exc}")
    with original:
        original.bind(("::1", 0))
        original.listen()
        [sock] = bind_listeners(make_config(fd=original.fileno()))
        with sock:
            assert sock.family == socket.AF_INET6
            assert describe(sock) == f"http://[::1]:{original.getsockname()[1]}"


def test_bad_fds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--fd 9999 is not an open file descriptor"):
        bind_listeners(make_config(fd=9999))
    with open(tmp_path / "f", "w") as f, pytest.raises(ConfigError, match="is not a socket"):
        bind_listeners(make_config(fd=f.fileno()))
    with socket.socket() as unbound, pytest.raises(ConfigError, match="is not listening"):
        adopt_fd(unbound.fileno(), "--fd")
    udp = socket.socket(type=socket.SOCK_DGRAM)
    with udp, pytest.raises(ConfigError, match="not a stream socket"):
        adopt_fd(udp.fileno(), "--fd")


def test_systemd_activation_needs_our_pid() -> None:
    assert systemd_listeners({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1)}) == []
    assert systemd_listeners({}) == []
    with pytest.raises(ConfigError, match="LISTEN_FDS"):
        systemd_listeners({"LISTEN_FDS": "x", "LISTEN_PID": str(os.getpid())})


def test_systemd_activation_adopts_fd_3() -> None:
    """In a child whose fd 3 is a listening socket, as systemd would start it."""
    code = ("import os, socket\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "fd = s.detach()\n"
            "if fd != 3: os.dup2(fd, 3); os.close(fd)\n"
            "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
            "from ringserve.config import config_from_options\n"
            "from ringserve.sockets import bind_listeners, describe\n"
            "[l] = bind_listeners(config_from_options(app='m:a', port=1))\n"
            "print(l.fileno(), l.family.name, describe(l).startswith('http://127.0.0.1:'))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30,
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["3", "AF_INET", "True"]


# --- logging and the access log ------------------------------------------------------------------


def access_info(**changes: object) -> AccessInfo:
    info = AccessInfo(
        client_addr="10.0.0.7", client_port=51234, method=b"POST", path=b"/items/a%20b",
        query=b"x=1&y=2", http_version="1.1", status=201, response_bytes=1234,
        request_headers=[(b"host", b"example.com"), (b"user-agent", b"curl/8.0"),
                         (b"referer", b"https://ref/"), (b"x-forwarded-for", b"1.1.1.1"),
                         (b"x-forwarded-for", b"2.2.2.2"),
                         (b"authorization", b"Basic " + base64.b64encode(b"alice:secret"))],
        response_headers=[(b"Content-Type", b"text/plain")], start=100.0, end=101.5)
    for name, value in changes.items():
        setattr(info, name, value)
    return info


@pytest.mark.parametrize("atom, expected", [
    ("h", "10.0.0.7"), ("l", "-"), ("u", "alice"), ("r", "POST /items/a%20b?x=1&y=2 HTTP/1.1"),
    ("m", "POST"), ("U", "/items/a%20b"), ("q", "x=1&y=2"), ("H", "HTTP/1.1"), ("s", "201"),
    ("B", "1234"), ("b", "1234"), ("f", "https://ref/"), ("a", "curl/8.0"), ("T", "1"),
    ("D", "1500000"), ("M", "1500"), ("L", "1.500000"), ("p", f"<{os.getpid()}>"),
    ("client", "10.0.0.7:51234"), ("{Host}i", "example.com"),
    ("{x-forwarded-for}i", "1.1.1.1,2.2.2.2"), ("{content-type}o", "text/plain"),
    ("{missing}i", "-"), ("{missing}o", "-"),
])
def test_access_atom(atom: str, expected: str) -> None:
    assert format_access(f"%({atom})s", access_info()) == expected


def test_access_time_atom() -> None:
    line = format_access("%(t)s", access_info())
    assert line.startswith("[") and line.endswith("]") and line.count(":") == 3


def test_access_atoms_when_absent() -> None:
    info = access_info(client_addr=None, client_port=None, request_headers=[], query=b"",
                       response_bytes=0)
    assert format_access("%(h)s %(client)s %(u)s %(f)s %(a)s %(b)s %(B)s %(r)s", info) == (
        "- - - - - - 0 POST /items/a%20b HTTP/1.1")


def test_access_default_format_and_numbers() -> None:
    fmt = Config().access_log_format
    assert format_access(fmt, access_info()) == (
        '10.0.0.7:51234 - "POST /items/a%20b?x=1&y=2 HTTP/1.1" 201')
    assert format_access("%(s)d %(D)d %%", access_info()) == "201 1500000 %"


def test_gunicorn_default_format() -> None:
    gunicorn = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    line = format_access(gunicorn, access_info())
    assert line.startswith("10.0.0.7 - alice [") and line.endswith(
        '"POST /items/a%20b?x=1&y=2 HTTP/1.1" 201 1234 "https://ref/" "curl/8.0"')


def test_access_escapes_control_characters() -> None:
    info = access_info(request_headers=[(b"user-agent", b"evil\x1b[31m\\")])
    assert format_access("%(a)s", info) == "evil\\x1b[31m\\x5c"


def test_compile_rejects_bad_formats() -> None:
    with pytest.raises(ValueError, match="unknown atom '%\\(x\\)s'"):
        compile_access_format("%(x)s")
    with pytest.raises(ValueError, match="does not work"):
        compile_access_format("%(h)d")


def test_configure_logging(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        configure_logging(make_config(log_level="trace"))
        configure_logging(make_config(log_level="trace"))  # idempotent: one handler each
        logging.getLogger("ringserve.error").log(5, "deep detail")
        logging.getLogger("ringserve.access").info("a line")
        assert len(logging.getLogger("ringserve").handlers) == 1
        out = capsys.readouterr()
        assert out.err == "TRACE:    deep detail\n" and out.out == "INFO:     a line\n"
        configure_logging(make_config(access_log=False))
        access = logging.getLogger("ringserve.access")
        assert not access.isEnabledFor(logging.INFO)
        assert logging.getLogger("ringserve.error").isEnabledFor(logging.INFO)
        assert not logging.getLogger("ringserve.error").isEnabledFor(logging.DEBUG)
    finally:
        _reset_ringserve_loggers()


def test_bind_error_for_other_errno() -> None:
    from ringserve.sockets import tcp_bind_error

    error = tcp_bind_error(OSError(errno.ENETDOWN, "Network is down"), "h", 1, "h:1")
    assert str(error) == "Cannot bind h:1: Network is down. Check --host and --port."
    error = tcp_bind_error(OSError(errno.EACCES, "Permission denied"), "h", 80, "h:80")
    assert "CAP_NET_BIND_SERVICE" in str(error)
