"""An aiohttp.web app that serves a login's investments through one shared FlinksClient.

Run it:  FLINKS_CUSTOMER_ID=... python -m examples.aiohttp_app

* One client for the app's lifetime (a ``cleanup_ctx``), shared by every request.
* ``handler_cancellation=True`` makes aiohttp cancel a handler whose client disconnects
  (off by default since aiohttp 3.7); flinks-async then stops polling at once and
  releases the connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from flinks_async import FlinksClient, FlinksError, InvalidLoginIdError, PollTimeoutError

FLINKS: web.AppKey[FlinksClient] = web.AppKey("flinks", FlinksClient)


def create_app(client_factory: Callable[[], FlinksClient] = FlinksClient) -> web.Application:
    """The app; ``client_factory`` builds its FlinksClient (default: from FLINKS_* vars)."""

    async def flinks_client(app: web.Application) -> AsyncIterator[None]:
        async with client_factory() as client:
            app[FLINKS] = client
            yield

    async def investments(request: web.Request) -> web.Response:
        client = request.app[FLINKS]
        try:
            body = await client.raw.investments(request.match_info["login_id"])
        except InvalidLoginIdError as exc:
            return web.json_response({"error": str(exc)}, status=422)
        except PollTimeoutError:
            return web.json_response({"error": "Flinks is still processing"}, status=504)
        except FlinksError as exc:
            return web.json_response({"error": type(exc).__name__}, status=502)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(flinks_client)
    app.router.add_get("/investments/{login_id}", investments)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8000, handler_cancellation=True)
