"""``python -m greenlight datasets check|promote|cleanup|pools``: staged dataset versions (runbook 002).

``check``    validate the datasets config (every rule; exit 2 listing each problem) and print the
             DAGs, schedules, pools and store paths it generates; ``--dataset-id/--version`` also
             checks that version is configured (the seed's ``deploy-staging`` validations).
``promote``  run the staged version's validate job, move the dataset's ``current`` pointer to its
             store, make it the config's primary, delete the staged DAGs' metadata (REST API).
``cleanup``  pause and delete a staged version's DAGs (REST API), remove its config entry, list
             what is left on purpose (the store path is never deleted); refuses the primary.
``pools``    print the ``airflow pools set`` commands for every dataset version, or create the
             pools through the REST API with ``--apply``.

S3 from the standard AWS env vars; the Airflow REST API from ``AIRFLOW_CONN_AIRFLOW_API`` (the
connection the DAGs use, as JSON ``{"host": URL, "login": …, "password": …}`` or a URI
``http://user:password@host:port``). Exit codes: 0 ok, 2 refused or bad input, 1 failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import urllib.parse

from greenlight.cli.output import emit
from greenlight.dagsupport.api import AirflowApi, base_url_from
from greenlight.datasets import naming
from greenlight.errors import ConfigError
from greenlight.storage.s3 import make_client

# greenlight.datasets.config / ops / model are imported inside the subcommands: they import pydantic
# and build the config models (~0.7 s), which `greenlight datasets --help` and `greenlight backfill`
# (it imports api_from_env from here) do not need.

log = logging.getLogger("greenlight")
API_CONN_ENV = "AIRFLOW_CONN_AIRFLOW_API"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("datasets", help="staged dataset versions: check, promote, cleanup, pools")
    sub = parser.add_subparsers(dest="datasets_command", required=True)
    config_help = "datasets.yaml (default: $GREENLIGHT_DATASETS_CONFIG or include/config/datasets.yaml)"

    check = sub.add_parser("check", help="validate the config; list the generated DAGs, pools and store paths")
    check.add_argument("--config", help=config_help)
    check.add_argument("--dataset-id", help="also check that this dataset is configured")
    check.add_argument("--version", help="with --dataset-id: also check that this version is configured")
    check.add_argument(
        "--no-import", action="store_true", help="do not import the update/validate callables to check they exist"
    )

    promote = sub.add_parser("promote", help="make a staged version the primary (validate, pointer, config)")
    promote.add_argument("--config", help=config_help)
    promote.add_argument("--dataset-id", required=True)
    promote.add_argument("--version", required=True, help="the staged version to promote, e.g. 0.3.0")
    promote.add_argument(
        "--keep-previous",
        action="store_true",
        help="keep the old primary as a staged (legacy) version that keeps updating",
    )
    promote.add_argument("--run-id", help="recorded in the current pointer (default: promote__<UTC time>)")

    cleanup = sub.add_parser("cleanup", help="remove a staged version: DAGs (REST API) and config entry, not data")
    cleanup.add_argument("--config", help=config_help)
    cleanup.add_argument("--dataset-id", required=True)
    cleanup.add_argument("--version", required=True, help="the staged version to remove, e.g. 0.3.0")
    cleanup.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")

    pools = sub.add_parser("pools", help="the Airflow pool of every dataset version")
    pools.add_argument("--config", help=config_help)
    pools.add_argument("--apply", action="store_true", help="create/update the pools through the REST API")

    parser.set_defaults(handler=run)
    return parser


def api_from_env(required: bool = False):
    """The Airflow REST client from ``$AIRFLOW_CONN_AIRFLOW_API`` (None when unset and not required)."""
    raw = os.environ.get(API_CONN_ENV, "").strip()
    if not raw:
        if required:
            raise ConfigError(f"${API_CONN_ENV} is not set: it gives the Airflow API URL, user and password")
        return None
    if raw.startswith("{"):
        try:
            conn = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"${API_CONN_ENV} is not valid JSON: {exc}") from None
        host, port, schema = conn.get("host"), conn.get("port"), conn.get("schema")
        login, password = conn.get("login"), conn.get("password") or ""
    else:
        parsed = urllib.parse.urlsplit(raw)
        host, port, schema = parsed.hostname, parsed.port, None
        if parsed.scheme in ("http", "https") and host:
            host = f"{parsed.scheme}://{host}"
        login = urllib.parse.unquote(parsed.username or "")
        password = urllib.parse.unquote(parsed.password or "")
    if not login:
        raise ConfigError(f"${API_CONN_ENV} has no login: the REST API needs a user")
    return AirflowApi(base_url_from(host, port, schema), login, password)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _check(args: argparse.Namespace) -> int:
    # local: pydantic + the datasets config models, ~0.7 s (see the note at the top)
    from greenlight.datasets.config import check_callables, load_config
    from greenlight.datasets.model import DatasetConfigError

    config = load_config(args.config)
    if not args.no_import:
        problems = check_callables(config)
        if problems:
            raise DatasetConfigError(config.path, problems)
    chosen = None
    if args.dataset_id:
        dataset = config.dataset(args.dataset_id)
        chosen = dataset.version(args.version) if args.version else None
    elif args.version:
        raise ConfigError("--version needs --dataset-id")
    rows = []
    for ds in config.datasets:
        for spec in ds.versions:
            rows.append(
                {
                    "dataset_id": ds.id,
                    "version": spec.version,
                    "role": spec.role,
                    "dags": [spec.dag_id(job) for job in naming.JOBS],
                    "schedule": spec.schedule,
                    "pool": spec.pool,
                    "store_path": spec.store_path,
                }
            )
            schedule = spec.schedule or "manual"
            offset = f" (+{spec.offset_minutes} min)" if spec.staged and spec.schedule else ""
            print(
                f"{ds.id} {spec.version} {spec.role}: {spec.dag_id('update')}, {spec.dag_id('validate')}; "
                f"schedule {schedule}{offset}; pool {spec.pool}; store {spec.store_path}"
            )
    summary = {
        "config": config.path,
        "datasets": len(config.datasets),
        "versions": len(rows),
        "dags": 2 * len(rows),
        "problems": [],
    }
    if chosen is not None:
        summary["checked"] = {"dataset_id": chosen.dataset_id, "version": chosen.version, "role": chosen.role}
    emit(summary)
    return 0


def _promote(args: argparse.Namespace) -> int:
    # local: pydantic + the datasets config models, ~0.7 s (see the note at the top)
    from greenlight.datasets.ops import promote

    summary = promote(
        args.dataset_id,
        args.version,
        path=args.config,
        client_factory=make_client,
        api=api_from_env(),
        run_id=args.run_id,
        keep_previous=args.keep_previous,
        say=_say,
    )
    emit(summary)
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    # local: pydantic + the datasets config models, ~0.7 s (see the note at the top)
    from greenlight.datasets.ops import cleanup

    summary = cleanup(
        args.dataset_id, args.version, path=args.config, api=api_from_env(), dry_run=args.dry_run, say=print
    )
    emit(summary)
    return 0


def _pools(args: argparse.Namespace) -> int:
    # local: pydantic + the datasets config models, ~0.7 s (see the note at the top)
    from greenlight.datasets.config import load_config
    from greenlight.datasets.ops import ensure_pools, pools

    config = load_config(args.config)
    if args.apply:
        result = ensure_pools(config, api_from_env(required=True))
        for name, outcome in result.items():
            print(f"{name}: {outcome}")
        emit({"pools": result})
        return 0
    for pool in pools(config):
        print(f"airflow pools set {pool['name']} {pool['slots']} {shlex.quote(pool['description'])}")
    emit({"pools": {p["name"]: p["slots"] for p in pools(config)}})
    return 0


def run(args: argparse.Namespace) -> int:
    handler = {"check": _check, "promote": _promote, "cleanup": _cleanup, "pools": _pools}[args.datasets_command]
    return handler(args)
