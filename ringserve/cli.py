"""`ringserve APP [options]`: an argparse parser generated from Config's fields.

Nothing here lists the options by hand: each Config field (through config.OPTIONS) becomes one
argument, one line of --help and one row of options_table(). Flags not given on the command line
are left out of the parsed namespace, so the environment can fill them (CLI > env > default).
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ringserve
from ringserve.config import OPTIONS, Config, ConfigError, Option, config_from_options, env_options

# uvicorn flags ringserve does not have, with what to do instead (shown instead of a bare
# "unrecognized arguments").
UVICORN_ONLY = {
    "--ssl-keyfile": "terminate TLS in a proxy (nginx, caddy, a load balancer) in front",
    "--ssl-certfile": "terminate TLS in a proxy (nginx, caddy, a load balancer) in front",
    "--http": "ringserve has one HTTP/1.1 implementation; drop the flag",
    "--log-config": "configure the 'ringserve.error' and 'ringserve.access' loggers from Python",
    "--use-colors": "drop the flag (output is not coloured)",
    "--env-file": "load the file in your shell or process manager",
}


_METAVARS = {int: "N", float: "SECONDS"}


def version_text() -> str:
    return (f"Running ringserve {ringserve.__version__} with {platform.python_implementation()} "
            f"{platform.python_version()} on {platform.system()}")


def _help(option: Option) -> str:
    extra = f"default: {option.default_text}; env: {', '.join(option.env)}"
    if option.choices:
        extra = f"one of: {', '.join(option.choices)}; " + extra
    return f"{option.help} ({extra})".replace("%", "%%")  # argparse %-formats help


def _argument_type(option: Option) -> Any:
    def convert(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.name
    return convert


def _add_argument(group: argparse._ArgumentGroup, option: Option) -> None:
    kw: dict[str, Any] = {"help": _help(option), "dest": option.name}
    if option.flag is None:
        del kw["dest"]
        group.add_argument(option.name, nargs="?", metavar=option.metavar, **kw)
        return
    if option.type is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        metavar = option.metavar or _METAVARS.get(option.type, option.name.upper())
        kw.update(type=_argument_type(option), metavar=metavar)
        if option.multiple:
            kw["action"] = "append"
        if option.choices:
            kw.update(type=str.lower, choices=option.choices, metavar=None)
    group.add_argument(option.flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringserve", argument_default=argparse.SUPPRESS, allow_abbrev=False,
        description="Serve an ASGI or WSGI application over io_uring.",
        epilog="Every option can also be set from its environment variable; the command line "
               "wins over the environment.")
    parser.add_argument("--version", action="version", version=version_text())
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        _add_argument(groups[option.group], option)
    return parser


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> None:
    """Exit 2 naming the unknown arguments and what to use instead."""
    flags = [s for a in parser._actions for s in a.option_strings]
    hints = []
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in UVICORN_ONLY:
            hints.append(f"{name} is a uvicorn option that ringserve does not have: "
                         f"{UVICORN_ONLY[name]}")
        elif name.startswith("-"):
            close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
            if close:
                hints.append(f"{name}: did you mean {close[0]}?")
    parser.error(f"unrecognized arguments: {' '.join(extra)}" + "".join(f"\n  {h}" for h in hints))


def config_from_argv(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Parse the command line (usage errors exit 2) and merge it over the environment."""
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, extra)
    given = vars(namespace)
    if "headers" in given:
        given["headers"] = tuple(given["headers"])
    options = {**env_options(environ), **given}
    if options.get("app") in (None, ""):
        parser.error("the following arguments are required: APP (e.g. 'ringserve main:app'; "
                     "or set RINGSERVE_APP)")
    return config_from_options(**options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ringserve from the command line; returns the process exit code."""
    try:
        config = config_from_argv(argv, os.environ)
        from ringserve.logs import configure_logging

        configure_logging(config)
        from ringserve.server import serve

        return serve(config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table() -> str:
    """The README's option table (Markdown), one row per Config field, grouped."""
    rows = ["| Option | Environment | Default | Description |", "| --- | --- | --- | --- |"]
    group = None
    for option in OPTIONS:
        if option.group != group:
            group = option.group
            rows.append(f"| **{group}** | | | |")
        flag = option.flag or option.metavar or option.name
        if option.type is bool:
            flag = f"{flag} / --no-{flag[2:]}"
        env = ", ".join(f"`{e}`" for e in option.env)
        text = option.help + (f" One of: {', '.join(option.choices)}." if option.choices else "")
        rows.append(f"| `{_cell(flag)}` | {env} | `{_cell(option.default_text)}` | {_cell(text)} |")
    return "\n".join(rows) + "\n"
