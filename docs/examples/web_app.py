"""The smallest complete web app (README): one client for the app's life, a handler with
its own poll timeout. Served for real by tests/test_examples.py against the emulator.

Run it: FLINKS_CUSTOMER_ID=... FLINKS_API_KEY=... uvicorn docs.examples.web_app:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flinks_async import FlinksClient, InvalidLoginIdError, LoginError, PollTimeoutError


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with FlinksClient() as client:  # reads FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ...
        app.state.flinks = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/accounts/{login_id}")
async def accounts(login_id: str, request: Request) -> JSONResponse:
    client: FlinksClient = request.app.state.flinks
    try:  # a web request waits 25 s at most; the nightly job keeps the 30-minute default
        summary = await client.with_options(poll_timeout=25).accounts_summary(login_id)
    except InvalidLoginIdError as exc:  # not a GUID: nothing was sent to Flinks
        return JSONResponse({"error": str(exc)}, status_code=422)
    except PollTimeoutError as exc:
        return JSONResponse({"retry_with": exc.request_id}, status_code=504)
    except LoginError as exc:
        return JSONResponse({"error": exc.flinks_code}, status_code=409)
    return JSONResponse({"accounts": [a.title for a in summary.accounts or []]})
