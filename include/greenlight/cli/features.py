"""``greenlight features …``: the ``feature_materialization`` DAG's steps by hand, and its deploy step.

``plan`` (registry diff, exit 1 while the deployed registry differs from ``include/feature_repo``),
``apply`` (the reviewed deploy step), ``seed`` (schema + demo bars), ``materialize`` (a window, or a
full refresh), ``parity`` (online vs offline) and ``demo`` (local servers, everything once).
Configuration comes from the env vars in docs/features.md (``GREENLIGHT_PG_URI``,
``GREENLIGHT_REDIS_URL``, ``GREENLIGHT_FEATURES_*``). Exit codes: 0 ok, 1 drift or a failed check
(parity), 2 bad input. Per-view lines go to stderr; the last stdout line is the JSON summary.
``python -m greenlight.features …`` runs the same commands.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime, timedelta

from greenlight.cli.output import emit
from greenlight.dev.features_demo import run_demo
from greenlight.features import (
    FeatureSettings,
    apply_definitions,
    check_parity_sample,
    check_registry,
    feature_store,
    full_refresh,
    materialize_window,
    parity_check,
    registry_diff,
    seed,
    utc,
    window_for,
)

log = logging.getLogger("greenlight")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "features", help="Feast feature views: registry plan/apply, seed, materialize, parity, demo"
    )
    sub = parser.add_subparsers(dest="features_command", required=True, metavar="COMMAND")
    sub.add_parser("plan", help="show how the deployed registry differs from include/feature_repo (exit 1 if it does)")
    sub.add_parser("apply", help="deploy step: create the SQL objects and apply the repo to the registry")
    p_seed = sub.add_parser("seed", help="create the schema and demo bars")
    p_seed.add_argument("--symbols", type=int, default=5, help="number of symbols (default 5)")
    p_seed.add_argument("--days", type=float, default=1.0, help="days of 5-minute bars ending now (default 1)")
    for name, text in (("materialize", "materialize a window into Redis"), ("parity", "compare online with offline")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--view", action="append", help="feature view (repeatable; default: all)")
        if name == "materialize":
            p.add_argument("--start", help="window start, ISO-8601 (with --end; default: the last hour + overlap)")
            p.add_argument("--end", help="window end, ISO-8601")
            p.add_argument("--full-refresh", action="store_true", help="delete the views' online values first")
        else:
            p.add_argument("--end", help="as-of time, ISO-8601 (default now)")
            p.add_argument(
                "--sample", type=int, help="entities per view, >= 1 (default GREENLIGHT_FEATURES_PARITY_SAMPLE)"
            )
    p_demo = sub.add_parser("demo", help="start local PostgreSQL + Redis and run everything once")
    p_demo.add_argument("--workdir", default=".local/demo", help="where the servers keep their data")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    command = args.features_command
    if command == "demo":
        emit(run_demo(args.workdir))
        return 0
    if command == "parity" and args.sample is not None:
        check_parity_sample(args.sample, "--sample")  # before Feast is imported or a server is asked
    settings = FeatureSettings.from_env()
    if command == "plan":
        changes = registry_diff(settings)
        for change in changes:
            log.warning("registry differs: %s", change)
        emit({"command": "features plan", "drift": bool(changes), "changes": changes})
        return 1 if changes else 0
    if command == "apply":
        emit({"command": "features apply", "changes": apply_definitions(settings)})
        return 0
    if command == "seed":
        emit({"command": "features seed", **seed(settings, n_symbols=args.symbols, days=args.days)})
        return 0
    store = feature_store(settings)
    views = args.view or check_registry(settings, store)
    if command == "materialize":
        now = datetime.now(UTC)
        window = window_for(now - timedelta(hours=1), now, overlap=settings.overlap, start=args.start, end=args.end)
        step = full_refresh if args.full_refresh else materialize_window
        results = []
        for view in views:
            results.append(step(settings, view, window, store))
            log.info("materialized %s", results[-1])
        emit({"command": "features materialize", "window": window.as_dict(), "views": results})
        return 0
    as_of = utc(args.end) if args.end else datetime.now(UTC)
    reports = []
    for view in views:
        report = parity_check(settings, view, as_of, sample=args.sample, store=store)
        reports.append({k: report[k] for k in ("view", "checked", "mismatches")})
        log.info("parity ok for %s: %d entities checked", view, report["checked"])
    emit({"command": "features parity", "as_of": as_of.isoformat(), "views": reports})
    return 0
