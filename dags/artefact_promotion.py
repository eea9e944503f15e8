"""
### artefact_promotion — promote QA-signed-off artefacts from `s3://qa-…` to `s3://prod-…`

Automates the nightly QA → prod sync runbook (`aws s3 sync <qa> <prod> --delete --quiet` per
prefix), but decides by **size and ETag**, refuses unsafe plans **before anything changes**, and
records every overwritten or deleted prod object in a **promotion manifest** so prod can be
rolled back exactly.

| task | runbook step it automates |
|---|---|
| `preflight` | §2 preconditions: config valid, QA and prod buckets reachable, prod versioning Enabled |
| `plan` | §3 step 2: read the prefix list; refuses a missing/empty QA prefix, a delete-heavy plan, a destination outside the `qa-` → `prod-` rule, a prod prefix another run is writing (its lease); records the QA snapshot (keys, sizes, ETags) the gates validate |
| `gate` (one mapped task per prefix) | §2 "delivery CSVs validated": the prefix's contract (`include/contracts/`) and drift against prod's schema, validated with GX (`GXValidateDataFrameOperator`) |
| `decide` | branch: all gates passed → `promote`; any failed → `halt_prod_consumers` |
| `halt_prod_consumers` | §5c "halt consumers": promotes nothing, pauses the prefix's consumer DAGs (REST API, connection `airflow_api`), records why in Variable `greenlight_promotion_halt`, fails the run without retry |
| `shards` | one `promote` task per prefix, or per key range of a prefix holding more than `shard_objects` objects (docs/sharding.md) |
| `promote` (one mapped task per prefix or shard) | §3 step 3: the copy itself, server-side and parallel, holding the prod prefix's lease (held by the run from `plan` to `summary`); a shard copies only, its deletes run in `verify` after every shard copied; only the validated snapshot (If-Match on its ETags: a QA object changed since the gate fails the prefix, "QA changed after validation", no retry); deletes only after every copy succeeded; per-object lines in the log (never `--quiet`) |
| `verify` | §4 verification (for a sharded prefix, first its deletes): re-list both sides, prove prod equals QA object by object; then emit one Asset event per verified prod prefix (`s3://prod-…/path/`, extra: copied, deleted, manifest) |
| `summary` | the final `promotion_done` line and the run index manifest (the handle for a rollback) |
| `resume_consumers` | with `resume_consumers`, unpauses the DAGs a halt paused (only those) |

**Params** — `dry_run` (log the per-object plan, change nothing), `only` (a subset of the
configured prefixes, by source URI or name), `resume_consumers` (after a halt: unpause the
consumers it paused once this run has verified prod), `lease_wait` (seconds to wait when another run
writes one of the prod prefixes; 0 = fail at once naming it).
**Config** — `include/config/promotion.yaml` (or `$GREENLIGHT_PROMOTION_CONFIG`); S3 through the
Airflow connection `aws_default` (endpoint URL in its extra).
**Failures** — refusals, bad config and stale prefixes fail at once without retry; S3 network
errors and 5xx are retried with exponential backoff. Clearing and rerunning any task is safe: a
rerun does only what is still missing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetAlias, Param, dag, get_current_context, task

from greenlight.dagsupport.defaults import PROMOTED_ALIAS, add_run_check, default_args, documented, schedule_from_env

SCHEDULE = schedule_from_env("GREENLIGHT_PROMOTION_SCHEDULE", "0 8 * * *")

DEFAULT_ARGS = default_args()


def steps():
    """The task bodies (engine, contracts, YAML parsing): imported when a task runs, never at parse
    time, where they would add ~0.2 s per parse of this file (measured with ``python -X importtime``)."""
    from greenlight.dagsupport import promotion

    return promotion


def release_leases(context):
    """A failed run ends its hold on the prod prefixes at once (not after the lease's expiry)."""
    steps().release_after_failure(context)


@dag(
    dag_id="artefact_promotion",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    on_failure_callback=release_leases,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["greenlight", "promotion"],
    params={
        "dry_run": Param(False, type="boolean", description="Log the per-object plan and change nothing."),
        "only": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^(s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/.*|[A-Za-z0-9_.-]+)$"},
            uniqueItems=True,
            description="Promote only these configured prefixes (source URI or name). Empty = all.",
        ),
        "resume_consumers": Param(
            False,
            type="boolean",
            description="After a verified promotion, unpause the prod consumer DAGs that a contract halt "
            "paused (only those).",
        ),
        "lease_wait": Param(
            0,
            type="integer",
            minimum=0,
            maximum=21600,
            description="Seconds to wait when another run (the CLI, a rollback) is writing one of the prod "
            "prefixes; 0 = fail at once naming it.",
        ),
    },
)
def artefact_promotion():
    @task
    def preflight(params=None) -> list[dict]:
        """Runbook §2 preconditions: config valid, QA and prod buckets reachable, prod versioning Enabled, no QA run RUNNING in MLflow.

        Retry category: A — read-only checks; clear in place. A refusal or precondition failure says "do not retry": fix it first.
        """
        return steps().preflight(params["only"])

    @task
    def plan(params=None, run_id=None) -> list[dict]:
        """Runbook §3 step 2: list both sides of every prefix and apply the safety rules before anything changes.

        Retry category: A — read-only; clear in place once a refusal's cause is fixed.
        """
        return steps().plan(params["only"], run_id=run_id, dry_run=params["dry_run"], wait=params["lease_wait"])

    # A gate failure is a contract violation: reported, never retried.
    @task(retries=2, map_index_template="{{ gated_prefix }}")
    def gate(planned: dict, params=None, run_id=None) -> dict:
        """Runbook §2 "delivery CSVs validated": the prefix's contract and drift against prod, validated with GX.

        Retry category: A — read-only; writes only this run's gate record. A failed gate does not fail this task: `decide` halts.
        """
        get_current_context()["gated_prefix"] = planned["prefix"]
        return steps().gate(planned, run_id=run_id, dry_run=params["dry_run"])

    @task.branch
    def decide(gates: list[dict]) -> str:
        """Branch: every gate passed → promote; any failed → halt_prod_consumers.

        Retry category: A — pure decision over the gates' XCom.
        """
        return steps().decide(list(gates))

    @task(retries=3)
    def halt_prod_consumers(gates: list[dict], params=None, run_id=None, dag=None) -> dict:
        """Runbook §5c "halt consumers": pause the failed prefixes' consumer DAGs, record why, fail the run.

        Retry category: C — fails on purpose (contract violation). Fix the data or bump the contract, then trigger a new run with `resume_consumers`.
        """
        return steps().halt_prod_consumers(list(gates), run_id=run_id, dag_id=dag.dag_id, dry_run=params["dry_run"])

    @task
    def shards(planned: list[dict]) -> list[dict]:
        """Runbook §3 step 3 (a huge prefix): one `promote` task per prefix, or per key range of a prefix above `shard_objects`.

        Retry category: A — pure computation over the plan's XCom; clear in place.
        """
        return steps().shard_tasks(list(planned))

    @task(map_index_template="{{ promoted_prefix }}")
    def promote(planned: dict, params=None, run_id=None) -> dict:
        """Runbook §3 step 3: copy one prefix (or one key-range shard of it) server-side (guarded deletes), recorded in this run's manifest.

        Retry category: A — clear in place: it re-plans and merges into the same run's manifest, keeping the first attempt's pre-promotion versions.
        """
        get_current_context()["promoted_prefix"] = steps().task_label(planned)
        return steps().promote(planned, run_id=run_id, dry_run=params["dry_run"], wait=params["lease_wait"])

    @task(outlets=[AssetAlias(PROMOTED_ALIAS)])
    def verify(results: list[dict], params=None, run_id=None, outlet_events=None) -> list[dict]:
        """Runbook §4 verification: prove prod equals QA object by object, then move each prefix's `current` pointer and emit its Asset event.

        Retry category: B — publishes pointers: a second publish under this run id is refused unless identical; after a failure trigger a new run.
        """
        checks = steps().verify(list(results), run_id=run_id, dry_run=params["dry_run"], wait=params["lease_wait"])
        # Only a verified promotion emits its prod prefix's Asset event (none on dry run or failure).
        for event in steps().asset_events(list(results), checks, run_id=run_id):
            outlet_events[AssetAlias(PROMOTED_ALIAS)].add(
                Asset(uri=event["uri"], name=event["name"]), extra=event["extra"]
            )
        return checks

    @task
    def summary(results: list[dict], verified: list[dict], params=None, run_id=None) -> dict:
        """Runbook §4: the final `promotion_done` line and the run index manifest (the handle for a rollback).

        Retry category: A — rewrites only this run's index; clear in place.
        """
        return steps().summary(list(results), verified, run_id=run_id, dry_run=params["dry_run"])

    @task
    def resume_consumers(params=None, run_id=None) -> dict:
        """After a halt: with `resume_consumers`, unpause the DAGs the halt paused (only those).

        Retry category: A — idempotent; clear in place.
        """
        return steps().resume_consumers(run_id=run_id, enabled=params["resume_consumers"], dry_run=params["dry_run"])

    planned = plan()
    preflight() >> planned
    gates = documented(gate).expand(planned=planned)
    branch = decide(gates)
    results = documented(promote).expand(planned=shards(planned))
    branch >> [results, halt_prod_consumers(gates)]
    summary(results, verify(results)) >> resume_consumers()


add_run_check(artefact_promotion())
