"""``greenlight promote``: promote the configured QA prefixes to prod (the nightly DAG's steps, by hand)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from greenlight.cli.output import default_run_id, emit
from greenlight.promotion.config import load_config
from greenlight.promotion.plan import prefix_line
from greenlight.promotion.progress import Progress
from greenlight.promotion.run import promote
from greenlight.storage.fast import FastS3
from greenlight.storage.s3 import LazyClient, make_client

log = logging.getLogger("greenlight")


def add_parser(subparsers) -> argparse.ArgumentParser:
    promote_cmd = subparsers.add_parser("promote", help="promote configured QA prefixes to prod")
    promote_cmd.add_argument(
        "--config", help="promotion.yaml (default: $GREENLIGHT_PROMOTION_CONFIG or the packaged one)"
    )
    promote_cmd.add_argument("--dry-run", action="store_true", help="print the per-object plan and change nothing")
    promote_cmd.add_argument("--only", nargs="+", metavar="PREFIX", help="promote only these prefixes (URI or name)")
    promote_cmd.add_argument("--run-id", help="run id for the manifest (default: cli__<UTC time>); reuse it to resume")
    promote_cmd.add_argument("--no-progress", action="store_true", help="no progress line on the terminal")
    promote_cmd.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS when another run holds a prod prefix's lease (default: refuse at once, exit 2)",
    )
    promote_cmd.set_defaults(handler=run)
    return promote_cmd


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config).select(args.only)
    run_id = args.run_id or default_run_id()
    progress = None if args.no_progress or not sys.stderr.isatty() else Progress(tty=True)
    summary = promote(
        config,
        LazyClient(lambda: make_client(max_pool=config.workers)),
        run_id=run_id,
        dry_run=args.dry_run,
        progress=progress,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        fast=FastS3.from_environment(max_pool=config.workers + 16),
        wait=args.wait,
    )
    if args.dry_run:
        for line in summary.pop("plan_lines", []):
            print(line)
    short = {k: v for k, v in summary.items() if k not in ("per_prefix", "plans", "manifests")}
    for row in summary["per_prefix"]:
        log.info("%s", prefix_line(row))
    emit(short)
    return 1 if summary.get("errors") else 0
