"""A FastAPI app that serves a login's investments through one shared FlinksClient.

Run it:  FLINKS_CUSTOMER_ID=... FLINKS_API_KEY=... uvicorn examples.fastapi_app:app

* One client for the app's lifetime (the lifespan), so every request shares the connection
  pool, the rate limit and single-flight (two requests for one login share one poll).
* The handler returns the Flinks body bytes as they came (``client.raw``): no decode and
  re-encode on the hot path. Decode with the models when you need to compute on the data.
* If the HTTP client hangs up while Flinks is still answering 202, the poll is cancelled
  at once: ASGI servers do not cancel handlers on disconnect, so ``until_disconnect``
  watches for ``http.disconnect`` and cancels the work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from flinks_async import (
    FlinksClient,
    FlinksError,
    InvalidLoginIdError,
    LoginError,
    PollTimeoutError,
)

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The HTTP client went away before the answer was ready."""


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()``, cancelling it if the HTTP client disconnects first.

    ``work``'s own exception is raised as is (not wrapped in an ExceptionGroup).
    """
    result: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def run() -> None:
            try:
                result.append(await work())
            except Exception as exc:
                errors.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    if errors:
        raise errors[0]
    if not result:
        raise ClientDisconnected
    return result[0]


def create_app(client_factory: Callable[[], FlinksClient] = FlinksClient) -> FastAPI:
    """The app; ``client_factory`` builds its FlinksClient (default: from FLINKS_* vars)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client_factory() as client:
            app.state.flinks = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/investments/{login_id}")
    async def investments(login_id: str, request: Request) -> Response:
        client: FlinksClient = request.app.state.flinks
        try:
            body = await until_disconnect(request, lambda: client.raw.investments(login_id))
        except ClientDisconnected:
            return Response(status_code=499)  # nobody is listening any more
        except InvalidLoginIdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except LoginError as exc:
            return JSONResponse({"error": exc.flinks_code}, status_code=409)
        except PollTimeoutError:
            return JSONResponse({"error": "Flinks is still processing"}, status_code=504)
        except FlinksError as exc:
            return JSONResponse({"error": type(exc).__name__}, status_code=502)
        return Response(body, media_type="application/json")

    return app


app = create_app()
