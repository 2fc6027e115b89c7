"""A Django app's ``views.py`` (this file is run by the test suite, with stand-ins for
Django's classes when Django is not installed: what it tests is the client's usage).

One blocking client for the process, made at import and shared by every request thread;
it closes itself at exit. Route the views in ``urls.py``::

    path("accounts/<str:login_id>", views.accounts),
    path("flinks/webhook", views.flinks_webhook),
"""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from flinks_async import LoginError, PollTimeoutError, SyncFlinksClient

# FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ... from the environment; with several worker
# processes (gunicorn -w 4), also FLINKS_REDIS_URL, so that a webhook received by one
# worker wakes the call waiting in another
flinks = SyncFlinksClient(webhooks=True)
# Flinks POSTs webhooks to flinks_webhook below: they end the calls waiting for them
webhook = flinks.webhook_receiver(os.environ["FLINKS_WEBHOOK_SECRET"])
# a request never waits more than 25 s for Flinks (the rest of the call is cancelled)
web = flinks.with_options(poll_timeout=25)


def accounts(request: HttpRequest, login_id: str) -> HttpResponse:
    try:
        summary = web.accounts_summary(login_id, with_balance=True)
    except PollTimeoutError:
        return JsonResponse({"status": "pending, try again"}, status=202)
    except LoginError as exc:  # the user must reconnect their bank
        return JsonResponse({"error": exc.flinks_code}, status=409)
    balances = {
        a.id: str(a.balance.current) for a in summary.accounts or () if a.balance is not None
    }
    return JsonResponse({"balances": balances})


@csrf_exempt  # Flinks signs its webhooks (checked by the receiver); no CSRF token
def flinks_webhook(request: HttpRequest) -> HttpResponse:
    # webhook bodies can be larger than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): raise it
    status, text = webhook.receive(request.headers, request.body)
    return HttpResponse(text, status=status, content_type="text/plain")
