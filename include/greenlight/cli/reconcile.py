"""``python -m greenlight reconcile``: check DVC/MLflow/git against S3, optionally repair.

S3 endpoint and credentials come from the standard AWS env vars (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), the MLflow tracking URI from ``MLFLOW_TRACKING_URI``. Exit codes: 0 =
nothing missing (or everything repaired), 1 = something unrecoverable or still missing, 2 = bad
input (config, ``--only``). The last stdout line is the JSON summary; the Markdown table goes to
stderr with the per-finding lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from greenlight.cli.output import default_run_id, emit
from greenlight.reconcile.config import load_config
from greenlight.reconcile.run import reconcile
from greenlight.redact import redact_text
from greenlight.storage.fast import FastS3
from greenlight.storage.s3 import make_client

log = logging.getLogger("greenlight")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reconcile", help="check DVC remotes, MLflow artifacts and dvc.lock against S3/git; repair what can be"
    )
    parser.add_argument(
        "--config", help="reconcile.yaml (default: $GREENLIGHT_RECONCILE_CONFIG or include/config/reconcile.yaml)"
    )
    parser.add_argument(
        "--repair", action="store_true", help="push/copy/upload missing objects from the cache, fallback or restore dir"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --repair: say what would be repaired, change nothing"
    )
    parser.add_argument("--only", nargs="+", metavar="TARGET", help="reconcile only these targets (by name)")
    parser.add_argument("--run-id", help="name of the report folder (default: cli__<UTC time>)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config).select(args.only)
    run_id = args.run_id or default_run_id()
    client = make_client(max_pool=config.workers + 8)
    summary = reconcile(
        config,
        client,
        run_id=run_id,
        repair=bool(args.repair),
        dry_run=bool(args.dry_run),
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        lister=FastS3.from_client(client, max_pool=config.workers + 8),
    )
    sys.stderr.write(redact_text(summary.pop("markdown")) + "\n")
    for problem in summary["problems"][:50]:
        log.error("%s", problem)
    emit(summary)
    return 1 if summary["unrecoverable"] or summary["outstanding"] else 0
