"""``greenlight model promote|rollback|check-consumer``: move a registered model's head (alias +
current pointer), and check that consumers follow it.

``promote`` checks the candidate (run FINISHED, ``MLmodel`` and its files in the artifact store),
smoke-scores it on ``--smoke-partition`` without publishing, then moves the alias and
``current/models/<name>.json`` together. ``rollback`` restores the previous head and lists the
consumer runs that used the rolled-back version. Exit 0 done, 2 refused (nothing moved: the JSON's
``error`` names the candidate and the failed check), 1 failure.

``check-consumer`` reads the head's pointer and the consumer DAGs' task manifests
(``$GREENLIGHT_TASK_MANIFEST_ROOT`` or ``--manifest-root``): exit 0 when the first consumer run
since the head moved recorded the head's version, 1 when it used another version, recorded none,
or no consumer run has started yet (``status`` ``old_version`` / ``not_recorded`` / ``pending``;
``--wait S`` polls up to S seconds for that run), 2 when the model has no head or no consumers.

MLflow from ``$MLFLOW_TRACKING_URI``; S3 from the standard AWS env vars; models from
``include/config/models.yaml`` (``--config`` / ``$GREENLIGHT_MODELS_CONFIG``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from greenlight.cli.output import default_run_id, emit
from greenlight.dagsupport.taskmanifest import cli_root
from greenlight.errors import ConfigError
from greenlight.runcheck import ManifestRoot
from greenlight.storage.s3 import make_client

# greenlight.models is imported inside the commands: its config and promotion modules import pydantic,
# yaml and the promotion gates (~0.3 s), which `greenlight model --help` does not need.


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "model", help="promote or roll back a registered model's head (alias + pointer); check its consumers"
    )
    sub = parser.add_subparsers(dest="model_command", required=True)
    promote = sub.add_parser("promote", help="check, smoke-score and promote a candidate")
    promote.add_argument("--name", required=True, help="registered model name (configured in models.yaml)")
    promote.add_argument("--candidate", required=True, help="model version (7), @alias, or MLflow run id")
    promote.add_argument("--smoke-partition", help="s3:// prefix or folder of CSV/parquet to score (required)")
    promote.add_argument("--dry-run", action="store_true", help="check and smoke-score only; move nothing")
    rollback = sub.add_parser("rollback", help="restore the previous head (alias + pointer)")
    rollback.add_argument("--name", required=True, help="registered model name")
    consumer = sub.add_parser(
        "check-consumer", help="did the first consumer run since the head moved use the head's version?"
    )
    consumer.add_argument("--name", required=True, help="registered model name")
    consumer.add_argument("--wait", type=float, default=0.0, help="seconds to wait for that consumer run (default 0)")
    for p in (promote, rollback, consumer):
        p.add_argument(
            "--config", help="models.yaml (default: $GREENLIGHT_MODELS_CONFIG or include/config/models.yaml)"
        )
        if p is not consumer:
            p.add_argument("--run-id", help="run id recorded in the pointer (default: cli__<UTC time>)")
        p.add_argument("--manifest-root", help="task manifest root to find consumer runs (rollback, check-consumer)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # local: ~0.3 s, see the note at the top
    from greenlight.models import config as models_config
    from greenlight.models import promotion

    config = models_config.load(args.config)
    model = config.model(args.name)
    s3 = make_client(max_pool=8)
    if args.model_command == "check-consumer":
        return check_consumer(config, model, s3, args)
    ml = promotion.mlflow_client(os.environ.get("MLFLOW_TRACKING_URI"))
    store = promotion.pointer_store(config, s3)
    run_id = args.run_id or default_run_id()
    if args.model_command == "rollback":
        root = args.manifest_root or os.environ.get("GREENLIGHT_TASK_MANIFEST_ROOT")
        manifests = ManifestRoot(root, s3) if root else None
        emit(promotion.rollback(ml, store, model, run_id=run_id, manifests=manifests))
        return 0
    if not args.smoke_partition:
        raise ConfigError("--smoke-partition is required: a candidate is never promoted without a smoke score")
    checked = promotion.check_candidate(ml, s3, model.name, args.candidate)
    smoke = promotion.smoke_score(s3, checked, args.smoke_partition, model)
    if args.dry_run:
        emit({"dry_run": True, "checked": checked, "smoke": smoke})
        return 0
    emit(promotion.publish(ml, store, model, checked, run_id=run_id, smoke=smoke))
    return 0


def check_consumer(config, model, s3, args: argparse.Namespace) -> int:
    """``greenlight model check-consumer``: the promotion's follow-up check (no MLflow needed)."""
    # local: ~0.3 s, see the note at the top
    from greenlight.models import promotion
    from greenlight.models.consumers import check_consumer as check

    if args.wait < 0:
        raise ConfigError(f"--wait {args.wait}: expected seconds >= 0")
    root = cli_root(args.manifest_root, "--manifest-root")
    manifests = ManifestRoot(root, s3 if root.startswith("s3://") else None)
    store = promotion.pointer_store(config, s3)
    deadline = time.monotonic() + args.wait
    while True:
        report = check(config, model, store, manifests)
        if report["status"] != "pending" or time.monotonic() >= deadline:
            break
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    sys.stderr.write(report["message"] + "\n")
    emit({**report, "manifest_root": root})
    if report["status"] in ("no_head", "no_consumers"):
        return 2
    return 0 if report["ok"] else 1
