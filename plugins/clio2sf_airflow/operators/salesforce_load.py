"""Load one transformed batch into Salesforce and record every row in the ledger and the rejects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, ObjectStoragePath

from clio2sf.ledger import LedgerWriter
from clio2sf.load import (
    MULTIPART_THRESHOLD,
    LoadResult,
    ledger_kwargs,
    load_content_versions,
    load_rows,
    read_envelopes,
    reject_line,
    write_rejects,
)
from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

if TYPE_CHECKING:
    from airflow.sdk import Context


def batch_name(path_name: str) -> str:
    """``batch-00003.jsonl.gz`` → ``batch-00003``."""
    return path_name.split(".", 1)[0]


class SalesforceLoadOperator(BaseOperator):
    """Upsert (or, for natural-key objects, insert-if-missing) one transformed batch.

    ContentVersion batches upload their staged blobs instead.  Rows failing with a transient
    error are resent; the rest become rejects.  Returns a small JSON-able summary.

    :param sobject: Salesforce object of the batch (checked against every row).
    :param batch_path: staging URL of ``transformed/<sobject>/batch-NNNNN.jsonl.gz``.
    :param migration_root: staging URL of ``<firm>/<migration_id>/``.
    :param migration_id: migration id written on each ledger line.
    :param run_id: ledger run id (defaults to the DAG run id).
    :param phase: ledger/rejects phase, e.g. ``full_load`` or ``delta``.
    :param mode: ``auto`` (Bulk 2.0 above ``bulk_threshold`` rows, else sObject collections),
        ``bulk`` or ``composite``.
    :param bulk_threshold: row count above which ``auto`` uses Bulk 2.0.
    :param max_row_retries: resends of rows that failed transiently (e.g. ``UNABLE_TO_LOCK_ROW``).
    :param multipart_threshold: file size from which ContentVersion uploads go multipart.
    :param capture_before: record before-images of updated rows for rollback (default: delta phases).
    :param salesforce_conn_id: Salesforce connection.
    """

    template_fields: Sequence[str] = (
        "sobject",
        "batch_path",
        "migration_root",
        "migration_id",
        "run_id",
        "phase",
        "mode",
        "salesforce_conn_id",
    )

    def __init__(
        self,
        *,
        sobject: str,
        batch_path: str,
        migration_root: str,
        migration_id: str,
        run_id: str = "{{ run_id }}",
        phase: str = "full_load",
        mode: Literal["auto", "bulk", "composite"] = "auto",
        bulk_threshold: int = 2000,
        max_row_retries: int = 3,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        capture_before: bool | None = None,
        salesforce_conn_id: str = ClioSalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("auto", "bulk", "composite"):
            raise ValueError(f"mode must be auto, bulk or composite, not {mode!r}")
        if max_row_retries < 0 or bulk_threshold < 0:
            raise ValueError("max_row_retries and bulk_threshold must be >= 0")
        self.sobject = sobject
        self.batch_path = batch_path
        self.migration_root = migration_root
        self.migration_id = migration_id
        self.run_id = run_id
        self.phase = phase
        self.mode = mode
        self.bulk_threshold = bulk_threshold
        self.max_row_retries = max_row_retries
        self.multipart_threshold = multipart_threshold
        self.capture_before = capture_before
        self.salesforce_conn_id = salesforce_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        root = ObjectStoragePath(self.migration_root)
        src = ObjectStoragePath(self.batch_path)
        batch = batch_name(src.name)
        with src.open("rb") as fh:
            envelopes = read_envelopes(fh, src.name)
        wrong = next((e for e in envelopes if e.sobject != self.sobject), None)
        if wrong is not None:
            raise ValueError(f"{wrong.source_system_id}: row is a {wrong.sobject}, batch is {self.sobject}")
        hook = ClioSalesforceHook(self.salesforce_conn_id)
        result = self._load(hook, envelopes, root)
        with LedgerWriter(root, self.migration_id, self.run_id, self.phase, self.sobject, batch) as ledger:
            for o in result.outcomes:
                ledger.record(**ledger_kwargs(o, result.before.get(o.source_system_id)))
        rejects = [reject_line(o, self.phase, self.sobject) for o in result.outcomes if not o.success]
        rejects_path = write_rejects(root, self.phase, self.sobject, batch, rejects)
        summary = {
            "sobject": self.sobject,
            "batch": batch,
            "rows": len(envelopes),
            "created": result.created,
            "updated": result.updated,
            "skipped": result.skipped,
            "failed": result.failed,
            "rejects_path": str(rejects_path),
            "ledger_path": str(ledger.path),
            "api_calls": hook.api_calls,
        }
        self.log.info("Loaded %s", {k: v for k, v in summary.items() if not k.endswith("_path")})
        return summary

    def _load(self, hook: ClioSalesforceHook, envelopes: list, root: ObjectStoragePath) -> LoadResult:
        if self.sobject == "ContentVersion":
            return load_content_versions(
                hook,
                envelopes,
                root,
                multipart_threshold=self.multipart_threshold,
                max_row_retries=self.max_row_retries,
            )
        before = "delta" in self.phase if self.capture_before is None else self.capture_before
        return load_rows(
            hook,
            envelopes,
            mode=self.mode,
            bulk_threshold=self.bulk_threshold,
            max_row_retries=self.max_row_retries,
            capture_before=before,
        )
