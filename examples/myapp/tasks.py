"""The application's task types. A worker runs them with `bgtasks worker --app myapp.tasks`."""

from pydantic import BaseModel, Field

import bgtasks


class Summarize(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


@bgtasks.task_type("summarize", description="Summarise a text", max_retries=2, time_limit_s=120)
async def summarize(task: bgtasks.Task, payload: Summarize) -> dict[str, str]:
    await task.progress(30, "Calling the model")
    return {"summary": payload.text[:100]}


@bgtasks.task_type("word-count", description="Count the words of a text")
def word_count(task: bgtasks.Task, payload: Summarize) -> dict[str, int]:
    """A sync function works too: it runs on a worker thread."""
    task.progress_sync(50, "Counting")
    return {"words": len(payload.text.split())}
