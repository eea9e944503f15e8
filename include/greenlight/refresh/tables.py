"""Copy PostgreSQL tables from prod to staging: type-correct, streamed, one transaction per FK group.

For every table the columns of both sides are compared first (staging may be migrated ahead of
prod): the rows are read with a source-side ``SELECT`` that casts each column to the staging type
(:mod:`greenlight.refresh.casts`) and applies the ``mask:`` rules, streamed with
``COPY (SELECT …) TO STDOUT`` straight into ``COPY t (cols) FROM STDIN`` (no Python row objects),
binary when every column type is built in, text otherwise.

Tables linked by foreign keys form a *group*; a group is copied in **one target transaction**
(emptied, then copied parents first) from **one source snapshot** (``REPEATABLE READ, READ ONLY``),
so children never reference parents from another moment and a failure anywhere in the group
leaves every old staging row in place. A table emptied by ``TRUNCATE`` is loaded with ``FREEZE``
while its indexes and the group's own foreign keys are set aside, then rebuilt and validated in
the same transaction (:mod:`greenlight.refresh.indexes`). Sequences and identities are reset to
``max(col)`` before the commit. A source table that reads 0 rows while staging (or the previous run) had rows
fails instead of emptying staging, unless the table is in ``allow_empty``.

The source is opened with ``default_transaction_read_only=on``: nothing here can write to prod.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from greenlight.errors import RefreshError
from greenlight.refresh import indexes, psqlreader, relay
from greenlight.refresh.casts import NoSafeCastError, cast_expression, mask_expression, quote_ident
from greenlight.refresh.catalog import Column, connect, count_rows, qualified

log = logging.getLogger("greenlight.refresh.tables")


class TableCopyError(RefreshError):
    """One table (and its FK group) could not be copied; staging kept its old rows (exit 1)."""

    kind = "table"

    @property
    def table(self) -> str:
        return self.where


# ---------------------------------------------------------------------------------------- planning
@dataclass
class TablePlan:
    """How one table is read from prod and written to staging."""

    table: str
    columns: list[str] = field(default_factory=list)  # staging columns written, in order
    select: list[str] = field(default_factory=list)  # the matching source expressions
    casts: dict[str, str] = field(default_factory=dict)  # column -> "numeric -> jsonb (scalar->jsonb)"
    masked: dict[str, str] = field(default_factory=dict)  # column -> rule
    target_only: list[str] = field(default_factory=list)  # get their defaults
    source_only: list[str] = field(default_factory=list)  # not copied: reported
    binary: bool = True
    error: str | None = None
    expressions: list[str] = field(default_factory=list)  # ``select`` without the aliases
    kind: str = "r"  # staging relkind: r (table) or p (partitioned)
    source_kind: str = "r"  # prod relkind (a partitioned table can only be read by COPY over a query)
    size: int = 0  # estimated prod bytes (scheduling: largest groups first)
    checksum_columns: list[str] = field(default_factory=list)  # verified by checksum after the copy
    checksum_skipped: list[str] = field(default_factory=list)  # asked for but masked: not comparable

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TablePlan:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})

    def checksum_source_sql(self) -> str:
        """The checksum of the rows as staging will hold them: computed over the casting expressions."""
        exprs = [self.expressions[self.columns.index(c)] for c in self.checksum_columns]
        return checksum_sql(exprs, qualified(self.table))

    def checksum_target_sql(self) -> str:
        return checksum_sql([quote_ident(c) for c in self.checksum_columns], qualified(self.table))

    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.select)} FROM {qualified(self.table)}"  # noqa: S608

    def copy_source(self) -> str:
        """What ``COPY … TO STDOUT`` reads on prod: ``table (cols)`` or ``(SELECT …)``."""
        if not self.casts and not self.masked and self.source_kind != "p":
            # Nothing to convert: COPY the columns directly (cheaper than COPY over a query).
            return f"{qualified(self.table)} ({', '.join(quote_ident(c) for c in self.columns)})"
        return f"({self.select_sql()})"

    def copy_out_sql(self) -> str:
        return f"COPY {self.copy_source()} TO STDOUT" + (" (FORMAT BINARY)" if self.binary else "")

    def copy_in_sql(self, *, freeze: bool = False) -> str:
        """``freeze``: the table was emptied by ``TRUNCATE`` in this transaction (see :func:`copy_group`)."""
        cols = ", ".join(quote_ident(c) for c in self.columns)
        options = [o for o, on in (("FORMAT BINARY", self.binary), ("FREEZE", freeze)) if on]
        return f"COPY {qualified(self.table)} ({cols}) FROM STDIN" + (f" ({', '.join(options)})" if options else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def checksum_sql(expressions: list[str], table_sql: str) -> str:
    """Row count and an order-independent checksum of some columns: the sum over all rows of the
    first 64 bits of ``md5(ROW(cols)::text)``. The same text on both sides needs the same session
    settings (:data:`SESSION_SETTINGS`) and the same types (the source side reads through the casts)."""
    row = f"ROW({', '.join(expressions)})::text"
    return (
        f"SELECT count(*), coalesce(sum(('x' || left(md5({row}), 16))::bit(64)::bigint), 0)::text "  # noqa: S608
        f"FROM {table_sql}"
    )


def plan_table(
    source_cols: list[Column],
    target_cols: list[Column],
    table: str,
    *,
    masks: dict[str, str] | None = None,
    copy_format: str = "auto",
    checksum: list[str] | None = None,
) -> TablePlan:
    """Compare the columns of both sides and build the source SELECT; problems go to ``plan.error``.

    ``checksum``: columns to verify by checksum after the copy (``[]`` = every copied column,
    ``None`` = no checksum); masked columns are left out of it (their staging values differ by design).
    """
    plan = TablePlan(table)
    masks = masks or {}
    if not source_cols:
        plan.error = "not found in prod"
        return plan
    if not target_cols:
        plan.error = "not found in staging (is staging migrated?)"
        return plan
    src = {c.name: c for c in source_cols}
    writable = [c for c in target_cols if not c.generated]
    binary = True
    for col in writable:
        s = src.get(col.name)
        if s is None:
            plan.target_only.append(col.name)
            if col.not_null and not col.has_default:
                plan.error = (
                    f"staging column {col.name} ({col.type}) is NOT NULL without a default and does not exist in prod"
                )
                return plan
            continue
        quoted = quote_ident(col.name)
        if col.name in masks:
            expr = mask_expression(masks[col.name], quoted, col.type)
            plan.masked[col.name] = masks[col.name]
        else:
            try:
                expr, rule = cast_expression(col.name, s.type, col.type, table=table, quoted=quoted)
            except NoSafeCastError as exc:
                plan.error = str(exc)
                return plan
            if rule != "same":
                plan.casts[col.name] = f"{s.type} -> {col.type} ({rule})"
        plan.columns.append(col.name)
        plan.expressions.append(expr)
        plan.select.append(f"{expr} AS {quoted}")
        binary = binary and col.builtin
    plan.source_only = [c.name for c in source_cols if c.name not in {t.name for t in target_cols}]
    unknown = sorted(set(masks) - set(plan.columns) - set(plan.target_only))
    if unknown:
        plan.error = f"mask names column(s) {', '.join(unknown)} that staging does not have"
        return plan
    if not plan.columns:
        plan.error = "no column in common between prod and staging"
    plan.binary = {"auto": binary, "binary": True, "text": False}[copy_format]
    if checksum is not None and not plan.error:
        wanted = checksum or plan.columns
        missing = [c for c in wanted if c not in plan.columns]
        if missing:
            plan.error = f"checksum names column(s) {', '.join(missing)} that are not copied from prod"
            return plan
        plan.checksum_skipped = [c for c in wanted if c in plan.masked]
        plan.checksum_columns = [c for c in wanted if c not in plan.masked]
    return plan


def table_groups(tables: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Connected components of the FK graph over ``tables``, each ordered parents first.

    Edges to tables outside the list still join nothing (those tables are not copied) but cycles
    among copied tables keep a stable order (constraints are deferred where they allow it).
    """
    wanted = set(tables)
    parent = {t: t for t in tables}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for child, par in edges:
        if child in wanted and par in wanted:
            parent[find(child)] = find(par)
    comps: dict[str, list[str]] = defaultdict(list)
    for t in sorted(tables):
        comps[find(t)].append(t)
    groups = []
    for members in comps.values():
        deps = {t: {p for c, p in edges if c == t and p in members and p != t} for t in members}
        ordered: list[str] = []
        remaining = sorted(members)
        while remaining:
            ready = [t for t in remaining if deps[t] <= set(ordered)] or [remaining[0]]  # cycle: break it
            for t in ready:
                ordered.append(t)
                remaining.remove(t)
        groups.append(ordered)
    return sorted(groups, key=lambda g: g[0])


