"""The public surface is pinned: __all__ sorted, complete, and nothing private leaks."""

from __future__ import annotations

import types

import flinks_async
import flinks_async.testing

EXPECTED = {
    "AnswersSaved",
    "CardDeleted",
    "FinancialInstitution",
    "IneligibleLogin",
    "InstitutionLocalization",
    "InstitutionUrl",
    "InstitutionsPage",
    "NightlyRefreshStatus",
    "StoredQuestion",
    "StoredQuestions",
    "AttributeCategory",
    "AttributeInfo",
    "CategoryGroup",
    "SubCategory",
    "AttributeRequestError",
    "PackageNotSubscribedError",
    "NONE_DETECTED",
    "AttributeDetail",
    "Attributes",
    "AttributeValue",
    "Card",
    "Categorization",
    "CategorizedTransaction",
    "DetailTransaction",
    "DEFAULT_BASE_URL",
    "APIError",
    "AccessDeniedError",
    "Account",
    "AccountStatements",
    "AccountsDetail",
    "AccountsSummary",
    "Address",
    "Authorization",
    "Balance",
    "ClientClosedError",
    "ConfigurationError",
    "CoordinationError",
    "DecodeError",
    "Event",
    "EventHook",
    "EventKind",
    "FlinksClient",
    "FlinksError",
    "Holder",
    "Institution",
    "InvalidLoginIdError",
    "InvalidRequestError",
    "InvestmentAccount",
    "SecurityChallenge",
    "MFAError",
    "NoTransactionsError",
    "InvestmentTransaction",
    "Investments",
    "Link",
    "Login",
    "LoginError",
    "MFARequiredError",
    "NotAvailableError",
    "PollTimeoutError",
    "Position",
    "RateLimitError",
    "ResponseTooLargeError",
    "Result",
    "SchemaDriftError",
    "Security",
    "ServerUnreachableError",
    "SessionExpiredError",
    "SetupError",
    "Statement",
    "Statements",
    "Transaction",
    "TransientAPIError",
    "TransportError",
    "__version__",
    "dump",
    "parse_date",
    "parse_datetime",
}
# the options, one TypedDict a group (flinks_async._options)
EXPECTED |= {
    *("ClientOptions", "CallOptions", "CallArgs", "DaysOfTransactions", "ManyOptions"),
    *("AccountsDetailOptions", "AccountsDetailCall", "AccountsDetailMany"),
    *("AccountsSummaryOptions", "AccountsSummaryCall", "AccountsSummaryMany"),
    *("StatementsOptions", "StatementsCall", "StatementsMany"),
}
# webhooks (flinks_async._webhooks)
EXPECTED |= {"MemoryWebhooks", "WebhookDelivery", "WebhookHub", "WebhookReceiver", "sign_webhook"}
EXPECTED |= {"WebhookLimits"}
# the blocking client (flinks_async._blocking)
EXPECTED |= {"SyncFlinksClient", "BlockingResults"}


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions and dunders."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def _public(module: types.ModuleType) -> set[str]:
    return {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }


def test_all_is_the_pinned_surface() -> None:
    assert set(flinks_async.__all__) == EXPECTED


def test_all_is_sorted_and_complete() -> None:
    for module in (flinks_async, flinks_async.testing):
        names = list(module.__all__)
        assert names == sorted(names, key=_isort_key)
        assert len(names) == len(set(names))
        assert _public(module) <= set(names), "public names missing from __all__"
        for name in names:
            assert hasattr(module, name)


def test_nothing_private_is_exported() -> None:
    for name in flinks_async.__all__:
        assert not name.startswith("_") or name == "__version__"
        obj = getattr(flinks_async, name)
        assert not getattr(obj, "__name__", "x").startswith("_")


def test_version_is_single_sourced() -> None:
    from importlib.metadata import version

    from flinks_async._version import __version__

    assert flinks_async.__version__ == __version__ == version("flinks-async")
