"""Import the application named by '<module>:<attribute>', with messages that name the fix.

Two failures look alike and must not be confused: the module itself cannot be found (a typo, or
--app-dir does not contain it) and the module was found but importing it failed (often a missing
dependency of the app: ModuleNotFoundError for some other name). The first gets a one-line message;
the second gets the traceback, because the fix is in the app.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
import types
from typing import Any

from ringserve.config import ConfigError

_MAX_LISTED = 12


def split_spec(spec: str) -> tuple[str, str]:
    """'pkg.mod:obj.attr' -> ('pkg.mod', 'obj.attr'), or ConfigError saying how to write it."""
    module, _, attr = spec.strip().partition(":")
    if not module or not attr:
        raise ConfigError(f"Import string '{spec}' must be in format '<module>:<attribute>', "
                          "e.g. 'main:app'.")
    if module.endswith(".py") or "/" in module or "\\" in module:
        name = module.removesuffix(".py").replace("\\", "/")
        folder, _, base = name.rpartition("/")
        hint = f" --app-dir {folder}" if folder else ""
        raise ConfigError(f"Import string '{spec}' names a file; give the module name instead: "
                          f"'{base}:{attr}'{hint}.")
    return module, attr


def import_app(spec: Any, app_dir: str = ".", factory: bool = False) -> Any:
    """The app object for `spec` (an import string, or already the app); called if `factory`."""
    if spec is None or spec == "":
        raise ConfigError("No application given. Pass it as 'ringserve <module>:<attribute>', "
                          "e.g. 'ringserve main:app'.")
    if isinstance(spec, str):
        module_name, attr = split_spec(spec)
        _add_app_dir(app_dir)
        module = _import_module(module_name, app_dir)
        app = _get_attribute(module, module_name, attr)
    else:
        app = spec
    return _call_factory(app, spec) if factory else app


def _add_app_dir(app_dir: str) -> None:
    path = os.path.abspath(app_dir or ".")
    if not os.path.isdir(path):
        raise ConfigError(f"--app-dir '{app_dir}' is not a directory. Pass the directory that "
                          "contains your application's module.")
    if not sys.path or sys.path[0] != path:
        sys.path.insert(0, path)


def _import_module(name: str, app_dir: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"Could not import module '{name}': {exc}. Check the name and that "
                              f"--app-dir (now '{app_dir}') contains it.") from None
        raise ConfigError(_failed_inside(name, exc, _missing_hint(exc))) from exc
    except Exception as exc:
        fix = "Fix the error above in the application."
        raise ConfigError(_failed_inside(name, exc, fix)) from exc


def _missing_hint(exc: ModuleNotFoundError) -> str:
    return (f"The application imports '{exc.name}', which is not installed for this Python "
            f"({sys.executable}). Install it there, or fix the import.")


def _failed_inside(name: str, exc: BaseException, fix: str) -> str:
    return (f"Module '{name}' was found, but importing it raised {type(exc).__name__}:\n"
            f"{_traceback(exc)}{fix}")


def _traceback(exc: BaseException) -> str:
    """The traceback without importlib's and this module's frames."""
    te = traceback.TracebackException.from_exception(exc)
    frames = [f for f in te.stack
              if not f.filename.startswith("<frozen importlib") and f.filename != __file__]
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def _get_attribute(module: types.ModuleType, module_name: str, attr: str) -> Any:
    obj: Any = module
    done: list[str] = []
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(_attribute_message(obj, module_name, done, part)) from None
        done.append(part)
    return obj


def _attribute_message(obj: Any, module_name: str, done: list[str], part: str) -> str:
    names = [n for n in dir(obj) if not n.startswith("_")
             and not isinstance(getattr(obj, n, None), types.ModuleType)]
    close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
    close += [n for n in names if part.lower() in n.lower() and n not in close]
    listed = close + [n for n in names if n not in close]
    shown = ", ".join(listed[:_MAX_LISTED]) + (", ..." if len(listed) > _MAX_LISTED else "")
    prefix = "".join(p + "." for p in done)
    where = f"'{module_name}:{prefix[:-1]}'" if done else f"module '{module_name}'"
    message = f"Attribute '{part}' not found in {where}. Available: {shown or '(none)'}."
    if close:
        message += f" Did you mean '{module_name}:{prefix}{close[0]}'?"
    return message


def _call_factory(factory: Any, spec: Any) -> Any:
    label = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    if not callable(factory):
        raise ConfigError(f"--factory was given but '{label}' is not callable (it is a "
                          f"{type(factory).__name__}). Drop --factory, or name a function that "
                          "returns the application.")
    try:
        return factory()
    except Exception as exc:
        raise ConfigError(f"Calling the app factory '{label}' raised {type(exc).__name__}:\n"
                          f"{_traceback(exc)}Fix the factory; it must take no arguments and "
                          "return the application.") from exc
