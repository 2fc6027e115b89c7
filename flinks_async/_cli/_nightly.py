"""The nightly routine's step before a pull (``pull`` and ``enqueue``
``--skip-ineligible``): ask ``GetNightlyRefreshStatus`` once, and name the logins it lists
as no longer eligible, which are then written as lines saying they need re-linking and
not pulled (see docs/nightly.md)."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import FlinksClient
from .._cmdline import UsageError
from .._management_models import IneligibleLogin

__all__ = ["KEY_ENV", "add_arguments", "check", "ineligible_logins"]

#: the environment variable of the nightly refresh status' key
KEY_ENV = "FLINKS_NIGHTLY_REFRESH_KEY"


def add_arguments(u: Any) -> None:
    """``--skip-ineligible`` and ``--nightly-key-file``."""
    u.add_argument(
        "--skip-ineligible",
        action="store_true",
        help="ask Flinks' GetNightlyRefreshStatus once first: each login it lists as no "
        "longer eligible gets a line saying it needs re-linking (with LastRefreshState and "
        "LastRefreshErrorCode) and is not pulled",
    )
    u.add_argument(
        "--nightly-key-file",
        help=f"file holding the GetNightlyRefreshStatus private key (else {KEY_ENV})",
    )


def check(args: argparse.Namespace, key: str | None) -> None:
    """A usage error for ``--skip-ineligible`` without its key (nothing sent)."""
    if args.skip_ineligible and not key:
        raise UsageError(
            f"--skip-ineligible needs the GetNightlyRefreshStatus key: --nightly-key-file "
            f"or {KEY_ENV}"
        )


async def ineligible_logins(client: FlinksClient) -> dict[str, IneligibleLogin]:
    """The logins Flinks lists as no longer eligible, by lower-cased login id."""
    return (await client.nightly_refresh_status()).by_login_id()
