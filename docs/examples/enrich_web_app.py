"""Income verification in one call: a FastAPI handler awaiting the detail and the income
attributes from one session, in the web app of the Web apps page (one client for the
app's life; a complete file on purpose, to copy). Served for real by
tests/test_enrich_docs.py.

Run it: FLINKS_CUSTOMER_ID=... FLINKS_API_KEY=... uvicorn docs.examples.enrich_web_app:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flinks_async import FlinksClient, LoginError, PackageNotSubscribedError, PollTimeoutError


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with FlinksClient() as client:  # reads FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ...
        app.state.flinks = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/income/{login_id}")
async def income(login_id: str, request: Request) -> JSONResponse:
    client: FlinksClient = request.app.state.flinks.with_options(poll_timeout=120)
    try:
        detail = await client.accounts_detail(login_id)  # Authorize, then polled to its 200
        # the same session: no second Authorize, no second detail (within Flinks' 8 minutes;
        # past them the chain starts again from Authorize by itself)
        attributes = await client.income_attributes(login_id, request_id=detail.request_id)
    except PollTimeoutError as exc:
        return JSONResponse({"retry_with": exc.request_id}, status_code=504)
    except LoginError as exc:
        return JSONResponse({"error": exc.flinks_code}, status_code=409)
    except PackageNotSubscribedError:
        return JSONResponse({"error": "the Income package is not subscribed"}, status_code=501)
    card = attributes.card
    monthly = card.number("average_monthly_employer_income_90_days") if card else None
    return JSONResponse(
        {
            "accounts": len(detail.accounts or []),
            "average_monthly_employer_income_90_days": str(monthly) if monthly else None,
            "employer": card["employer_name_1"] if card and "employer_name_1" in card else None,
        }
    )
