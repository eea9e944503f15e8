"""Run-scoped leases (a DAG run holds its prod prefixes from plan to summary) on the real S3 server:
tasks of one run share it, also at once; parked between tasks it still refuses other writers;
the run's end releases it; a dead task process does not free it, its expiry does."""

from __future__ import annotations

import json
import os
import time

import pytest

from greenlight.storage.lease import Lease, LeaseHeldError, holding, lease_key, release_run
from greenlight.storage.s3 import S3Uri

RESOURCE = "s3://prod-x/area/huge/"


@pytest.fixture
def root(buckets, area):
    return S3Uri(buckets[1], f"_greenlight/{area}")


def stored(s3, root):
    return json.loads(s3.get_object(Bucket=root.bucket, Key=lease_key(root, RESOURCE))["Body"].read())


def run_lease(s3, root, run_id, **kwargs):
    return Lease(s3, root, RESOURCE, run_id=run_id, operation="promote", scope="run", **kwargs)


def test_shards_of_one_run_renew_together_and_others_are_refused_until_the_run_releases(s3, root):
    # Four mapped shard tasks of one run hold the prefix at once, renewing every 0.3 s for 2 s.
    shards = [run_lease(s3, root, "manual__run-1", ttl=0.9).acquire() for _ in range(4)]
    time.sleep(2.0)
    for shard in shards:
        shard.check()  # none of them thinks another writer took the lease
    with pytest.raises(LeaseHeldError, match="'manual__run-1'"):
        Lease(s3, root, RESOURCE, run_id="cli__by-hand", operation="promote").acquire()
    for shard in shards:
        shard.park()
    # Parked between two tasks: still the run's, for a full TTL, and not released.
    doc = stored(s3, root)
    assert doc["run_id"] == "manual__run-1" and doc["scope"] == "run" and "released_at" not in doc
    with pytest.raises(LeaseHeldError, match="'manual__run-1'"):
        Lease(s3, root, RESOURCE, run_id="cli__by-hand", operation="rollback").acquire()
    # The run's next task takes it back; the run's end releases it; then the CLI gets in.
    with holding(s3, root, [RESOURCE], run_id="manual__run-1", operation="promote", scope="run", ttl=30):
        pass
    assert release_run(s3, root, [RESOURCE], run_id="manual__run-1") == [RESOURCE]
    assert stored(s3, root).get("released_at")
    Lease(s3, root, RESOURCE, run_id="cli__by-hand", operation="promote").acquire().release()


def test_a_gone_task_process_does_not_free_a_run_lease_but_its_expiry_does(s3, root):
    held = run_lease(s3, root, "manual__run-2", ttl=3).acquire()
    held.park()
    # As if the task's process on this host were gone: a process-scoped lease would be free now.
    doc = stored(s3, root)
    dead = doc | {"pid": 2**22 + 12345}
    s3.put_object(Bucket=root.bucket, Key=lease_key(root, RESOURCE), Body=json.dumps(dead).encode())
    assert not os.path.exists(f"/proc/{dead['pid']}")
    with pytest.raises(LeaseHeldError, match="'manual__run-2'"):
        Lease(s3, root, RESOURCE, run_id="cli__by-hand", operation="promote").acquire()
    taker = Lease(s3, root, RESOURCE, run_id="cli__by-hand", operation="promote", wait=10, poll=0.2).acquire()
    try:
        assert taker.took_over["run_id"] == "manual__run-2"  # after its expiry, as for any crashed run
        assert release_run(s3, root, [RESOURCE], run_id="manual__run-2") == []  # not the run's any more
    finally:
        taker.release()
