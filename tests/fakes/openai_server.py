"""A real OpenAI-compatible HTTP server for tests: scripted chat completions, served by uvicorn in a thread.

with FakeOpenAI() as fake:
    fake.script(rate_limited(retry_after=3), answer({"title": "x"}))
    ...  # point the openai client at fake.base_url; assert on fake.requests
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "FakeOpenAI",
    "RecordedRequest",
    "Scripted",
    "answer",
    "malformed",
    "rate_limited",
    "server_error",
    "stall",
    "status",
    "streamed",
    "trickle",
    "unauthorized",
    "valid_instance",
    "wrong_schema",
]

# A scripted reply: given the request body and the server, produce the HTTP response.
Scripted = Callable[[dict[str, Any], "FakeOpenAI"], Awaitable[Response]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as the client sent it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema the client asked for, when it used ``response_format`` type ``json_schema``."""
        fmt = self.response_format or {}
        return (fmt.get("json_schema") or {}).get("schema")


# ---------------------------------------------------------------------------------------------------------
# Scripts


def answer(content: Any = None, *, finish_reason: str = "stop") -> Scripted:
    """A 200 chat completion. ``content``: a dict/list (sent as JSON), a raw string (sent as is), or None to
    generate a valid instance of the requested schema."""

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        if content is None:
            schema = _requested_schema(body)
            text = json.dumps(valid_instance(schema) if schema else {"answer": "ok"})
        elif isinstance(content, str):
            text = content
        else:
            text = json.dumps(content)
        return JSONResponse(_completion(body, text, finish_reason))

    return reply


def malformed() -> Scripted:
    """A 200 whose content is not parseable JSON (as a model cut off mid-object produces)."""
    return answer('{"questions": [{"question": "unterminated', finish_reason="stop")


def wrong_schema(content: Any = None) -> Scripted:
    """A 200 whose content is JSON that breaks the requested schema. Default: an array where objects belong,
    which breaks every object schema at the root."""
    return answer(content if content is not None else [["not", "what", "you", "asked", "for"]])


def status(code: int, message: str, *, headers: dict[str, str] | None = None, err_type: str = "") -> Scripted:
    """An OpenAI-style error body with the given HTTP status."""

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        error = {"message": message, "type": err_type or "api_error", "param": None, "code": None}
        return JSONResponse({"error": error}, status_code=code, headers=headers)

    return reply


def rate_limited(retry_after: float | None = 3, *, code: str | None = None) -> Scripted:
    """429; ``retry_after`` becomes the Retry-After header (omitted when None). ``code="insufficient_quota"``
    mimics OpenAI's out-of-credit answer, which is also a 429."""
    headers = {"Retry-After": _fmt_seconds(retry_after)} if retry_after is not None else {}

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        error = {
            "message": "Rate limit reached for requests",
            "type": "insufficient_quota" if code == "insufficient_quota" else "requests",
            "param": None,
            "code": code or "rate_limit_exceeded",
        }
        return JSONResponse({"error": error}, status_code=429, headers=headers)

    return reply


def server_error(code: int = 500) -> Scripted:
    return status(code, "The server had an error while processing your request.", err_type="server_error")


def unauthorized() -> Scripted:
    return status(401, "Incorrect API key provided.", err_type="invalid_request_error")


def stall(seconds: float, then: Scripted | None = None) -> Scripted:
    """Wait ``seconds`` without blocking other requests, then reply with ``then`` (default: a valid answer).
    The wait ends early when the server stops, so a test that abandons the request does not delay teardown."""
    after = then or answer()

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        deadline = time.monotonic() + seconds
        # Polls a threading.Event: ``stop`` runs on the test's thread, outside this server's event loop.
        while not fake.stopping.is_set() and (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, 0.05))
        return await after(body, fake)

    return reply


