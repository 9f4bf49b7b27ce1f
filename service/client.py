"""The HTTP client behind the CLI's task and queue commands: a running service's REST API and live stream,
with every failure mapped to one of the CLI's exit codes (people may have no database access; scripts need
codes they can branch on).

Exit codes: 0 ok, 1 the task failed, 2 usage or configuration (including 400/401/403/422), 3 not found,
4 refused (409, 429) or the task was cancelled, 5 the service cannot be reached (or answers 5xx).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

OK, FAILED, USAGE, NOT_FOUND, REFUSED, UNREACHABLE = 0, 1, 2, 3, 4, 5
CANCELLED_EXIT = REFUSED  # `watch`/`submit --wait`: the task was cancelled
DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """Ends a command with a message on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for_status(status: int) -> int:
    if status == 404:
        return NOT_FOUND
    if status in (409, 429):
        return REFUSED
    if status >= 500:
        return UNREACHABLE
    return USAGE


class Client:
    """The CLI's view of bgtasks.Client (service/http_client.py): the same HTTP and SSE code, with every
    failure turned into a CliError carrying its exit code."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        from .http_client import Client as HttpClient

        self.base_url = base_url.rstrip("/")
        self.api = HttpClient(self.base_url, api_key=api_key, timeout=timeout)
        self.api.http.headers["user-agent"] = "bgtasks-cli"

    def task_link(self, task_id: str) -> str:
        """The task's permalink: the dashboard this service serves, with the task's detail open."""
        return f"{self.base_url}/?task={quote(task_id, safe='')}"

    def close(self) -> None:
        self.api.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        from .http_client import ApiError

        try:
            return self.api.request(method, path, **kwargs)
        except ApiError as exc:
            raise CliError(str(exc), exit_code_for_status(exc.status_code)) from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the service at {self.base_url}: {exc}", UNREACHABLE) from None

    def events(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The JSON `data:` of each message of one SSE stream (httpx-sse parses it), until the server ends it."""
        from httpx_sse import SSEError, connect_sse

        from .http_client import STREAM_TIMEOUT, ApiError, answer

        try:
            with connect_sse(self.api.http, "GET", path, params=params, timeout=STREAM_TIMEOUT) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    answer(source.response)
                for sse in source.iter_sse():
                    try:
                        data = json.loads(sse.data)
                    except ValueError:
                        continue
                    if isinstance(data, dict):
                        yield data
        except ApiError as exc:
            raise CliError(str(exc), exit_code_for_status(exc.status_code)) from None
        except (httpx.HTTPError, SSEError) as exc:
            raise CliError(f"lost the live stream from {self.base_url}: {exc}", UNREACHABLE) from None


def add_client_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"the service's base URL (default BGTASKS_URL, {DEFAULT_URL})")
    p.add_argument("--api-key", help="API key (default BGTASKS_API_KEY; none needed in development mode)")


def client_from(args: argparse.Namespace) -> Client:
    # The CLI's edge: these two come from the environment here, not from Settings (they describe the
    # service to talk to, not this process).
    url = getattr(args, "url", None) or os.environ.get("BGTASKS_URL") or _running_api() or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise CliError(f"BGTASKS_URL: expected http://host:port, not {url!r}", USAGE)
    return Client(url, getattr(args, "api_key", None) or os.environ.get("BGTASKS_API_KEY"))


def _running_api() -> str | None:
    from .running import api_url

    url = api_url()
    if url:
        print(f"bgtasks: using the service of `bgtasks up`: {url}", file=sys.stderr, flush=True)
    return url


def api_get(args: argparse.Namespace, path: str, params: Any = None) -> Any:
    """One GET of the service for a command (its --url, --api-key), the connection closed after."""
    client = client_from(args)
    try:
        return client.request("GET", path, params=params)
    finally:
        client.close()


def show_rows(args: argparse.Namespace, rows: list[dict[str, Any]], table: Callable[[list[dict[str, Any]]], None]) -> int:
    """A command's rows: as JSON with --json, else as its table."""
    if args.json:
        print_json(rows)
    else:
        table(rows)
    return OK


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A CLI command: CliError becomes its message on stderr and its exit code."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CliError as exc:
            print(f"bgtasks: {exc}", file=sys.stderr)
            return exc.exit_code

    return run
