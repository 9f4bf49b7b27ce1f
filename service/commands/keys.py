"""`bgtasks keys`: create an API key (printed once; only its hash is stored), revoke one, list them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .. import tables
from ..store import keys
from . import with_conn

EXIT_NOT_FOUND = 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="manage API keys (Authorization: Bearer KEY)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = ks.add_parser("create", help="create a key and print it once")
    c.add_argument("--user", required=True, help="the user the key acts as (e.g. an email)")
    c.add_argument("--superuser", action="store_true", help="sees and manages every user's tasks and the queue")
    c.add_argument("--label", help="what the key is for")
    c.set_defaults(func=run_create)
    r = ks.add_parser("revoke", help="revoke a key, given the key itself or its id")
    r.add_argument("key", metavar="KEY_OR_ID")
    r.set_defaults(func=run_revoke)
    ls = ks.add_parser("ls", help="list keys (never the keys themselves)")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.set_defaults(func=run_ls)


def _row(r: Any) -> dict[str, Any]:
    out = dict(r)
    for k, v in out.items():
        if hasattr(v, "isoformat"):
            out[k] = v.isoformat()
    return out


def run_create(args: argparse.Namespace) -> int:
    user = args.user.strip()
    if not user or len(user) > 200:
        print("bgtasks: --user: 1-200 characters", file=sys.stderr)
        return 2
    key, row = asyncio.run(with_conn(
        lambda conn: keys.create_api_key(conn, user, is_superuser=args.superuser, label=args.label)))
    kind = "superuser" if row["is_superuser"] else "user"
    print(key)
    print(f"bgtasks: key {row['id']} for {kind} {row['user_id']!r} created; it is shown only this once",
          file=sys.stderr)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    row = asyncio.run(with_conn(lambda conn: keys.revoke_api_key(conn, args.key.strip())))
    if row is None:
        print("bgtasks: no such key", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"revoked key {row['id']} ({row['key_prefix']}…) of {row['user_id']!r}")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    found = asyncio.run(with_conn(keys.list_api_keys))
    if args.json:
        print(json.dumps([_row(r) for r in found], indent=2))
        return 0
    tables.print_table(("ID", "PREFIX", "USER", "ROLE", "STATE", "LAST USED", "LABEL"), [
        (r["id"], f"{r['key_prefix']}…", r["user_id"], "superuser" if r["is_superuser"] else "user",
         tables.dim(f"revoked {tables.when(r['revoked_at'])}") if r["revoked_at"] else tables.status("active"),
         tables.when(r["last_used_at"]), r["label"] or "") for r in found], wrap=("LABEL",),
        empty="(no keys: bgtasks keys create --user NAME)")
    return 0

