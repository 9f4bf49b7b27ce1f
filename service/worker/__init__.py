"""The worker process: Dramatiq threads over our Postgres broker (service/broker.py), and one module per job.

- `claim_policy`: how many tasks to claim, claiming ahead, when to poll (pure, takes `now`);
- `consumer`: the claims, on Dramatiq's consumer thread (one dedicated connection);
- `completer`: the one hand-off of completions (they ride with the next claim or go to its writer thread);
- `outcomes`: ack, nack and requeue: results, failures, hand-backs;
- `leases`: heartbeats, the reaper of expired leases, self-fencing (dedicated connection);
- `doorbell`: LISTEN (dedicated connection, to the direct URL): wakes the consumer, interrupts cancelled tasks;
- `async_tasks`: async types run as coroutines on the event loop, holding no thread while they await;
- `in_flight`: the tasks held; `task_io`: progress and live output; `schedule_loop`: due cron schedules;
- `runtime`: the parts put together; `process`: `bgtasks worker` start-up and shutdown.

A worker uses at most BGTASKS_WORKER_POOL_SIZE + 4 connections, whatever its concurrency: the pool and the
dedicated ones (claims, LISTEN, heartbeats; retention's while a pass runs).
"""

from .process import build_broker, run_worker
from .runtime import Runtime

__all__ = ["Runtime", "build_broker", "run_worker"]
