"""Acting on webhooks yourself, tested against the emulator's faulty webhooks (run by the
test suite): every delivery comes out of ``deliveries()`` once, the calls end on theirs."""

import anyio
from aiohttp import web

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def main() -> None:
    logins = demo_login_ids(10)
    async with Emulator(
        ready_after=0.3,  # a data request is pending 0.3 s from its first ask
        webhook_secret="whsec-test",
        webhook_retry_delay=0.2,  # Flinks waits 30 minutes between deliveries
        webhook_faults={"drop_first": 0.3, "duplicate": 0.5, "bad_signature": 0.2},
    ) as emu:
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            webhooks=True,
            webhook_stream=True,  # also queue every delivery for deliveries()
        ) as client:
            app = web.Application()
            app.router.add_post(
                "/flinks/webhook", client.webhook_receiver("whsec-test").aiohttp_handler
            )
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()  # a free port
            port = runner.addresses[0][1]
            emu.webhook_url = f"http://127.0.0.1:{port}/flinks/webhook"  # where Flinks POSTs
            try:
                async with client.investments_many(logins) as results:
                    ok = [r async for r in results if r.ok]
                hub = client.webhooks
                assert hub is not None
                handled = set()
                async for delivery in hub.deliveries():
                    value = delivery.value()  # the same models and rules as a call's
                    handled.add((delivery.response_type, delivery.login_id, len(value.accounts)))
                    await hub.ack(delivery)
                    if len(handled) == len(logins):
                        break
            finally:
                await runner.cleanup()
    attempts = len(emu.webhooks_sent)
    print(f"{len(ok)} calls ok, {len(handled)} deliveries handled once, {attempts} attempts")


if __name__ == "__main__":
    anyio.run(main)
