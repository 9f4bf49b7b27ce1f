"""Read tokens without a database: what a token names is what it reads, expiry follows the injected clock,
and anything not signed by this service's secret is refused."""

from __future__ import annotations

import jwt
import pytest

from bgtasks.errors import AuthError
from bgtasks.tokens import mint, verify

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def test_a_token_names_its_tasks_its_minter_and_its_key() -> None:
    token, exp = mint(SECRET, user_id="alice", key_id=7, is_superuser=False, task_ids=["task_1"], now=NOW,
                      ttl_s=900)
    scope = verify(SECRET, token, now=NOW + 899)
    assert exp == NOW + 900 and scope.expires_at == exp
    assert (scope.user_id, scope.key_id, scope.owner) == ("alice", 7, "alice")
    assert scope.allows("task_1") and not scope.allows("task_2")


def test_my_tasks_reads_every_task_of_the_minter_and_a_superusers_named_tasks_any_owner() -> None:
    mine, _ = mint(SECRET, user_id="root", key_id=1, is_superuser=True, task_ids=None, now=NOW, ttl_s=60)
    scope = verify(SECRET, mine, now=NOW)
    assert scope.task_ids is None and scope.owner == "root" and scope.allows("anything")
    named, _ = mint(SECRET, user_id="root", key_id=1, is_superuser=True, task_ids=["task_9"], now=NOW, ttl_s=60)
    assert verify(SECRET, named, now=NOW).owner is None


def test_an_expired_token_is_refused_by_the_clock_it_is_given() -> None:
    token, _ = mint(SECRET, user_id="alice", key_id=None, is_superuser=False, task_ids=["t"], now=NOW, ttl_s=60)
    verify(SECRET, token, now=NOW + 59)
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, token, now=NOW + 60)


@pytest.mark.parametrize("forge", [
    lambda: jwt.encode({"aud": "bgtasks:read", "sub": "alice", "exp": NOW + 60}, b"o" * 32, algorithm="HS256"),
    lambda: jwt.encode({"aud": "other", "sub": "alice", "exp": NOW + 60}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"aud": "bgtasks:read", "exp": NOW + 60}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"aud": "bgtasks:read", "sub": "a", "exp": NOW + 60, "key": "x"}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"aud": "bgtasks:read", "sub": "a", "exp": NOW + 60}, SECRET * 2, algorithm="HS512"),
    lambda: "eyJhbGciOiJub25lIn0.eyJhdWQiOiJiZ3Rhc2tzOnJlYWQiLCJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
    lambda: "not a token", lambda: "", lambda: "é" * 10,
])
def test_anything_this_service_did_not_sign_for_reading_is_refused(forge: object) -> None:
    with pytest.raises(AuthError, match="token: "):
        verify(SECRET, forge(), now=NOW)  # type: ignore[operator]
