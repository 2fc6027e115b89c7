"""Client options: defaults, environment variables, validation."""

from __future__ import annotations

import dataclasses
import os
import ssl as _ssl
from collections.abc import Mapping

from ._errors import ConfigurationError
from ._options import CallOptions
from ._ratelimit import capacity_and_window
from ._redact import mask, short_id, shown_redis_url

__all__ = ["DEFAULT_BASE_URL", "ENV_VARS", "Settings"]

#: The Flinks toolbox sandbox.
DEFAULT_BASE_URL = "https://toolbox-api.private.fin.ag"
#: Environment variables read when the matching argument is not given.
ENV_VARS = {
    "customer_id": "FLINKS_CUSTOMER_ID",
    "api_key": "FLINKS_API_KEY",
    "secret_key": "FLINKS_SECRET_KEY",
    "nightly_refresh_key": "FLINKS_NIGHTLY_REFRESH_KEY",
    "base_url": "FLINKS_BASE_URL",
    "redis_url": "FLINKS_REDIS_URL",
    "redis_fallback": "FLINKS_REDIS_FALLBACK",
    "webhooks": "FLINKS_WEBHOOKS",
    "webhook_poll_interval": "FLINKS_WEBHOOK_POLL_INTERVAL",
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every option of a :class:`~flinks_async.FlinksClient`, validated (see its docstring)."""

    customer_id: str
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = dataclasses.field(default=None, repr=False)
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    nightly_refresh_key: str | None = dataclasses.field(default=None, repr=False)
    investments_url: str | None = None
    poll_interval: float = 10.0
    poll_jitter: float = 0.1
    poll_timeout: float = 1800.0
    max_retries: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    max_connections: int = 100
    rate_limit: float | None = None
    rate_limit_window: float = 1.0
    connect_timeout: float = 10.0
    read_timeout: float | None = None
    request_timeout: float = 300.0
    max_response_bytes: int = 64 * 1024 * 1024
    max_body_bytes_in_flight: int = 256 * 1024 * 1024
    ssl: _ssl.SSLContext | bool = True
    proxy: str | None = None
    trust_env: bool = False
    redact_login_ids: bool = True
    log_bodies: bool = False
    unreachable_after: int | None = None
    stop_on_setup_error: bool = True
    strict_schema: bool = False
    keep_extra: bool = False
    redis_url: str | None = dataclasses.field(default=None, repr=False)  # may hold a password
    redis_fallback: str = "error"
    redis_rate_limit: bool = True
    redis_single_flight: bool = True
    coordination_timeout: float = 2.0
    webhooks: bool = False
    webhook_poll_interval: float = 60.0
    webhook_grace: float = 900.0
    webhook_retention: float = 900.0
    webhook_stream: bool = False

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **given: object) -> Settings:
        """Settings from the arguments given, falling back to ``FLINKS_*`` variables."""
        env = os.environ if env is None else env
        values = {k: v for k, v in given.items() if v is not None}
        for name, var in ENV_VARS.items():
            if name not in values and env.get(var):
                values[name] = _from_env(name, var, env[var])
        if not values.get("customer_id"):
            raise ConfigurationError("customer_id is required: pass it or set FLINKS_CUSTOMER_ID")
        try:
            settings = cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        settings._validate()
        return settings

    def replace_call_options(self, options: Mapping[str, object]) -> Settings:
        """These settings with other per-call options (:class:`CallOptions`), validated;
        :class:`ConfigurationError` for an unknown option or a bad value."""
        unknown = sorted(set(options) - set(CallOptions.__annotations__))
        if unknown:
            raise ConfigurationError(
                f"with_options takes {', '.join(CallOptions.__annotations__)}; "
                f"not {', '.join(map(repr, unknown))}"
            )
        try:
            settings = dataclasses.replace(self, **options)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        settings._validate()
        return settings

    def _validate(self) -> None:
        if "/" in self.customer_id or not self.customer_id.strip():
            raise ConfigurationError("customer_id must be the customer GUID Flinks issued")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must start with http:// or https://")
        for name in ("backoff_initial", "backoff_max", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0")
        for name in (
            "poll_interval",  # 0 would poll Flinks in a busy loop
            "poll_timeout",
            "connect_timeout",
            "read_timeout",
            "request_timeout",
            "webhook_poll_interval",
            "webhook_retention",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be > 0")
        if self.request_timeout <= 0:
            raise ConfigurationError("request_timeout must be > 0")
        if not 0 <= self.poll_jitter < 1:
            raise ConfigurationError("poll_jitter must be in [0, 1)")
        if self.max_retries < 0 or self.max_connections < 1 or self.max_response_bytes < 1:
            raise ConfigurationError(
                "need max_retries >= 0, max_connections >= 1, max_response_bytes >= 1"
            )
        if self.max_body_bytes_in_flight < self.max_response_bytes:
            raise ConfigurationError(
                f"max_body_bytes_in_flight ({self.max_body_bytes_in_flight}) must be at least "
                f"max_response_bytes ({self.max_response_bytes}): raise both together"
            )
        if self.unreachable_after is not None and self.unreachable_after < 1:
            raise ConfigurationError("unreachable_after must be >= 1 (or None: off)")
        if self.redis_fallback not in ("error", "local"):
            raise ConfigurationError('redis_fallback must be "error" or "local"')
        if self.webhook_grace < 0:
            raise ConfigurationError("webhook_grace must be >= 0")
        if self.coordination_timeout <= 0:
            raise ConfigurationError("coordination_timeout must be > 0")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigurationError("redis_url must start with redis://, rediss:// or unix://")
        if self.rate_limit is not None:
            try:
                capacity_and_window(self.rate_limit, self.rate_limit_window)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None

    @property
    def banking_url(self) -> str:
        """``{base_url}/v3/{customer_id}/BankingServices``."""
        return f"{self.base_url.rstrip('/')}/v3/{self.customer_id}/BankingServices"

    @property
    def customer_url(self) -> str:
        """``{base_url}/v3/{customer_id}``: the root of the routes outside
        ``BankingServices`` (Enrich's ``insight/...`` and ``categorization/...``)."""
        return f"{self.base_url.rstrip('/')}/v3/{self.customer_id}"

    @property
    def investments_endpoint_url(self) -> str:
        """Where ``/Investments`` goes: ``investments_url`` or the integration guide's path."""
        return self.investments_url or f"{self.banking_url}/Investments"

    def shown_login_id(self, login_id: object) -> str:
        """A login id as logs, events' exports and spans show it: shortened unless
        ``redact_login_ids=False``; ``-`` when there is none."""
        if not login_id:
            return "-"
        text = login_id if isinstance(login_id, str) else repr(login_id)
        return short_id(text) if self.redact_login_ids else text

    def describe(self) -> str:
        """A repr-safe one-line description (secrets masked)."""
        text = (
            f"customer_id={self.customer_id!r}, base_url={self.base_url!r}, "
            f"api_key={mask(self.api_key)}, secret_key={mask(self.secret_key)}"
        )
        if self.nightly_refresh_key:
            text += f", nightly_refresh_key={mask(self.nightly_refresh_key)}"
        if self.redis_url:
            text += f", redis_url={shown_redis_url(self.redis_url)!r}"
        return text


def _from_env(name: str, var: str, text: str) -> object:
    """The value of an environment variable for the setting ``name``."""
    if name == "webhooks":
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ConfigurationError(f"{var} must be 1/true/yes/on or 0/false/no/off")
    if name == "webhook_poll_interval":
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"{var} must be a number of seconds") from None
    return text
