"""Sharding of huge prefixes: one prefix's promotion split into key ranges that run in parallel.

A prefix holding more than ``shard_objects`` objects (source and destination together, per-prefix
setting, default 250,000) is split at plan time into ``ceil(n / shard_objects)`` **key ranges** of
about equal size, cut at keys of the plan's own listing. Range ``i`` holds the keys ``k`` with
``start_after < k <= end`` (``None``: open, compared in UTF-8 byte order), and the ranges
partition the key space whatever order a server lists keys in.

A shard lists its range with ``StartAfter`` and stops past ``end`` (it never lists the whole
prefix) only when that is safe: S3 lists in byte order, but SeaweedFS walks its filer's
directories (``a/x`` before ``a-b``, though '-' sorts below '/'), and its ``StartAfter='a-b'``
resumes that walk, skipping ``a/*``. So when the plan's listings did not come back in byte order,
or its keys hold a directory beside a name that continues with a character below '/' (or a key
that is also a directory), each range is marked unbounded (:attr:`KeyRange.bounded`) and its shard
lists the whole prefix and keeps its own keys: slower, never missing one. The plan logs which.

Each shard is promoted on its own (one mapped ``promote`` task in the DAG, one thread in the CLI):
it re-lists its range, checks it against the run's QA snapshot, and **copies only**, recording
its own manifest part (``promotions/<run>/<prod prefix>.shard-0002-of-0004.json``). Deletes run
only after every shard copied (:func:`delete_after_copies`, in the DAG's ``verify`` task), each
recorded in the manifest part of its range; then the whole prefix is verified (the union).
A rollback reads every part from the run index, so it restores all shards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from greenlight.errors import QAChangedError, SyncFailedError
from greenlight.promotion.config import PrefixConfig
from greenlight.promotion.engine import Engine
from greenlight.promotion.plan import PrefixPlan, contract_record, diff
from greenlight.storage.s3 import S3Uri, list_pages, list_prefix, object_info

log = logging.getLogger("greenlight.promotion.shards")


@dataclass(frozen=True)
class KeyRange:
    """Keys ``k`` (relative to the prefix) with ``start_after < k <= end``; ``None`` is open.

    ``bounded``: the range may be listed with ``StartAfter`` and an early stop (the server lists
    this prefix in byte order); False: list the whole prefix and keep the range's keys."""

    index: int
    count: int
    start_after: str | None = None
    end: str | None = None
    bounded: bool = True

    def contains(self, rel: str) -> bool:
        return (self.start_after is None or rel > self.start_after) and (self.end is None or rel <= self.end)

    @property
    def label(self) -> str:
        return f"shard {self.index + 1}/{self.count}"

    @property
    def suffix(self) -> str:
        return f"shard-{self.index + 1:04d}-of-{self.count:04d}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRange:
        return cls(
            int(data["index"]),
            int(data["count"]),
            data.get("start_after"),
            data.get("end"),
            bool(data.get("bounded", True)),
        )


WHOLE = KeyRange(0, 1)


def split_ranges(keys: Iterable[str], shard_objects: int, *, bounded: bool = True) -> list[KeyRange]:
    """Cut the sorted ``keys`` into ``ceil(n / shard_objects)`` ranges of about equal size.

    ``n <= shard_objects`` gives one open range (no sharding). Boundaries are keys of the listing
    itself, so a key added later falls in exactly one range (the ranges cover everything).
    ``bounded``: see :class:`KeyRange`."""
    if shard_objects < 1:
        raise ValueError(f"shard_objects must be at least 1, got {shard_objects}")
    ordered = sorted(dict.fromkeys(keys))
    n = len(ordered)
    if n <= shard_objects:
        return [WHOLE]
    count = math.ceil(n / shard_objects)
    size = math.ceil(n / count)
    ends = [ordered[min(n, (i + 1) * size) - 1] for i in range(count - 1)]
    ends = list(dict.fromkeys(ends))  # never two ranges with the same end
    count = len(ends) + 1
    bounds = [None, *ends, None]
    return [KeyRange(i, count, bounds[i], bounds[i + 1], bounded) for i in range(count)]


def plan_keys(planned: PrefixPlan) -> set[str]:
    """Every key of a plan's two listings: the QA snapshot plus the destination-only keys."""
    return set(planned.snapshot) | {d.rel for d in planned.deletes}


def order_hazard(keys: Iterable[str]) -> str | None:
    """Why these keys could be listed out of byte order by a server that walks directories (so
    ``StartAfter`` could skip some), or None when byte order and any directory walk agree on them.

    Two shapes: a directory beside a name that continues with a character below '/' (``a/x`` and
    ``a-b``, ``a.c``, ``a b``), and a key that is also a directory (``a`` and ``a/x``: SeaweedFS's
    ``StartAfter='a'`` skips the directory ``a/``). In byte order either shows up as two neighbours
    ``a < b`` whose first difference is a '/' in ``b``, so one pass over the sorted keys finds it."""
    ordered = sorted(dict.fromkeys(keys))  # linear when the caller sorted them already
    for a, b in zip(ordered, ordered[1:], strict=False):
        cut = b.rfind("/") + 1
        if cut == 0 or a.startswith(b[:cut]):
            continue  # they first differ after b's last '/' (the usual neighbours: one directory)
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        if b[at] != "/":
            continue
        if at == len(a):
            return f"{a!r} is an object and a directory ({b!r})"
        return f"{b!r} and {a!r}: byte order lists {a!r} first, a directory walk second"
    return None


