// The dashboard's one backoff (the Python side's is service/backoff.py, the same policy): the wait after
// `failures` failures in a row, not counting this one, doubling from `base` up to `cap` (milliseconds or seconds,
// as the caller counts), plus up to `jitter` (same unit) of random spread so many pages do not come back at once.

export function backoffDelay(failures, { base, cap, jitter = 0, random = Math.random }) {
  return Math.min(cap, base * 2 ** Math.min(Math.max(failures, 0), 30)) + random() * jitter;
}
