"""Webhooks in an aiohttp.web app (docs/webhooks.md): the receiver is one route, and a
handler's call ends on its webhook. Served for real by tests/test_examples.py.

Run it: FLINKS_CUSTOMER_ID=... FLINKS_WEBHOOK_SECRET=... python -m aiohttp.web \
        -P 8080 docs.examples.webhooks_aiohttp:create_app
"""

import os
from collections.abc import AsyncIterator

from aiohttp import web

from flinks_async import FlinksClient, WebhookReceiver

FLINKS = web.AppKey("flinks", FlinksClient)
RECEIVER = web.AppKey("receiver", WebhookReceiver)


async def flinks_client(app: web.Application) -> AsyncIterator[None]:
    async with FlinksClient(webhooks=True) as client:  # FLINKS_* variables
        app[FLINKS] = client
        app[RECEIVER] = client.webhook_receiver(os.environ["FLINKS_WEBHOOK_SECRET"].split(","))
        yield


async def webhook(request: web.Request) -> web.Response:
    return await request.app[RECEIVER].aiohttp_handler(request)


async def investments(request: web.Request) -> web.Response:
    client = request.app[FLINKS]
    answer = await client.with_options(poll_timeout=120).investments(request.match_info["login_id"])
    return web.json_response({"accounts": len(answer.accounts or []), "cash": str(answer.cash)})


def create_app(argv: list[str] | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)  # answers are big
    app.cleanup_ctx.append(flinks_client)
    app.router.add_post("/flinks/webhook", webhook)
    app.router.add_get("/investments/{login_id}", investments)
    return app