def ranges_for(planned: PrefixPlan, *, listed: bool = True) -> list[KeyRange]:
    """The shards of a planned prefix (one open range below its ``shard_objects``).

    Logs once whether its shards list their own ranges (``StartAfter``) or the whole prefix, and
    why; not with ``listed=False`` (the CLI cuts its shards from its in-memory plan: no listing)."""
    keys = sorted(plan_keys(planned))  # sorted once: both below go through it in linear time
    limit = planned.prefix.settings.shard_objects
    if len(keys) <= limit:
        return [WHOLE]
    why = order_hazard(keys) if planned.byte_ordered else "the server listed it out of byte order"
    ranges = split_ranges(keys, limit, bounded=why is None)
    log.info(
        "plan %s: %d objects, above shard_objects=%d: %d shards",
        planned.prefix.label,
        len(keys),
        limit,
        len(ranges),
    )
    if listed and why is None:
        log.info(
            "plan %s: each shard lists its own key range (StartAfter, the keys are in byte order)", planned.prefix.label
        )
    elif listed:
        log.warning(
            "plan %s: each shard lists the whole prefix and keeps its own keys (a listing from StartAfter "
            "could skip keys): %s",
            planned.prefix.label,
            why,
        )
    return ranges


def list_range(client, uri: S3Uri, rng: KeyRange, *, pool: ThreadPoolExecutor | None = None) -> dict[str, Any]:
    """The objects of one key range under ``uri``: from ``StartAfter``, stopping past ``end`` when
    the range is ``bounded``; else the whole prefix's listing (sub-prefixes in ``pool``), filtered."""
    if not rng.bounded:
        return {rel: info for rel, info in list_prefix(client, uri, pool=pool).items() if rng.contains(rel)}
    out: dict[str, Any] = {}
    start = uri.join(rng.start_after) if rng.start_after is not None else None
    for page in list_pages(client, uri.bucket, uri.prefix, start_after=start):
        for obj in page.get("Contents", ()):
            info = object_info(obj, uri.prefix)
            if rng.end is not None and info.rel > rng.end:
                return out
            if rng.contains(info.rel):  # StartAfter is exclusive, but some servers echo the key itself
                out[info.rel] = info
    return out


def plan_range(engine: Engine, prefix: PrefixConfig, rng: KeyRange) -> PrefixPlan:
    """Plan one shard from listings of its range (both sides in parallel; an unbounded range's
    sub-prefixes in parallel too, as the whole-prefix plan lists them)."""
    with (
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="gl-shard-list") as sides,
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="gl-shard-sub") as subs,
    ):
        pool = None if rng.bounded else subs
        src = sides.submit(list_range, engine.data, prefix.source, rng, pool=pool)
        dst = sides.submit(list_range, engine.data, prefix.destination, rng, pool=pool)
        return diff(src.result(), dst.result(), prefix)


def part_path(engine: Engine, run_id: str, prefix: PrefixConfig, rng: KeyRange) -> str:
    """The manifest part of one shard, next to where the prefix's single manifest would be."""
    return engine.manifest_path(run_id, prefix).removesuffix(".json") + f".{rng.suffix}.json"


def within(planned: PrefixPlan, rng: KeyRange) -> PrefixPlan:
    """The part of a whole-prefix plan inside one range (the CLI shards its in-memory plan)."""
    part = PrefixPlan(prefix=planned.prefix, marker=planned.marker)
    part.copies = [(s, d) for s, d in planned.copies if rng.contains(s.rel)]
    part.deletes = [d for d in planned.deletes if rng.contains(d.rel)]
    part.snapshot = {k: v for k, v in planned.snapshot.items() if rng.contains(k)}
    part.source_count = len(part.snapshot)
    part.unchanged = part.source_count - len(part.copies)
    part.dest_count = planned.dest_count
    part.dest_newest = planned.dest_newest
    return part


def _row(result, rng: KeyRange) -> dict[str, Any]:
    return {**result.as_dict(), "shard": rng.as_dict()}


