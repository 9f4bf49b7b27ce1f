"""What the CLI prints for people: tables with a header row and aligned columns, colour only when stdout is a
terminal (rich; NO_COLOR turns it off). Scripts read `--json`, which never goes through here.

On a terminal a table fits its width: the columns marked `wrap` wrap at word boundaries, never mid-word. Into a
pipe or a file nothing wraps (one row is one line, for grep and awk) and there are no escape codes."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

# A pipe has no width; wide enough that no table is ever wrapped into it.
PIPE_WIDTH = 10_000

STATUS_STYLES = {"pending": "blue", "processing": "cyan", "completed": "green", "error": "bold red",
                 "failed": "bold red", "cancelled": "yellow", "active": "green", "revoked": "dim",
                 "on": "green", "off": "dim"}

Cell = str | int | float | Text | None


def console(out: TextIO | None = None) -> Console:
    """A console over `out` (stdout by default): colour and the terminal's width on a terminal, plain text
    without a width limit elsewhere. Markup and highlighting are off: cell text is printed as it is."""
    out = out if out is not None else sys.stdout
    tty = out.isatty()
    return Console(file=out, markup=False, highlight=False, emoji=False, soft_wrap=False,
                   width=None if tty else PIPE_WIDTH, no_color=None if tty else True)


def styled(text: str, style: str | None) -> Text:
    return Text(text, style=style or "")


def status(value: str | None) -> Text:
    """A task status (or any state word in STATUS_STYLES), coloured on a terminal."""
    value = value or ""
    return styled(value, STATUS_STYLES.get(value))


def dim(value: str) -> Text:
    return styled(value, "dim")


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, right: Iterable[str] = (),
          wrap: Iterable[str] = ()) -> Table:
    """A borderless table: a bold header row, two spaces between columns. Columns named in `right` are
    right-aligned (numbers); those named in `wrap` wrap at words on a narrow terminal, the others never wrap."""
    right, wrap = set(right), set(wrap)
    t = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    for h in headers:
        t.add_column(h, justify="right" if h in right else "left", no_wrap=h not in wrap,
                     overflow="fold" if h in wrap else "ellipsis")
    for row in rows:
        t.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in row))
    return t


def fields(pairs: Iterable[tuple[str, Cell]]) -> Table:
    """Name / value lines with the values aligned (a task's or a type's fields); values wrap on a terminal."""
    t = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for name, value in pairs:
        t.add_row(Text(name), value if isinstance(value, Text) else Text("" if value is None else str(value)))
    return t


def stack(*parts: RenderableType) -> Group:
    """Renderables (tables, texts, strings: "" is an empty line) one below the other."""
    return Group(*parts)


def render(renderable: Any, out: TextIO | None = None) -> str:
    """What printing `renderable` on `out` shows (escape codes only for a terminal), trailing spaces cut."""
    con = console(out)
    with con.capture() as captured:
        con.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def show(renderable: Any, out: TextIO | None = None) -> None:
    """Print a table (or any rich renderable, or a str) on stdout."""
    out = out if out is not None else sys.stdout
    out.write(render(renderable, out) + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, empty: str | None = None,
                right: Iterable[str] = (), wrap: Iterable[str] = ()) -> None:
    """A table on stdout; with no rows, the header and then `empty` (e.g. "(no tasks)") when given."""
    show(table(headers, rows, right=right, wrap=wrap))
    if not rows and empty:
        show(dim(empty))


def clip(text: str, width: int = 90) -> str:
    """One line of at most `width` characters, cut at a word with an ellipsis (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def when(value: datetime | str | None) -> str:
    """A time as `2026-01-05 10:02:11` in UTC (a datetime, or an API's ISO string); '-' for none."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")
