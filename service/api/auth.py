"""Who is calling: an API key (`Authorization: Bearer KEY`), seed two's `x-user-email` behind a trusted proxy,
or, in development mode on loopback, the local superuser. Every handler (REST and SSE) starts here; the four
read endpoints that accept a browser's read token (`?token=`) start at `authenticate_reader`."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request

from ..errors import AuthError
from ..settings import LOCAL_USER, Settings
from ..store import keys
from ..tokens import ReadScope, verify


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_superuser: bool
    key_id: int | None = None  # the API key presented (or the one that minted a read token)
    token: ReadScope | None = None  # set: a read token, which reads only what it names
    local: bool = False  # the local user of development mode (no credentials, on loopback)

    def is_user(self, user_id: str) -> bool:
        """Whether `user_id` names this caller: user ids compare case-insensitively."""
        return user_id.lower() == self.user_id.lower()

    @property
    def owner(self) -> str | None:
        """The owner filter for queries: this user's id, or None (everyone's) for a superuser (and for a
        superuser's read token, whose task ids limit it instead)."""
        if self.token is not None:
            return self.token.owner
        return None if self.is_superuser else self.user_id

    def may_read(self, task_id: str) -> bool:
        """Whether a read token names this task (always true for other credentials: the owner filter rules)."""
        return self.token is None or self.token.allows(task_id)


LOCAL = Principal(LOCAL_USER, True, local=True)
_MAX_KEY = 200
_MAX_USER = 200


_FORWARDING = ("forwarded", "x-real-ip")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # every other method changes state


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name part of a Host header: 'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def own_origin(conn: HTTPConnection) -> str:
    """This service's origin as the caller's browser spells it: scheme and Host."""
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    return f"{scheme}://{conn.headers.get('host', '')}".lower()


def foreign_origin(conn: HTTPConnection) -> bool:
    """An Origin header that names another site (a page elsewhere in the local browser)."""
    origin = conn.headers.get("origin")
    return origin is not None and origin.strip().lower() != own_origin(conn)


def dev_mode_refusal(conn: HTTPConnection) -> str | None:
    """Why an anonymous request may not act as the local superuser even in dev mode, or None. A same-host
    proxy, a DNS-rebound name or another site's page in the local browser all arrive from loopback."""
    headers = conn.headers
    if any(name in headers for name in _FORWARDING) or any(name.startswith("x-forwarded-") for name in headers):
        return ("development mode: a request carrying a forwarding header came through a proxy and needs "
                "'Authorization: Bearer KEY'")
    if not _is_loopback_name(_host_name(headers.get("host", ""))):
        return "development mode: Host is not a loopback name or address; send 'Authorization: Bearer KEY'"
    state_changing = conn.scope["type"] == "websocket" or conn.scope.get("method", "GET") not in SAFE_METHODS
    if state_changing and foreign_origin(conn):
        return "development mode: Origin is not this service's own; send 'Authorization: Bearer KEY'"
    return None


def dev_mode_applies(settings: Settings, request: HTTPConnection) -> bool:
    """Development mode: BGTASKS_DEV=true, bound to loopback and the request comes from loopback."""
    return settings.dev_mode and _is_loopback_name(request.client.host if request.client else "")


PROXY_SECRET_HEADER = "x-bgtasks-proxy-secret"
_TRUE = ("1", "true", "yes")


def _utf8_header(conn: HTTPConnection, name: str) -> str | None:
    """A header value as the UTF-8 text a proxy sends (ASGI hands over bytes; Starlette reads them as
    latin-1, which would turn 'josé' into 'josÃ©'); AuthError when the bytes are not UTF-8."""
    raw = conn.headers.get(name)
    if raw is None:
        return None
    try:
        return raw.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        raise AuthError(f"{name}: not UTF-8 text") from None


def proxy_principal(conn: HTTPConnection, settings: Settings) -> Principal | None:
    """Seed two's user from the authenticating proxy in front (BGTASKS_TRUSTED_PROXY): `x-user-email`, lower
    cased so that user ids compare case-insensitively; `x-user-superuser` honoured only together with the
    proxy's shared secret (BGTASKS_TRUSTED_PROXY_SECRET in `X-Bgtasks-Proxy-Secret`), and once that secret is
    set, no proxy header is honoured without it. None when there is no `x-user-email`."""
    for name in ("x-user-email", "x-user-superuser", PROXY_SECRET_HEADER):
        # A proxy that appends its header after the client's would otherwise leave the client's first.
        if len(conn.headers.getlist(name)) > 1:
            raise AuthError(f"{name}: sent more than once (the proxy must replace the client's header, not add one)")
    email = _utf8_header(conn, "x-user-email")
    if not email:
        return None
    secret = settings.bgtasks_trusted_proxy_secret
    given = conn.headers.get(PROXY_SECRET_HEADER)
    from_proxy = bool(secret) and given is not None and hmac.compare_digest(
        given.strip().encode("latin-1"), (secret or "").encode("utf-8"))
    if secret and not from_proxy:
        raise AuthError(f"x-user-email: not from the trusted proxy ({PROXY_SECRET_HEADER} missing or wrong)")
    if len(email) > _MAX_USER or not email.isprintable():
        raise AuthError("x-user-email: not a valid user name (1-200 printable characters)")
    superuser = (conn.headers.get("x-user-superuser") or "").strip().lower() in _TRUE
    if superuser and not from_proxy:
        raise AuthError(f"x-user-superuser: honoured only with the proxy's shared secret in {PROXY_SECRET_HEADER} "
                        "(set BGTASKS_TRUSTED_PROXY_SECRET)")
    return Principal(email.lower(), superuser)


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
        return Principal(owner.user_id.lower(), owner.is_superuser, owner.key_id)
    if settings.bgtasks_trusted_proxy:
        proxied = proxy_principal(request, settings)
        if proxied is not None:
            return proxied
    if dev_mode_applies(settings, request):
        if (refusal := dev_mode_refusal(request)) is not None:
            raise AuthError(refusal)
        return LOCAL
    if "token" in request.query_params:
        raise AuthError(
            "token: a read token only reads (GET /api/tasks/{id}, /api/subscribeToTask, /api/events, /api/ws); "
            "this request needs 'Authorization: Bearer KEY'"
        )
    raise AuthError(
        "authorization: credentials required: send 'Authorization: Bearer KEY' "
        "(an operator creates keys with `bgtasks keys create --user NAME`)"
    )


async def authenticate_reader(conn: HTTPConnection) -> Principal:
    """The caller of a read endpoint: a read token in `?token=` (when no Authorization header is sent), else
    as `authenticate`. A token whose minting key was revoked is refused like the key."""
    token = conn.query_params.get("token")
    if token is None or "authorization" in conn.headers:
        return await authenticate(conn)  # type: ignore[arg-type]  # reads headers and app state only
    state = conn.app.state
    scope = verify(state.token_secret, token.strip(), now=state.clock())
    if scope.key_id is not None and not await keys.live_api_keys(state.pool, [scope.key_id]):
        raise AuthError("token: the API key that minted it was revoked")
    return Principal(scope.user_id, False, scope.key_id, scope)


async def authenticate_scrape(request: Request) -> None:
    """GET /metrics: BGTASKS_METRICS_TOKEN as a Bearer token, or anything `authenticate` accepts (any valid
    key; dev mode). AuthError (401) otherwise: the numbers describe every user's work."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization")
    if settings.bgtasks_metrics_token and header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              settings.bgtasks_metrics_token.encode()):
            return
    try:
        await authenticate(request)
    except AuthError as exc:
        raise AuthError(f"{exc} (/metrics takes any API key, or BGTASKS_METRICS_TOKEN, as Bearer)") from None


def dev_mode_banner(settings: Settings) -> str | None:
    """The line a process prints when requests without credentials act as the local superuser."""
    if settings.dev_mode:
        return ("development mode: requests from loopback without credentials act as the local superuser "
                f"'{LOCAL.user_id}' (only `bgtasks up` on loopback, or BGTASKS_DEV=true; other bind addresses always need keys)")
    return None