def copy_range(engine: Engine, part: PrefixPlan, rng: KeyRange, run_id: str) -> dict[str, Any]:
    """Copy one shard (never deletes): its manifest part records every overwrite first.

    Raises like :meth:`Engine.execute` (``SyncFailedError`` retryable, ``QAChangedError`` not)."""
    copies_only = PrefixPlan(
        prefix=part.prefix,
        copies=part.copies,
        unchanged=part.unchanged,
        source_count=part.source_count,
        dest_count=part.dest_count,
        snapshot=part.snapshot,
    )
    record = {**contract_record(part.prefix), "shard": rng.as_dict()}
    rel = part_path(engine, run_id, part.prefix, rng)
    try:
        result = engine.execute(copies_only, run_id, record=record, manifest_rel=rel, checked=True)
    except (SyncFailedError, QAChangedError) as exc:
        if exc.result is not None and exc.result.manifest:
            # The run index names the failed part at once: a rollback of the failed run is exact.
            failed = {**_row(exc.result, rng), "status": "failed", "errors": [str(exc)]}
            engine.write_run_index(run_id, [failed], status="failed")
        raise
    row = _row(result, rng)
    if row["manifest"] is None and engine.manifests is not None and engine.manifests.read(rel) is not None:
        row["manifest"] = engine.manifests.uri(rel)  # a rerun with nothing left to copy
    if row["manifest"]:
        engine.write_run_index(run_id, [row], status="in_progress")
    log.info(
        "%s %s: copied=%d unchanged=%d manifest=%s",
        part.prefix.label,
        rng.label,
        row["copied"],
        row["unchanged"],
        row["manifest"],
    )
    return row


def promote_range(engine: Engine, prefix: PrefixConfig, rng: KeyRange, run_id: str) -> dict[str, Any]:
    """One shard of a DAG run: list the range, check it against the gated snapshot, copy."""
    part = plan_range(engine, prefix, rng)
    engine.check_snapshot(part, run_id, within=rng.contains)
    return copy_range(engine, part, rng, run_id)


def delete_after_copies(
    engine: Engine, planned: PrefixPlan, ranges: list[KeyRange], run_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """After every shard copied: delete what QA no longer has, each range into its manifest part.

    ``planned`` is a whole-prefix plan made *after* the copies (the DAG re-plans; the CLI passes
    its plan): a copy still missing refuses every delete (``SyncFailedError``, nothing deleted).
    Returns ``rows`` (one per shard) with their delete counts and manifests filled in."""
    p = planned.prefix
    if planned.copies:
        missing = [s.rel for s, _ in planned.copies][:20]
        raise SyncFailedError(
            f"{p.label}: {len(planned.copies)} objects are not copied yet (first: {', '.join(missing)}); "
            "deletes run only after every shard copied: nothing was deleted"
        )
    engine.check(planned)  # the whole prefix's rules (delete limit, empty QA), once
    by_index = {int(r["shard"]["index"]): dict(r) for r in rows}
    for rng in ranges:
        row = by_index.setdefault(rng.index, {"prefix": p.label, "destination": str(p.destination), "shard": rng})
        row["shard"] = rng.as_dict()
        deletes = [d for d in planned.deletes if rng.contains(d.rel)]
        if not deletes:
            continue
        part = PrefixPlan(prefix=p, deletes=deletes, dest_count=planned.dest_count, source_count=planned.source_count)
        rel = part_path(engine, run_id, p, rng)
        record = {**contract_record(p), "shard": rng.as_dict()}
        result = engine.execute(part, run_id, record=record, manifest_rel=rel, checked=True)
        row["deleted"] = int(row.get("deleted") or 0) + result.deleted
        row["manifest"] = row.get("manifest") or result.manifest
        log.info("%s %s: deleted=%d after every shard copied", p.label, rng.label, result.deleted)
    return [by_index[i] for i in sorted(by_index)]


def promote_sharded(
    engine: Engine, planned: PrefixPlan, ranges: list[KeyRange], run_id: str, *, parallel: int = 4
) -> list[dict[str, Any]]:
    """The CLI's sharded promotion of one prefix: every shard's copies (threads), then the deletes."""
    parts = [(within(planned, rng), rng) for rng in ranges]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(parts))), thread_name_prefix="gl-shard") as pool:
        futures = [pool.submit(copy_range, engine, part, rng, run_id) for part, rng in parts]
        rows, errors = [], []
        for fut in futures:
            try:
                rows.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - every shard finishes; the first error is raised
                errors.append(exc)
    if errors:
        raise errors[0]
    after = PrefixPlan(
        prefix=planned.prefix,
        deletes=planned.deletes,
        dest_count=planned.dest_count,
        source_count=planned.source_count,
        marker=planned.marker,
    )
    return delete_after_copies(engine, after, ranges, run_id, rows)


def merged(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One prefix's shard rows summed into the row an unsharded prefix would have (for events)."""
    first = rows[0]
    out = {k: first.get(k) for k in ("prefix", "destination")}
    for key in ("copied", "deleted", "unchanged", "objects_seen", "bytes_copied", "failed"):
        out[key] = sum(int(r.get(key) or 0) for r in rows)
    out["duration_s"] = max(float(r.get("duration_s") or 0) for r in rows)
    out["manifests"] = [r["manifest"] for r in rows if r.get("manifest")]
    out["manifest"] = out["manifests"][0] if out["manifests"] else None
    out["shards"] = len(rows)
    return out
