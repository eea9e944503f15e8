"""Asking for N shards of a prefix gives N shards that cover every key once, on real SeaweedFS.

``bench/shard_bench.py`` asked for 2 and 4 shards and got 3 and 5: SeaweedFS lists a prefix whose
directory exists but holds no object (here: prod after every version was deleted) as one object
with the prefix's own key, size 0 and no ETag, in a listing with ``Delimiter='/'``. The plan took
it for a prod-only key, one key more than QA holds, which at ``shard_objects = K / N`` is one
range more. The listing now skips it.
"""

from __future__ import annotations

import pytest
from helpers import put, rel_listing

from greenlight.promotion import run, shards
from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine
from greenlight.storage.manifests import read_manifest_uri

K = 60


def _empty_the_directory(s3, bucket: str, prefix: str) -> None:
    """Objects written then every version deleted: the prefix is an empty directory on SeaweedFS."""
    for i in range(3):
        put(s3, bucket, f"{prefix}old-{i}.bin", b"old")
    found = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in found.get("Versions", [])]
    doomed += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in found.get("DeleteMarkers", [])]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})


def _config(qa: str, prod: str, area: str, per_shard: int):
    return parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}huge/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, "shard_objects": per_shard},
        }
    )


@pytest.mark.parametrize("asked", [2, 3, 4])
def test_n_shards_asked_n_shards_made_every_key_in_exactly_one(s3, buckets, area, asked):
    qa, prod = buckets
    prefix = f"{area}huge/"
    for i in range(K):
        put(s3, qa, f"{prefix}obj-{i:04d}.bin", f"v1-{i}")
    _empty_the_directory(s3, prod, prefix)
    engine = Engine(_config(qa, prod, area, -(-K // asked)), s3)

    (planned,) = run.plan(engine, run_id=f"ask-{asked}", dry_run=False)
    assert planned.deletes == [] and planned.dest_count == 0  # an empty directory is not an object
    ranges = shards.ranges_for(planned)
    assert len(ranges) == asked, [(r.start_after, r.end) for r in ranges]
    assert all(r.bounded for r in ranges)  # no key that byte order and a directory walk disagree on

    # Each range lists (StartAfter, stopping past its end) only its own keys: together, every key once.
    (prefix_config,) = engine.config.prefixes
    listed = [shards.list_range(s3, prefix_config.source, r) for r in ranges]
    flat = [rel for part in listed for rel in part]
    assert sorted(flat) == sorted(rel_listing(s3, qa, prefix)) and len(flat) == K == len(set(flat))
    assert all(len(part) == K // asked for part in listed)

    # And the sharded promotion copies each key once: prod equals QA, one run-index row per shard.
    rows = shards.promote_sharded(engine, planned, ranges, f"ask-{asked}")
    assert [r["shard"]["index"] for r in rows] == list(range(asked))
    assert sum(r["copied"] for r in rows) == K and all(r["copied"] == K // asked for r in rows)
    assert rel_listing(s3, prod, prefix) == rel_listing(s3, qa, prefix)
    index = read_manifest_uri(engine.manifests.uri(f"promotions/ask-{asked}/index.json"), s3)
    assert len(index["prefixes"]) == asked
