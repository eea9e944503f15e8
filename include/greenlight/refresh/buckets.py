"""Bucket pairs of the staging refresh, synced by the promotion engine (:mod:`greenlight.promotion.engine`).

No second sync implementation: each ``{source, target}`` mapping becomes one of the engine's
prefixes, so the refresh gets the same size + ETag planner, server-side parallel copies, delete
guard (``max_delete_fraction`` / ``max_delete_count``), empty-source refusal and re-listing
verification. What differs is the destination rule: the promotion's ``qa-`` → ``prod-`` naming
rule lives in its config loader, so the refresh builds the engine's config directly and hands the
engine its own rule through the ``guard`` hook: a target bucket must not be a source bucket (the
engine's own guard) and must not be named like prod.
"""

from __future__ import annotations

from typing import Any

from greenlight.errors import RefusedError
from greenlight.promotion.config import PrefixConfig, PrefixSettings, PromotionConfig
from greenlight.refresh.config import BucketMapping, RefreshConfig, looks_like_prod


def staging_guard(bucket: str) -> None:
    """The refresh's destination rule, checked by the engine before every write."""
    if looks_like_prod(bucket):
        raise RefusedError(f"s3://{bucket}/", "the bucket is named like prod; a staging refresh never writes to prod")


def engine_config(config: RefreshConfig, mappings: list[BucketMapping]) -> PromotionConfig:
    prefixes = tuple(
        PrefixConfig(
            source=m.source_uri,
            destination=m.target_uri,
            settings=PrefixSettings(
                allow_empty=False,  # an empty prod read never empties staging
                allow_unversioned=True,  # staging is rebuilt from prod; it need not be rolled back
                max_delete_fraction=m.max_delete_fraction,
                max_delete_count=m.max_delete_count,
                stale_after_hours=None,
            ),
            name=m.name,
        )
        for m in mappings
    )
    # manifest_uri=None: the refresh writes its own run manifest (greenlight.refresh.run).
    return PromotionConfig(prefixes, manifest_uri=None, workers=config.workers, path=config.path)


def make_engine(config: RefreshConfig, mappings: list[BucketMapping], client, fast=None):
    # local: the promotion engine (~50 ms) is only needed when a bucket mapping runs
    from greenlight.promotion.engine import Engine

    return Engine(engine_config(config, mappings), client, fast=fast, guard=staging_guard)


def _row(plan) -> dict[str, Any]:
    return {
        "bucket": plan.prefix.name or str(plan.prefix.source),
        "source": str(plan.prefix.source),
        "target": str(plan.prefix.destination),
        "source_objects": plan.source_count,
        "source_bytes": plan.source_bytes,
        "target_objects": plan.dest_count,
        "target_bytes": plan.dest_bytes,
        "to_copy": len(plan.copies),
        "to_delete": len(plan.deletes),
        "bytes_to_copy": plan.bytes_to_copy,
    }


def preflight(engine) -> list[dict[str, Any]]:
    """Both buckets of every mapping answer; every plan passes the safety rules (refusals raise)."""
    engine.preflight()
    rows = []
    for plan in engine.plan_all():
        engine.check(plan)
        rows.append(_row(plan))
    return rows


def sync(engine, run_id: str, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Plan, check and execute every mapping (the engine's own rules); returns one row per mapping."""
    rows = []
    for plan in engine.plan_all():
        engine.check(plan)
        row = _row(plan)
        result = engine.execute(plan, run_id, dry_run=dry_run)
        row.update(
            objects_copied=result.copied,
            objects_deleted=result.deleted,
            bytes_copied=result.bytes_copied,
            unchanged=result.unchanged,
            status="planned" if dry_run else "synced",
        )
        rows.append(row)
    return rows


def verify(engine) -> list[dict[str, Any]]:
    """Re-list both sides of every mapping: object counts, sizes and ETags equal (raises otherwise)."""
    return [engine.verify(p) for p in engine.config.prefixes]
