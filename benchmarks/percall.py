"""Our own cost per call, without the network: what the overhead ratios are made of.

The client's transport answers from memory (``send`` is replaced on the instance: it
yields to the loop once, as an exchange does, then returns Authorize's answer, ``PENDING``
202s, then a 200 with a 5 KB ``/Investments`` body, decoded by the call's own decoder).
What is left is the client's own Python around the HTTP exchanges, one login after
another, so nothing else runs:

* ``floor``: the same exchanges sent by hand on that transport (build the Authorize and
  ``/Investments`` calls, send, sleep between polls, decode): what any client must do;
* ``client.investments()``: on top of that, validating the login id, the single-flight
  entry, the deadline, the polling loop, the schema check and the reference check.

Reported: CPU µs per login (median of the rounds) and the difference, on asyncio and on
uvloop. CPU time, not wall time: each poll's 1 µs sleep idles until the loop's next
timer tick (epoll and libuv count in milliseconds). The HTTP exchanges themselves
(aiohttp) cost about 450 µs per login on this machine (see the transport table), so
each 5 µs here is about 1% of a login's wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from flinks_async import FlinksClient
from flinks_async._decoding import ModelDecoder
from flinks_async._models import Authorization, Investments
from flinks_async._transport import Reply, Request, Transport
from flinks_async.testing import demo_login_ids
from flinks_async.testing._payloads import investments_payload

from ._common import CUSTOMER, Stat, table
from .transport import PENDING, _has_uvloop

_AUTH = (
    b'{"RequestId":"9b5c6f0e-1111-2222-3333-444455556666","HttpStatusCode":200,'
    b'"Institution":"FlinksCapital","Login":{"Id":"x"}}'
)
_PENDING = b'{"FlinksCode":"OPERATION_PENDING"}'
_POLL = 1e-6  # the shortest sleep asyncio takes through a timer, for both contenders


def _canned(body: bytes) -> Callable[[Request], Coroutine[Any, Any, Reply]]:
    """A ``Transport.send`` answering from memory: Authorize, PENDING 202s, then a 200."""
    asked: dict[str | None, int] = {}

    async def send(call: Request) -> Reply:
        await asyncio.sleep(0)  # an exchange yields to the loop at least once
        assert call.decode is not None
        if call.endpoint == "Authorize":
            return Reply(200, _AUTH, call.decode(_AUTH))
        n = asked.get(call.login_id, 0)
        if n < PENDING:
            asked[call.login_id] = n + 1
            return Reply(202, _PENDING)
        del asked[call.login_id]
        return Reply(200, body, call.decode(body))

    return send


async def _floor(client: FlinksClient, ids: list[str]) -> None:
    transport: Any = client._transport
    url = client.settings.banking_url
    auth, inv = ModelDecoder.of(Authorization, raw=False), ModelDecoder.of(Investments, raw=False)
    for login_id in ids:
        body = msgspec.json.encode({"LoginId": login_id, "MostRecentCached": True})
        a = Request("POST", f"{url}/Authorize", "Authorize", {}, body, login_id, None, auth)
        rid = (await transport.send(a)).value.request_id
        body = msgspec.json.encode(
            {"LoginId": login_id, "RequestId": rid, "MostRecentCached": True}
        )
        call = Request("POST", f"{url}/Investments", "Investments", {}, body, login_id, rid, inv)
        while True:  # the polling rule, by hand
            if (await transport.send(call)).status == 200:
                break
            await asyncio.sleep(_POLL)


async def _client(client: FlinksClient, ids: list[str]) -> None:
    for login_id in ids:
        await client.investments(login_id)


CONTENDERS = {"floor": _floor, "client.investments()": _client}


@dataclasses.dataclass
class PerCallResult:
    loop: str
    cpu_per_login: dict[str, Stat]  # CPU seconds per login


async def measure(loop: str, logins: int, rounds: int) -> PerCallResult:
    cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    async with FlinksClient(
        CUSTOMER, base_url="http://127.0.0.1:9", poll_interval=_POLL, poll_jitter=0.0
    ) as client:
        transport: Transport = client._transport
        transport.send = _canned(investments_payload(2000))  # type: ignore[method-assign,assignment]
        for rnd in range(rounds + 1):  # round 0 warms up
            for n, (name, run) in enumerate(CONTENDERS.items()):
                ids = demo_login_ids(logins, seed=rnd * 10 + n)
                started = time.process_time()
                await run(client, ids)
                if rnd:
                    cpu[name].append((time.process_time() - started) / logins)
    return PerCallResult(loop, {k: Stat(v) for k, v in cpu.items()})


def run_loops(logins: int = 1000, rounds: int = 9) -> list[PerCallResult]:
    out = [asyncio.run(measure("asyncio", logins, rounds))]
    if _has_uvloop():
        import uvloop

        out.append(uvloop.run(measure("uvloop", logins, rounds)))
    return out


def markdown(results: list[PerCallResult]) -> str:
    rows = []
    for r in results:
        floor = r.cpu_per_login["floor"].median
        for name, stat in r.cpu_per_login.items():
            extra = "" if name == "floor" else f"+{(stat.median - floor) * 1e6:.1f}"
            rows.append((r.loop, name, stat.fmt("µs", 1e6), extra))
    return table(
        ["loop", "contender", "CPU per login, median (min–max)", "µs per login above the floor"],
        rows,
    )
