"""Test support: the Flinks emulator, payload generators and pytest fixtures.

``async with Emulator() as emu:`` serves a Flinks-like API on ``emu.url`` (loopback,
a free port). Point a :class:`~flinks_async.FlinksClient` at it with
``base_url=emu.url`` and small ``poll_interval`` / ``backoff_initial`` values.
The pytest fixtures ``flinks_emulator`` and ``flinks_client`` are registered
automatically when flinks-async is installed (pytest plugin ``flinks_async``).
"""

from ._emulator import (
    SANDBOX_MFA,
    Emulator,
    Fault,
    LoginScenario,
    RecordedRequest,
    WebhookSent,
    busiest_window,
)
from ._enrich import EnrichGate
from ._enrich_payloads import attributes_payload, categorization_payload
from ._payloads import accounts_payload, demo_login_ids, investments_payload, statements_payload

__all__ = [
    "SANDBOX_MFA",
    "Emulator",
    "EnrichGate",
    "Fault",
    "LoginScenario",
    "RecordedRequest",
    "WebhookSent",
    "accounts_payload",
    "attributes_payload",
    "busiest_window",
    "categorization_payload",
    "demo_login_ids",
    "investments_payload",
    "statements_payload",
]
