"""`gunicorn -k ringserve.Worker app:app`: gunicorn manages the processes, ringserve serves.

How it runs
-----------
gunicorn's arbiter binds the listeners, forks, and in the child calls init_process(): environment,
user, signals, then load_wsgi() loads the app with gunicorn's own loader (so --chdir, --pythonpath,
--preload and paste apps work) and run(). Here load_wsgi() also builds the Config with
`ringserve.config.from_gunicorn(cfg)` and picks ASGI or WSGI exactly as the CLI does
(`resolve_interface`: RINGSERVE_INTERFACE forces one). run() hands dups of gunicorn's listeners to
`ringserve.server.run_worker`, which creates the ring here, after the fork. Every sweep (~250 ms)
tick() sends the heartbeat (`notify()`) and checks that the arbiter is still our parent.

Settings (gunicorn's meaning kept unless said)
  bind, backlog, reuse_port, workers, user/group, chdir, raw_env, pidfile, preload_app, reload,
      worker_tmp_dir, control socket, dirty arbiters: done by gunicorn itself, before run()
  threads                       WSGI thread-pool size (ASGI apps: unused)
  worker_connections            limit_concurrency: requests in progress at once; past it a 503
  keepalive                     idle keep-alive timeout; 0 has no exact match: idle connections
                                close at the next sweep (<= 0.25 s) instead of 'Connection: close'
  timeout                       heartbeat from the event loop: a loop blocked for `timeout` gets
                                SIGABRT then SIGKILL from the arbiter, like gunicorn's asgi and
                                gthread workers. A WSGI request blocking its pool thread does not
                                stop the loop, so it is not killed (gthread behaves the same)
  graceful_timeout              drain time after TERM before open connections are closed
  max_requests(+_jitter)        graceful restart after that many requests (ringserve adds jitter)
  limit_request_line / _fields / _field_size   same limits and clamps (414 / 431)
  forwarded_allow_ips           peers trusted for X-Forwarded-Proto and X-Forwarded-For (exact
                                addresses or '*'; CIDR networks are not matched, so not trusted)
  secure_scheme_headers         honoured as: X-Forwarded-Proto from a trusted peer sets the scheme
                                (its value, http/https/ws/wss); X-Forwarded-SSL / -Protocol are not
                                read. As uvicorn's worker does (and gunicorn's own do not),
                                X-Forwarded-For from a trusted peer becomes the client address
  root_path, asgi_lifespan, asgi_loop, websocket_max_message_size
                                root_path, lifespan, loop, ws_max_size
  accesslog, access_log_format  the access line in gunicorn's atoms, through gunicorn's access
                                handlers; {VAR}e atoms map to the matching atom or {header}i, others '-'
  errorlog, loglevel, syslog, logconfig*, capture_output    through gunicorn's handlers
  Not honoured (a warning at start when set): http2 / h2c, forwarder_headers, header_map, the
  permit_* and strip_header_spaces parser options, statsd and a custom logger_class's access()
  (ringserve writes the access line itself). Silently irrelevant: http_parser, sendfile (files
  are spliced), asgi_disconnect_grace_period. Refused at start (gunicorn stops with the reason):
  proxy_protocol, protocol uwsgi.
  certfile, keyfile, ca_certs, cert_reqs, ciphers   TLS as --ssl-certfile, --ssl-keyfile,
                                --ssl-ca-certs, --ssl-cert-reqs, --ssl-ciphers (kTLS per RINGSERVE_KTLS);
                                the deprecated ssl_version is ignored
Environment: ringserve's own options (io, sqpoll, ring sizes, headers, interface...) are read
from RINGSERVE_* variables, e.g. `gunicorn -k ringserve.Worker -e RINGSERVE_IO=asyncio app:app`.

Hooks: on_starting, when_ready, pre_fork, post_fork, post_worker_init, worker_exit, child_exit,
nworkers_changed, on_reload, on_exit, pre_exec run where gunicorn runs them; worker_int on INT/QUIT;
worker_abort on ABRT (the arbiter's timeout). pre_request and post_request are not called: they
take gunicorn's Request/Response objects, which ringserve never builds (a warning says so when set).

Signals (to the master, as gunicorn documents; the worker's own handling in brackets)
  TERM      graceful [stop accepting, finish requests within graceful_timeout, lifespan shutdown]
  INT, QUIT quick [worker_int hook, close every connection now, lifespan shutdown]
  HUP       reload config, start new workers, TERM the old ones [TERM as above]
  TTIN/TTOU one worker more / fewer [TERM]
  USR1      reopen log files [gunicorn's reopen_files(): ringserve's loggers share its handlers]
  USR2      re-exec the master (gunicorn) [nothing]
  ABRT      [worker_abort hook, exit 1: a plain signal handler, so it runs even on a blocked loop]
  WINCH     [ignored]
Exit codes: 3 (gunicorn's WORKER_BOOT_ERROR) when the worker cannot start (bad settings, no
io_uring with RINGSERVE_IO=uring, lifespan startup failed, and, as gunicorn decides, a module
that fails to import) and 4 (APP_LOAD_ERROR) when gunicorn's loader cannot find the app in its
module: either way the arbiter stops instead of respawning forever.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from gunicorn.workers import base

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR

_PARSER_OPTIONS = ("permit_obsolete_folding", "strip_header_spaces", "permit_unconventional_http_method",
                   "permit_unconventional_http_version", "casefold_http_method", "header_map")


class Worker(base.Worker):
    """gunicorn worker class serving ASGI or WSGI apps on ringserve's io_uring core."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # runs in the arbiter, before fork: no process changes
        self.config: Any = None
        self.wsgi: Any = None  # the app; base.Worker.load_wsgi() sets it
        self.server: Any = None
        self.started = False
        self.stopping = False

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """In the arbiter, before any fork: refuse what cannot work, warn about what is ignored."""
        from ringserve.config import ConfigError, from_gunicorn

        try:
            from_gunicorn(cfg)
        except ConfigError as exc:
            raise RuntimeError(str(exc)) from None  # gunicorn prints "Error: ..." and exits 1
        for note in ignored_settings(cfg):
            log.warning("ringserve.Worker: %s", note)

    # -- in the worker process, after fork --------------------------------------------------------

    def init_process(self) -> None:
        share_gunicorn_logging(self.log)
        super().init_process()  # env, user, signals, load_wsgi(), post_worker_init, run()

    def load_wsgi(self) -> None:
        super().load_wsgi()  # gunicorn's loader (its AppImportError: exit 4, APP_LOAD_ERROR)
        from ringserve.config import ConfigError, from_gunicorn
        from ringserve.server import resolve_interface

        try:
            self.config = from_gunicorn(self.cfg, app=getattr(self.app, "app_uri", None))
        except ConfigError as exc:
            self.log.error("%s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        self.wsgi = resolve_interface(self.wsgi, self.config.interface)

    def run(self) -> None:
        from ringserve.server import WorkerHooks, run_worker
        from ringserve.sockets import adopt_fd

        listeners = [adopt_fd(s.fileno(), "gunicorn listener") for s in self.sockets]
        hooks = WorkerHooks(install_signals=False, tick=self.tick, started=self.on_started)
        self.notify()
        try:
            code = run_worker(self.config, self.wsgi, listeners, hooks)
        except Exception:
            if self.started:
                raise
            self.log.exception("ringserve.Worker failed to start")
            sys.exit(WORKER_BOOT_ERROR)
        if code:
            sys.exit(code if self.started else WORKER_BOOT_ERROR)

    # -- WorkerHooks --------------------------------------------------------------------------------

    def tick(self, server: Any) -> None:
        """Every sweep: heartbeat, parent check, and a stop asked for before the loop could hear it."""
        self.server = server
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
        if not self.alive and not self.stopping:  # TERM during startup, or the reloader's callback
            self.stop()

    def on_started(self, server: Any) -> None:
        self.started = True

    def stop(self) -> None:
        """TERM: graceful drain (a second TERM changes nothing)."""
        self.alive = False
        if not self.stopping:
            self.stopping = True
            self.server.request_stop()

    def stop_now(self) -> None:
        """INT / QUIT: quick shutdown."""
        self.alive = False
        self.stopping = True
        self.cfg.worker_int(self)
        self.server.request_stop(force=True)

    # -- signals: gunicorn's plain handlers (base.init_signals) stay installed for the whole life of
    # the process, so no signal ever finds the default action; while the loop runs they hand the
    # work to it. They run when the ring's wait returns (EINTR, or the sweep's 250 ms timer).

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self._on_loop(self.stop)  # before the loop serves, the first tick() stops

    def handle_quit(self, sig: int, frame: Any) -> None:
        if not self._on_loop(self.stop_now):
            super().handle_quit(sig, frame)  # not serving yet: gunicorn's own quick exit

    def handle_usr1(self, sig: int, frame: Any) -> None:
        if not self._on_loop(self.log.reopen_files):
            super().handle_usr1(sig, frame)

    def _on_loop(self, callback: Any) -> bool:
        loop = self.server.loop if self.server is not None else None
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(callback)
        return True


def share_gunicorn_logging(glog: Any) -> None:
    """ringserve's loggers write through gunicorn's handlers (errorlog, accesslog, syslog,
    logconfig), sharing the very lists, so USR1's reopen_files() reopens them too. The error side
    takes gunicorn's loglevel; the access side is off when gunicorn would write no access log. A
    'ringserve' logger that a logconfig already gave handlers is left as configured."""
    access_on = getattr(glog, "access_log_enabled", bool(glog.cfg.accesslog))
    for name, source in (("ringserve", getattr(glog, "error_log", None)),
                         ("ringserve.access", getattr(glog, "access_log", None))):
        logger = logging.getLogger(name)
        if source is None or logger.handlers:
            continue
        logger.handlers = source.handlers
        logger.propagate = False
        if name == "ringserve":
            logger.setLevel(source.getEffectiveLevel())
        else:
            logger.setLevel(logging.INFO)
            logger.disabled = not access_on


def ignored_settings(cfg: Any) -> list[str]:
    """What this worker does not honour among the settings the user changed."""
    settings = cfg.settings

    def changed(name: str) -> bool:
        setting = settings.get(name)
        if setting is None:
            return False
        try:
            default = setting.validator(setting.default) if setting.validator else setting.default
        except (TypeError, ValueError):
            default = setting.default
        return setting.value != default

    notes = [f"{name} is not called (it takes gunicorn's Request objects, which ringserve does not build)"
             for name in ("pre_request", "post_request") if changed(name)]
    if "h2" in (getattr(cfg, "http_protocols", None) or []) or str(getattr(cfg, "http2_cleartext", "off")) != "off":
        notes.append("HTTP/2 is not served: ringserve speaks HTTP/1.1 only")
    notes += [f"{name} is ignored: ringserve's HTTP parser has one strict behaviour" for name in _PARSER_OPTIONS
              if changed(name)]
    if changed("forwarder_headers"):
        notes.append("forwarder_headers is ignored: SCRIPT_NAME / PATH_INFO headers are never read")
    if changed("secure_scheme_headers") and {k.upper() for k in cfg.secure_scheme_headers} - {"X-FORWARDED-PROTO"}:
        notes.append("secure_scheme_headers: only X-Forwarded-Proto is read")
    if any("/" in ip for ip in cfg.forwarded_allow_ips):
        notes.append("forwarded_allow_ips: CIDR networks are not matched (exact addresses or '*')")
    if cfg.keepalive <= 0:
        notes.append("keepalive 0: idle connections are closed within 0.25 s rather than after each response")
    if changed("statsd_host") or changed("logger_class"):
        notes.append("statsd / logger_class: per-request metrics and Logger.access() are not called")
    return notes
