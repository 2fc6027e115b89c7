"""The emulator as a standalone server: ``python -m flinks_async.testing --port 8080``, also
``flinks-async serve-emulator`` (which adds these same options to its own parser)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from .._cmdline import (
    COUNT,
    Parser,
    add_loop,
    interruptible,
    loop_name,
    loop_options,
    number,
    read_secret,
)
from ._emulator import Emulator

__all__ = ["DESCRIPTION", "add_arguments", "main", "serve"]

#: What the server does, for ``--help``.
DESCRIPTION = (
    "Serve the Flinks emulator for integration tests. It accepts any "
    "customer id and any loginId that is a GUID (36 characters); each login answers "
    "--pending 202s, then a deterministic payload. Keys come from the files given or "
    "from FLINKS_EMULATOR_API_KEY / FLINKS_EMULATOR_SECRET_KEY; when set, they are "
    "demanded (x-api-key on data endpoints, the secret key at GenerateAuthorizeToken)."
)


def add_arguments(e: argparse.ArgumentParser) -> None:
    """The server's options (``--host``, ``--port``, ``--pending``, faults, keys...)."""
    e.add_argument("--host", default="127.0.0.1", help="address to bind")
    e.add_argument("--port", type=number(int, 0), default=8080, help="port (0: a free one)")
    e.add_argument("--pending", type=number(int, 0), default=2, help="202 answers before data")
    e.add_argument("--payload-bytes", type=COUNT, default=20_000, help="payload size")
    e.add_argument(
        "--latency", type=number(float, 0), default=0.0, help="seconds added to each answer"
    )
    e.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="SPEC=P",
        help="draw fault SPEC for each login with probability P (repeatable; specs in "
        "docs/testing.md)",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the fault and MFA draws")
    e.add_argument(
        "--mfa",
        action="append",
        default=[],
        metavar="LOGIN_ID",
        help="this login's Authorize asks MFA questions (HTTP 203) until they are answered: "
        "the sandbox's, 'What city were you born in?' (Montreal) and 'What is the best "
        "country on earth?' (Canada), then 'What shape do people like most?' (Triangle) "
        "(repeatable)",
    )
    e.add_argument(
        "--mfa-rate",
        type=number(float, 0),
        default=0.0,
        metavar="P",
        help="each other login asks those MFA questions with probability P (drawn from --seed)",
    )
    e.add_argument(
        "--api-key-file", help="demand this API key (else FLINKS_EMULATOR_API_KEY, else none)"
    )
    e.add_argument(
        "--secret-key-file",
        help="demand this secret key (else FLINKS_EMULATOR_SECRET_KEY, else none)",
    )
    e.add_argument(
        "--record", type=number(int, 0), default=0, help="requests to keep for inspection"
    )
    _add_readiness(e)
    _add_accounts(e)
    add_loop(e)


def _add_accounts(e: argparse.ArgumentParser) -> None:
    """Account management: the nightly refresh status' ineligible logins."""
    e.add_argument(
        "--ineligible-rate",
        type=number(float, 0),
        default=0.0,
        metavar="P",
        help="GetNightlyRefreshStatus lists each known login as ineligible with probability P "
        "(drawn from --seed); its Bearer key: FLINKS_EMULATOR_NIGHTLY_REFRESH_KEY, else any",
    )
    e.add_argument(
        "--enroll",
        metavar="FILE",
        help="login ids (one a line) known from the start, as a customer's logins are to Flinks",
    )


def _add_readiness(e: argparse.ArgumentParser) -> None:
    """Data ready after a time (``--ready-after``), and pushed as webhooks."""
    e.add_argument(
        "--ready-after",
        type=number(float, 0),
        help="seconds a data request stays pending from its first ask (instead of --pending)",
    )
    e.add_argument(
        "--webhook-url",
        help="with --ready-after: POST each answer there as a webhook, signed with "
        "FLINKS_EMULATOR_WEBHOOK_SECRET",
    )
    e.add_argument(
        "--webhook-retry-delay",
        type=number(float, 0),
        default=1800.0,
        help="seconds between deliveries of a webhook not answered 200 (1800, as Flinks)",
    )


async def serve(args: argparse.Namespace) -> int:
    """Serve the emulator as ``args`` say until SIGINT/SIGTERM."""
    rates: dict[str, float] = {}
    for item in args.fault_rate:
        spec, _, p = item.rpartition("=")
        if not spec:
            raise ValueError(f"--fault-rate takes SPEC=P, got {item!r}")
        rates[spec] = float(p)
    emu = Emulator(
        host=args.host,
        port=args.port,
        pending=args.pending,
        payload_bytes=args.payload_bytes,
        latency=args.latency,
        fault_rates=rates,
        seed=args.seed,
        record=args.record,
        api_key=read_secret(args.api_key_file, "FLINKS_EMULATOR_API_KEY"),
        secret_key=read_secret(args.secret_key_file, "FLINKS_EMULATOR_SECRET_KEY"),
        ready_after=args.ready_after,
        webhook_url=args.webhook_url,
        webhook_secret=read_secret(None, "FLINKS_EMULATOR_WEBHOOK_SECRET"),
        webhook_retry_delay=args.webhook_retry_delay,
        mfa_rate=args.mfa_rate,
        ineligible_rate=args.ineligible_rate,
        nightly_refresh_key=read_secret(None, "FLINKS_EMULATOR_NIGHTLY_REFRESH_KEY"),
    )
    if args.enroll:
        text = await anyio.Path(args.enroll).read_text(encoding="utf-8")
        emu.accounts.enroll(line.strip() for line in text.splitlines() if line.strip())
    for login_id in args.mfa:
        if len(login_id.strip()) != 36:
            raise ValueError(f"--mfa takes a loginId (a GUID), got {login_id!r}")
        emu.set_login(login_id.strip(), mfa=True)
    if args.webhook_url and (emu.webhook_secret is None or args.ready_after is None):
        raise ValueError("--webhook-url needs --ready-after and FLINKS_EMULATOR_WEBHOOK_SECRET")
    async with emu:
        print(
            f"Flinks emulator serving on {emu.url} (any customer id, loop {loop_name()}); "
            "Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        try:
            await anyio.sleep_forever()
        finally:
            print(f"emulator: {emu.requests_total} requests served", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flinks_async.testing``: serve until interrupted; the exit status."""
    parser = Parser(prog="python -m flinks_async.testing", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return anyio.run(interruptible, serve, args, backend_options=loop_options(args.loop))
    except (ValueError, OSError) as exc:
        print(f"flinks-async: error: {exc}", file=sys.stderr)
        return 2
