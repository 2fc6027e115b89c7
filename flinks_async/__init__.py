"""flinks-async: the asyncio client for the Flinks financial-data API.

Quick start::

    from flinks_async import FlinksClient

    async with FlinksClient(customer_id="...", api_key="...") as client:
        investments = await client.investments(login_id)

See https://github.com/flinks-async/flinks-async (docs/) for the guide.
"""

from ._bulk import Result
from ._client import FlinksClient
from ._config import DEFAULT_BASE_URL
from ._errors import (
    AccessDeniedError,
    APIError,
    ClientClosedError,
    ConfigurationError,
    CoordinationError,
    DecodeError,
    FlinksError,
    InvalidLoginIdError,
    InvalidRequestError,
    LoginError,
    MFAError,
    MFARequiredError,
    NotAvailableError,
    NoTransactionsError,
    PollTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    SchemaDriftError,
    ServerUnreachableError,
    SessionExpiredError,
    SetupError,
    TransientAPIError,
    TransportError,
)
from ._events import Event, EventHook, EventKind
from ._models import (
    Account,
    AccountsDetail,
    AccountsSummary,
    AccountStatements,
    Address,
    Authorization,
    Balance,
    Holder,
    Institution,
    InvestmentAccount,
    Investments,
    InvestmentTransaction,
    Link,
    Login,
    Position,
    Security,
    SecurityChallenge,
    Statement,
    Statements,
    Transaction,
    parse_date,
    parse_datetime,
)
from ._schema import dump
from ._version import __version__

__all__ = [
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
    "InvestmentTransaction",
    "Investments",
    "Link",
    "Login",
    "LoginError",
    "MFAError",
    "MFARequiredError",
    "NoTransactionsError",
    "NotAvailableError",
    "PollTimeoutError",
    "Position",
    "RateLimitError",
    "ResponseTooLargeError",
    "Result",
    "SchemaDriftError",
    "Security",
    "SecurityChallenge",
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
]
