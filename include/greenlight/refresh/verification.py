"""The refresh's "verify data" step (runbook 001): staging's tables hold the rows copied (and the
checksums where configured), and every bucket pair is equal object by object.

Used by the CLI's sequence (:func:`greenlight.refresh.run.refresh`, on its workers' staging
connections) and by the DAG's ``verify`` task (its own connections).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from greenlight.errors import VerificationError
from greenlight.refresh import catalog as pgcat
from greenlight.refresh import tables as pg

if TYPE_CHECKING:
    from greenlight.refresh.run import Refresh

log = logging.getLogger("greenlight.refresh")


def verify(
    r: Refresh, tables: list[dict[str, Any]], *, connections: list | None = None, recount: bool = True
) -> dict[str, Any]:
    """Runbook: "verify data" (books count matches prod): every synced table holds the rows copied
    (and, for tables in ``postgres.checksum``, the same checksum as prod's rows at the copy's
    snapshot); every bucket pair equal object by object. ``connections``: open staging
    connections to use side by side (the CLI's); otherwise up to ``postgres.workers`` are opened.

    ``recount=False`` (the CLI, when no migration ran since the copies committed): a table its
    copy emptied with ``TRUNCATE`` is not counted again. Its transaction held the table's
    ``ACCESS EXCLUSIVE`` lock from the TRUNCATE to the commit, so the rows it held at the commit
    are exactly the rows the COPY wrote (``rows_target``, already compared with the rows read from
    prod); a second ``count(*)`` would read the same number back (on the 1 M-row bench, ~0.1 s).
    Tables emptied by DELETE, tables with a checksum, and every table after a migration are
    counted (and checksummed) again."""
    out: dict[str, Any] = {"tables": [], "buckets": [], "problems": []}
    if r.dry_run:
        return out
    synced = [t for t in tables if t["status"] == "synced"]
    if synced:
        out["tables"], problems = verify_tables(r, synced, connections, recount)
        out["problems"] += problems
    if r.mappings():
        # local: refresh.buckets loads the promotion engine (~50 ms), needed only with bucket mappings
        from greenlight.refresh.buckets import verify as bucket_verify

        try:
            out["buckets"] = bucket_verify(r.engine())
        except VerificationError as exc:
            out["problems"].append(str(exc))
    for p in out["problems"]:
        log.error("verify: %s", p)
    return out


def verify_tables(r: Refresh, synced: list[dict[str, Any]], connections: list | None, recount: bool):
    known = {
        t["table"]: {"table": t["table"], "rows_now": t["rows_target"], "checksum_target": None}
        for t in synced
        if not recount and t.get("truncated") and t.get("checksum_source") is None and t.get("rows_target") is not None
    }
    counted = [t for t in synced if t["table"] not in known]
    found = list(known.values())
    if counted:
        found += count_now(r, counted, connections)
    now = {row["table"]: row for row in found}
    rows, problems = [], []
    for t in synced:
        got = now[t["table"]]
        ok = got["rows_now"] == t["rows_source"]
        row = {
            "table": t["table"],
            "rows_copied": t["rows_source"],
            "rows_now": got["rows_now"],
            "equal": ok,
            "counted_by": "COPY, at the commit" if t["table"] in known else "count(*)",
        }
        if not ok:
            problems.append(f"{t['table']}: copied {t['rows_source']} rows, staging now has {got['rows_now']}")
        if t.get("checksum_source") is not None:
            same = got["checksum_target"] == t["checksum_source"]
            row["checksum"] = {
                "columns": t["checksum_columns"],
                "source": t["checksum_source"],
                "target": got["checksum_target"],
                "equal": same,
            }
            if not same:
                problems.append(
                    f"{t['table']}: checksum of ({', '.join(t['checksum_columns'])}) differs: "
                    f"prod {t['checksum_source']}, staging {got['checksum_target']}"
                )
        rows.append(row)
    return rows, problems


def count_now(r: Refresh, tables: list[dict[str, Any]], connections: list | None) -> list[dict[str, Any]]:
    """Rows (and checksums) in staging now, on the connections given or up to ``postgres.workers``."""
    own = []
    if not connections:
        target = r.resolve(r.config.postgres.target_conn)
        n = max(1, min(r.config.postgres.workers, len(tables)))
        own = connections = [pgcat.connect(target.conninfo) for _ in range(n)]
    try:
        chunks = [tables[i :: len(connections)] for i in range(len(connections))]
        pairs = [(c, chunk) for c, chunk in zip(connections, chunks, strict=True) if chunk]
        if len(pairs) == 1:
            return pg.verify_counts(*pairs[0])
        with ThreadPoolExecutor(max_workers=len(pairs), thread_name_prefix="gl-verify") as pool:
            return [row for rows in pool.map(lambda cc: pg.verify_counts(*cc), pairs) for row in rows]
    finally:
        for conn in own:
            conn.close()
