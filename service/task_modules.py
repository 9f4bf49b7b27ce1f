"""Loading the modules that define task types: bgtasks' built-in one (unless BGTASKS_BUILTIN_TYPES=false) and
the application's own (`--app myapp.tasks`, BGTASKS_APP), imported once at process start."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from .errors import ConfigError
from .settings import Settings

BUILTIN = "bgtasks.actors.builtin"


def module_names(settings: Settings, apps: Iterable[str] = ()) -> list[str]:
    """The modules to import, in order, each once: built-in first, then BGTASKS_APP, then `--app`."""
    names = [BUILTIN] if settings.bgtasks_builtin_types else []
    for item in [*settings.bgtasks_app.split(","), *apps]:
        for name in item.split(","):
            if name.strip() and name.strip() not in names:
                names.append(name.strip())
    return names


def load_task_types(settings: Settings, apps: Iterable[str] = ()) -> list[str]:
    """Import every module of task types (their decorators register the types); returns the names imported.

    Like uvicorn and celery, the current directory is on the import path, so `bgtasks worker --app
    myapp.tasks` run from the application's directory finds it."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    names = module_names(settings, apps)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"--app {name}: cannot import it: {exc} (run from the application's directory "
                              "or put it on PYTHONPATH)") from exc
    return names
