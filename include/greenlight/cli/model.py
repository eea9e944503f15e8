"""``greenlight model promote|rollback``: move a registered model's head (alias + current pointer).

``promote`` checks the candidate (run FINISHED, ``MLmodel`` and its files in the artifact store),
smoke-scores it on ``--smoke-partition`` without publishing, then moves the alias and
``current/models/<name>.json`` together. ``rollback`` restores the previous head and lists the
consumer runs that used the rolled-back version. Exit 0 done, 2 refused (nothing moved: the JSON's
``error`` names the candidate and the failed check), 1 failure.

MLflow from ``$MLFLOW_TRACKING_URI``; S3 from the standard AWS env vars; models from
``include/config/models.yaml`` (``--config`` / ``$GREENLIGHT_MODELS_CONFIG``).
"""

from __future__ import annotations

import argparse
import os

from greenlight.cli.output import default_run_id, emit


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("model", help="promote or roll back a registered model's head (alias + pointer)")
    sub = parser.add_subparsers(dest="model_command", required=True)
    promote = sub.add_parser("promote", help="check, smoke-score and promote a candidate")
    promote.add_argument("--name", required=True, help="registered model name (configured in models.yaml)")
    promote.add_argument("--candidate", required=True, help="model version (7), @alias, or MLflow run id")
    promote.add_argument("--smoke-partition", help="s3:// prefix or folder of CSV/parquet to score (required)")
    promote.add_argument("--dry-run", action="store_true", help="check and smoke-score only; move nothing")
    rollback = sub.add_parser("rollback", help="restore the previous head (alias + pointer)")
    rollback.add_argument("--name", required=True, help="registered model name")
    for p in (promote, rollback):
        p.add_argument(
            "--config", help="models.yaml (default: $GREENLIGHT_MODELS_CONFIG or include/config/models.yaml)"
        )
        p.add_argument("--run-id", help="run id recorded in the pointer (default: cli__<UTC time>)")
        p.add_argument("--manifest-root", help="task manifest root to find consumer runs (rollback)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from greenlight.errors import ConfigError
    from greenlight.models import config as models_config
    from greenlight.models import promotion
    from greenlight.storage.s3 import make_client

    config = models_config.load(args.config)
    model = config.model(args.name)
    s3 = make_client(max_pool=8)
    ml = promotion.mlflow_client(os.environ.get("MLFLOW_TRACKING_URI"))
    store = promotion.pointer_store(config, s3)
    run_id = args.run_id or default_run_id()
    if args.model_command == "rollback":
        from greenlight.runcheck import ManifestRoot

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
