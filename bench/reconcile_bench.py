#!/usr/bin/env python3
"""Benchmark: greenlight's DVC ↔ S3 check vs DVC's own commands, on one real repo and remote.

This is a benchmark, not a test: it measures and reports.

    .venv/bin/python bench/reconcile_bench.py                 # 100,000 objects, 50 deleted
    .venv/bin/python bench/reconcile_bench.py --objects 10000 # quick

What it does
------------
* Starts SeaweedFS (``greenlight.dev.localstack.start_seaweedfs``) in a temp dir, stops it by PID at the
  end (also on error).
* ``git init`` + ``dvc init`` + ``dvc remote add`` (endpoint and keys with ``dvc remote modify
  --local``), then writes a tracked directory of N small files *directly in DVC's layout*: the
  workspace files, the local cache (``.dvc/cache/files/md5/<2>/<30>``), the ``.dir`` manifest (the
  JSON DVC writes: sorted ``{md5, relpath}`` list, hashed with md5 + ``.dir``) and ``data.dvc``,
  committed to git; the N objects + ``.dir`` are PUT to the remote in parallel (``dvc push`` of 100k
  small files takes ~250 s). DVC recognising the repo is checked by its own commands below.
* Deletes 50 random file objects from the remote (not the ``.dir``).
* Times, each in its own process, on the same repo and remote:
    - greenlight: ``DvcCheck`` (git ref read, ``.dir`` expanded, remote listed once, diff), as the
      CLI runs it;
    - ``dvc status -c --json`` (compares the cache with the remote);
    - ``dvc data status --not-in-remote --granular --json`` (one HEAD per file);
  and counts how many of the 50 deleted files each reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INCLUDE = REPO / "include"
VENV = REPO / ".venv" / "bin"
sys.path.insert(0, str(INCLUDE))

GREENLIGHT_CHECK = """
import json, sys, time
t0 = time.monotonic()
from greenlight.reconcile.config import parse_config
from greenlight.reconcile.dvc import check_dvc
from greenlight.storage.s3 import make_client
from greenlight.storage.fast import FastS3
repo, remote = sys.argv[1], sys.argv[2]
config = parse_config({"report_uri": "/tmp", "targets": [{"name": "bench", "kind": "dvc", "repo": repo,
                       "remote": remote, "cache_dir": repo + "/.dvc/cache"}]})
client = make_client(max_pool=64)
result = check_dvc(config.targets[0], client, lister=FastS3.from_client(client, max_pool=64), workers=32)
print(json.dumps({"paths": [e["path"] for e in result.entries], "checked": result.checked,
                  "timings": result.details.get("timings"), "in_process_s": time.monotonic() - t0}))
