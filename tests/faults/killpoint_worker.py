"""A load worker that kills itself (SIGKILL) at a chosen write call: ``python -m tests.faults.killpoint_worker JSON``.

JSON: ``{"mroot", "batch", "run_id", "mode", "kill": {"method", "n", "when"}}``.  ``method`` is a
``ClioSalesforceHook`` write method (``bulk_ingest``, ``composite_upsert``, ``composite_create``,
``composite_update``, ``composite_collections``, ``content_version_create``); the worker dies at its
``n``-th call, ``before`` it is sent (its intent line is on disk, nothing reached Salesforce) or ``after`` Salesforce answered
(the records exist; the answer never reaches the ledger).  Deterministic: no timing, no randomness.
Connection and CA come from ``AIRFLOW_CONN_SALESFORCE_DEFAULT`` and ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    from clio2sf import pipeline
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)
    kill = job.get("kill")
    if kill:
        real = getattr(hook, kill["method"])
        calls = 0

        def wrapped(*a, **kw):
            nonlocal calls
            calls += 1
            if calls == kill["n"] and kill["when"] == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*a, **kw)
            if calls == kill["n"] and kill["when"] == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(hook, kill["method"], wrapped)
    summary = pipeline.load_batch(hook, Path(job["batch"]), Path(job["mroot"]), migration_id=job.get("migration_id", "kp"),
                                  run_id=job["run_id"], phase="full_load", mode=job.get("mode", "auto"),
                                  sleep=lambda s: None)
    print(json.dumps({k: summary[k] for k in ("rows", "created", "updated", "skipped", "failed")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
