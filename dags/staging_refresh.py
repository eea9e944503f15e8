"""
### staging_refresh — refresh staging's buckets and PostgreSQL tables from prod (runbook 001)

Replaces the hand-run refresh (a shell script for the image bucket, a Lambda for the database,
migrations and a health check by hand). Manual only: trigger it when staging needs prod's data.

| task | runbook step it automates |
|---|---|
| `preflight` | "fix AWS profiles" + the dry run: both Airflow connections resolve, the target is **not** prod (not the same server+database, not named like prod), prod opens read-only, tables and FK groups listed, alembic versions of both sides recorded ("staging ahead of prod" is expected), bucket pairs reachable and within the delete guard |
| `table_groups` | lists the FK groups found by `preflight` (tables linked by foreign keys are copied together) |
| `sync_buckets` | "sync S3 images via script": the promotion engine's planner (size + ETag), server-side copies, guarded deletes |
| `copy_tables` (one mapped task per FK group) | "sync database via Lambda": columns compared, explicit casts on the prod side (`numeric → jsonb`, `text[] → jsonb`, widened ints, …), streaming `COPY … TO STDOUT → COPY … FROM STDIN` in one staging transaction per group; the 0-row trap; sequences reset |
| `migrate` | "run migrations on staging via API": a command with the staging connection in env, or the HTTP endpoint |
| `health` | "verify staging health": deep health URL and SQL checks |
| `verify` | "verify data": row counts per table, objects per bucket pair |
| `summary` | the sync-results table (synced / skipped / failed per table) and the run manifest; fails the run if any table failed |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params** — `dry_run` (row counts and bucket sizes per pair, nothing written), `only` (table
names or bucket mapping names), `skip_migrations`, `lease_wait` (seconds to wait when another run
holds a staging target's lease; 0 = refuse at once). **Leases** — the run holds the lease of every
bucket target (the same lease a promotion into that prefix takes) and of the staging database from
`preflight` to `summary`; a failed run releases them. **Config** — `include/config/staging_refresh.yaml`
(or `$GREENLIGHT_REFRESH_CONFIG`), see `docs/refresh.md`. **Connections** — the config's
`postgres.source_conn` / `target_conn` (postgres provider) and `aws_conn`.
"""

from __future__ import annotations

from airflow.sdk import Param, get_current_context, task

from greenlight.dagsupport.defaults import add_run_check, documented, manual_dag


def steps():
    """The task bodies (config model, psycopg, the engine): imported when a task runs, never at parse time."""
    from greenlight.dagsupport import refresh

    return refresh


def release_leases(context):
    """A failed run ends its hold on the staging targets at once (not after the leases' expiry)."""
    steps().release_after_failure(context)


@manual_dag(
    "staging_refresh",
    __doc__,
    tags=["refresh", "staging", "postgres"],
    retries=2,
    retry_delay_s=30,
    on_failure_callback=release_leases,
    params={
        "dry_run": Param(
            False, type="boolean", description="Report row counts and bucket sizes of each pair; write nothing."
        ),
        "only": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1, "maxLength": 300},
            uniqueItems=True,
            description="Refresh only these tables (table or schema.table) or bucket mappings (name or "
            "source URI). Empty = everything configured.",
        ),
        "skip_migrations": Param(False, type="boolean", description="Do not run the configured migrations."),
        "lease_wait": Param(
            0,
            type="integer",
            minimum=0,
            maximum=21600,
            description="Seconds to wait when another run (a CLI refresh, a promotion) is writing one of the "
            "staging bucket targets or the staging database; 0 = fail at once naming it.",
        ),
    },
)
def staging_refresh():
    @task
    def preflight(params=None, run_id=None) -> dict:
        """Runbook 001 "before you start": connections, unsafe targets refused, tables, FK groups, schema versions.

        Retry category: A — read-only; clear in place once a refusal's cause is fixed.
        """
        return steps().preflight(params, run_id)

    @task
    def table_groups(pre: dict) -> list:
        """The FK groups preflight found: one mapped ``copy_tables`` each.

        Retry category: A — read-only; clear in place.
        """
        return pre["groups"]

    @task(map_index_template="{{ table_group }}")
    def copy_tables(group: list, pre: dict, params=None, run_id=None) -> list:
        """Runbook 001 database refresh: one FK group copied type-correctly in one staging transaction.

        Retry category: A — a failed group rolls back; a rerun copies it again from prod and converges.
        """
        get_current_context()["table_group"] = ", ".join(group)
        return steps().copy_tables(group, pre, params, run_id)

    @task
    def sync_buckets(pre: dict, params=None, run_id=None) -> list:
        """Runbook 001 image bucket sync: prod -> staging through the promotion engine's planner.

        Retry category: A — size + ETag planning: a rerun copies only what is still missing.
        """
        return steps().sync_buckets(params, run_id)

    @task(trigger_rule="none_failed")
    def migrate(params=None, run_id=None) -> dict:
        """Runbook 001 "run the migrations": staging's migration command or endpoint.

        Retry category: A — migrations to head are idempotent; clear in place.
        """
        return steps().migrate(params, run_id)

    @task
    def health(params=None, run_id=None) -> dict:
        """Runbook 001 health check: the deep health URL and SQL checks against staging.

        Retry category: A — read-only; clear in place.
        """
        return steps().health(params, run_id)

    @task(trigger_rule="none_failed")
    def verify(tables: list, params=None, run_id=None) -> dict:
        """Runbook 001 verification: row counts per table and object counts per bucket pair equal.

        Retry category: A — read-only; clear in place.
        """
        return steps().verify(list(tables or ()), params, run_id)

    @task(trigger_rule="none_failed")
    def summary(
        pre: dict,
        tables: list,
        buckets: list,
        migration: dict,
        health_result: dict,
        verification: dict,
        params=None,
        run_id=None,
    ) -> dict:
        """The per-table result table and the run manifest; fails the run if any table failed.

        Retry category: A — rewrites the run's own manifest; clear in place.
        """
        return steps().summary(pre, list(tables or ()), buckets, migration, health_result, verification, params, run_id)

    pre = preflight()
    tables = documented(copy_tables).partial(pre=pre).expand(group=table_groups(pre))
    buckets = sync_buckets(pre)
    migration = migrate()
    [tables, buckets] >> migration
    checked = health()
    migration >> checked
    verification = verify(tables)
    checked >> verification
    summary(pre, tables, buckets, migration, checked, verification)


add_run_check(staging_refresh())
