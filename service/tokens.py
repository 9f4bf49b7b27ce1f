"""Read tokens for browsers (pure): a short-lived JWT (HS256) that reads only the tasks it names, or every task
of the user who minted it, and never writes. Signed with the service's secret, so verifying one costs no
query; the key that minted it is named inside, so revoking that key voids it (checked by the caller).

Claims: `aud` "bgtasks:read", `sub` the minting user, `key` the minting API key's id (null: a trusted proxy's
or dev mode's user), `tasks` the task ids or absent for "my-tasks", `own` whether reads are limited to the
minter's own tasks (false only for a superuser's token naming tasks), `iat`, `exp`. See docs/api.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from .errors import AuthError

AUDIENCE = "bgtasks:read"
ALGORITHM = "HS256"
MAX_TASKS = 100  # ids one token may name: a token travels in a URL
MAX_TOKEN_CHARS = 8000


@dataclass(frozen=True)
class ReadScope:
    """What a read token lets its bearer read."""

    user_id: str  # who minted it (streams count against this user)
    key_id: int | None
    task_ids: frozenset[str] | None  # None: every task of `owner`
    owner: str | None  # reads limited to this user's tasks (None: a superuser's token naming its tasks)
    expires_at: float  # seconds since the epoch

    def allows(self, task_id: str) -> bool:
        return self.task_ids is None or task_id in self.task_ids


def mint(
    secret: bytes,
    *,
    user_id: str,
    key_id: int | None,
    is_superuser: bool,
    task_ids: list[str] | None,
    now: float,
    ttl_s: float,
) -> tuple[str, float]:
    """A signed read token and its expiry (epoch seconds). task_ids None: "my-tasks" of `user_id`."""
    if task_ids is not None and not 1 <= len(task_ids) <= MAX_TASKS:
        raise ValueError(f"a read token names 1 to {MAX_TASKS} tasks")
    exp = int(now + ttl_s)
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "sub": user_id,
        "key": key_id,
        "own": task_ids is None or not is_superuser,
        "iat": int(now),
        "exp": exp,
    }
    if task_ids is not None:
        claims["tasks"] = task_ids
    return jwt.encode(claims, secret, algorithm=ALGORITHM), float(exp)


def verify(secret: bytes, token: str, *, now: float) -> ReadScope:
    """The scope of a valid token, or AuthError naming what is wrong (malformed, bad signature, expired)."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise AuthError("token: not a read token")
    try:
        # Times are checked below against the injected clock; everything else by PyJWT.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"verify_exp": False, "verify_iat": False, "require": ["aud", "sub", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise AuthError("token: bad signature (not minted by this service, or its secret changed)") from None
    except jwt.PyJWTError:
        raise AuthError("token: not a read token") from None
    try:
        exp = float(claims["exp"])
        user_id = str(claims["sub"])
        key_id = None if claims.get("key") is None else int(claims["key"])
        tasks = claims.get("tasks")
        task_ids = None if tasks is None else frozenset(str(t) for t in tasks)
        own = bool(claims.get("own", True))
    except (TypeError, ValueError):
        raise AuthError("token: not a read token") from None
    if exp <= now:
        raise AuthError("token: expired; mint a new one with POST /api/tokens")
    return ReadScope(user_id, key_id, task_ids, user_id if own else None, exp)
