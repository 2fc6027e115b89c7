"""The nightly bulk pull of income attributes for a file of loginIds (run by the test
suite against the emulator): each login is Authorize -> GetAccountsDetail -> attributes,
50 at a time, one JSON line per login."""

import tempfile

import anyio
import msgspec

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def nightly(client: FlinksClient, ids_file: anyio.Path, out: anyio.Path) -> int:
    text = await ids_file.read_text()
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    failed = 0
    async with await anyio.open_file(out, "wb") as sink:
        async with client.raw.income_attributes_many(ids, concurrency=50) as results:
            async for r in results:  # the 200 bodies as Flinks sent them, for the archive
                if r.ok and r.value is not None:
                    line = {"login_id": r.login_id, "answer": msgspec.Raw(r.value)}
                    await sink.write(msgspec.json.encode(line) + b"\n")
                else:
                    failed += 1
    return failed


async def main() -> None:
    async with Emulator(pending=1) as emu:
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb", base_url=emu.url, poll_interval=0.01
        ) as client:
            with tempfile.TemporaryDirectory() as tmp:
                ids_file = anyio.Path(tmp, "login_ids.txt")
                await ids_file.write_text("\n".join(demo_login_ids(100)) + "\n")
                out = anyio.Path(tmp, "income.jsonl")
                failed = await nightly(client, ids_file, out)
                lines = len((await out.read_bytes()).splitlines())
            sent = client.requests_sent
    print(f"{lines} logins written, {failed} failed, {sent / 100:.0f} requests per login")


if __name__ == "__main__":
    anyio.run(main)
