"""bgtasks.Client and bgtasks.AsyncClient against a running service (real API and worker processes)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncGenerator

import pytest

import bgtasks
from tests.processes import Processes


def test_client_round_trip_create_events_until_completed_and_result(procs: Processes) -> None:
    procs.worker(concurrency=2)
    _, base = procs.api()
    with bgtasks.Client(base) as client:
        task = client.create("sleep", {"seconds": 0.2, "steps": 2}, label="round trip")
        assert isinstance(task, bgtasks.TaskInfo) and task.task_type == "sleep" and task.label == "round trip"
        seen = [event for event in client.events(task.id)]
        assert seen[0].type == "update" and seen[-1].type == "complete", [e.type for e in seen]
        final = seen[-1].task
        assert final is not None and final.status == "completed" and final.finished
        assert client.get(task.id).result == final.result
        assert client.wait(task.id, timeout=30).status == "completed"
        assert task.id in [t.id for t in client.list(task_type="sleep").tasks]

        with pytest.raises(bgtasks.ApiError) as err:
            client.create("sleep", {"seconds": -1})
        assert err.value.status_code == 422 and err.value.field == "payload.seconds"
        assert err.value.body["success"] is False

        long = client.create("sleep", {"seconds": 600})
        cancelled = client.cancel(long.id, reason="not needed")
        assert cancelled.status == "cancelled"
        assert client.wait(long.id, timeout=30).status == "cancelled"
        assert client.retry(long.id).status == "pending"
        client.cancel(long.id)
        with pytest.raises(TimeoutError):
            client.wait(client.create("sleep", {"seconds": 600}, run_at="2100-01-01T00:00:00Z").id, timeout=0.5)
        many = client.create_many([("noop", {}), ("noop", {})])
        assert len(many) == 2 and {client.wait(t.id, timeout=30).status for t in many} == {"completed"}


async def test_async_client_round_trip_and_resume_from_last_event_id(procs: Processes) -> None:
    procs.worker(concurrency=2)
    _, base = procs.api()
    async with bgtasks.AsyncClient(base) as client:
        task = await client.create("sleep", {"seconds": 0.1, "steps": 2})
        done = await client.wait(task.id, timeout=30)
        assert done.status == "completed" and (await client.get(task.id)).result == done.result
        # Every visible task's stream, resumed from before the task existed: replays what changed since.
        events = client.events(task_type="sleep", last_event_id="0")
        replayed = []
        async for event in events:
            if event.type == "ready":
                break
            replayed.append(event)
        assert isinstance(events, AsyncGenerator)  # closed here rather than left to the garbage collector
        await events.aclose()
        assert replayed and replayed[-1].task is not None and replayed[-1].task.id == task.id
        assert replayed[-1].task.status == "completed"
        with pytest.raises(bgtasks.ApiError) as err:
            await client.get("task_nope")
        assert err.value.status_code == 404


class CuttableProxy:
    """A TCP forwarder to the API whose open connections a test can cut (a dropped network, for real)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.open += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()  # ours to close, not the garbage collector's (warnings are errors)
        self.open.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_events_resume_with_last_event_id_after_a_dropped_connection(procs: Processes) -> None:
    _, base = procs.api()
    proxy = CuttableProxy(int(base.rsplit(":", 1)[1]))
    direct = bgtasks.Client(base)
    try:
        with bgtasks.Client(f"http://127.0.0.1:{proxy.port}") as client:
            events = client.events(task_type="noop")
            assert next(events).type == "ready"
            first = direct.create("noop", {}, label="before the drop")
            assert next(e for e in events if e.task is not None).task.id == first.id  # type: ignore[union-attr]
            proxy.cut()
            second = direct.create("noop", {}, label="while disconnected")
            seen = []
            for event in events:  # reconnects through the proxy with Last-Event-ID
                if event.task is not None:
                    seen.append(event.task.id)
                if second.id in seen:
                    break
            # Nothing missed; what the server replays from Last-Event-ID may repeat the latest state of a task
            # already seen (events are states, not deltas).
            assert set(seen) <= {first.id, second.id} and seen[-1] == second.id, seen
    finally:
        direct.close()
        proxy.close()