"""


def sh(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    proc = sh(cmd, cwd, env, check=False)
    return time.monotonic() - start, proc


def build(repo: Path, n: int, env: dict, fast, bucket: str, prefix: str, workers: int) -> tuple[list[str], str]:
    dvc = str(VENV / "dvc")
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh([dvc, "init", "-q"], repo, env)
    sh([dvc, "remote", "add", "-d", "storage", f"s3://{bucket}/{prefix}"], repo, env)
    for key, value in (
        ("endpointurl", env["AWS_ENDPOINT_URL"]),
        ("access_key_id", env["AWS_ACCESS_KEY_ID"]),
        ("secret_access_key", env["AWS_SECRET_ACCESS_KEY"]),
    ):
        sh([dvc, "remote", "modify", "--local", "storage", key, value], repo, env)
    data, cache = repo / "data", repo / ".dvc" / "cache" / "files" / "md5"
    entries, objects = [], []
    for i in range(n):
        rel = f"part-{i // 1000:03d}/obj-{i:06d}.txt"
        body = f"object {i} {'x' * (i % 97)}\n".encode()
        h = hashlib.md5(body).hexdigest()
        entries.append({"md5": h, "relpath": rel})
        objects.append((h, body))
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    entries.sort(key=lambda e: e["relpath"])
    manifest = json.dumps(entries, sort_keys=True).encode()
    dir_md5 = hashlib.md5(manifest).hexdigest() + ".dir"
    objects.append((dir_md5, manifest))
    for h, body in objects:
        p = cache / h[:2] / h[2:]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    (repo / "data.dvc").write_text(
        f"outs:\n- md5: {dir_md5}\n  size: {sum(len(b) for _, b in objects[:-1])}\n  nfiles: {n}\n"
        "  hash: md5\n  path: data\n"
    )
    (repo / ".gitignore").write_text("/data\n")
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "bench data"], repo, env)

    def put(item):
        h, body = item
        fast.put_object(Bucket=bucket, Key=f"{prefix}files/md5/{h[:2]}/{h[2:]}", Body=body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, objects))
    return [e["relpath"] for e in entries], dir_md5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--delete", type=int, default=50)
    parser.add_argument("--workers", type=int, default=64, help="parallel PUTs while building the remote")
    parser.add_argument("--skip-status-c", action="store_true", help="do not time `dvc status -c`")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    from greenlight.dev.localstack import start_seaweedfs
    from greenlight.storage.fast import FastS3
    from greenlight.storage.s3 import make_client

    tmp = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    key, secret = "bench-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    server = start_seaweedfs(tmp / "weed", key, secret)
    results: dict = {"objects": args.objects, "deleted": args.delete}
    try:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": str(INCLUDE),
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }
        client = make_client(endpoint_url=server.endpoint_url, access_key=key, secret_key=secret, max_pool=80)
        client.create_bucket(Bucket="dvc-bench")
        fast = FastS3.from_client(client, max_pool=80)
        repo = tmp / "repo"
        repo.mkdir()
        start = time.monotonic()
        relpaths, _ = build(repo, args.objects, env, fast, "dvc-bench", "store/", args.workers)
        results["build_s"] = round(time.monotonic() - start, 1)
        print(f"built repo + remote with {args.objects} objects in {results['build_s']} s", flush=True)

        rng = random.Random(20261122)
        victims = rng.sample(range(args.objects), args.delete)
        deleted = set()
        for i in victims:
            rel = relpaths[i]
            body = (repo / "data" / rel).read_bytes()
            h = hashlib.md5(body).hexdigest()
            client.delete_object(Bucket="dvc-bench", Key=f"store/files/md5/{h[:2]}/{h[2:]}")
            deleted.add(f"data/{rel}")

        rows = []
        secs, proc = timed(
            [str(VENV / "python"), "-c", GREENLIGHT_CHECK, str(repo), "s3://dvc-bench/store/"], repo, env
        )
        out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {"paths": []}
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
        rows.append(("greenlight DvcCheck (list once)", secs, len(deleted & set(out["paths"])), proc.returncode, out))

        granular = [str(VENV / "dvc"), "data", "status", "--not-in-remote", "--granular", "--json"]
        secs, proc = timed(granular, repo, env)
        try:
            found = set(json.loads(proc.stdout).get("not_in_remote", []))
        except ValueError:
            found = set()
        rows.append(("dvc data status --not-in-remote --granular", secs, len(deleted & found), proc.returncode, None))

        secs, proc = timed([str(VENV / "dvc"), "data", "status", "--not-in-remote", "--json"], repo, env)
        try:
            found = set(json.loads(proc.stdout).get("not_in_remote", []))
        except ValueError:
            found = set()
        rows.append(("dvc data status --not-in-remote", secs, len(deleted & found), proc.returncode, None))

        if not args.skip_status_c:
            secs, proc = timed([str(VENV / "dvc"), "status", "-c", "--json"], repo, env)
            try:
                found = set(json.loads(proc.stdout or "{}"))
            except ValueError:
                found = set()
            rows.append(("dvc status -c", secs, len(deleted & found), proc.returncode, None))

        print(f"\n{args.objects} objects, {args.delete} deleted from the remote (inside the tracked directory)\n")
        print(f"{'tool':45} {'seconds':>9} {'found':>8} {'exit':>5}")
        for name, secs, found, code, _ in rows:
            print(f"{name:45} {secs:9.2f} {found:>4}/{args.delete:<3} {code:>5}")
        ours = rows[0][1]
        finding = [r for r in rows[1:] if r[2] == args.delete]
        results["rows"] = [
            {"tool": name, "seconds": round(secs, 2), "found": found, "exit": code}
            for name, secs, found, code, _ in rows
        ]
        results["greenlight_timings"] = rows[0][4].get("timings")
        if finding:
            fastest_finder = min(finding, key=lambda r: r[1])
            ratio = fastest_finder[1] / ours
            results["ratio_vs_dvc_mode_that_finds_them"] = round(ratio, 1)
            print(f"\ngreenlight is {ratio:.1f}x faster than `{fastest_finder[0]}` (the DVC mode that finds them)")
        for name, _, found, _, _ in rows:
            print(f"{name}: found all {args.delete}: {'yes' if found == args.delete else 'NO'}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
