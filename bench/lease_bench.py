#!/usr/bin/env python3
"""Benchmark: what leases cost and how fast writers collide, wait and take over (real SeaweedFS).

This is a benchmark, not a test: it asserts nothing, it measures and reports.

    .venv/bin/python bench/lease_bench.py [--repeats 5] [--ttl 6]

Measured, medians of ``--repeats``:

* ``acquire+release``: one lease taken and given back (the cost every writer pays per prod prefix).
* ``refusal``: a second writer asking for a held lease until :class:`LeaseHeldError` (library call).
* ``cli refusal``: ``python -m greenlight promote`` against a held prefix, process start to exit 2,
  next to a no-op ``promote`` of the same prefix (the ratio shows what the refusal itself costs).
* ``wait``: a writer with ``wait`` set, from the holder's release to the waiter holding the lease.
* ``takeover, killed holder on this host``: a holder process SIGKILLed; the next writer holds the
  lease after this long (the dead PID is seen; no need to wait for the expiry).
* ``takeover, holder lost on another host``: a lease whose holder stopped renewing elsewhere; the
  next writer (``wait`` set) holds it this long after the holder's last renewal (bounded by the TTL).

SeaweedFS is started in a temp dir and stopped at the end. Results: a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

from greenlight.dev.localstack import start_seaweedfs  # noqa: E402
from greenlight.storage.lease import Lease, LeaseHeldError, lease_key  # noqa: E402
from greenlight.storage.s3 import S3Uri, make_client  # noqa: E402


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=6.0, help="lease TTL for the expiry takeover (default 6 s)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-lease-bench-"))
    access, secret = "bench-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    server = start_seaweedfs(tmp / "seaweedfs", access, secret)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(REPO / "include"),
    }
    try:
        s3 = make_client(endpoint_url=server.endpoint_url, access_key=access, secret_key=secret)
        for bucket in ("qa-lease-bench", "prod-lease-bench"):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="qa-lease-bench", Key="d/a.csv", Body=b"a")
        root = S3Uri("prod-lease-bench", "_greenlight/")
        resource = "s3://prod-lease-bench/d/"
        rows: dict[str, str] = {}

        cycle = []
        for i in range(args.repeats):
            started = time.perf_counter()
            Lease(s3, root, resource, run_id=f"cycle-{i}", operation="bench").acquire().release()
            cycle.append(time.perf_counter() - started)
        rows["acquire+release"] = median_ms(cycle)

        refusals = []
        holder = Lease(s3, root, resource, run_id="holder", operation="promote").acquire()
        for i in range(args.repeats):
            started = time.perf_counter()
            try:
                Lease(s3, root, resource, run_id=f"second-{i}", operation="promote").acquire()
            except LeaseHeldError:
                refusals.append(time.perf_counter() - started)
        rows["refusal (library)"] = median_ms(refusals)

        config = tmp / "promotion.yaml"
        config.write_text(
            json.dumps(
                {
                    "prefixes": ["s3://qa-lease-bench/d/"],
                    "manifest_uri": "s3://prod-lease-bench/_greenlight/",
                    "defaults": {"stale_after_hours": None},
                }
            )
        )

        def cli() -> tuple[int, float]:
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "greenlight", "promote", "--config", str(config), "--no-progress"],
                env=env,
                capture_output=True,
                text=True,
            )
            return proc.returncode, time.perf_counter() - started

        refused = [cli() for _ in range(args.repeats)]
        holder.release()
        cli()  # the first promotion copies; the next ones are no-ops
        noop = [cli() for _ in range(args.repeats)]
        rows["cli refusal (exit 2)"] = median_ms([t for code, t in refused if code == 2]) + (
            f"   (no-op promote: {median_ms([t for code, t in noop if code == 0]).strip()}, "
            f"ratio {statistics.median(t for _, t in refused) / statistics.median(t for _, t in noop):.2f})"
        )

        waits = []
        for i in range(args.repeats):
            holder = Lease(s3, root, resource, run_id=f"holder-{i}", operation="promote").acquire()
            released = {}

            def release(h=holder, box=released):
                box["at"] = time.perf_counter()
                h.release()

            threading.Timer(1.5, release).start()
            waiter = Lease(s3, root, resource, run_id=f"waiter-{i}", operation="promote", wait=60).acquire()
            waits.append(time.perf_counter() - released["at"])
            waiter.release()
        rows["wait: release -> waiter holds it"] = median_ms(waits)

        killed = []
        script = (
            "import sys, time\n"
            "from greenlight.storage.lease import Lease\n"
            "from greenlight.storage.s3 import S3Uri, make_client\n"
            "Lease(make_client(), S3Uri('prod-lease-bench', '_greenlight/'), 's3://prod-lease-bench/d/',"
            " run_id='doomed', operation='promote', ttl=600).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n"
        )
        for i in range(args.repeats):
            proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
            proc.stdout.readline()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            started = time.perf_counter()
            Lease(s3, root, resource, run_id=f"taker-{i}", operation="promote").acquire().release()
            killed.append(time.perf_counter() - started)
        rows["takeover: killed holder, this host"] = median_ms(killed)

        lost = []
        for i in range(min(args.repeats, 3)):
            now = time.time()
            doc = {
                "kind": "greenlight.lease/v1",
                "resource": resource,
                "run_id": f"lost-{i}",
                "operation": "promote",
                "host": "another-" + socket.gethostname(),
                "pid": 1,
                "token": "t",
                "ttl_s": args.ttl,
                "expires_at": "",
                "expires_epoch": now + args.ttl,
            }
            s3.put_object(Bucket=root.bucket, Key=lease_key(root, resource), Body=json.dumps(doc).encode())
            Lease(s3, root, resource, run_id=f"next-{i}", operation="promote", wait=args.ttl * 3).acquire().release()
            lost.append(time.time() - now)
        rows[f"takeover: holder lost elsewhere (TTL {args.ttl:g} s)"] = median_ms(lost)

        width = max(len(k) for k in rows)
        print(f"lease figures, SeaweedFS on 127.0.0.1, medians of {args.repeats}")
        for name, value in rows.items():
            print(f"  {name:<{width}}  {value}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
