"""Bulk pulls spread over many processes and machines, on the arq job queue
(``pip install 'flinks-async[queue]'``).

* :func:`enqueue` records each login of a job once (``HSETNX`` in the job's ids hash) and
  puts an arq job on the queue ``flinks-async`` **only for a login it has just recorded**:
  a login it calls known is never pulled again (``retry_failed=True`` re-queues the
  logins whose line says they failed). Blank ids are skipped, sync or async source.
* A **worker** (:func:`run_worker`, ``flinks-async worker``) holds one
  :class:`~flinks_async.FlinksClient` for its lifetime, built from the ``FLINKS_*``
  environment, and runs up to ``FLINKS_WORKER_CONCURRENCY`` (50) logins at once.
* A login is pulled in **slices** of ``FLINKS_JOB_SLICE`` seconds (20): Authorize once,
  store the session (its ``RequestId``) in Redis, poll for at most a slice, and if the
  answer is still pending, go back on the queue to carry on *the same session* from any
  worker. arq marks a running job for ``job_timeout + 10`` s (``job_timeout`` =
  ``max(2 * slice, slice + 5)`` = 40 s), so a worker killed with -9 leaves its logins to
  another worker within about **50 s**, and they resume polling where they were: no second
  Authorize unless the kill fell between the Authorize and the write of its session (at
  most once more).
* Only a final answer is a login's line: a Flinks error that retrying cannot change
  (INVALID_LOGIN, DISABLED_LOGIN, ...), a body that is not the expected JSON, or still
  pending after ``FLINKS_POLL_TIMEOUT`` (1800 s) counted from the first slice. Transient
  trouble (Redis unavailable, network errors, 5xx or rate limiting after the client's own
  retries, an unexpected error) goes back on the queue after a backoff of
  ``FLINKS_JOB_BACKOFF * 2**(n-1)`` seconds (5 s; at most 300 s), up to
  ``FLINKS_JOB_TRIES`` (5) times; then the last error is the line. So does an
  ``UNAUTHORIZED`` or a 404 without a FlinksCode from an endpoint that has not yet answered
  this worker (the key may be wrong, not the login); once the set-up breaker trips
  (:class:`~flinks_async.SetupError`), the worker stops (exit 2, one line) and every login
  it held goes back on the queue without a line.
* Each login's line is stored as ``flinks-async pull`` would write it, in one Redis hash
  per job (field: a hash of the login id), so a login has exactly one line: the last.
  :func:`collect` streams them (``HSCAN``) to a JSONL file.

Every key a job creates expires ``ttl`` seconds (``enqueue --ttl``, default 7 days) after
its last write: ``flinks-async:job:{job}:meta`` / ``:ids`` (login ids: personal data) /
``:state`` (sessions in progress) / ``:results`` (the lines: personal data). The queue's
own records hold the job name and a hash of the login id, never the id. :func:`purge`
(``collect --delete`` / ``flinks-async purge``) stops a job and removes every key that
names it, arq's included, even mid-pull: a worker's writes for a job are conditional on
its ``meta`` key (one script), and its logins in progress are cancelled through arq's
abort (workers run with ``allow_abort_jobs``).

A worker beats every ``FLINKS_WORKER_HEARTBEAT`` seconds (1): ``flinks-async:worker:{id}``
holds its counts, its concurrency and the logins of each job it holds, and lives 5 beats.
:func:`status` counts workers alive and logins in flight from those beats alone, so a
killed worker leaves both within 5 s and in flight never exceeds what the live workers
can hold. A worker's counts live as long as its process, across reconnections.
"""
