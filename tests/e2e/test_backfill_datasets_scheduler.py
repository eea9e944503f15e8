"""``greenlight backfill`` of a generated dataset update DAG (``corn-stress-index__update``, cron
``0 6 * * *``) under a real scheduler: ``airflow standalone`` (LocalExecutor, PostgreSQL metadata
DB) with only ``dags/dataset_versions.py`` in its DAGs folder, a copy of the packaged datasets
config (the demo dataset's primary only, its store in a bucket of this test, versioning on, as
``make demo`` creates it) and the version's pool created through the REST API, as the local stack
does for ``test_manual_dags_scheduler.py``.

Two past days are backfilled. Checked as an operator would: exit 0, both partitions a success in
the summary file and in the summary the runs write themselves, each run's ``update`` manifest
naming the day it wrote (``as_of``: the run's date, not today) and its ``check_run`` a success,
and the store's object versions on S3 holding one write of each day (the version's store is one
rolling snapshot, the 30 days up to ``as_of``: each partition rewrites it, the bucket's versions
keep each write).

Only the update and validate DAGs of one version are parsed (no staged version); the validate DAG
stays paused (DAGs are paused at creation here, the update DAG is unpaused by the test: the
scheduler then also starts the latest scheduled run, of today or yesterday, which the backfill's
past days do not include).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from backfillfixtures import ROOT, backfill_airflow, backfill_succeeds

from greenlight.datasets.config import CONFIG_ENV, load_config
from greenlight.dev import devstack
from greenlight.dev.airflowstack import dataset_pools
from greenlight.dev.datasets_demo import SOURCE_CONFIG
from greenlight.storage.s3 import parse_s3_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

DATASET = "corn-stress-index"
DAG = f"{DATASET}__update"


@pytest.fixture(scope="module")
def dataset_airflow(s3env, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_backfill_datasets")
    bucket = f"gl-dsbackfill-{uuid.uuid4().hex[:8]}"
    doc = yaml.safe_load(SOURCE_CONFIG.read_text())
    doc["base"] = f"s3://{bucket}/datasets"
    doc["pointer_root"] = f"s3://{bucket}/_greenlight/datasets/"
    (dataset,) = (d for d in doc["datasets"] if d["id"] == DATASET)
    dataset.pop("staged", None)
    doc["datasets"] = [dataset]
    path = home / "datasets.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path)
    client = s3env.client()
    devstack.ensure_buckets(client, [bucket], versioned=True)
    extra = {CONFIG_ENV: str(path), "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}
    with backfill_airflow(home, s3env, [ROOT / "dags" / "dataset_versions.py"], [DAG], extra) as stack:
        dataset_pools(config, stack.api.client)  # a task whose pool is missing is never scheduled
        stack.api.client.set_paused(DAG, False)
        yield stack, config.dataset(DATASET).primary.store_path, client


def written_as_of(client, store_path: str) -> list[str]:
    """``as_of`` of every version of the store's ``.zattrs`` (oldest first)."""
    uri = parse_s3_uri(store_path.rstrip("/") + "/", what="store path")
    key = uri.prefix + ".zattrs"
    listed = client.list_object_versions(Bucket=uri.bucket, Prefix=key).get("Versions", [])
    out = []
    for version in sorted((v for v in listed if v["Key"] == key), key=lambda v: v["LastModified"]):
        body = client.get_object(Bucket=uri.bucket, Key=key, VersionId=version["VersionId"])["Body"].read()
        attrs = json.loads(body)
        assert (attrs["dataset_id"], attrs["dataset_version"]) == (DATASET, "0.2.0"), attrs
        out.append(attrs["as_of"])
    return out


def test_two_past_days_backfilled_each_writing_its_day(dataset_airflow):
    stack, store_path, client = dataset_airflow
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in (3, 2)]  # past days, before the latest scheduled run
    partitions = [f"{d.isoformat()}T06:00:00Z" for d in days]

    summary = backfill_succeeds(stack, DAG, days[0].isoformat(), days[-1].isoformat(), partitions)

    for day, entry in zip(days, summary["partitions"], strict=True):
        assert entry["run_id"].startswith("backfill__") and entry["manifests_complete"], entry
        update = stack.task_manifest(DAG, entry["run_id"], "update")
        assert update["state"] == "success", update
        result = update["outputs"]
        assert (result["store_path"], result["version"], result["role"]) == (store_path, "0.2.0", "primary"), result
        # the run's partition, not the day it ran: a backfill of a past day writes that day
        assert result["result"]["as_of"] == day.isoformat() and result["result"]["uploaded"] > 0, result
        assert stack.task_manifest(DAG, entry["run_id"], "check_run")["state"] == "success"

    # Each partition rewrote the version's one store: its object versions hold each day's write
    # (besides the latest scheduled run's, of today or yesterday; the pool's one slot orders them).
    versions = written_as_of(client, store_path)
    assert sorted(d for d in versions if date.fromisoformat(d) in days) == [d.isoformat() for d in days], versions
    assert all(days[0] <= date.fromisoformat(d) <= today for d in versions), versions