def streamed(text: str, *, pieces: int = 200, over_s: float = 4.0) -> Scripted:
    """A 200 streaming ``text`` in ``pieces`` chunks spread evenly over ``over_s`` seconds (as a model emits
    tokens), then the usage; answered as one completion to a request that does not stream."""

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        if not body.get("stream"):
            return JSONResponse(_completion(body, text, "stop"))
        size = max(1, -(-len(text) // pieces))
        parts = [text[i : i + size] for i in range(0, len(text), size)]
        return _stream_response(_completion(body, text, "stop"), parts, over_s / max(1, len(parts)), fake)

    return reply


def trickle(every_s: float = 2.0, chunk: bytes = b" " * 20, *, for_s: float = 600.0) -> Scripted:
    """A 200 that sends ``chunk`` every ``every_s`` seconds for ``for_s`` seconds, then a valid answer: each
    chunk resets a client's read timeout, so only a total deadline ends the call. Leading whitespace is valid
    JSON, so a patient client would get a real answer in the end."""

    async def reply(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        schema = _requested_schema(body)
        final = json.dumps(_completion(body, json.dumps(valid_instance(schema) if schema else {}), "stop"))

        async def chunks() -> Any:
            deadline = time.monotonic() + for_s
            # Polls a threading.Event set from the test thread, outside this loop.
            while not fake.stopping.is_set() and time.monotonic() < deadline:
                yield chunk
                await asyncio.sleep(every_s)
            yield final.encode()

        return StreamingResponse(chunks(), media_type="application/json")

    return reply


# ---------------------------------------------------------------------------------------------------------
# The server


class FakeOpenAI:
    """Serves ``POST /v1/chat/completions`` on a free 127.0.0.1 port while the context is open.

    Replies come from the script queue first (``script``), then from ``default`` (a valid answer to the
    requested schema unless changed with ``always``). Every request is appended to ``requests``.
    """

    def __init__(self, *, model: str = "fake-model") -> None:
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.default: Scripted = answer()
        self.stopping = threading.Event()
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        # Requests per window, as a provider enforces them (limit_requests); None: no limit.
        self.request_limit: tuple[int, float] | None = None
        self.accepted_at: deque[float] = deque()
        self.over_limit = 0  # requests answered 429 by the limit

    def limit_requests(self, limit: int, window_s: float = 60.0) -> FakeOpenAI:
        """Allow at most ``limit`` requests in any ``window_s`` seconds (a sliding window over the requests it
        accepted), answering the rest 429 with Retry-After; every response carries OpenAI's
        ``x-ratelimit-limit-requests``/``remaining-requests``/``reset-requests`` headers (reset: when the oldest
        request in the window leaves it, so one more is allowed)."""
        with self._lock:
            self.request_limit = (limit, window_s)
            self.accepted_at.clear()
            self.over_limit = 0
        return self

    def _admit(self) -> tuple[bool, dict[str, str]]:
        """Count this request against the limit: (accepted, the rate-limit headers to send)."""
        if self.request_limit is None:
            return True, {}
        limit, window = self.request_limit
        with self._lock:
            now = time.monotonic()
            while self.accepted_at and self.accepted_at[0] <= now - window:
                self.accepted_at.popleft()
            accepted = len(self.accepted_at) < limit
            if accepted:
                self.accepted_at.append(now)
            else:
                self.over_limit += 1
            left = limit - len(self.accepted_at)
            reset = self.accepted_at[0] + window - now if self.accepted_at else 0.0
        headers = {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(left),
                   "x-ratelimit-reset-requests": f"{max(reset, 0.0):.3f}s"}
        return accepted, headers

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Scripted) -> FakeOpenAI:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def always(self, reply: Scripted) -> FakeOpenAI:
        """Reply with ``reply`` whenever the script queue is empty."""
        self.default = reply
        return self

    def reset(self) -> FakeOpenAI:
        """Forget requests and scripts and restore the default answer, so one server can serve many tests."""
        with self._lock:
            self._queue.clear()
        self.requests.clear()
        self.default = answer()
        self.request_limit = None
        return self

    @property
    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next_reply(self) -> Scripted:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(
                {"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400
            )
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        accepted, limit_headers = self._admit()
        if not accepted:
            wait = float(limit_headers["x-ratelimit-reset-requests"].rstrip("s"))
            response: Response = await rate_limited(retry_after=round(wait, 3))(body, self)
        else:
            response = await self._next_reply()(body, self)
            if body.get("stream") and isinstance(response, JSONResponse) and response.status_code == 200:
                response = _as_stream(json.loads(bytes(response.body)))  # a scripted completion, streamed
        response.headers.update(limit_headers)
        return response

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat_completions, methods=["POST"])])

    def start(self) -> FakeOpenAI:
        # Bind first, so the port is known (and ours) before uvicorn starts; no race for a "free" port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(), log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------
# Building responses


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return None
    return (fmt.get("json_schema") or {}).get("schema")


def _tokens(text: str) -> int:
    # Roughly four characters a token, like English text with OpenAI's tokenizers; never zero for real text.
    return max(1, (len(text) + 3) // 4) if text else 0


def _completion(body: dict[str, Any], content: str, finish_reason: str) -> dict[str, Any]:
    prompt = "".join(str(m.get("content") or "") for m in body.get("messages") or [])
    prompt_tokens, completion_tokens = _tokens(prompt), _tokens(content)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_fake",
    }


