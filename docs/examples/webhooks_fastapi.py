"""Webhooks in a FastAPI app (docs/webhooks.md): the receiver routed in one line, and a
handler whose call ends on its webhook instead of polling every 10 s. Served for real by
tests/test_examples.py against the emulator.

Run it: FLINKS_CUSTOMER_ID=... FLINKS_API_KEY=... FLINKS_WEBHOOK_SECRET=... \
        uvicorn docs.examples.webhooks_fastapi:app
(with FLINKS_REDIS_URL set, a webhook received by any worker wakes the call in any other)
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Route

from flinks_async import FlinksClient, PollTimeoutError

# one client for the app's life; it opens its connections inside the running loop
flinks = FlinksClient(webhooks=True)  # reads FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ...


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with flinks:
        yield


app = FastAPI(lifespan=lifespan)
# where Flinks POSTs, at exactly the URL you register (not app.mount(): a Mount answers
# 307 at its own path, and a webhook sender counts a redirect as a failed delivery);
# secrets comma-separated while you rotate them
receiver = flinks.webhook_receiver(os.environ["FLINKS_WEBHOOK_SECRET"].split(","))
app.router.routes.append(Route("/flinks/webhook", receiver, methods=["POST"]))


@app.get("/investments/{login_id}")
async def investments(login_id: str) -> JSONResponse:
    try:  # the webhook ends the wait; a safety poll every 60 s if it never comes
        answer = await flinks.with_options(poll_timeout=120).investments(login_id)
    except PollTimeoutError as exc:
        return JSONResponse({"retry_with": exc.request_id}, status_code=504)
    return JSONResponse({"accounts": len(answer.accounts or []), "cash": str(answer.cash)})
