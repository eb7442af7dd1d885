"""
### Clio webhooks of a migration (feeds the delta windows)

Registers one Clio webhook per migrated model Clio delivers (matters, contacts, activities,
bills, calendar entries, communications, tasks, documents) pointing at this deployment's
receiver (`<api-server>/clio2sf/webhooks/<firm>/<migration_id>/<model>`, param `receiver_url`
or Variable `clio2sf_webhook_base_url`), renews them before `expires_at` (Clio allows at most
31 days), and reports their health (status, expiry, last delivery) in
`webhooks/health.json`. Runs every 6 hours once enabled; trigger it after the full load.

* `action=ensure` (default): register what is missing or broken, renew what expires within
  `renew_within_hours`;
* `action=rotate`: new webhooks (new shared secrets), old ones deleted; the previous secret stays
  valid for deliveries already in Clio's retry queue;
* `action=remove`: delete every webhook of the migration (at go-live or with a rollback).

See docs/operations.md ("Clio webhooks").
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import webhooks as phase


@dag(
    dag_id="mig_08_webhooks",
    schedule=CronDataIntervalTimetable("0 */6 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "cutover", "webhooks"],
    doc_md=__doc__,
    max_active_runs=1,
    params=migration_params(
        action=Param("ensure", enum=["ensure", "rotate", "remove"], title="Action"),
        receiver_url=Param("", type="string", title="Receiver base URL",
                           description="https://<api-server>/clio2sf/webhooks; empty: the Variable "
                                       "clio2sf_webhook_base_url"),
        renew_within_hours=Param(72, type="integer", minimum=1, maximum=740, title="Renew within (hours)"),
    ),
)
def mig_08_webhooks():
    task(phase.manage_subscriptions, task_id="manage_subscriptions", pool="clio_api")()


mig_08_webhooks()
