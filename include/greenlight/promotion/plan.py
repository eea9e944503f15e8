"""What a promotion of one prefix would do and did: the plan, the result, and their reports.

Owns the decision rule (:func:`same_object`: size + ETag from the listings, never modification
time) and :func:`diff`, which turns one listing of each side into a :class:`PrefixPlan`; the
:class:`PrefixResult` of carrying a plan out; and the summary helpers the CLI and the DAG share
(:func:`contract_record`, :func:`prefix_line`, :func:`summarize`). No S3 calls here: listing,
guarding and executing a plan are :mod:`greenlight.promotion.engine`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from greenlight.promotion.config import PrefixConfig
from greenlight.storage.s3 import ObjectInfo, normalize_etag


@dataclass
class PrefixPlan:
    """What a promotion of one prefix would do, from one listing of each side."""

    prefix: PrefixConfig
    copies: list[tuple[ObjectInfo, ObjectInfo | None]] = field(default_factory=list)  # (source, dest before)
    deletes: list[ObjectInfo] = field(default_factory=list)
    unchanged: int = 0
    source_count: int = 0
    dest_count: int = 0
    dest_newest: datetime | None = None
    source_newest: ObjectInfo | None = None
    marker: ObjectInfo | None = None  # the QA sign-off marker, when configured (never promoted)
    #: rel -> (size, etag) of every source object: the snapshot the gates validate
    snapshot: dict[str, tuple[int, str]] = field(default_factory=dict)
    source_bytes: int = 0
    dest_bytes: int = 0
    #: both sides' listings came back in UTF-8 byte order (S3's); False on a server that lists in
    #: another order (SeaweedFS walks its directories): a shard must not list its range by StartAfter
    byte_ordered: bool = True

    @property
    def bytes_to_copy(self) -> int:
        return sum(src.size for src, _ in self.copies)

    def summary(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix.source),
            "destination": str(self.prefix.destination),
            "to_copy": len(self.copies),
            "to_overwrite": sum(1 for _, dst in self.copies if dst is not None),
            "to_delete": len(self.deletes),
            "unchanged": self.unchanged,
            "objects_seen": self.source_count,
            "dest_objects": self.dest_count,
            "bytes_to_copy": self.bytes_to_copy,
        }

    def verified(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix.label,
            "destination": str(self.prefix.destination),
            "objects": self.source_count,
            "equal": True,
        }

    def lines(self) -> list[str]:
        """The per-object plan, one readable line per action."""
        src, dst = self.prefix.source, self.prefix.destination
        out = []
        for s, d in self.copies:
            verb = "overwrite" if d is not None else "copy"
            out.append(
                f"{verb}: s3://{src.bucket}/{src.join(s.rel)} -> s3://{dst.bucket}/{dst.join(s.rel)} ({s.size} B)"
            )
        for d in self.deletes:
            out.append(f"delete: s3://{dst.bucket}/{dst.join(d.rel)} ({d.size} B)")
        return out


@dataclass
class PrefixResult:
    """What a promotion of one prefix did (or, in a dry run, would do)."""

    prefix: str
    destination: str
    copied: int = 0
    deleted: int = 0
    unchanged: int = 0
    objects_seen: int = 0
    bytes_copied: int = 0
    failed: int = 0
    duration_s: float = 0.0
    manifest: str | None = None
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_object(src: ObjectInfo, dst: ObjectInfo) -> bool:
    """Equal content as far as the listings can prove it: same size and same ETag."""
    return src.size == dst.size and normalize_etag(src.etag) == normalize_etag(dst.etag)


def diff(source: dict[str, ObjectInfo], dest: dict[str, ObjectInfo], prefix: PrefixConfig) -> PrefixPlan:
    """The plan that makes ``dest`` equal ``source`` (both keyed by the path under the prefix)."""
    marker_key = prefix.settings.signoff_marker
    marker = None
    if marker_key:
        # The sign-off marker is QA process state, not an artefact: never copied, never deleted.
        source = dict(source)
        dest = {k: v for k, v in dest.items() if k != marker_key}
        marker = source.pop(marker_key, None)
    plan = PrefixPlan(prefix=prefix, source_count=len(source), dest_count=len(dest), marker=marker)
    plan.snapshot = {rel: (o.size, normalize_etag(o.etag)) for rel, o in source.items()}
    plan.source_bytes = sum(o.size for o in source.values())
    plan.dest_bytes = sum(o.size for o in dest.values())
    if source:
        plan.source_newest = max(source.values(), key=lambda o: o.last_modified or datetime.min.replace(tzinfo=UTC))
    for rel in sorted(source):
        src = source[rel]
        dst = dest.get(rel)
        if dst is not None and same_object(src, dst):
            plan.unchanged += 1
        else:
            plan.copies.append((src, dst))
    plan.deletes = [dest[rel] for rel in sorted(dest) if rel not in source]
    stamps = [d.last_modified for d in dest.values() if d.last_modified is not None]
    plan.dest_newest = max(stamps) if stamps else None
    return plan


def contract_record(prefix: PrefixConfig) -> dict[str, Any]:
    """The contract a prefix is promoted under, as the manifest and the current pointer record it."""
    if not prefix.contract:
        return {"contract": None, "contract_version": None}
    # local: greenlight.contracts (pydantic contract models) costs ~0.4 s; only contract prefixes need it
    from greenlight.contracts import load_contract

    contract = load_contract(prefix.contract)
    return {"contract": contract.name, "contract_version": contract.version}


def prefix_line(row: dict[str, Any]) -> str:
    """The per-prefix stats line the CLI and the DAG both log."""
    return (
        f"prefix {row['prefix']}: copied={row['copied']} deleted={row['deleted']} unchanged={row['unchanged']} "
        f"objects_seen={row['objects_seen']} bytes_copied={row['bytes_copied']} duration={row['duration_s']:.2f}s"
        + (f" manifest={row['manifest']}" if row.get("manifest") else "")
    )


def summarize(
    results: list[PrefixResult] | list[dict[str, Any]], *, run_id: str, dry_run: bool, duration: float
) -> dict[str, Any]:
    """The run's totals over its prefixes' results, as the CLI prints and the summary task returns."""
    rows = [r.as_dict() if isinstance(r, PrefixResult) else r for r in results]
    total = {
        "run_id": run_id,
        "dry_run": dry_run,
        "prefixes": len(rows),
        "copied": sum(r["copied"] for r in rows),
        "deleted": sum(r["deleted"] for r in rows),
        "unchanged": sum(r["unchanged"] for r in rows),
        "objects_seen": sum(r["objects_seen"] for r in rows),
        "bytes_copied": sum(r["bytes_copied"] for r in rows),
        "failed": sum(r.get("failed", 0) for r in rows),
        "duration_s": round(duration, 3),
        "manifests": [r["manifest"] for r in rows if r.get("manifest")],
        "per_prefix": rows,
    }
    total["manifest"] = total["manifests"][0] if len(total["manifests"]) == 1 else (total["manifests"] or None)
    return total
