"""Redaction of secrets and login ids for reprs, logs and messages."""

from __future__ import annotations

import re

__all__ = ["is_guid", "mask", "short_id", "shown_redis_url"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def is_guid(value: object) -> bool:
    """True when ``value`` is a string holding one GUID (36 characters, hyphenated)."""
    return isinstance(value, str) and _GUID.match(value) is not None


def short_id(login_id: str | None) -> str:
    """A login id shortened for logs and messages: its first 8 characters and an ellipsis."""
    if not login_id:
        return "-"
    return login_id[:8] + "…" if len(login_id) > 8 else login_id


def mask(secret: str | None) -> str:
    """How a secret shows in a repr: ``'***'`` when set, ``None`` when not."""
    return "None" if secret is None else "'***'"


def shown_redis_url(url: str) -> str:
    """``url`` without its user, password and query (which may hold a password too):
    ``rediss://host:port/db``."""
    from yarl import URL

    parsed = URL(url)
    if not parsed.host:
        return f"{parsed.scheme or 'redis'}://?"
    return str(parsed.with_user(None).with_password(None).with_query(None))
