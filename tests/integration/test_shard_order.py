"""Sharded promotion of a prefix whose keys SeaweedFS lists in directory-walk order, on real SeaweedFS.

S3 lists keys in UTF-8 byte order, so a shard could list its range with ``StartAfter`` and stop past
its end. SeaweedFS walks its filer's directories instead: ``a/000 … a/013`` come before ``a-b/000``
and ``a.c`` (byte order puts those first: '-' and '.' sort below '/'), and ``StartAfter='a-b/003'``
resumes the walk after ``a-b/003``, never returning ``a/*`` although they sort after it. A shard of
the DAG then planned without some of its keys and failed ("removed since the gates validated it"),
and so did every rerun. The plan now sees that its keys are listed differently on such a server and
has each shard list the whole prefix, keeping its own range.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from helpers import put, rel_listing

from greenlight.promotion import run, shards
from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine
from greenlight.storage.s3 import S3Uri, list_prefix

#: Directories ``a/``, ``a-b/``, ``a.d/`` and files ``a.c``, ``a-b.txt`` side by side: byte order and
#: SeaweedFS's directory walk disagree about where ``a/*`` goes.
QA_KEYS = (
    [f"a/{i:03d}" for i in range(14)]
    + [f"a-b/{i:03d}" for i in range(5)]
    + ["a-b.txt", "a.c", "a_z", "b/000", "b/001"]
    + [f"a.d/{i}" for i in range(3)]
    + [f"a0/{i}" for i in range(4)]
)
#: Prod before the run: one key changed, three QA no longer has (deleted after every shard copied).
PROD_ONLY = ["a/zzz-old", "a-b/old", "a.c.old"]


def test_every_shard_plans_exactly_its_keys_and_prod_ends_equal_to_qa(s3, buckets, area):
    qa, prod = buckets
    prefix = f"{area}mix/"
    for key in QA_KEYS:
        put(s3, qa, prefix + key, f"v1-{key}")
    for key in PROD_ONLY:
        put(s3, prod, prefix + key, "old")
    put(s3, prod, prefix + "a/005", "stale")
    config = parse_config(
        {
            "prefixes": [f"s3://{qa}/{prefix}"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, "shard_objects": 6, "max_delete_fraction": 0.9},
        }
    )
    engine = Engine(config, s3)
    (p,) = config.prefixes
    run_id = "order-run"

    # The DAG's plan task: plan, keep the QA snapshot, cut the ranges (through XCom as dicts).
    (planned,) = run.plan(engine, run_id=run_id, dry_run=False)
    ranges = [shards.KeyRange.from_dict(r.as_dict()) for r in shards.ranges_for(planned)]
    assert len(ranges) == 6 and not any(r.bounded for r in ranges), ranges

    # Each shard's plan holds exactly the keys of its range, on both sides: no gap, no overlap.
    every = set(QA_KEYS) | set(PROD_ONLY)
    seen: list[str] = []
    for rng in ranges:
        part = shards.plan_range(engine, p, rng)
        mine = {k for k in every if rng.contains(k)}
        assert mine, rng  # every range holds keys
        keys = set(part.snapshot) | {d.rel for d in part.deletes}
        assert keys == mine, (rng, sorted(keys ^ mine))
        seen += keys
    assert sorted(seen) == sorted(every)

    # The DAG's mapped promote tasks (copies only), then its verify task (deletes, then the whole prefix).
    rows = [shards.promote_range(engine, p, rng, run_id) for rng in ranges]
    assert sum(r["copied"] for r in rows) == len(QA_KEYS)
    after = engine.plan(p)
    assert after.copies == []
    rows = shards.delete_after_copies(engine, after, ranges, run_id, rows)
    assert sum(r.get("deleted") or 0 for r in rows) == len(PROD_ONLY)
    check = run.verify_prefix(engine, p, shards.merged(rows), run_id)
    assert check["equal"] is True and check["objects"] == len(QA_KEYS), check
    assert rel_listing(s3, prod, prefix) == rel_listing(s3, qa, prefix)
    assert sorted(rel_listing(s3, prod, prefix)) == sorted(QA_KEYS)

    # A rerun of a shard (cleared in the DAG) converges: nothing left to copy.
    assert shards.promote_range(engine, p, ranges[0], run_id)["copied"] == 0


def test_a_listing_seaweedfs_returns_out_of_byte_order_is_seen_as_such(s3, buckets, area):
    """The plan's own listing tells whether it came back in byte order. On a versioned SeaweedFS
    bucket each page is sorted, but pages follow the directory walk: ``n/a/*`` fills the first page
    and ``n/a-b``, ``n/a.c`` come after it, so the sub-prefix ``n/`` needs two pages to show it."""
    qa, _ = buckets
    walked = [f"n/a/{i:04d}" for i in range(1000)] + ["n/a-b", "n/a.c", "top.bin"]
    clean = [f"n/a/{i:04d}" for i in range(5)] + ["n/b", "n/a0", "top.bin"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: put(s3, qa, f"{area}walked/{k}", "x"), walked))
        list(pool.map(lambda k: put(s3, qa, f"{area}clean/{k}", "x"), clean))
        out_of_order = list_prefix(s3, S3Uri(qa, f"{area}walked/"), pool=pool)
        in_order = list_prefix(s3, S3Uri(qa, f"{area}clean/"), pool=pool)
    assert sorted(out_of_order) == sorted(walked) and out_of_order.byte_ordered is False
    assert sorted(in_order) == sorted(clean) and in_order.byte_ordered is True
