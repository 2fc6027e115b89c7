"""Distributed bulk pulls on the arq job queue (``pip install 'flinks-async[queue]'``).

``arq flinks_async.queue.WorkerSettings`` runs a worker with arq's own command line (or
``flinks-async worker --redis URL``); see :mod:`flinks_async._distributed` for the rules
(:mod:`._jobs`: the producer's side, :mod:`._worker`: the worker's).
Importing this module does not import arq: the functions do, when called.
"""

from ._distributed._jobs import (
    QUEUE,
    Enqueued,
    JobStatus,
    Purged,
    UnknownJobError,
    collect,
    enqueue,
    purge,
    retry_failed,
    status,
)
from ._distributed._worker import WorkerSettings, pull_login, run_worker

__all__ = [
    "QUEUE",
    "Enqueued",
    "JobStatus",
    "Purged",
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