# ---------------------------------------------------------------------------------------- copying
@dataclass
class TableResult:
    table: str
    status: str  # synced | skipped | failed | planned (dry run)
    rows_source: int | None = None
    rows_target: int | None = None
    reason: str = ""
    rows_target_before: int | None = None
    casts: dict[str, str] = field(default_factory=dict)
    masked: dict[str, str] = field(default_factory=dict)
    source_only: list[str] = field(default_factory=list)
    target_only: list[str] = field(default_factory=list)
    format: str | None = None
    group: str = ""
    duration_s: float = 0.0
    bytes: int = 0
    checksum_columns: list[str] = field(default_factory=list)
    checksum_source: str | None = None  # prod, same snapshot as the copy (see TablePlan.checksum_source_sql)
    indexes_rebuilt: list[str] = field(default_factory=list)  # set aside during the COPY (refresh.indexes)
    truncated: bool = False  # emptied by TRUNCATE: locked until the commit, so it then held rows_target rows
    foreign_keys_added_back: list[str] = field(default_factory=list)  # dropped during the group's COPY
    reader: str | None = None  # what read prod: psql (a child process) or python (see copy_group)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sequences(conn, table: str) -> list[tuple[str, str]]:
    """(column, sequence) for every serial / identity column of a staging table."""
    rows = conn.execute(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (qualified(table), qualified(table)),
    ).fetchall()
    return [(r[0], r[1]) for r in rows if r[1]]


