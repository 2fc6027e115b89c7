"""Enrich's calls that are not rows of the endpoint table: the custom attributes
``POST`` (a chain like the packages', its body built per call, never pulled in bulk), the
category list and the attribute library (no login, no session: one ``GET`` each)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import _options as opt
from ._endpoints import AnyEndpoint, DataCalls, enrich
from ._enrich_models import Attributes
from ._errors import ConfigurationError

__all__ = ["CUSTOM_ATTRIBUTES", "LIBRARY_PATHS", "categories_path", "custom_attributes_body"]

#: ``POST .../insight/login/{loginId}/attributes/{requestId}`` (no suffix), after the detail
CUSTOM_ATTRIBUTES: AnyEndpoint = enrich(
    "Attributes",
    Attributes,
    DataCalls.accounts_detail,
    opt.CallArgs,
    opt.ManyOptions,
    "insight/login/{loginId}/attributes/{requestId}",
    "POST",
)
#: the attribute library's paths under the customer root: consumer, business
LIBRARY_PATHS = {False: "attributes/library", True: "attributes/library/business"}


def categories_path(country: str) -> str:
    """``Categories/{CA|US}`` under ``BankingServices``."""
    if country not in ("CA", "US"):
        raise ConfigurationError(f"country must be CA or US, got {country!r}")
    return f"Categories/{country}"


def custom_attributes_body(
    attributes: Iterable[str],
    *,
    filters: Iterable[str] | None = None,
    account_filter: Iterable[str] | None = None,
    attributes_detail: Iterable[str] | None = None,
    limit_days: int | None = None,
) -> dict[str, Any]:
    """The custom attributes ``POST`` body. ``Attributes`` and ``Filters`` as a real
    lender's app sends them (``{"Card": [...]}``, ``{"AccountCategory": [...]}``); the
    exact JSON of ``AccountFilter`` (a list of AccountIds), ``AttributesDetail`` (taken to
    mirror ``Attributes``: ``{"Card": [...]}``) and ``limitDays`` (documented as a header;
    sent here as a body field) is not documented [U]."""
    body: dict[str, Any] = {"Attributes": {"Card": list(attributes)}}
    if filters is not None:
        body["Filters"] = {"AccountCategory": list(filters)}
    if account_filter is not None:
        body["AccountFilter"] = list(account_filter)
    if attributes_detail is not None:
        body["AttributesDetail"] = {"Card": list(attributes_detail)}
    if limit_days is not None:
        body["limitDays"] = limit_days
    return body
