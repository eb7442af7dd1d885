"""
### Phase 6: delta window

`mig_06_delta` runs on demand (Trigger with config: firm and migration id). Scheduled cutover
windows run in **`mig_06_delta__<firm>__<migration>`**, one DAG per migration declared in
`include/migrations/` with an active `cutover` (schedule, time zone, start, optional end): its
runs always carry that migration's firm and id. Unpause it for the cutover (e.g. 48 hours) and
pause it at go-live. Each run:

1. `extract_changes`: what changed in Clio since the object's watermark (the first window from
   when the full extraction began): with Clio webhooks
   registered (`mig_08_webhooks`), the ids of the deliveries the receiver stored, read back in
   `ids[]` batches, deletions from `deleted` events, and an `updated_since` id listing as the net
   for lost deliveries; without them, the `updated_since` listing. Full id sweeps (deletions by
   difference against the full extraction and earlier windows) run for every object without
   webhooks, else only for objects without `deleted`
   events on the ops schedule (param `sweep`: auto = every `sweep_interval_hours`, now, all at
   the final cutover, none); `delta/<run>/detection.json` reports the requests of each;
2. `plan_window`: **conflicts** (a record edited in Salesforce after our last write) are
   queued in `delta/<run>/conflicts.html` instead of being overwritten; deletions found by
   id-set comparison;
3. `transform_changes` / `load_changes`: the accepted changes through the normal path (cleared
   fields sent as null, changed link rows replaced, edited notes and renamed files updated; a person's
   indirect AccountContactRelations to Clio's Accounts that Clio no longer has are deleted, ledgered
   with their before-image: the one Salesforce kept to the old company when the person's company
   changed, ours to a related company Clio dropped); each batch journals what it found before writing,
   so a retried task (every batch runs again) ledgers the before-images from before the window and
   still finds the person's old relation after a death past the upsert;
4. `delete_removed`: deletes what Clio deleted (before-images in the ledger), after the upserts;
   live records still pointing to a deleted parent are detached first (lookup cleared, before-image
   in the ledger), so Salesforce's delete cascade cannot take them nor its clearing of other lookups
   (a bill's client) lose them (`detached`); records that
   cannot be detached and go with their parent are counted in `cascaded` and ledgered;
5. `commit_watermarks`: the watermark advances only after a committed load, and not past a
   record whose load failed (the next window reads it again); `commit_events` then drops the
   webhook events the window consumed; `verify` checks the window's accepted changes field by
   field against what Clio returned and the mapping spec say (parents from the whole
   extraction), `reports/<run>/verification.html`: an unexplained mismatch fails it naming
   object, field and count;
6. `purge_staging`: deletes staged migrations (of any firm) whose newest file is older than the
   Variable `clio2sf_staging_retention_days` (skipped while it is unset).
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from clio2sf.migrations import Migration, scheduled
from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import changes as changes_phase
from clio2sf_airflow.phases import delta as phase
from clio2sf_airflow.phases import retention


def delta_window(clio_pool: str = "clio_api", salesforce_pool: str = "salesforce_api") -> None:
    """The tasks of one delta window (wiring shared by the on-demand and the scheduled DAGs)."""
    changes = task(phase.extract_changes, task_id="extract_changes", pool=clio_pool)()
    planned = task(phase.plan, task_id="plan_window", pool=salesforce_pool)()
    transformed = task(phase.transform_changes, task_id="transform_changes")()
    loaded = task(phase.load_changes, task_id="load_changes", pool=salesforce_pool)()
    deleted = task(phase.delete_removed, task_id="delete_removed", pool=salesforce_pool)()
    committed = task(phase.commit_watermarks, task_id="commit_watermarks")()
    events = task(changes_phase.commit_events, task_id="commit_events")()
    purge = task(retention.purge_staging, task_id="purge_staging")()
    verified = task(phase.verify, task_id="verify", pool=salesforce_pool)()
    changes >> planned >> transformed >> loaded >> deleted >> committed >> events >> purge
    committed >> verified


def sweep_params() -> dict[str, Param]:
    """When a window pages every id of an object to find deletions (see clio2sf.changes)."""
    return {
        "sweep": Param("auto", enum=["auto", "now", "all", "none"], title="Id sweep",
                       description="auto: objects without deleted events every sweep_interval_hours (every "
                                   "object every window without webhooks); now; all (final cutover); none"),
        "sweep_interval_hours": Param(24, type="number", minimum=0, title="Sweep interval (hours)"),
    }


@dag(
    dag_id="mig_06_delta",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-6", "cutover"],
    doc_md=__doc__,
    max_active_runs=4,  # windows of several migrations at once; the lease keeps one writer per migration
    params=migration_params(**sweep_params()),
)
def mig_06_delta():
    delta_window()


mig_06_delta()


def scheduled_delta(mig: Migration):
    """The scheduled delta DAG of one declared migration: its runs carry that firm and migration id."""
    cut = mig.cutover

    @dag(
        dag_id=mig.delta_dag_id,
        schedule=CronDataIntervalTimetable(cut.schedule, timezone=cut.timezone),
        start_date=cut.start,
        end_date=cut.end,
        catchup=False,
        is_paused_upon_creation=True,
        default_args=DEFAULT_ARGS,
        tags=[*TAGS, "phase-6", "cutover", f"firm:{mig.firm}"],
        doc_md=f"Scheduled delta windows of firm **{mig.firm}**, migration **{mig.migration_id}** "
               f"(declared in `include/migrations/{mig.source}`).\n\n" + __doc__,
        max_active_runs=1,
        params={
            "firm": Param(mig.firm, type="string", enum=[mig.firm], title="Firm"),
            "migration_id": Param(mig.migration_id, type="string", enum=[mig.migration_id], title="Migration id"),
            **sweep_params(),
        },
    )
    def migration_delta():
        # a declared pool is fixed here; otherwise the pools-per-firm policy routes the shared ones
        delta_window(mig.clio_pool or "clio_api", mig.salesforce_pool or "salesforce_api")

    return migration_delta()


# One scheduled delta DAG per declared migration with an active cutover (include/migrations/).
for _mig in scheduled():
    scheduled_delta(_mig)
