"""Cross-cutting behaviour of every actor, as Dramatiq middleware: outcome capture and error
classification (outcome.py), cancellation (cancellation.py). Retries and backoff are SQL (fail_task);
time limits are Dramatiq's TimeLimit with each task type's limit."""
