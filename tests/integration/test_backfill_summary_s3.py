"""Parallel backfill runs updating one ``summary.json`` on S3 (a real SeaweedFS): conditional PUTs
(``If-Match`` the ETag read, ``If-None-Match: *`` for the first write) retried on 412, so no
partition is lost and a writer that lost the race reads again instead of overwriting."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from greenlight.backfill import records as rec
from greenlight.backfill.plan import summary_relpath
from greenlight.storage.manifests import ManifestStore

BACKFILL = {
    "id": 11,
    "dag_id": "feature_materialization",
    "from_date": "2026-01-01T00:00:00Z",
    "to_date": "2026-01-01T23:00:00Z",
    "max_active_runs": 8,
    "reprocess_behavior": "none",
}


def test_parallel_runs_lose_no_partition(s3, buckets, area):
    bucket = buckets[0]
    hours = [f"2026-01-01T{h:02d}:00:00Z" for h in range(24)]

    def one_run(hour: str) -> None:
        files = rec.SummaryFiles(ManifestStore(f"s3://{bucket}/{area}", s3))
        run = {
            "dag_id": BACKFILL["dag_id"],
            "run_id": f"backfill__{hour}",
            "run_type": "backfill",
            "logical_date": hour,
        }
        record = rec.partition_record(run, "success", seen_by="check_run")
        files.write_record({**record, "airflow_backfill_id": 11})

        def mutate(current):
            summary = rec.airflow_summary(BACKFILL, current)
            rec.merge_records(summary, files.records(11))
            return rec.finish(summary)

        files.update(summary_relpath("airflow-11"), mutate)

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(one_run, hours))
    body = s3.get_object(Bucket=bucket, Key=f"{area}backfills/airflow-11/summary.json")["Body"].read()
    summary = json.loads(body)
    assert [e["partition"] for e in summary["partitions"]] == hours
    assert summary["counts"] == {"success": 24} and summary["status"] == "succeeded"


def test_a_writer_whose_read_went_stale_reads_again(s3, buckets, area):
    bucket = buckets[0]
    files = rec.SummaryFiles(ManifestStore(f"s3://{bucket}/{area}", s3))
    rel = "backfills/airflow-12/summary.json"
    files.update(rel, lambda current: {"n": 1, "by": ["first"]})
    seen = []

    def slow(current):
        seen.append(current["n"])
        if len(seen) == 1:  # someone else writes between this writer's read and its PUT
            s3.put_object(Bucket=bucket, Key=area + rel, Body=json.dumps({"n": 2, "by": ["first", "other"]}))
        return {"n": current["n"] + 1, "by": [*current["by"], "slow"]}

    assert files.update(rel, slow) == {"n": 3, "by": ["first", "other", "slow"]}
    assert seen == [1, 2]
    assert json.loads(s3.get_object(Bucket=bucket, Key=area + rel)["Body"].read())["by"] == ["first", "other", "slow"]
