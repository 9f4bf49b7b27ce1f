"""What a running `bgtasks up` tells the other commands: `up.json` in its data directory holds the embedded
database's URL, the API's URL and up's pid. A command with no DATABASE_URL (or BGTASKS_URL) uses them, and
says so on stderr; a file whose pid is gone is ignored (an `up` that was killed leaves it behind)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import Settings, default_data_dir

STATE_FILE = "up.json"


def record(data_dir: Path, database_url: str, api_url: str) -> Path:
    path = data_dir / STATE_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "databaseUrl": database_url, "apiUrl": api_url}))
    tmp.replace(path)
    return path


def clear(data_dir: Path) -> None:
    path = data_dir / STATE_FILE
    state = _read(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def running(data_dir: Path | None = None) -> dict[str, Any] | None:
    """The state of the `bgtasks up` running with `data_dir` (default BGTASKS_DATA_DIR), or None."""
    if data_dir is None:
        data_dir = Path(os.environ["BGTASKS_DATA_DIR"]) if os.environ.get("BGTASKS_DATA_DIR") else default_data_dir()
    state = _read(data_dir / STATE_FILE)
    return state if state is not None and _alive(state["pid"]) else None


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the embedded database of a running `bgtasks up` (said on stderr)."""
    if settings.database_url:
        return settings.database_url
    state = running(settings.bgtasks_data_dir)
    if state and isinstance(state.get("databaseUrl"), str):
        print(f"bgtasks: using the database of `bgtasks up` (pid {state['pid']}): {state['databaseUrl']}",
              file=sys.stderr, flush=True)
        return str(state["databaseUrl"])
    raise ConfigError(
        f"DATABASE_URL: not set, and no `bgtasks up` is running with data directory {settings.bgtasks_data_dir} "
        "(start one, set BGTASKS_DATA_DIR to the one it uses, or set DATABASE_URL)")


def api_url() -> str | None:
    """The API URL of a running `bgtasks up` (data directory BGTASKS_DATA_DIR), or None."""
    state = running()
    url = state.get("apiUrl") if state else None
    return url if isinstance(url, str) else None
