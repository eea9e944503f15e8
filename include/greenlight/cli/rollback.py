"""``greenlight rollback``: restore prod to the state recorded in a promotion manifest."""

from __future__ import annotations

import argparse

from greenlight.cli.output import emit
from greenlight.promotion.config import load_config
from greenlight.promotion.rollback import rollback
from greenlight.storage.s3 import make_client


def add_parser(subparsers) -> argparse.ArgumentParser:
    rb = subparsers.add_parser("rollback", help="restore prod to the state recorded in a promotion manifest")
    rb.add_argument("--manifest", required=True, help="run index (…/promotions/<run>/index.json) or a prefix manifest")
    rb.add_argument(
        "--config",
        help="promotion.yaml: its manifest_uri and prefixes bound what a rollback may touch (default: as promote)",
    )
    rb.add_argument("--dry-run", action="store_true", help="print what would be restored or deleted, change nothing")
    rb.add_argument("--only", nargs="+", metavar="PREFIX", help="roll back only these prefixes (QA or prod URI)")
    rb.add_argument(
        "--allow-partial", action="store_true", help="restore what can be restored if some versions are gone"
    )
    rb.add_argument(
        "--force", action="store_true", help="also restore keys changed after the promotion (undoes that later work)"
    )
    rb.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for another writer's lease on the same prefix (default: refuse at once)",
    )
    rb.add_argument("--run-id", help="run id for the rollback manifest; reuse it to retry a failed rollback")
    rb.set_defaults(handler=run)
    return rb


def run(args: argparse.Namespace) -> int:
    summary = rollback(
        args.manifest,
        make_client(),
        config=load_config(args.config),
        only=args.only,
        dry_run=args.dry_run,
        allow_partial=args.allow_partial,
        force=args.force,
        wait=args.wait,
        run_id=args.run_id,
    )
    lines = summary.pop("plan_lines", [])
    if args.dry_run:
        for line in lines:
            print(line)
    emit(summary)
    return 1 if summary.get("unrecoverable") else 0