def _as_stream(completion: dict[str, Any]) -> Response:
    """A completion as OpenAI streams it: chat.completion.chunk events (at most about 200, so a 5 MB answer
    is still a few hundred events), then a usage chunk, then [DONE]."""
    text = completion["choices"][0]["message"]["content"] or ""
    size = max(4, -(-len(text) // 200))
    parts = [text[i : i + size] for i in range(0, len(text), size)]
    return _stream_response(completion, parts, 0.0, None)


def _stream_response(
    completion: dict[str, Any], parts: list[str], every_s: float, fake: FakeOpenAI | None
) -> Response:
    choice = completion["choices"][0]
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"

    def event(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        return f"data: {json.dumps({**base, 'choices': choices, 'usage': usage})}\n\n".encode()

    async def chunks() -> Any:
        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for part in parts:
            if fake is not None and fake.stopping.is_set():
                return
            yield event([{"index": 0, "delta": {"content": part}, "finish_reason": None}])
            if every_s > 0:
                await asyncio.sleep(every_s)
        yield event([{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}])
        yield event([], completion["usage"])
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def valid_instance(
    schema: dict[str, Any], name: str = "value", *, _root: dict[str, Any] | None = None
) -> Any:
    """A plausible value that satisfies ``schema`` (the subset structured outputs use: objects, arrays,
    strings, numbers, booleans, enums, const, anyOf, local ``$ref``)."""
    root = _root if _root is not None else schema
    if "$ref" in schema:
        return valid_instance(_resolve_ref(root, schema["$ref"]), name, _root=root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return valid_instance(options[0], name, _root=root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        return {key: valid_instance(sub, key, _root=root) for key, sub in props.items()}
    if kind == "array":
        low = int(schema.get("minItems", 1))
        count = max(low, min(2, int(schema.get("maxItems", 2))))
        item_schema = schema.get("items") or {"type": "string"}
        singular = name[:-1] if name.endswith("s") else name
        return [valid_instance(item_schema, f"{singular}_{i + 1}", _root=root) for i in range(count)]
    if kind == "integer":
        return _number(schema, 1)
    if kind == "number":
        bottom = schema.get("minimum", schema.get("exclusiveMinimum"))
        top = schema.get("maximum", schema.get("exclusiveMaximum"))
        if bottom is not None and top is not None:
            return (bottom + top) / 2  # strictly inside, whichever bounds are exclusive
        return float(_number(schema, 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"Sample {name.replace('_', ' ')}"
    low_len, high_len = int(schema.get("minLength", 0)), schema.get("maxLength")
    text = text.ljust(low_len, ".")
    return text[: int(high_len)] if high_len is not None else text


def _number(schema: dict[str, Any], preferred: int) -> int:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = preferred
    if low is not None and value <= low:
        value = int(low) + (1 if "exclusiveMinimum" in schema else 0)
    if high is not None and value >= high:
        value = int(high) - (1 if "exclusiveMaximum" in schema else 0)
    return value


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"fake OpenAI resolves only local $ref, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------------------
# As a program of its own: a misbehaving model server for checks run from outside (tests/e2e)

SCENARIOS: dict[str, Callable[[], list[Scripted]]] = {
    # name -> the replies for requests that carry the scenario's marker, in order; the last one repeats
    "ok": lambda: [answer()],
    "huge": lambda: [answer("x" * 5_000_000)],  # a 5 MB answer
    "trickle": lambda: [trickle(0.5, b" " * 20)],  # 20 bytes every 0.5 s for ten minutes
    "burst429": lambda: [*(rate_limited(retry_after=0.3) for _ in range(5)), answer()],
    "slow": lambda: [stall(2.5)],
    "streamed": lambda: [streamed(" ".join(f"word{i}" for i in range(200)))],  # 200 pieces over 4 s  # a valid answer after 2.5 s: long enough to watch a task's progress text
    "big": lambda: [answer({"summary": "A project.", "documents": [
        {"title": f"Doc {i}", "filename": f"docs/d{i}.md", "markdown": "w" * 19_000} for i in range(10)]})],
}


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fakes.openai_server --log requests.jsonl MARKER=scenario ...``: serve on a free port,
    print ``listening on URL``, answer a request mentioning MARKER with the scenario's replies (others: a valid
    answer), and append every request body to the log, until SIGTERM."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--log", required=True, help="append each request body here, one JSON line each")
    parser.add_argument("routes", nargs="*", help=f"MARKER=SCENARIO; scenarios: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    routes: dict[str, deque[Scripted]] = {}
    for spec in args.routes:
        marker, _, name = spec.partition("=")
        routes[marker] = deque(SCENARIOS[name]())
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")  # open for the server's life

    async def route(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        text = json.dumps(body.get("messages") or [])
        with lock:
            log.write(json.dumps(body) + "\n")
            log.flush()
            replies = next((q for m, q in routes.items() if m in text), None)
            reply = (replies.popleft() if len(replies) > 1 else replies[0]) if replies else answer()
        return await reply(body, fake)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeOpenAI() as fake:
        fake.always(route)
        print(f"listening on {fake.base_url}", flush=True)
        stop.wait()
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
