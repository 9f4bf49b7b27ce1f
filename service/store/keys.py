"""API keys (asyncpg): make one (the key is returned once, only its SHA-256 is stored), look one up, revoke,
check which are still live (open streams re-check their keys); the secret that signs read tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool

KEY_PREFIX = "bgt_"
_SHOWN_PREFIX = 12  # "bgt_" and 8 more characters: enough to recognise a key in `bgtasks keys ls`


def new_key() -> str:
    """`bgt_` and 32 random URL-safe characters (192 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeyOwner:
    key_id: int
    user_id: str
    is_superuser: bool
    revoked: bool
    stale: bool  # last use recorded over a minute ago: record this one (touch_api_key)


async def create_api_key(
    conn: Executor, user_id: str, *, is_superuser: bool = False, label: str | None = None
) -> tuple[str, asyncpg.Record]:
    """A new key for `user_id`: (the key itself, shown once; its row without the hash). User ids compare
    case-insensitively everywhere, so a key stores its user lower-cased, as the trusted proxy's users are."""
    key = new_key()
    row = await conn.fetchrow(
        queries.get("create_api_key").sql, user_id.lower(), key[:_SHOWN_PREFIX], hash_key(key), is_superuser, label
    )
    assert row is not None
    return key, row


async def api_key_by_hash(conn: Executor, key: str) -> KeyOwner | None:
    """Who `key` belongs to (None for an unknown key)."""
    row = await conn.fetchrow(queries.get("api_key_by_hash").sql, hash_key(key))
    if row is None:
        return None
    return KeyOwner(row["id"], row["user_id"], row["is_superuser"], row["revoked_at"] is not None, row["stale"])


async def touch_api_key(conn: Executor, key_id: int) -> None:
    await conn.execute(queries.get("touch_api_key").sql, key_id)


async def revoke_api_key(conn: Executor, key_or_id: str) -> asyncpg.Record | None:
    """Revoke by the key itself or by its id; None when no key matches."""
    key_id = int(key_or_id) if key_or_id.isdigit() and len(key_or_id) < 19 else None
    return await conn.fetchrow(queries.get("revoke_api_key").sql, key_id, hash_key(key_or_id))


async def live_api_keys(conn: Executor, key_ids: Iterable[int]) -> set[int]:
    """The subset of `key_ids` that still exist and are not revoked."""
    ids = list(key_ids)
    if not ids:
        return set()
    return {r["id"] for r in await conn.fetch(queries.get("live_api_keys").sql, ids)}


async def list_api_keys(conn: Executor) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("list_api_keys").sql)


READ_TOKENS_SECRET = "read_tokens"


async def read_token_secret(conn: Executor) -> bytes:
    """The secret that signs read tokens, shared by every API process on this database: made (32 random
    bytes) by the first one that asks."""
    await conn.execute(queries.get("create_service_secret").sql, READ_TOKENS_SECRET, secrets.token_bytes(32))
    secret = await conn.fetchval(queries.get("service_secret").sql, READ_TOKENS_SECRET)
    assert secret is not None
    return bytes(secret)