def reset_sequences(conn, table: str) -> dict[str, int | None]:
    """Set each sequence of the table so the next value follows ``max(col)`` (or restarts when empty)."""
    out: dict[str, int | None] = {}
    for column, seq in _sequences(conn, table):
        top = conn.execute(f"SELECT max({quote_ident(column)}) FROM {qualified(table)}").fetchone()[0]  # noqa: S608
        if top is None:
            conn.execute(
                "SELECT setval(%s, (SELECT seqstart FROM pg_sequence WHERE seqrelid = %s::regclass), false)", (seq, seq)
            )
        else:
            conn.execute("SELECT setval(%s, %s, true)", (seq, int(top)))
        out[column] = None if top is None else int(top)
    return out


class ConnPair:
    """One prod (read-only) and one staging connection, reused for several FK groups by one worker."""

    def __init__(self, source_uri: str, target_uri: str):
        self.source_uri, self.target_uri = source_uri, target_uri
        self.src = self.dst = None

    def open(self):
        if self.src is None or self.src.closed:
            self.src = connect(self.source_uri, read_only=True)
        if self.dst is None or self.dst.closed:
            self.dst = connect(self.target_uri)
        return self.src, self.dst

    def close(self) -> None:
        for conn in (self.src, self.dst):
            if conn is not None:
                conn.close()
        self.src = self.dst = None


_SNAPSHOT = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$", re.IGNORECASE)


