"""
### feature_materialization — PostgreSQL → Feast (Redis), gated by freshness, checked by parity

Automates the "PostgreSQL → Feast sync recovery" runbook as the normal hourly job, so recovery is
"clear the failed run" instead of a hand-run `feast materialize-incremental` + `FLUSHDB`. The window
is owned by Airflow: `[data_interval_start - overlap, data_interval_end]` through
`store.materialize(start, end)` — never the registry watermark — so windows are independent, reruns
are idempotent and backfills (`airflow backfill create`) just work. Late rows inside the overlap are
picked up by the next run.

| task | runbook step it automates |
|---|---|
| `check_source_freshness` | step 1 (`SELECT MAX(time), NOW() - MAX(time)`): newest source row at or before the window end must be younger than the allowed age; fails with the age, no retry |
| `check_registry` | step 2 (`feast validate`): the deployed registry equals `include/feature_repo`; fails with the diff, no retry — `feast apply` is a reviewed deploy step (`python -m greenlight.features apply`) |
| `materialize` (one mapped task per feature view) | steps 3-4: `store.materialize(window)` for that view; with `full_refresh` first deletes that view's online values (its hash fields only — never `FLUSHDB`) for the entities in the range |
| `parity` (one per feature view) | step 5 (`get_online_features` by eye), automated: sample N entities, compare every online feature with the offline value as of the window end (tolerance); mismatches fail, no retry; then one Asset event `feast://<project>/<view>` |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params** — `full_refresh` (delete + re-materialize), `start` / `end` (ISO-8601 UTC; replaces the
run's window, no overlap), `views` (subset of feature views, empty = all), `max_source_age_minutes`
(override the freshness limit, e.g. to backfill after an outage), `parity_sample`.
**Config** — Airflow connections `greenlight_postgres` and `greenlight_redis` (else the env vars
`GREENLIGHT_PG_URI` / `GREENLIGHT_REDIS_URL`); schedule from `GREENLIGHT_FEATURES_SCHEDULE`
(cron, default `@hourly`; `none` = manual only); overlap, max age, parity sample and tolerance
from `GREENLIGHT_FEATURES_*` env vars (docs/features.md).
**Failures** — stale source, registry drift and parity mismatches are data/deploy problems and fail
at once; PostgreSQL/Redis connection errors are retried with exponential backoff. Recovery for each
is in docs/features.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetAlias, Param, dag, get_current_context, task

from greenlight.dagsupport import features as steps
from greenlight.dagsupport.defaults import add_run_check, default_args, documented, schedule_from_env

SCHEDULE = schedule_from_env("GREENLIGHT_FEATURES_SCHEDULE", "@hourly")

DEFAULT_ARGS = default_args()

ISO_OR_NULL = {"type": ["null", "string"], "format": "date-time"}


@dag(
    dag_id="feature_materialization",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["greenlight", "features", "feast"],
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            description="Delete the views' online values for the entities in the range, then re-materialize it.",
        ),
        "start": Param(None, **ISO_OR_NULL, description="Range start (UTC). With end, replaces the run's window."),
        "end": Param(None, **ISO_OR_NULL, description="Range end (UTC), inclusive."),
        "views": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
            uniqueItems=True,
            description="Feature views to materialize. Empty = all online views of the repo.",
        ),
        "max_source_age_minutes": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Override the freshness limit (default: GREENLIGHT_FEATURES_MAX_AGE_MINUTES or 30).",
        ),
        "parity_sample": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="Entities per view the parity check compares (default: GREENLIGHT_FEATURES_PARITY_SAMPLE or 20).",
        ),
    },
)
def feature_materialization():
    @task
    def check_source_freshness(params=None, data_interval_start=None, data_interval_end=None) -> dict:
        """Feature runbook step 1: the newest source row before the window end must be younger than the allowed age.

        Retry category: C — a stale source is an upstream data problem: fix it (or override `max_source_age_minutes`), then rerun.
        """
        return steps.check_source_freshness(params, data_interval_start, data_interval_end)

    @task
    def check_registry(params=None) -> list[str]:
        """Feature runbook step 2: the deployed Feast registry equals `include/feature_repo`.

        Retry category: C — registry drift needs the reviewed deploy step (`python -m greenlight.features apply`) first.
        """
        return steps.check_registry(params)

    @task(map_index_template="{{ feature_view }}")
    def materialize(view: str, gate: dict, params=None) -> dict:
        """Feature runbook steps 3-4: `store.materialize(window)` for one view (with `full_refresh`, delete that view's values in the range first).

        Retry category: A — the window is owned by the run; rerunning rewrites the same values.
        """
        get_current_context()["feature_view"] = view
        return steps.materialize(view, gate["window"], full_refresh=params["full_refresh"])

    @task(map_index_template="{{ feature_view }}", outlets=[AssetAlias(steps.FEATURES_ALIAS)])
    def parity(result: dict, params=None, run_id=None, outlet_events=None) -> dict:
        """Feature runbook step 5: online values equal offline values for sampled entities; then the view's Asset event.

        Retry category: A — read-only check; clear `materialize` and `parity` together after a mismatch's cause is fixed.
        """
        get_current_context()["feature_view"] = result["view"]
        report = steps.parity(result, run_id=run_id, sample=params["parity_sample"])
        # Only a view whose parity check passed emits its Asset event (a failed task emits none).
        event = steps.asset_event(result, report, project=steps.project_name(), run_id=run_id)
        outlet_events[AssetAlias(steps.FEATURES_ALIAS)].add(Asset(event["uri"]), extra=event["extra"])
        return report

    gate = check_source_freshness()
    views = check_registry()
    gate >> views
    results = documented(materialize).partial(gate=gate).expand(view=views)
    documented(parity).expand(result=results)


add_run_check(feature_materialization())
