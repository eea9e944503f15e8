"""``python -m greenlight refresh``: refresh staging from prod (runbook 001) by hand, same steps as the DAG.

PostgreSQL connections are the config's connection ids, resolved from the standard Airflow env vars
``AIRFLOW_CONN_<ID>`` (URI or JSON); S3 from the standard AWS env vars (``AWS_ENDPOINT_URL``, …).
Exit codes: 0 every table synced or skipped by config, 1 a table, the migration, a health check or
verification failed, 2 refused or bad input (nothing changed). The last stdout line is the JSON
summary (``tables``, ``rows_synced``, ``objects_copied``, ``bytes_copied``, ``manifest``, ``leases``).
Another run (the DAG, a promotion) holding a staging target's lease refuses the run with exit 2
before anything changes, unless it lets go within ``--wait`` seconds.
"""

from __future__ import annotations

import argparse

from greenlight.cli.output import default_run_id, emit
from greenlight.refresh.config import load_config
from greenlight.refresh.connections import aws_client_from_env, from_env, require_env_conn
from greenlight.refresh.run import Refresh, exit_code, refresh
from greenlight.storage.s3 import make_client


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("refresh", help="refresh staging buckets and PostgreSQL tables from prod")
    parser.add_argument(
        "--config",
        help="staging_refresh.yaml (default: $GREENLIGHT_REFRESH_CONFIG or include/config/staging_refresh.yaml)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report row counts and bucket sizes of each pair, change nothing"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these tables (schema.table) or bucket mappings")
    parser.add_argument("--skip-migrations", action="store_true", help="do not run the configured migrations")
    parser.add_argument("--run-id", help="run id of the manifest (default: cli__<UTC time>)")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS when another run holds a staging target's lease (default: refuse at once, exit 2)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    r = Refresh(
        config=config,
        run_id=args.run_id or default_run_id(),
        resolve=from_env,
        check_http_conn=require_env_conn,
        s3=lambda: make_client(max_pool=config.workers + 8),
        s3_source=lambda: aws_client_from_env(config.source_aws_conn, max_pool=config.workers + 8),
        only=list(args.only or ()),
        dry_run=bool(args.dry_run),
        skip_migrations=bool(args.skip_migrations),
        wait=args.wait,
    )
    summary = refresh(r)
    emit(summary)
    return exit_code(summary)
