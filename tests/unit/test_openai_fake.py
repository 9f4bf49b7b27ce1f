"""The fake OpenAI server itself: its default answers satisfy the requested schema, and it speaks plain HTTP
as the real API does, so tests that drive it are testing something true."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bgtasks.actors.model import schema_problems
from tests.fakes.openai_server import FakeOpenAI, rate_limited, valid_instance

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"title": {"type": "string", "minLength": 20}}, "required": ["title"]},
    {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 3,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
                        "effort": {"type": "integer", "minimum": 1, "maximum": 8},
                        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                        "done": {"type": "boolean"},
                        "note": {"type": ["string", "null"]},
                    },
                    "required": ["priority", "effort", "score", "done", "note"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["tasks"],
        "additionalProperties": False,
    },
    {
        "$defs": {
            "File": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
        },
        "type": "object",
        "properties": {"files": {"type": "array", "items": {"$ref": "#/$defs/File"}, "minItems": 1}},
        "required": ["files"],
    },
    {
        "type": "object",
        "properties": {"emoji": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 2}]}},
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_instance_satisfies_its_schema(schema: dict[str, Any]) -> None:
    assert schema_problems(valid_instance(schema), schema) == []


def test_default_answer_is_a_chat_completion_with_usage_and_records_the_request() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMAS[1]}},
    }
    with FakeOpenAI() as fake, httpx.Client() as client:
        reply = client.post(f"{fake.base_url}/chat/completions", json=body)
        assert fake.base_url.endswith("/v1")
        assert reply.status_code == 200
        data = reply.json()
        assert data["object"] == "chat.completion"
        assert (
            data["usage"]["total_tokens"]
            == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
        )
        [request] = fake.requests
        assert request.model == "m" and request.schema == SCHEMAS[1]


def test_scripts_are_used_in_order_then_the_default() -> None:
    with FakeOpenAI() as fake, httpx.Client() as client:
        fake.script(rate_limited(retry_after=2))
        first = client.post(f"{fake.base_url}/chat/completions", json={"model": "m", "messages": []})
        second = client.post(f"{fake.base_url}/chat/completions", json={"model": "m", "messages": []})
        assert (first.status_code, first.headers["retry-after"]) == (429, "2")
        assert second.status_code == 200
        assert fake.pending_scripts == 0
