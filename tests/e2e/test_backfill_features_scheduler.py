"""``greenlight backfill`` of ``feature_materialization`` under a real scheduler, with the real
feature stack: PostgreSQL (a day of 5-minute bars, the SQL feature views, Feast's registry applied)
and Redis as Feast's online store, ``airflow standalone`` (LocalExecutor, PostgreSQL metadata DB).

Two hourly windows that ended hours ago are backfilled (``GREENLIGHT_FEATURES_SCHEDULE=@hourly``,
as deployed; the DAG refuses no backfill of past windows: its freshness check looks at the window's
end, not at now). Checked as an operator would: the summary file (every window a success, and the
summary the runs wrote themselves agreeing), each window's task manifests (``materialize`` wrote
that window of each view, ``parity`` compared online with offline for it), and Redis serving the
values of the newest window.

Only this DAG is in the DAGs folder (no S3 promotion, DVC or MLflow stack). Still the slowest
backfill test: 7 tasks per run, each a process loading Airflow and Feast, plus the scheduled run of
the latest hour the scheduler starts on unpause. Measured 12-13 min for the module with three windows on 2 cores shared
with other test sessions (load 9-20); two windows keep it shorter in CI.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from backfillfixtures import ROOT, backfill_airflow, backfill_succeeds

from greenlight.dev.airflowstack import feature_connections
from greenlight.dev.featurestack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

DAG = "feature_materialization"


@pytest.fixture(scope="module")
def feature_airflow(s3env, tmp_path_factory):
    from greenlight.features import FeatureSettings, apply_definitions, seed  # Feast: ~6 s to import

    home = tmp_path_factory.mktemp("airflow_backfill_features")
    features = start_stack(home / "features")
    try:
        settings = FeatureSettings.from_env(features.postgres.uri, features.redis.url)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars
            seed(settings, n_symbols=5, days=1, end=now)
            apply_definitions(settings)
        extra = {"GREENLIGHT_FEATURES_SCHEDULE": "@hourly", **feature_connections(features), **features.env()}
        with backfill_airflow(home, s3env, [ROOT / "dags" / f"{DAG}.py"], [DAG], extra) as stack:
            yield stack, settings
    finally:
        features.stop()


def test_hourly_windows_backfilled_with_the_feature_stack(feature_airflow):
    stack, settings = feature_airflow
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    windows = [hour - timedelta(hours=h) for h in (3, 2)]  # logical dates whose hour has passed
    partitions = [w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in windows]

    summary = backfill_succeeds(stack, DAG, partitions[0], partitions[-1], partitions)

    overlap = settings.overlap
    intervals = []
    for entry in summary["partitions"]:
        assert entry["state"] == "success" and entry["run_id"].startswith("backfill__"), entry
        run = stack.api.get(f"/dags/{DAG}/dagRuns/{quote(entry['run_id'], safe='')}")
        start, end = (
            datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("data_interval_start", "data_interval_end")
        )
        intervals.append((start, end))
        # The run's window: its data interval plus the overlap. Airflow 3.3's @hourly is a cron
        # trigger (an empty data interval at the logical date): then the window is the hour before.
        begins = (start if start < end else end - timedelta(hours=1)) - overlap
        gate = stack.task_manifest(DAG, entry["run_id"], "check_source_freshness")["outputs"]["window"]
        assert (gate["start"], gate["end"]) == (begins.isoformat(), end.isoformat()), gate
        for index in (0, 1):
            done = stack.task_manifest(DAG, entry["run_id"], f"materialize.{index}")
            assert done["state"] == "success", done
            result = done["outputs"]
            assert (result["start"], result["end"]) == (gate["start"], gate["end"]), result
            assert result["rows"] > 0 and result["entities"] == 5, result
            assert begins < datetime.fromisoformat(result["newest"]) <= end, result
            # parity raises on any mismatch: a success compared every sampled entity as of the end
            checked = stack.task_manifest(DAG, entry["run_id"], f"parity.{index}")
            assert checked["state"] == "success" and checked["outputs"]["checked"] == 5, checked
            assert checked["outputs"]["as_of"] == end.isoformat() and checked["outputs"]["view"] == result["view"]
    # Consecutive hourly windows, none the same.
    assert [b[1] - a[1] for a, b in zip(intervals, intervals[1:], strict=False)] == [timedelta(hours=1)] * (
        len(intervals) - 1
    )

    # Redis serves the newest window's values: online equals offline as of its end.
    from greenlight.features import parity_check

    end = intervals[-1][1]
    for view in ("technical_features", "bar_features"):
        report = parity_check(settings, view, end, since=end - timedelta(hours=1), sample=5)  # raises on a mismatch
        assert report["checked"] == 5, report
