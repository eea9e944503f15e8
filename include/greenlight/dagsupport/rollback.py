"""Task bodies of the ``artefact_rollback`` DAG; each calls the same library code as the CLI."""

from __future__ import annotations

import logging
from typing import Any

from greenlight.dagsupport.runtime import s3_client, triaged
from greenlight.promotion.config import load_config
from greenlight.promotion.rollback import rollback

log = logging.getLogger("greenlight.tasks.rollback")


def _config():
    return load_config()


@triaged
def rollback_plan(manifest: str, only: list[str] | None, allow_partial: bool, force: bool = False) -> dict[str, Any]:
    """What a rollback would restore or delete (a dry run); refuses if a recorded version is gone,
    if a key changed after the promotion (unless ``force``), or if the manifest or a key is outside
    greenlight's manifest root and prod prefixes."""
    summary = rollback(
        manifest,
        s3_client(),
        config=_config(),
        only=only or None,
        dry_run=True,
        allow_partial=allow_partial,
        force=force,
    )
    for line in summary["plan_lines"]:
        log.info("rollback plan: %s", line)
    for key in summary["unrecoverable"]:
        log.warning("cannot restore: %s", key)
    for line in summary["forced"]:
        log.warning("force: will undo a later change: %s", line)
    return {k: v for k, v in summary.items() if k != "plan_lines"}


@triaged
def rollback_apply(
    manifest: str,
    only: list[str] | None,
    allow_partial: bool,
    *,
    run_id: str,
    force: bool = False,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Runbook rollback: hold each prod prefix's lease, restore every touched key to its recorded
    version, verify object by object, write a rollback manifest."""
    summary = rollback(
        manifest,
        s3_client(),
        config=_config(),
        only=only or None,
        allow_partial=allow_partial,
        force=force,
        wait=wait,
        run_id=run_id,
    )
    summary.pop("plan_lines", None)
    log.info(
        "rollback_done run_id=%s restored=%d deleted=%d unchanged=%d manifests=%s",
        run_id,
        summary["restored"],
        summary["deleted"],
        summary["unchanged"],
        summary.get("rollback_manifests"),
    )
    return summary
