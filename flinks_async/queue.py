"""Distributed bulk pulls on the arq job queue (``pip install 'flinks-async[queue]'``).

``arq flinks_async.queue.WorkerSettings`` runs a worker with arq's own command line (or
``flinks-async worker --redis URL``); see :mod:`flinks_async._distributed` for the rules.
Importing this module does not import arq: the functions do, when called.
"""

from ._distributed import (
    QUEUE,
    JobStatus,
    UnknownJobError,
    WorkerSettings,
    collect,
    enqueue,
    pull_login,
    purge,
    retry_failed,
    run_worker,
    status,
)

__all__ = [
    "QUEUE",
    "JobStatus",
    "UnknownJobError",
    "WorkerSettings",
    "collect",
    "enqueue",
    "pull_login",
    "purge",
    "retry_failed",
    "run_worker",
    "status",
]
