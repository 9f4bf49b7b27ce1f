"""The HTTP app on a test database, driven in-process through httpx (lifespan included), with API keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bgtasks.api.app import create_app
from bgtasks.settings import load_settings
from bgtasks.store import keys


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Any
    project_root: Path

    @property
    def pool(self) -> Any:
        return self.app.state.pool

    async def key(self, user: str, *, superuser: bool = False) -> dict[str, str]:
        """Authorization headers for a new key of `user`."""
        key, _ = await keys.create_api_key(self.pool, user, is_superuser=superuser)
        return {"Authorization": f"Bearer {key}"}

    def project(self, name: str = "proj") -> str:
        path = self.project_root / name
        path.mkdir(exist_ok=True)
        (path / "README.md").write_text("# demo\n")
        return str(path)


@contextlib.asynccontextmanager
async def running_api(
    database_url: str, project_root: Path, *, client_host: str = "10.1.2.3",
    base_url: str = "http://testserver", **overrides: Any
) -> AsyncIterator[Api]:
    """The app with its lifespan running; requests come from `client_host` (not loopback by default, so dev
    mode never applies unless a test asks for 127.0.0.1)."""
    settings = load_settings(database_url=database_url,
                             **{"bgtasks_dev": False, "bgtasks_project_roots": str(project_root), **overrides})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield Api(client, app, project_root)
