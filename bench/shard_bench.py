#!/usr/bin/env python3
"""Benchmark: one huge prefix promoted in 1, 2 and 4 key-range shards (real SeaweedFS).

This is a benchmark, not a test: it asserts nothing, it measures and reports.

    .venv/bin/python bench/shard_bench.py [--objects 200000] [--shards 1 2 4] [--workers 64]

QA gets ``--objects`` small objects once, uploaded by s5cmd from a temp tree (bench/s5seed.py;
boto3 managed a few hundred objects/s here, 200,000 took ~8 min). Then, for each shard count K,
prod is emptied and the DAG's sequence is run with the same library calls its tasks make:

* ``plan``: one listing of both sides, the QA snapshot, the key ranges (``shard_objects`` set to
  ``ceil(objects / K)``, so the prefix splits into K shards whenever K divides ``--objects``; any
  other count stops the benchmark naming both listings' sizes);
* ``copy``: K **processes** at once, one per shard (as K mapped ``promote`` tasks on K Celery
  workers), each listing only its range (StartAfter) and copying it (``shards.promote_range``);
* ``deletes+verify``: the deletes after every shard copied, then the whole prefix verified.

Wall time per phase and in total, and the ratio to one shard. On a machine with few cores shared
with the S3 server the processes compete for the same CPUs: the ratio shows what sharding buys
*here*; on separate workers the copy phase divides by up to K.

SeaweedFS is started in a temp dir and stopped at the end. Results: a table on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "bench"))

import s5seed  # noqa: E402

QA, PROD = "qa-shard-bench", "prod-shard-bench"
PREFIX = "huge/"


def _config(objects_per_shard: int, workers: int):
    from greenlight.promotion.config import parse_config

    return parse_config(
        {
            "prefixes": [f"s3://{QA}/{PREFIX}"],
            "manifest_uri": f"s3://{PROD}/_greenlight/",
            "workers": workers,
            "defaults": {"stale_after_hours": None, "shard_objects": objects_per_shard},
        }
    )


def _client(env: dict[str, str]):
    from greenlight.storage.s3 import make_client

    return make_client(endpoint_url=env["endpoint"], access_key=env["access"], secret_key=env["secret"], max_pool=256)


def copy_shard(env: dict[str, str], per_shard: int, workers: int, shard: dict, run_id: str) -> dict:
    """One shard in its own process (a mapped promote task on its own worker)."""
    from greenlight.promotion import shards
    from greenlight.promotion.engine import Engine

    started = time.perf_counter()
    engine = Engine(_config(per_shard, workers), _client(env))
    (prefix,) = engine.config.prefixes
    row = shards.promote_range(engine, prefix, shards.KeyRange.from_dict(shard), run_id)
    row["wall_s"] = time.perf_counter() - started
    return row


def seed(s3, env: dict[str, str], objects: int, workdir: Path) -> float:
    """``objects`` small objects into QA, by s5cmd (bench/s5seed.py)."""
    started = time.perf_counter()
    items = ((f"{PREFIX}obj-{i:07d}.bin", f"{i}\n".encode()) for i in range(objects))
    creds = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no user profile leaks in
    creds.update(AWS_ACCESS_KEY_ID=env["access"], AWS_SECRET_ACCESS_KEY=env["secret"])
    took = s5seed.upload(s3, s5seed.s5cmd_binary(), QA, items, endpoint=env["endpoint"], env=creds, workdir=workdir)
    print(f"  s5cmd seeding: {took['write_s']:.1f} s writing the tree, {took['upload_s']:.1f} s uploading", flush=True)
    return time.perf_counter() - started


def empty_prod(s3) -> None:
    keys = [
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=PROD, Prefix=PREFIX)
        for o in p.get("Contents", ())
    ]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: s3.delete_objects(
                    Bucket=PROD, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
                ),
                range(0, len(keys), 1000),
            )
        )


def one(env, s3, objects: int, k: int, workers: int) -> dict[str, float]:
    from greenlight.promotion import run, shards
    from greenlight.promotion.engine import Engine

    per_shard = max(1, -(-objects // k)) if k > 1 else objects + 1
    run_id = f"bench-{k}-{uuid.uuid4().hex[:6]}"
    engine = Engine(_config(per_shard, workers), s3)
    t0 = time.perf_counter()
    (planned,) = run.plan(engine, run_id=run_id, dry_run=False)
    ranges = shards.ranges_for(planned)
    if len(ranges) != k:  # K objects at shard_objects = ceil(K / k): k ranges whenever k divides K
        raise SystemExit(
            f"asked for {k} shards of {objects} objects (shard_objects={per_shard}), the plan made {len(ranges)}: "
            f"QA lists {planned.source_count} objects, prod {planned.dest_count}"
        )
    t1 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(ranges), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(copy_shard, env, per_shard, workers, r.as_dict(), run_id) for r in ranges]
        rows = [f.result() for f in futures]
    t2 = time.perf_counter()
    after = engine.plan(planned.prefix)
    shards.delete_after_copies(engine, after, ranges, run_id, rows)
    (prefix,) = engine.config.prefixes
    check = engine.verify(prefix)
    t3 = time.perf_counter()
    assert check["objects"] == objects and sum(r["copied"] for r in rows) == objects
    slowest = max(r["wall_s"] for r in rows)  # inside the slowest shard process (no process start)
    return {
        "shards": len(ranges),
        "plan": t1 - t0,
        "copy": t2 - t1,
        "slowest": slowest,
        "verify": t3 - t2,
        "total": t3 - t0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--workers", type=int, default=64, help="copy threads per shard (config 'workers')")
    args = parser.parse_args()
    from greenlight.dev.localstack import start_seaweedfs

    tmp = Path(tempfile.mkdtemp(prefix="greenlight-shard-bench-"))
    access, secret = "bench-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    server = start_seaweedfs(tmp / "seaweedfs", access, secret)
    env = {"endpoint": server.endpoint_url, "access": access, "secret": secret}
    try:
        s3 = _client(env)
        for bucket in (QA, PROD):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        took = seed(s3, env, args.objects, tmp)
        print(f"seeded {args.objects} objects in {took:.0f} s ({args.objects / took:.0f}/s)", flush=True)
        results = []
        for k in args.shards:
            empty_prod(s3)
            load = os.getloadavg()[0]
            r = one(env, s3, args.objects, k, args.workers)
            r["load"] = load
            results.append(r)
            print(f"  {k} shard(s): {r}", flush=True)
        base = results[0]["total"]
        print(f"\n{args.objects} objects, {args.workers} copy threads per shard, {os.cpu_count()} cores")
        print(
            "| shards | plan s | copy s (shards in parallel, with process start) | slowest shard s | "
            "deletes+verify s | total s | vs 1 shard | load avg at start |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['shards']} | {r['plan']:.1f} | {r['copy']:.1f} | {r['slowest']:.1f} | {r['verify']:.1f} | "
                f"{r['total']:.1f} | "
                f"{base / r['total']:.2f}x | {r['load']:.1f} |"
            )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # SeaweedFS's data: ~1 GB at 200,000 objects
    return 0


if __name__ == "__main__":
    sys.exit(main())