def export_snapshot(source_uri: str, *, conn=None):
    """Open a read-only REPEATABLE READ transaction on prod and export its snapshot.

    Returns (connection, snapshot id): keep the connection open until every worker started its
    copy transaction with ``SET TRANSACTION SNAPSHOT``; then all tables are read as of one moment.
    ``conn``: an open, idle read-only prod connection to use (the CLI's preflight one) instead
    of opening one.
    """
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    if conn is None:
        conn = connect(source_uri, read_only=True, application="greenlight-refresh-snapshot")
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        return conn, conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    except BaseException:
        conn.close()
        raise


def copy_group(
    source_uri: str,
    target_uri: str,
    plans: list[TablePlan],
    *,
    allow_empty: set[str] | frozenset[str] = frozenset(),
    previous_rows: dict[str, int] | None = None,
    outside_children: dict[str, list[str]] | None = None,
    snapshot: str | None = None,
    pair: ConnPair | None = None,
    serial_index_builds: bool = False,
    psql: str | None = None,
) -> list[TableResult]:
    """Copy one FK group (``plans`` ordered parents first) in one staging transaction.

    Prod is read in one ``REPEATABLE READ, READ ONLY`` transaction: its own snapshot, or the
    exported ``snapshot`` shared by every group of the run. ``pair``: open connections to reuse
    (a worker of the CLI); otherwise two are opened and closed here. ``serial_index_builds``: other
    groups are being copied at the same time, so indexes rebuilt here use no parallel workers.
    ``psql``: the psql binary that reads prod (:mod:`greenlight.refresh.psqlreader`), in this
    group's snapshot; None, or a connection psql cannot be given, reads in Python
    (:func:`greenlight.refresh.relay.stream`). Returns one result per table;
    when any table fails, every table of the group is reported failed and staging keeps all its
    old rows (the transaction is rolled back).
    """
    group = plans[0].table if plans else ""
    results = {p.table: TableResult(p.table, "failed", group=group) for p in plans}
    for p in plans:
        r = results[p.table]
        r.casts, r.masked, r.source_only, r.target_only = p.casts, p.masked, p.source_only, p.target_only
        r.format = "binary" if p.binary else "text"
        r.checksum_columns = list(p.checksum_columns)
    bad = [p for p in plans if p.error]
    if bad:
        for p in plans:
            results[p.table].reason = (
                p.error or f"not copied: {bad[0].table} in the same FK group failed ({bad[0].error})"
            )
        return [results[p.table] for p in plans]
    previous_rows = previous_rows or {}
    outside_children = outside_children or {}
    failing: str | None = None
    own = pair is None
    pair = pair or ConnPair(source_uri, target_uri)
    try:
        # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
        import psycopg

        src, dst = pair.open()
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        with src.cursor() as scur, dst.cursor() as dcur, dst.transaction():
            if snapshot:
                if not _SNAPSHOT.match(snapshot):
                    raise ValueError(f"not a snapshot id: {snapshot!r}")
                scur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            elif psql:
                snapshot, psql = _own_snapshot(src, psql)  # psql's COPY reads as of this transaction
            # synchronous_commit off for this transaction only: staging is a copy that a rerun rebuilds.
            # A crash right after the commit can lose the transaction, but only as a whole (WAL replay
            # never applies part of one): staging then holds the old rows, as after a failed refresh.
            dcur.execute("SET CONSTRAINTS ALL DEFERRED; SET LOCAL synchronous_commit = off")
            # The 0-row trap is checked before anything in staging is touched: one query on prod,
            # and a count of staging only for tables prod has no rows of (not a scan of every table).
            present = scur.execute(
                "SELECT " + ", ".join(f"EXISTS (SELECT 1 FROM {qualified(p.table)})" for p in plans)  # noqa: S608
            ).fetchone()
            empty = [p for p, has_rows in zip(plans, present, strict=True) if not has_rows]
            if empty:
                counted = dcur.execute(
                    "SELECT " + ", ".join(f"(SELECT count(*) FROM {qualified(p.table)})" for p in empty)  # noqa: S608
                ).fetchone()
                for p, n in zip(empty, counted, strict=True):
                    results[p.table].rows_target_before = int(n)
            for p in empty:
                failing = p.table
                r = results[p.table]
                had = max(r.rows_target_before, previous_rows.get(p.table) or 0)
                if had and p.table not in allow_empty:
                    where = "staging has" if r.rows_target_before else "the previous refresh copied"
                    raise TableCopyError(
                        p.table,
                        f"source returned 0 rows; {where} {had}: refusing to empty staging "
                        "(list the table in allow_empty if prod really is empty)",
                    )
            names = ", ".join(qualified(p.table) for p in plans)
            truncated = not any(outside_children.get(p.table) for p in plans)
            fks: list[indexes.SetAside] = []
            if truncated:
                dcur.execute(f"TRUNCATE {names}")
                big = {p.table for p in plans if p.kind == "r" and p.size >= indexes.MIN_BYTES}
                if big:
                    fks = indexes.set_aside_foreign_keys(dst, [p.table for p in plans if p.kind == "r"], big)
            else:
                # A table not copied references this group: TRUNCATE would refuse, DELETE checks rows.
                for p in reversed(plans):
                    dcur.execute(f"DELETE FROM {qualified(p.table)}")  # noqa: S608
            for p in plans:
                failing = p.table
                started = time.monotonic()
                # Emptied by TRUNCATE in this transaction (and locked until the commit): the rows can be
                # written frozen (no hint-bit rewrite or freeze vacuum later) and the indexes built
                # once after the COPY instead of row by row. Neither changes what a reader sees.
                plain = truncated and p.kind == "r"
                aside = indexes.set_aside(dst, p.table) if plain and p.size >= indexes.MIN_BYTES else []
                rows_out, rows_in, nbytes, used = _read(p, src, source_uri, snapshot, dst, plain, psql)
                # A duplicate key fails the rebuild: rolled back with the rows.
                indexes.rebuild(dst, aside, serial=serial_index_builds)
                r = results[p.table]
                r.rows_source, r.rows_target, r.bytes = rows_out, rows_in, nbytes
                r.reader = "psql" if used else "python"
                r.indexes_rebuilt = [i.index for i in aside]
                r.truncated = truncated
                r.duration_s = round(time.monotonic() - started, 3)
                if rows_out != rows_in:
                    raise TableCopyError(p.table, f"read {rows_out} rows from prod but staging took {rows_in}")
                if p.checksum_columns:
                    # Same snapshot as the rows just copied, through the same casts.
                    r.checksum_source = scur.execute(p.checksum_source_sql()).fetchone()[1]
                log.info(
                    "copied %s: %d rows, %d bytes (%s, read by %s) in %.2fs%s%s",
                    p.table,
                    rows_in,
                    nbytes,
                    r.format,
                    r.reader,
                    r.duration_s,
                    f"; casts: {p.casts}" if p.casts else "",
                    f"; indexes rebuilt: {', '.join(r.indexes_rebuilt)}" if r.indexes_rebuilt else "",
                )
            for fk in fks:  # validated with one join each, still inside the transaction
                failing = fk.table
                indexes.add_back(dst, [fk])
                results[fk.table].foreign_keys_added_back.append(fk.constraint)
            failing = None
            dcur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred FKs are checked here, still inside
            for p in plans:
                failing = p.table
                reset_sequences(dst, p.table)
            failing = None
        src.rollback()
    except Exception as exc:
        pair.close()  # a connection left mid-COPY or in a failed transaction is not reused
        reason = exc.reason if isinstance(exc, TableCopyError) else _describe(exc)
        culprit = exc.table if isinstance(exc, TableCopyError) else (failing or group)
        log.error("refresh of FK group %s failed at %s: %s (staging rows unchanged)", group, culprit, reason)
        for p in plans:
            r = results[p.table]
            r.status = "failed"
            r.rows_target = r.rows_target_before
            r.checksum_source = None
            r.reason = reason if p.table == culprit else f"not copied: {culprit} in the same FK group failed"
        if not isinstance(exc, TableCopyError) and _retryable(exc):
            raise
        _count_unchanged(target_uri, [results[p.table] for p in plans])
        return [results[p.table] for p in plans]
    finally:
        if own:
            pair.close()
    for p in plans:
        results[p.table].status = "synced"
        results[p.table].reason = notes(p)
    return [results[p.table] for p in plans]


