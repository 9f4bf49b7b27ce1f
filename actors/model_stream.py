"""A streamed chat completion put together (model.py's calls all stream): the text kept up to the answer cap,
each piece handed on as it arrives (the task's live output), shaped like a non-streamed completion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Called with each piece of text as a streaming call receives it (the task's live output).
OnText = Callable[[str], None]


@dataclass
class _Message:
    content: str = ""
    refusal: str | None = None


@dataclass
class _Choice:
    message: _Message
    finish_reason: str | None = None


@dataclass
class Streamed:
    """A streamed answer put together, shaped like a non-streamed completion for model.py's readers. The text
    kept is bounded by the answer cap; ``length`` counts every character received."""

    model: str | None = None
    choices: list[_Choice] | None = None
    usage: Any = None
    length: int = 0


async def read_stream(stream: Any, cap: int, on_text: OnText | None) -> Streamed:
    """The chunks of a streamed answer, put together; text past ``cap`` characters is counted, not kept."""
    out = Streamed()
    parts: list[str] = []
    refusal: list[str] = []
    finish: str | None = None
    seen_choice = False
    async with stream:
        async for chunk in stream:
            out.model = out.model or getattr(chunk, "model", None)
            if getattr(chunk, "usage", None) is not None:
                out.usage = chunk.usage
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue
                seen_choice = True
                delta = choice.delta
                text = getattr(delta, "content", None) or ""
                if getattr(delta, "refusal", None):
                    refusal.append(delta.refusal)
                if choice.finish_reason:
                    finish = choice.finish_reason
                if not text:
                    continue
                room = cap - out.length
                out.length += len(text)
                if room > 0:
                    kept = text[:room]
                    parts.append(kept)
                    if on_text is not None:
                        on_text(kept)
    if seen_choice:
        out.choices = [_Choice(_Message("".join(parts), "".join(refusal) or None), finish)]
    else:
        out.choices = []
    return out
