"""The payload schemas of the built-in task types (also the OpenAPI document's seed-two body)."""

from __future__ import annotations

from typing import Any

PROJECT_PAYLOAD: dict[str, Any] = {
    "type": "object",
    "properties": {"instructions": {"type": "string", "maxLength": 4000}},
    "additionalProperties": False,
}
QUESTION_IDS: dict[str, Any] = {
    "type": "object",
    "properties": {"questionIds": {"type": "array",  # ids are bigint: a larger one is no question, refused at once
                                   "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                                   "minItems": 1, "maxItems": 200}},
    "required": ["questionIds"],
    "additionalProperties": False,
}

GENERATION: dict[str, Any] = {  # seed two's POST /api/generateAIQuestions body
    "type": "object",
    "properties": {
        "amount": {"type": "integer", "minimum": 1, "maximum": 50},
        "category": {"type": "string", "minLength": 1, "maxLength": 200},
        "ageGroup": {"type": "string", "enum": ["children", "youth", "adults"]},
        "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
        "provider": {"type": "string", "enum": ["openai"]},
    },
    "required": ["amount", "category"],
    "additionalProperties": False,
}