def _own_snapshot(src, psql: str) -> tuple[str | None, str | None]:
    """Export the snapshot of the group's prod transaction (its first statement) for psql to adopt.

    Returns (snapshot, psql); (None, None) when the server cannot export one (the transaction is
    then rolled back before it read anything, and the group is read in Python)."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    try:
        exported = src.execute("SELECT pg_export_snapshot()").fetchone()[0]
    except psycopg.Error as exc:
        src.rollback()
        log.warning("prod cannot export a snapshot (%s): reading this FK group in Python", _describe(exc))
        return None, None
    if not _SNAPSHOT.match(exported):
        raise ValueError(f"not a snapshot id: {exported!r}")
    return exported, psql


def _read(plan: TablePlan, src, source_uri: str, snapshot: str | None, dst, freeze: bool, psql: str | None):
    """One table's COPY, read by psql when given (else, or when psql cannot be used, in Python).

    Returns (rows read, rows written, bytes, the psql used or None)."""
    copy_in = plan.copy_in_sql(freeze=freeze)
    if psql and snapshot:
        try:
            rows = psqlreader.stream(
                psql, src, source_uri, snapshot, dst, plan.copy_source(), copy_in, binary=plan.binary
            )
            return (*rows, psql)
        except psqlreader.PsqlUnsupported as exc:  # raised before anything started
            log.info("%s: read in Python (%s)", plan.table, exc)
    return (*relay.stream(src, dst, plan.copy_out_sql(), copy_in), None)


def _count_unchanged(target_uri: str, failed: list[TableResult]) -> None:
    """After a rollback: the rows staging kept, for the report (counted only on this failure path)."""
    missing = [r for r in failed if r.rows_target_before is None]
    if not missing:
        return
    try:
        with connect(target_uri) as conn:
            for r in missing:
                r.rows_target_before = r.rows_target = count_rows(conn, r.table)
    except Exception as exc:  # noqa: BLE001 - the failure being reported matters more than this count
        log.warning("could not count staging rows after the rollback: %s", exc)


def verify_counts(conn, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Row count (and checksum where the copy recorded one) of synced tables, now, in staging."""
    out = []
    for t in items:
        cols = t.get("checksum_columns") or []
        if cols and t.get("checksum_source") is not None:
            n, checksum = conn.execute(checksum_sql([quote_ident(c) for c in cols], qualified(t["table"]))).fetchone()
        else:
            n, checksum = count_rows(conn, t["table"]), None
        out.append({"table": t["table"], "rows_now": int(n), "checksum_target": checksum})
    conn.rollback()
    return out


def notes(plan: TablePlan) -> str:
    """What a user should know about a synced table: casts, masks, columns on one side only."""
    parts = []
    if plan.casts:
        parts.append("cast " + ", ".join(f"{c}: {how.split(' (')[0]}" for c, how in plan.casts.items()))
    if plan.masked:
        parts.append("masked " + ", ".join(f"{c} ({rule})" for c, rule in plan.masked.items()))
    if plan.source_only:
        parts.append("prod-only columns not copied: " + ", ".join(plan.source_only))
    if plan.target_only:
        parts.append("staging-only columns got defaults: " + ", ".join(plan.target_only))
    return "; ".join(parts)


def _describe(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    detail = getattr(diag, "message_detail", None) if diag else None
    context = getattr(diag, "context", None) if diag else None
    text = primary or str(exc).strip().splitlines()[0]
    if detail:
        text += f" ({detail})"
    if context and "COPY" in context:
        text += f" [{context.strip().splitlines()[0]}]"
    return f"{type(exc).__name__}: {text}"


def _retryable(exc: BaseException) -> bool:
    """Connection-level failures (server gone, network) are worth a retry; SQL errors are not."""
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg

    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
