"""Settings: environment variables (and a .env file) read once at process start, validated as a whole."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

LOCAL_USER = "local"  # who anonymous loopback requests act as in development mode (a superuser)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("bgtasks"))


class Settings(BaseSettings):
    """Every knob of bgtasks. Names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL URL; unset: `bgtasks up` starts an embedded one")
    bgtasks_direct_database_url: str | None = Field(
        None, description="a URL to PostgreSQL itself, not through a pooler: LISTEN, session locks, migrations")
    bgtasks_pooler: Literal["auto", "transaction", "none"] = Field(
        "auto", description="is DATABASE_URL a transaction pooler (no prepared statements)? auto: find out at start")
    bgtasks_data_dir: Path = Field(default_factory=default_data_dir, description="embedded Postgres lives here")

    bgtasks_host: str = "127.0.0.1"
    bgtasks_port: int = Field(8000, ge=0, le=65535)
    bgtasks_dev: bool | None = Field(
        None, description="true: loopback without credentials acts as a local superuser; unset: only in `bgtasks up`")
    bgtasks_trusted_proxy: bool = Field(False, description="honour seed two's x-user-email header")
    bgtasks_trusted_proxy_secret: str | None = Field(
        None, min_length=16, description="the proxy sends it in X-Bgtasks-Proxy-Secret; needed for x-user-superuser")
    bgtasks_metrics_token: str | None = Field(
        None, min_length=16, description="a Bearer token for GET /metrics (Prometheus), besides any API key")
    bgtasks_project_roots: str = Field("", description="os.pathsep-separated roots project paths must be under")
    bgtasks_max_body_bytes: int = Field(1_000_000, ge=1024)
    bgtasks_log_json: bool = False
    bgtasks_log_level: str = "INFO"

    bgtasks_app: str = Field("", description="comma-separated modules of task types to load (`--app` adds more)")
    bgtasks_builtin_types: bool = Field(True, description="load bgtasks' built-in task types (seeds, diagnostics)")

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    bgtasks_model: str = "gpt-4o-mini"
    bgtasks_model_timeout_s: float = Field(120.0, gt=0, description="the total time of one model call")
    bgtasks_model_max_output_tokens: int = Field(
        4_096, ge=16, description="output limit every model call sends (a task type may set its own)")
    bgtasks_model_max_output_tokens_cap: int = Field(
        16_384, ge=16, description="an answer cut off at the limit is asked once more with the limit raised to this")
    bgtasks_model_max_answer_chars: int = Field(
        1_000_000, ge=1_000, description="a larger answer fails the task before it is parsed")
    bgtasks_output_interval_s: float = Field(
        0.1, ge=0.01, le=10, description="live partial output is written at most once per this many seconds per task")
    bgtasks_output_max_chars: int = Field(
        200_000, ge=1_000, le=10_000_000,
        description="characters of live partial output kept per running task; the rest shows in the result")
    bgtasks_max_result_bytes: int = Field(
        1_000_000, ge=10_000, description="a task whose result is larger as JSON fails instead of storing it")
    bgtasks_project_budget_chars: int = Field(
        200_000, ge=1_000, le=10_000_000, description="characters of project files one prompt may carry")
    bgtasks_rate_limit_max_wait_s: float = Field(
        900.0, ge=0, description="total provider rate-limit wait per task before 429s count as retries")

    bgtasks_lease_s: float = Field(30.0, gt=0, description="a claimed task is taken back this long after its worker's last heartbeat")
    bgtasks_heartbeat_s: float = Field(0.0, ge=0, description="0: a third of the lease")
    bgtasks_shutdown_grace_s: float = Field(30.0, ge=0)
    bgtasks_worker_concurrency: int = Field(8, ge=1, le=1000)
    bgtasks_worker_threads: int = Field(
        0, ge=0, le=1000, description="threads for sync task types; 0: one per slot (the concurrency). Fewer suits "
        "a worker whose types are all async: they hold no thread while they await")
    bgtasks_worker_pool_size: int = Field(
        8, ge=2, le=100, description="a worker's shared pool at most (progress, failures, completions), whatever its "
        "concurrency; a worker uses this + 4 connections")
    bgtasks_claim_ahead_ms: float = Field(
        20.0, ge=0, description="claim up to 3 tasks per thread ahead while tasks average under this; 0: never")
    bgtasks_reap_interval_s: float = Field(1.0, gt=0)
    bgtasks_retention_days: float = Field(30.0, ge=0, description="0 keeps finished tasks forever")
    bgtasks_sse_timeout_s: float = Field(300.0, gt=0, description="seed two's 5-minute monitoring timeout")
    bgtasks_sse_keepalive_s: float = Field(15.0, gt=0)
    bgtasks_sse_buffer: int = Field(256, ge=1)
    bgtasks_sse_buffer_bytes: int = Field(
        1_000_000, ge=10_000, description="unread event bytes a stream may hold before it is dropped")
    bgtasks_stream_inline_bytes: int = Field(
        16_384, ge=256, description="larger payloads and results go by reference on /api/events and /api/ws")
    bgtasks_max_streams_per_user: int = Field(
        100, ge=0, description="open SSE + WebSocket streams per user per API process (user_limits.max_streams wins)")
    bgtasks_token_secret: str | None = Field(
        None, min_length=32, description="signs read tokens; unset: a secret made once and kept in the database")
    bgtasks_read_token_ttl_s: int = Field(900, ge=1, description="a read token's lifetime unless POST /api/tokens asks")
    bgtasks_read_token_max_ttl_s: int = Field(3600, ge=1, description="the longest lifetime POST /api/tokens grants")
    bgtasks_stream_recheck_s: float = Field(
        60.0, gt=0, le=60, description="how often open streams re-check their credential (revoked key, expired token)")

    @property
    def heartbeat_s(self) -> float:
        return self.bgtasks_heartbeat_s or self.bgtasks_lease_s / 3

    @property
    def outage_s(self) -> float:
        """No live worker's heartbeat for this long means nobody could reach the database: an outage, after
        which the reapers wait `reap_grace_s` (a gap between heartbeats is at most a heartbeat and a tick)."""
        return self.heartbeat_s + 2 * self.bgtasks_reap_interval_s

    @property
    def reap_grace_s(self) -> float:
        """After a server start or an outage, expired leases are reaped only this much later, so that live
        workers renew first: a heartbeat or two."""
        return 2 * (self.heartbeat_s + self.bgtasks_reap_interval_s)

    @property
    def project_roots(self) -> list[Path]:
        import os

        return [Path(p).expanduser().resolve() for p in self.bgtasks_project_roots.split(os.pathsep) if p]

    @property
    def dev_mode(self) -> bool:
        """Anonymous loopback requests act as the local superuser: only when BGTASKS_DEV=true was set (by the
        operator, or by `bgtasks up` for its children) and the bind address is loopback."""
        return self.bgtasks_dev is True and self.is_loopback

    @property
    def dev_mode_in_up(self) -> bool:
        """`bgtasks up` on loopback is the local tool: its children run in dev mode unless BGTASKS_DEV=false."""
        return self.bgtasks_dev is not False and self.is_loopback

    @property
    def is_loopback(self) -> bool:
        if self.bgtasks_host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(self.bgtasks_host).is_loopback
        except ValueError:
            return False

    @model_validator(mode="after")
    def _relations(self) -> Settings:
        if self.heartbeat_s * 2 >= self.bgtasks_lease_s:
            raise ValueError(
                "BGTASKS_HEARTBEAT_S: must be under half of BGTASKS_LEASE_S, or a live worker's lease could lapse"
            )
        if self.bgtasks_model_max_output_tokens > self.bgtasks_model_max_output_tokens_cap:
            raise ValueError(
                "BGTASKS_MODEL_MAX_OUTPUT_TOKENS: must not exceed BGTASKS_MODEL_MAX_OUTPUT_TOKENS_CAP "
                f"({self.bgtasks_model_max_output_tokens_cap})"
            )
        if self.bgtasks_read_token_ttl_s > self.bgtasks_read_token_max_ttl_s:
            raise ValueError("BGTASKS_READ_TOKEN_TTL_S: must not exceed BGTASKS_READ_TOKEN_MAX_TTL_S")
        if self.database_url and not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ValueError("DATABASE_URL: must start with postgresql:// (a plain libpq URL)")
        direct = self.bgtasks_direct_database_url
        if direct and not direct.startswith(("postgres://", "postgresql://")):
            raise ValueError("BGTASKS_DIRECT_DATABASE_URL: must start with postgresql:// (a plain libpq URL)")
        return self


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; an invalid one raises ConfigError with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or ""
        msg = first.get("msg", "invalid")
        if not loc and ":" in msg:  # our model validator names the variable itself
            raise ConfigError(msg.removeprefix("Value error, ")) from None
        raise ConfigError(f"{loc.upper()}: {msg}") from None
