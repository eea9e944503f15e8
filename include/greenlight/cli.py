"""``python -m greenlight``: the runbook's manual fallback, calling the same library as the DAGs.

Exit codes: 0 ok, 2 refused or bad input (nothing changed), 1 failure. The last line on stdout is
a JSON summary; per-object actions and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime

from greenlight import reconcile_cli
from greenlight.errors import GreenlightError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m greenlight", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    promote = sub.add_parser("promote", help="promote configured QA prefixes to prod")
    promote.add_argument("--config", help="promotion.yaml (default: $GREENLIGHT_PROMOTION_CONFIG or the packaged one)")
    promote.add_argument("--dry-run", action="store_true", help="print the per-object plan and change nothing")
    promote.add_argument("--only", nargs="+", metavar="PREFIX", help="promote only these prefixes (URI or name)")
    promote.add_argument("--run-id", help="run id for the manifest (default: cli__<UTC time>); reuse it to resume")
    promote.add_argument("--no-progress", action="store_true", help="no progress line on the terminal")
    rb = sub.add_parser("rollback", help="restore prod to the state recorded in a promotion manifest")
    rb.add_argument("--manifest", required=True, help="run index (…/promotions/<run>/index.json) or a prefix manifest")
    rb.add_argument("--dry-run", action="store_true", help="print what would be restored or deleted, change nothing")
    rb.add_argument("--only", nargs="+", metavar="PREFIX", help="roll back only these prefixes (QA or prod URI)")
    rb.add_argument(
        "--allow-partial", action="store_true", help="restore what can be restored if some versions are gone"
    )
    rb.add_argument("--run-id", help="run id for the rollback manifest")
    reconcile_cli.add_parser(sub)
    return parser


def cmd_rollback(args: argparse.Namespace) -> int:
    from greenlight.rollback import rollback
    from greenlight.s3 import make_client

    summary = rollback(
        args.manifest,
        make_client(),
        only=args.only,
        dry_run=args.dry_run,
        allow_partial=args.allow_partial,
        run_id=args.run_id,
    )
    lines = summary.pop("plan_lines", [])
    if args.dry_run:
        for line in lines:
            print(line)
    _emit(summary)
    return 1 if summary.get("unrecoverable") else 0


def _emit(summary: dict) -> None:
    sys.stdout.write(json.dumps(summary, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def cmd_promote(args: argparse.Namespace) -> int:
    from greenlight.config import load_config
    from greenlight.progress import Progress
    from greenlight.s3 import LazyClient, make_client
    from greenlight.s3fast import FastS3
    from greenlight.sync import prefix_line, promote

    config = load_config(args.config).select(args.only)
    run_id = args.run_id or "cli__" + datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    progress = None if args.no_progress or not sys.stderr.isatty() else Progress(tty=True)
    summary = promote(
        config,
        LazyClient(lambda: make_client(max_pool=config.workers)),
        run_id=run_id,
        dry_run=args.dry_run,
        progress=progress,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        fast=FastS3.from_environment(max_pool=config.workers + 16),
    )
    if args.dry_run:
        for line in summary.pop("plan_lines", []):
            print(line)
    short = {k: v for k, v in summary.items() if k not in ("per_prefix", "plans", "manifests")}
    for row in summary["per_prefix"]:
        logging.getLogger("greenlight").info("%s", prefix_line(row))
    _emit(short)
    return 1 if summary.get("errors") else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = {"promote": cmd_promote, "rollback": cmd_rollback, "reconcile": reconcile_cli.run}[args.command]
    try:
        return handler(args)
    except GreenlightError as exc:
        logging.getLogger("greenlight").error("%s", exc)
        _emit({"error": str(exc), "kind": exc.kind, "exit_code": exc.exit_code})
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI reports every failure as exit 1
        logging.getLogger("greenlight").exception("promotion failed")
        _emit({"error": f"{type(exc).__name__}: {exc}", "kind": "unknown", "exit_code": 1})
        return 1
