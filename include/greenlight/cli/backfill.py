"""``greenlight backfill``: runbook 003's resumable backfill on top of Airflow 3's backfill API.

``greenlight backfill --dag-id X --start D --end D [--max-parallel N]`` creates an Airflow backfill
(``POST /api/v2/backfills``: the scheduler makes one ``backfill`` run per partition of the DAG's
schedule), follows it and writes ``<task manifest root>/backfills/<backfill_id>/summary.json`` as
partitions finish. ``--resume`` (the same command again) skips every partition whose task manifests
show success and reruns only the others. ``--follow N`` follows Airflow backfill ``N`` started
elsewhere (the UI's Backfill form sends the same request) and keeps ``backfills/airflow-<N>/summary.json``,
the summary that backfill's runs write themselves (greenlight.dagsupport.backfillsummary) even when
nobody follows it.

Exit codes: 0 every partition succeeded, 1 some partition failed (or the wait timed out: the
backfill goes on), 2 refused before anything started (unknown DAG, a DAG without a time-based
schedule, end before start, another backfill of the DAG still running, bad ``--conf``).

The Airflow API comes from ``$AIRFLOW_CONN_AIRFLOW_API`` (a JSON or URI connection with the API
base URL, user and password); task manifests from ``--root`` / ``$GREENLIGHT_TASK_MANIFEST_ROOT``;
the DAG's structure (which tasks a complete run has) from its file in ``--dags-folder``.
"""

from __future__ import annotations

import argparse
import json

from greenlight.backfill.airflowapi import Airflow
from greenlight.backfill.runner import Backfill, checked_range
from greenlight.cli.datasets import api_from_env
from greenlight.errors import ConfigError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "backfill", help="run (or --resume) a DAG over a range of partitions; summary.json per backfill"
    )
    parser.add_argument("--dag-id", help="the DAG to backfill (it needs a time-based schedule)")
    parser.add_argument("--start", help="first partition: YYYY-MM-DD (that day's 00:00 UTC) or an ISO timestamp")
    parser.add_argument("--end", help="last partition, inclusive: YYYY-MM-DD (through 23:59:59 UTC) or a timestamp")
    parser.add_argument(
        "--max-parallel", type=int, default=4, help="runs of the backfill at once (Airflow max_active_runs; default 4)"
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--resume", action="store_true", help="skip partitions whose task manifests show success; rerun the others"
    )
    how.add_argument(
        "--reprocess",
        choices=("none", "failed", "completed"),
        default="none",
        help="without --resume: Airflow's rule for partitions that already have a run (default none: only missing ones)",
    )
    how.add_argument(
        "--follow", type=int, metavar="AIRFLOW_BACKFILL_ID", help="follow a backfill started elsewhere (e.g. the UI)"
    )
    parser.add_argument("--conf", help="dag_run_conf for every run (a JSON object, validated against the params)")
    parser.add_argument(
        "--backfill-id",
        help="greenlight's id of the backfill (default: <dag_id>__<start>__<end>; with --follow N: airflow-<N>)",
    )
    parser.add_argument("--root", help="task manifest root (default: $GREENLIGHT_TASK_MANIFEST_ROOT)")
    parser.add_argument("--dags-folder", help="folder of DAG files (default: $AIRFLOW__CORE__DAGS_FOLDER or dags/)")
    parser.add_argument("--run-backwards", action="store_true", help="newest partition first")
    parser.add_argument("--dry-run", action="store_true", help="show the partitions and the plan; start nothing")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between progress checks (default 5)")
    parser.add_argument(
        "--timeout", type=float, default=0, help="stop waiting after this many seconds (0 = until done); exit 1"
    )
    parser.set_defaults(handler=run)
    return parser


# ---------------------------------------------------------------------------------- the command
def run(args: argparse.Namespace) -> int:
    if args.max_parallel < 1:
        raise ConfigError(f"--max-parallel {args.max_parallel}: must be at least 1")
    if args.follow is None:
        for name in ("dag_id", "start", "end"):
            if not getattr(args, name):
                raise ConfigError(f"--{name.replace('_', '-')} is required (or --follow AIRFLOW_BACKFILL_ID)")
    conf = None
    if args.conf:
        try:
            conf = json.loads(args.conf)
        except ValueError as exc:
            raise ConfigError(f"--conf is not valid JSON: {exc}") from None
        if not isinstance(conf, dict):
            raise ConfigError("--conf must be a JSON object")
    if args.follow is None:
        checked_range(args.start, args.end)  # bad input is refused before Airflow is asked anything
    airflow = Airflow(api_from_env(required=True))
    return Backfill(airflow, args, conf).go()
