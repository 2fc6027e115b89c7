"""What the command line's ``pull`` and the distributed pull (:mod:`flinks_async.queue`)
share: the JSONL file they write (:mod:`._jsonl`). Neither the client nor its core
imports it."""
