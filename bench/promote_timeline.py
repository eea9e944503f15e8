#!/usr/bin/env python3
"""Where one ``greenlight promote`` spends its time: every S3 request and log line on one clock.

This is a measurement, not a test: it asserts nothing.

    PYTHONPATH=include python bench/promote_timeline.py                 # 5,000 small objects, 50 changed
    PYTHONPATH=include python bench/promote_timeline.py --small 500 --changed 5 --repeats 1

It starts SeaweedFS in a temp dir, seeds the same key layout as ``bench/sync_bench.py`` (80 % of
the objects under four arrays of a zarr-like tree, 20 % in a dated csv tree), promotes it once
(untimed), then per repetition runs a no-op promotion and a promotion after 50 source objects
were overwritten (same size), both **in process** through the CLI's own entry point
(``greenlight.cli.main``). For each it prints the timeline: every S3 request (start, duration,
operation, key, thread) and every ``greenlight`` log line, relative to the run's start, and a
summary of the requests by operation. ``--cli`` also times the same two runs as subprocesses (the
wall time a user sees, Python start-up included).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

from greenlight.cli import main as cli_main  # noqa: E402
from greenlight.dev.localstack import start_seaweedfs  # noqa: E402
from greenlight.storage import fast as fast_module  # noqa: E402
from greenlight.storage.s3 import make_client  # noqa: E402

SEED = 20261122


class Recorder(logging.Handler):
    """Collects S3 requests (wrapped ``FastS3._request``) and log lines with monotonic times."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.events: list[tuple[float, float, str, str]] = []  # (start, end, thread, text)
        self.requests: list[tuple[float, float, str, str]] = []  # (start, end, operation, key)
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def reset(self) -> None:
        with self._lock:
            self.events, self.requests = [], []
            self.t0 = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        text = record.getMessage()
        if text.startswith(("copy: ", "delete: ")):
            return  # per-object lines: the requests show them
        with self._lock:
            self.events.append((now, now, record.threadName, f"log {text[:150]}"))

    def wrap(self, original):
        recorder = self

        def _request(self, operation, method, bucket, key, **kwargs):
            started = time.monotonic()
            try:
                return original(self, operation, method, bucket, key, **kwargs)
            finally:
                ended = time.monotonic()
                what = f"{bucket}/{key}" if key is not None else bucket
                query = kwargs.get("query") or {}
                if "prefix" in query:
                    what += f" prefix={query['prefix']}" + (
                        f" after={query['start-after']}" if "start-after" in query else ""
                    )
                    what += (" delim" if "delimiter" in query else "") + (
                        " cont" if "continuation-token" in query else ""
                    )
                with recorder._lock:
                    recorder.requests.append((started, ended, operation, what))
                    recorder.events.append((started, ended, threading.current_thread().name, f"{operation} {what}"))

        return _request

    def report(self, title: str, total: float) -> None:
        print(f"\n=== {title}: {total * 1000:.0f} ms in process, {len(self.requests)} S3 requests")
        for start, end, thread, text in sorted(self.events):
            span = f"{(end - start) * 1000:6.1f}" if end > start else "      "
            print(f"{(start - self.t0) * 1000:8.1f} {span}  {thread[:16]:<16} {text[:160]}")
        by_op: dict[str, list[float]] = defaultdict(list)
        for start, end, op, _ in self.requests:
            by_op[op].append((end - start) * 1000)
        for op, spans in sorted(by_op.items()):
            print(f"  {op:<20} n={len(spans):4d} median {statistics.median(spans):6.1f} ms  max {max(spans):6.1f} ms")


def seed(client, bucket: str, n_small: int) -> list[str]:
    rng = random.Random(SEED)
    arrays = ("prices", "volumes", "returns", "signals")
    n_csv = n_small // 5
    keys = {}
    for i in range(n_small - n_csv):
        array, idx = arrays[i % len(arrays)], i // len(arrays)
        keys[f"features.zarr/{array}/c/{idx // 32}/{idx % 32}"] = rng.randbytes(rng.randint(1024, 4096))
    for i in range(n_csv):
        keys[f"deliveries/csv/date=2026-11-{i % 20 + 1:02d}/part-{i // 20:05d}.csv"] = rng.randbytes(
            rng.randint(1024, 4096)
        )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), keys.items()))
    return sorted(keys)


def overwrite_same_size(client, bucket: str, keys: list[str], rng: random.Random) -> None:
    """New content of the same size for ``keys`` (the benchmark's "changed" scenario)."""
    for key in keys:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        client.put_object(Bucket=bucket, Key=key, Body=rng.randbytes(size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--changed", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cli", type=int, default=0, metavar="N", help="also time N CLI subprocess runs of each")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="greenlight-timeline-"))
    server = start_seaweedfs(tmp / "seaweedfs", "tlkey", "tlsecret-0123456789")
    try:
        os.environ.update(server.env())
        client = make_client(
            endpoint_url=server.endpoint_url,
            access_key=server.access_key,
            secret_key=server.secret_key,
            region="us-east-1",
            max_pool=32,
        )
        qa, prod = "qa-timeline", "prod-timeline"
        client.create_bucket(Bucket=qa)
        client.create_bucket(Bucket=prod)
        client.put_bucket_versioning(Bucket=prod, VersioningConfiguration={"Status": "Enabled"})
        keys = seed(client, qa, args.small)
        step = max(1, len(keys) // max(1, args.changed))
        changed = keys[::step][: args.changed]
        config = tmp / "promotion.yaml"
        tops = sorted({k.split("/", 1)[0] + "/" for k in keys})
        config.write_text(
            "prefixes:\n" + "".join(f"  - s3://{qa}/{p}\n" for p in tops) + "defaults:\n  stale_after_hours: null\n"
        )
        cmd = ["promote", "--config", str(config), "--no-progress"]
        print(f"seeded {len(keys)} objects; first promotion ...", file=sys.stderr)
        if cli_main(cmd) != 0:
            return 1

        recorder = Recorder()
        logging.getLogger("greenlight").addHandler(recorder)
        fast_module.FastS3._request = recorder.wrap(fast_module.FastS3._request)
        for repeat in range(args.repeats):
            for scenario in ("noop", "changed"):
                if scenario == "changed":
                    overwrite_same_size(client, qa, changed, random.Random(f"{SEED}:{repeat}"))
                recorder.reset()
                started = time.monotonic()
                rc = cli_main(cmd)
                total = time.monotonic() - started
                recorder.report(f"{scenario} #{repeat} rc={rc} load {os.getloadavg()[0]:.1f}", total)

        if args.cli:
            env = dict(os.environ, PYTHONPATH=str(REPO / "include"))
            times: dict[str, list[float]] = defaultdict(list)
            for repeat in range(args.cli):
                for scenario in ("noop", "changed"):
                    if scenario == "changed":
                        overwrite_same_size(client, qa, changed, random.Random(f"{SEED}:cli:{repeat}"))
                    started = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "greenlight", *cmd],
                        env=env,
                        cwd=tmp,
                        check=True,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    times[scenario].append(round(time.perf_counter() - started, 3))
            for scenario, spans in times.items():
                print(f"CLI {scenario}: {spans} median {statistics.median(spans):.3f} s")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
