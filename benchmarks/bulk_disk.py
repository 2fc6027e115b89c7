"""Bulk to disk: ``flinks-async pull`` into JSONL vs the same job written naively.

``flinks-async pull`` runs as users run it (a subprocess, default concurrency 50, the
emulator in its own pinned process). The naive job is what a first integration often
looks like: one login at a time, ``await`` Authorize, poll, write the line. Both use the
same emulator settings (pending 2, ~20 KB payloads) and poll interval. The naive job runs
on fewer logins (it is slow) and is compared by rate: logins/s and bytes/s.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import aiohttp
import anyio
import msgspec

from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, emulator_process, table

POLL = 0.05


@dataclasses.dataclass
class DiskResult:
    name: str
    logins: int
    seconds: float
    bytes: int

    @property
    def rate(self) -> float:
        return self.logins / self.seconds


async def _naive(url: str, ids: list[str], out: pathlib.Path) -> None:
    base = f"{url}/v3/{CUSTOMER}/BankingServices"
    async with aiohttp.ClientSession() as http:
        with open(out, "wb") as f:  # noqa: ASYNC230 - the naive job, on purpose
            for login_id in ids:
                async with http.post(
                    f"{base}/Authorize", json={"LoginId": login_id, "MostRecentCached": True}
                ) as r:
                    rid = (await r.json())["RequestId"]
                while True:
                    async with http.post(
                        f"{base}/Investments",
                        json={"LoginId": login_id, "RequestId": rid, "MostRecentCached": True},
                    ) as r:
                        if r.status == 200:
                            data = await r.json()
                            break
                    await anyio.sleep(POLL)
                f.write(msgspec.json.encode({"login_id": login_id, "ok": True, "data": data}))
                f.write(b"\n")


async def run(logins: int = 10_000, naive_logins: int = 300) -> list[DiskResult]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        async with emulator_process("--pending", "2", "--payload-bytes", "20000") as emu:
            ids = demo_login_ids(logins, seed=300)
            (folder / "ids.txt").write_text("\n".join(ids) + "\n")
            env = {**os.environ, "FLINKS_CUSTOMER_ID": CUSTOMER, "FLINKS_BASE_URL": emu.url}
            started = time.perf_counter()
            await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "flinks_async",
                    "pull",
                    "--login-ids",
                    str(folder / "ids.txt"),
                    "--out",
                    str(folder / "pull.jsonl"),
                    "--poll-interval",
                    str(POLL),
                    "--concurrency",
                    "200",
                    "--progress",
                    "off",
                ],
                env=env,
                check=True,
                stderr=subprocess.DEVNULL,
            )
            out.append(
                DiskResult(
                    "flinks-async pull (concurrency 200)",
                    logins,
                    time.perf_counter() - started,
                    (folder / "pull.jsonl").stat().st_size,
                )
            )
            naive_ids = demo_login_ids(naive_logins, seed=301)
            started = time.perf_counter()
            await _naive(emu.url, naive_ids, folder / "naive.jsonl")
            out.append(
                DiskResult(
                    "naive sequential awaits",
                    naive_logins,
                    time.perf_counter() - started,
                    (folder / "naive.jsonl").stat().st_size,
                )
            )
    return out


def markdown(results: list[DiskResult]) -> str:
    ours = results[0].rate
    rows = [
        (
            r.name,
            r.logins,
            f"{r.seconds:.1f} s",
            f"{r.rate:,.0f}",
            f"{r.bytes / r.seconds / 1e6:.1f} MB/s",
            "1.00" if i == 0 else f"{ours / r.rate:.1f}x",
        )
        for i, r in enumerate(results)
    ]
    return table(["job", "logins", "wall", "logins/s", "written", "flinks-async ÷ this"], rows)
