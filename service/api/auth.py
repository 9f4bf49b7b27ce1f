"""Who is calling: an API key (`Authorization: Bearer KEY`), seed two's `x-user-email` behind a trusted proxy,
or, in development mode on loopback, the local superuser. Every handler (REST and SSE) starts here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

from ..errors import AuthError
from ..settings import Settings
from ..store import keys


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_superuser: bool

    @property
    def owner(self) -> str | None:
        """The owner filter for queries: this user's id, or None (everyone's) for a superuser."""
        return None if self.is_superuser else self.user_id


LOCAL = Principal("local", True)
_MAX_KEY = 200
_MAX_USER = 200


def _is_loopback_client(request: Request) -> bool:
    host = request.client.host if request.client else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_mode_applies(settings: Settings, request: Request) -> bool:
    """Development mode: bound to loopback and the request comes from loopback."""
    return settings.bgtasks_dev and settings.is_loopback and _is_loopback_client(request)


async def authenticate(request: Request) -> Principal:
    """The caller, or AuthError (401). A bad or revoked key is refused even where dev mode would let a
    request without credentials through: presenting a key means "act as that key"."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("authorization: expected 'Bearer KEY'")
        if len(token) > _MAX_KEY or not token.isascii() or not token.isprintable():
            raise AuthError("authorization: unknown or revoked API key")
        pool = request.app.state.pool
        owner = await keys.api_key_by_hash(pool, token)
        if owner is None or owner.revoked:
            raise AuthError("authorization: unknown or revoked API key")
        if owner.stale:
            await keys.touch_api_key(pool, owner.key_id)
        return Principal(owner.user_id, owner.is_superuser)
    if settings.bgtasks_trusted_proxy:
        email = (request.headers.get("x-user-email") or "").strip()
        if email:
            if len(email) > _MAX_USER or not email.isprintable():
                raise AuthError("x-user-email: not a valid user name (1-200 printable characters)")
            superuser = (request.headers.get("x-user-superuser") or "").strip().lower() in ("1", "true", "yes")
            return Principal(email, superuser)
    if dev_mode_applies(settings, request):
        return LOCAL
    raise AuthError(
        "authorization: credentials required: send 'Authorization: Bearer KEY' "
        "(an operator creates keys with `bgtasks keys create --user NAME`)"
    )


def dev_mode_banner(settings: Settings) -> str | None:
    """The line a process prints when requests without credentials act as the local superuser."""
    if settings.bgtasks_dev and settings.is_loopback:
        return ("development mode: requests from loopback without credentials act as the local superuser "
                f"'{LOCAL.user_id}' (BGTASKS_DEV=false turns this off; other bind addresses always need keys)")
    return None
