"""``greenlight check-run``: the operations runbook's 2-minute daily check for one DAG run.

Every expected task (mapped ones by map index) has a ``success`` (or ``skipped``) task manifest,
the ``current`` pointers a publishing step reported moved to the run, and every manifest names the
same run id. Expected tasks come from the DAG's structure (the DAG file parsed with a ``DagBag``:
no metadata database, no scheduler needed). The table goes to stderr, the JSON report is the last
stdout line. Exit 0 complete, 1 incomplete (the JSON's ``missing`` lists what), 2 bad input.

Task manifests are read from ``$GREENLIGHT_TASK_MANIFEST_ROOT`` (``--root``); S3 through the
standard AWS env vars.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from greenlight.cli.output import emit
from greenlight.dagsupport.runcheck import dag_structure
from greenlight.dagsupport.taskmanifest import cli_root
from greenlight.errors import ConfigError
from greenlight.runcheck import ManifestRoot, check_run, format_table, read_json_uri
from greenlight.storage.s3 import make_client


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-run", help="is a DAG run complete? task manifests, current pointers, one run id (daily check)"
    )
    parser.add_argument("--dag-id", required=True, help="the DAG to check")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="the run to check")
    which.add_argument("--date", help="the newest run whose logical date is this day (YYYY-MM-DD); default: newest run")
    parser.add_argument("--root", help="task manifest root (default: $GREENLIGHT_TASK_MANIFEST_ROOT)")
    parser.add_argument("--dags-folder", help="folder of DAG files (default: $AIRFLOW__CORE__DAGS_FOLDER or dags/)")
    parser.set_defaults(handler=run)
    return parser


def dags_folder(value: str | None) -> Path:
    if value:
        return Path(value)
    if os.environ.get("AIRFLOW__CORE__DAGS_FOLDER"):
        return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return Path(__file__).resolve().parents[3] / "dags"


def load_dag(dag_id: str, folder: Path):
    """The DAG object of ``dag_id`` from the DAG files (its own file first: ``<dag_id>.py``)."""
    from airflow.dag_processing.dagbag import DagBag  # parsing DAG files: only for this command

    if not folder.is_dir():
        raise ConfigError(f"--dags-folder {folder} is not a folder")
    own = folder / f"{dag_id}.py"
    bag = DagBag(dag_folder=str(own if own.exists() else folder))
    if dag_id not in bag.dags:
        errors = "; ".join(f"{k}: {str(v).splitlines()[-1]}" for k, v in bag.import_errors.items())
        known = sorted(bag.dags) if not own.exists() else []
        raise ConfigError(
            f"--dag-id {dag_id!r}: no such DAG in {folder}"
            + (f" (known: {known})" if known else "")
            + (f"; import errors: {errors}" if errors else "")
        )
    return bag.dags[dag_id]


def run(args: argparse.Namespace) -> int:
    if args.date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
        raise ConfigError(f"--date {args.date!r}: expected YYYY-MM-DD")
    root = cli_root(args.root)
    client = None
    if root.startswith("s3://"):
        client = make_client(max_pool=8)
    dag = load_dag(args.dag_id, dags_folder(args.dags_folder))
    reader = ManifestRoot(root, client)
    run_id, manifests = reader.find_run(args.dag_id, run_id=args.run_id, date=args.date)

    def pointer(uri: str):
        nonlocal client
        if uri.startswith("s3://") and client is None:
            client = make_client(max_pool=8)
        return read_json_uri(uri, client)

    report = check_run(args.dag_id, run_id, dag_structure(dag), manifests, read_pointer=pointer)
    if args.run_id and not manifests:
        report["missing"] = [f"run {args.run_id!r} of {args.dag_id} has no task manifests under {root}"]
    report["root"] = root
    sys.stderr.write(format_table(report) + "\n")
    emit(report)
    return 0 if report["complete"] else 1
