"""Routes: an HTTP method and a path template, and how a call's URL is filled in.

A :class:`Route` is where a row of the endpoint table (:mod:`flinks_async._endpoints`)
sends its first request and its poll; the emulator matches requests against the same
routes (:meth:`Route.pattern`), so the client and the emulator cannot disagree on a path.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
from typing import Literal

from ._config import Settings

__all__ = ["PATH_PARAMS", "RESEND", "Route", "fill"]

#: the path parameters a route template may hold
PATH_PARAMS = frozenset({"loginId", "requestId"})


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """An HTTP method and a path template under ``.../BankingServices/`` (``root``
    ``"banking"``) or under ``/v3/{customerId}/`` (``root="customer"``), e.g.
    ``Route("GET", "GetAccountsDetailAsync/{requestId}")`` or
    ``Route("GET", "categorization/login/{loginId}/requestid/{requestId}", "customer")``.
    A ``GET`` sends no body."""

    method: str
    path: str
    root: Literal["banking", "customer"] = "banking"

    def __post_init__(self) -> None:
        unknown = set(self.params) - PATH_PARAMS
        if unknown:
            raise ValueError(f"route {self.path!r}: unknown path parameters {sorted(unknown)}")

    @property
    def params(self) -> tuple[str, ...]:
        """The path parameters, in order (``("loginId",)``)."""
        return _params(self.path)

    @property
    def head(self) -> str:
        """The path's first segment (``"GetAccountsDetailAsync"``)."""
        return self.path.split("/", 1)[0]

    def url(self, base: str, *, login_id: str = "", request_id: str = "") -> str:
        """``base/path`` with its parameters filled in."""
        return fill(f"{base}/{self.path}", login_id=login_id, request_id=request_id)

    def base(self, settings: Settings) -> str:
        """The URL its path is under: ``settings.banking_url`` or ``settings.customer_url``."""
        return settings.banking_url if self.root == "banking" else settings.customer_url

    def pattern(self) -> re.Pattern[str]:
        """A regex matching this route's paths (relative to ``BankingServices/``, or to
        ``/v3/{customerId}/`` for the customer root), with a group per path parameter."""
        parts = string.Formatter().parse(self.path)
        regex = "".join(re.escape(t) + (f"(?P<{f}>[^/]+)" if f else "") for t, f, _, _ in parts)
        return re.compile(regex + "$")


@functools.cache
def _params(path: str) -> tuple[str, ...]:
    """The path parameters of a template, parsed once per template (asked on every call)."""
    return tuple(f for _, f, _, _ in string.Formatter().parse(path) if f)


def fill(url: str, *, login_id: str = "", request_id: str = "") -> str:
    """``url`` with ``{loginId}`` and ``{requestId}`` replaced (left as they are when
    not given)."""
    if login_id:
        url = url.replace("{loginId}", login_id)
    if request_id:
        url = url.replace("{requestId}", request_id)
    return url


#: ``Endpoint.poll`` of an endpoint polled by sending the same request again
RESEND: Route | None = None
