"""`bgtasks types [NAME]`: the task types workers published, with how many live workers serve each; one type
with its payload's fields (`--schema`: the payload's JSON Schema itself). Over the HTTP API, like the task
commands: only BGTASKS_URL is needed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import tables
from ..client import (
    NOT_FOUND,
    OK,
    CliError,
    add_client_arguments,
    api_get,
    command,
    print_json,
    show_rows,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("types", help="list task types (published by workers, live workers, limits), or show one "
                       "with its payload's fields")
    p.add_argument("name", metavar="NAME", nargs="?", help="one type: its settings and payload fields")
    p.add_argument("--schema", action="store_true", help="with NAME: print its payload's JSON Schema")
    p.add_argument("--json", action="store_true", help="every type (or NAME) as JSON, payload schemas included")
    add_client_arguments(p)
    p.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    if args.schema and not args.name:
        raise CliError("--schema: name the type (bgtasks types NAME --schema)", 2)
    types = api_get(args, "/api/task-types")["taskTypes"]
    if args.name:
        found = [t for t in types if t["name"] == args.name]
        if not found:
            known = ", ".join(t["name"] for t in types) or "none"
            raise CliError(f"no task type {args.name!r} (known: {known})", NOT_FOUND)
        one = found[0]
        if args.schema:
            print_json(one.get("payloadSchema") or {})
        elif args.json:
            print_json(one)
        else:
            describe(one)
        return OK
    return show_rows(args, types, table)


def table(types: list[dict[str, Any]]) -> None:
    if not types:
        tables.show(tables.dim("(no task types: start a worker with --app MODULE)"))
        return
    tables.print_table(("TYPE", "LIVE WORKERS", "RETRIES", "TIME LIMIT", "PAYLOAD", "DESCRIPTION"), [
        (t["name"], t["liveWorkers"] if t["published"] else tables.dim("not published"), t["maxRetries"],
         f"{t['timeLimitS']:g}s", tables.clip(", ".join(_fields(t.get("payloadSchema"))) or "-", 50),
         t["description"] or "") for t in types], right=("LIVE WORKERS", "RETRIES", "TIME LIMIT"),
        wrap=("PAYLOAD", "DESCRIPTION"))


def _fields(schema: Any) -> list[str]:
    """The payload's top-level fields, `name*` when required."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return []
    required = set(schema.get("required") or [])
    return [f"{name}*" if name in required else name for name in schema["properties"]]


# JSON Schema keywords shown in the CONSTRAINTS column, in this order, as `keyword value`.
_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                "pattern", "format", "minItems", "maxItems", "enum", "const", "default")


def describe(t: dict[str, Any]) -> None:
    """One type for people: its settings, then each payload field (type, required, constraints)."""
    live = str(t["liveWorkers"])
    if t.get("workers"):  # their ids: superusers only
        live += f" ({', '.join(t['workers'])})"
    facts = [("type", t["name"]), ("description", t.get("description") or ""),
             ("live workers", live if t["published"] else "not published"),
             ("retries", t["maxRetries"]), ("time limit", f"{t['timeLimitS']:g}s"),
             ("needs a project", "yes" if t.get("needsProject") else "no")]
    if t.get("publishedBy"):
        facts.append(("published", f"{tables.when(t.get('publishedAt'))} by {t['publishedBy']}"))
    tables.show(tables.fields(facts))
    schema = t.get("payloadSchema") or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    tables.show("")
    if not isinstance(props, dict) or not props:
        tables.show("payload: any JSON object (no fields declared)")
        return
    extra = "other fields allowed" if schema.get("additionalProperties", True) is not False else "no other fields"
    tables.show(f"payload ({extra}; `bgtasks types {t['name']} --schema` prints the JSON Schema):")
    required = set(schema.get("required") or [])
    tables.print_table(("FIELD", "TYPE", "REQUIRED", "CONSTRAINTS", "DESCRIPTION"), [
        (name, _type(spec), "yes" if name in required else "no", _constraints(spec),
         spec.get("description", "") if isinstance(spec, dict) else "") for name, spec in props.items()],
        wrap=("CONSTRAINTS", "DESCRIPTION"))


def _type(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "any"
    kind = spec.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and isinstance(spec.get("items"), dict) and spec["items"].get("type"):
        return f"array of {spec['items']['type']}"
    if kind:
        return str(kind)
    for combo in ("anyOf", "oneOf"):
        if isinstance(spec.get(combo), list):
            return " | ".join(_type(s) for s in spec[combo])
    return "any"


def _constraints(spec: Any) -> str:
    if not isinstance(spec, dict):
        return ""
    return ", ".join(f"{k} {json.dumps(spec[k])}" for k in _CONSTRAINTS if k in spec)
