"""bgtasks.Client and AsyncClient put a task id into the URL path: an id from untrusted input (a web app passing
on what a browser sent) must never name another endpoint for the key the client holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgtasks import ApiError, AsyncClient, Client
from tests.integration.apiclient import running_api
from tests.processes import free_port

NOT_TASK_IDS = ["../queue/stop?", "../../api/queue/stop#", "x/../../queue/stop?", "..", ".", "../usage?userId=bob#",
                "task_a?b", "task a", "x" * 65, ""]


async def test_a_path_in_place_of_a_task_id_reaches_no_other_endpoint(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path) as api:
        api.client.headers.update(await api.key("root", superuser=True))
        client = AsyncClient("http://testserver", http=api.client)
        for bad in NOT_TASK_IDS:
            for call in (client.get, client.cancel, client.retry):
                with pytest.raises(ApiError) as err:
                    await call(bad)
                assert err.value.status_code == 404 and err.value.code == "not_found", (bad, err.value)
        queue = (await api.client.get("/api/queue")).json()["queueSettings"]
        assert queue["isActive"] is True  # POST /api/queue/stop was never sent
        made = await client.create("noop")
        assert (await client.get(made.id)).id == made.id  # real ids still work
        assert (await client.cancel(made.id)).status in ("cancelled", "completed")


def test_the_sync_client_refuses_a_path_before_sending_anything() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", api_key="bgt_unused")  # nothing listens there
    for bad in NOT_TASK_IDS:
        with pytest.raises(ApiError) as err:
            client.cancel(bad)
        assert err.value.status_code == 404, bad
