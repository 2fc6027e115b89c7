"""A Celery app's ``tasks.py`` (this file is run by the test suite, with a stand-in for
Celery's ``shared_task`` when Celery is not installed: what it tests is the client's usage).

The worker imports this module, then forks its pool's processes (prefork): each child
opens its own loop and connections on its first call, by itself. Thread pools
(``--pool threads``) share the one client.
"""

from celery import shared_task

from flinks_async import SyncFlinksClient, TransientAPIError

flinks = SyncFlinksClient()  # FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ... from the environment


@shared_task(autoretry_for=(TransientAPIError,), retry_backoff=True)
def refresh_transactions(login_id: str) -> int:
    """Pull 90 days of transactions; a Flinks outage retries the task later."""
    detail = flinks.accounts_detail(login_id, days_of_transactions="Days90")
    return sum(len(a.transactions or ()) for a in detail.accounts or ())


@shared_task
def nightly_balances(login_ids: list[str]) -> dict[str, int]:
    """Every login's accounts, 20 at a time; one failure does not stop the others."""
    counts = {"ok": 0, "failed": 0}
    with flinks.accounts_summary_many(login_ids, concurrency=20) as results:
        for r in results:
            counts["ok" if r.ok else "failed"] += 1
    return counts
