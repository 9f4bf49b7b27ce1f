"""What happens when an actor ends (the broker's ack, nack and requeue): a result goes to the completer, a
failure is written at once (retry with backoff, error, or a provider's rate limit waited out), a fenced
attempt is handed back, and a task given up at shutdown goes back to pending."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..fencing import CallDeadlines
from ..middleware.outcome import ON_LOOP, Failure, describe, json_result
from ..settings import Settings
from ..store import worker as store
from .claim_policy import ClaimPolicy
from .completer import Completer
from .conn import write_with_retry
from .in_flight import InFlight, InFlightTable
from .leases import Leases

log = logging.getLogger("bgtasks.worker")


class Outcomes:
    def __init__(self, settings: Settings, worker_id: str, in_flight: InFlightTable, policy: ClaimPolicy,
                 completer: Completer, leases: Leases, pool: ConnectionPool[Any], deadlines: CallDeadlines) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.in_flight = in_flight
        self.policy = policy
        self.completer = completer
        self.leases = leases
        self.pool = pool
        self.deadlines = deadlines

    def ended(self, task_id: str) -> None:
        """The actor returned or raised (before its message is acked): its run time is evidence for the
        claim policy."""
        ran = self.in_flight.end(task_id)
        if ran is not None:
            with self.in_flight.lock:
                self.policy.ran(ran)

    def finish_ok(self, message: Any) -> None:
        """ack: the actor returned (an async actor's coroutine only started: the loop calls `succeeded`)."""
        result = message.options.get("bgtasks_result")
        if result is not ON_LOOP:
            self.succeeded(message.message_id, int(message.options["attempt"]), result)

    def finish_failed(self, message: Any) -> None:
        """nack: the actor raised, or no actor serves the type."""
        failure: Failure = message.options.get("bgtasks_failure") or Failure(
            "ActorNotFound", f"no actor for task type {message.actor_name!r} on worker {self.worker_id}",
            permanent=True)
        self.failed(message.message_id, int(message.options["attempt"]), failure)

    def succeeded(self, task_id: str, attempt: int, result: Any) -> None:
        rec = self.in_flight.forget(task_id, attempt)
        if self._fenced_off(rec):
            return
        if rec is not None and rec.context is not None and rec.context.cancelled.is_set():
            return  # cancelled while finishing: never write completed over it
        self.completer.add((task_id, attempt, json_result(result)))

    def failed(self, task_id: str, attempt: int, failure: Failure) -> None:
        rec = self.in_flight.forget(task_id, attempt)
        if self._fenced_off(rec):
            pass  # whatever it raised: nothing is written for a fenced attempt (its interrupt was logged)
        elif failure.write:
            outcome = write_with_retry(self.pool, self.deadlines,
                                       lambda conn: self._record_failure(conn, task_id, attempt, failure))
            # One line per failure, however many: the traceback is kept with the attempt (the task's detail
            # shows it) and logged at DEBUG only.
            log.info("task %s attempt %s %s: %s -> %s", task_id, attempt,
                     "waits for its provider budget" if failure.budget else "failed",
                     describe(failure).splitlines()[0][:500] if failure.message else failure.error_type, outcome)
            if failure.traceback and log.isEnabledFor(logging.DEBUG):
                log.debug("task %s attempt %s traceback:\n%s", task_id, attempt, failure.traceback)
        elif rec is None or rec.context is None or not rec.context.cancel_reason:
            # The actor found out itself (a progress write refused: cancelled, deleted, fenced off); an
            # interrupt was logged when it was sent.
            log.info("task %s attempt %s stopped, nothing written: %s", task_id, attempt, failure.message)

    def release(self, task_id: str, attempt: int) -> None:
        """Hand a task back to pending without counting a retry (shutdown)."""
        self.in_flight.forget(task_id, attempt)
        write_with_retry(self.pool, self.deadlines, lambda conn: store.release_task(conn, task_id, attempt),
                         attempts=3)

    def _fenced_off(self, rec: InFlight | None) -> bool:
        """A fenced attempt's actor has stopped: hand the task back (without counting a retry) once the
        database answers, and write nothing else for it."""
        if rec is None or not rec.fenced:
            return False
        self.leases.release_later(rec.task_id, rec.attempt)
        return True

    def _record_failure(self, conn: psycopg.Connection[Any], task_id: str, attempt: int, failure: Failure) -> Any:
        """A provider's rate limit waits without spending a retry (bounded by BGTASKS_RATE_LIMIT_MAX_WAIT_S), a
        provider budget's wait too (unbounded: the fleet paces itself); every other failure is fail_task()'s:
        retry with backoff, or error."""
        # One transaction: a reader never sees the failed attempt without its traceback.
        with conn.transaction():
            if failure.budget is not None:
                status = store.postpone_for_budget(conn, task_id, attempt, *failure.budget,
                                                   failure.retry_after_s or 0.0, failure.message[:4000])
            elif failure.rate_limited:
                status = store.postpone_rate_limited(conn, task_id, attempt, failure.error_type,
                                                     failure.message[:4000], failure.retry_after_s,
                                                     self.settings.bgtasks_rate_limit_max_wait_s)
            else:
                status = store.fail_task(conn, task_id, attempt, failure.error_type, failure.message[:4000],
                                         failure.permanent, failure.retry_after_s)
            if status is not None and failure.traceback:
                store.record_attempt_traceback(conn, task_id, attempt, failure.traceback)
        return status
