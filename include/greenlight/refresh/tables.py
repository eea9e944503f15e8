"""Copy PostgreSQL tables from prod to staging: type-correct, streamed, one transaction per FK group.

For every table the columns of both sides are compared first (staging may be migrated ahead of
prod): the rows are read with a source-side ``SELECT`` that casts each column to the staging type
(:mod:`greenlight.refresh.casts`) and applies the ``mask:`` rules, streamed with
``COPY (SELECT …) TO STDOUT`` straight into ``COPY t (cols) FROM STDIN`` (no Python row objects),
binary when every column type is built in, text otherwise.

Tables linked by foreign keys form a *group*; a group is copied in **one target transaction**
(emptied, then copied parents first) from **one source snapshot** (``REPEATABLE READ, READ ONLY``),
so children never reference parents from another moment and a failure anywhere in the group
leaves every old staging row in place. Sequences and identities are reset to ``max(col)``
before the commit. A source table that reads 0 rows while staging (or the previous run) had rows
fails instead of emptying staging, unless the table is in ``allow_empty``.

The source is opened with ``default_transaction_read_only=on``: nothing here can write to prod.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from greenlight.errors import GreenlightError
from greenlight.refresh.casts import NoSafeCastError, cast_expression, mask_expression, quote_ident

log = logging.getLogger("greenlight.refresh.tables")

BATCH_BYTES = 128 * 1024  # COPY data handed to the staging writer at a time
FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: types below it are built in


class TableCopyError(GreenlightError):
    """One table (and its FK group) could not be copied; staging kept its old rows (exit 1)."""

    kind = "table"

    def __init__(self, table: str, reason: str):
        self.table = table
        self.reason = reason
        super().__init__(f"{table}: {reason}")


# ---------------------------------------------------------------------------------------- connections
def connect(uri: str, *, read_only: bool = False, application: str = "greenlight-refresh"):
    """A psycopg 3 connection; ``read_only`` sets ``default_transaction_read_only`` for the session."""
    import psycopg

    extra = {"options": "-c default_transaction_read_only=on"} if read_only else {}
    return psycopg.connect(uri, application_name=application, connect_timeout=10, **extra)


def server_identity(conn) -> dict[str, Any]:
    """What identifies the server and database a connection reached (no secrets)."""
    row = conn.execute(
        "SELECT current_database(), inet_server_addr()::text, inet_server_port(), "
        "current_setting('server_version'), current_setting('transaction_read_only')"
    ).fetchone()
    ident: dict[str, Any] = {
        "database": row[0],
        "address": row[1],
        "port": row[2],
        "server_version": row[3],
        "read_only": row[4] == "on",
    }
    try:
        ident["system_identifier"] = str(
            conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        )
    except Exception:  # noqa: BLE001 - needs superuser/pg_monitor; host+port+database is the fallback
        conn.rollback()
        ident["system_identifier"] = None
    conn.rollback()
    return ident


def same_database(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two :func:`server_identity` results are the same database on the same server."""
    if a["database"] != b["database"]:
        return False
    if a.get("system_identifier") and b.get("system_identifier"):
        return a["system_identifier"] == b["system_identifier"]
    return (a["address"], a["port"]) == (b["address"], b["port"])


# ---------------------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(atttypid, atttypmod)
    builtin: bool  # the type (and its array element) is a built-in type: binary COPY is portable
    not_null: bool
    has_default: bool  # a DEFAULT, an identity or a serial
    generated: bool  # GENERATED ALWAYS AS (…) STORED: never written


_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, t.typelem, t.typtype,
       a.attnotnull, (a.atthasdef OR a.attidentity <> ''), a.attgenerated <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def split_name(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def qualified(table: str) -> str:
    schema, name = split_name(table)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def columns(conn, table: str) -> list[Column]:
    rows = conn.execute(_COLUMNS_SQL, split_name(table)).fetchall()
    return [
        Column(
            name=r[0],
            type=r[1],
            builtin=r[2] < FIRST_USER_OID and (not r[3] or r[3] < FIRST_USER_OID) and r[4] != "c",
            not_null=r[5],
            has_default=r[6],
            generated=r[7],
        )
        for r in rows
    ]


def list_tables(conn, schemas: list[str]) -> list[str]:
    """Ordinary and partitioned tables (not partitions) of the schemas, as ``schema.table``."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s) ORDER BY 1",
        (list(schemas),),
    ).fetchall()
    return [r[0] for r in rows]


def foreign_keys(conn, schemas: list[str]) -> list[tuple[str, str]]:
    """(child, parent) pairs of every foreign key between tables of the schemas (self-references left out)."""
    rows = conn.execute(
        """
        SELECT cn.nspname || '.' || cc.relname, pn.nspname || '.' || pc.relname
        FROM pg_constraint k
        JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
        JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE k.contype = 'f' AND k.conrelid <> k.confrelid AND cn.nspname = ANY(%s) AND pn.nspname = ANY(%s)
        """,
        (list(schemas), list(schemas)),
    ).fetchall()
    return sorted({(r[0], r[1]) for r in rows})


def count_rows(conn, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {qualified(table)}").fetchone()[0])  # noqa: S608


def alembic_version(conn, schemas: list[str]) -> str | None:
    """``version_num`` of an ``alembic_version`` table in the schemas (comma-joined heads), if any."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'alembic_version' AND c.relkind = 'r' AND n.nspname = ANY(%s) "
        "ORDER BY array_position(%s, n.nspname::text) LIMIT 1",
        (list(schemas), list(schemas)),
    ).fetchone()
    if not row:
        conn.rollback()
        return None
    heads = conn.execute(
        f"SELECT version_num FROM {quote_ident(row[0])}.alembic_version ORDER BY 1"  # noqa: S608
    ).fetchall()
    conn.rollback()
    return ",".join(h[0] for h in heads) or None


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

    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.select)} FROM {qualified(self.table)}"  # noqa: S608

    def copy_out_sql(self) -> str:
        fmt = " (FORMAT BINARY)" if self.binary else ""
        if not self.casts and not self.masked:
            # Nothing to convert: COPY the columns directly (cheaper than COPY over a query).
            cols = ", ".join(quote_ident(c) for c in self.columns)
            return f"COPY {qualified(self.table)} ({cols}) TO STDOUT{fmt}"
        return f"COPY ({self.select_sql()}) TO STDOUT{fmt}"

    def copy_in_sql(self) -> str:
        cols = ", ".join(quote_ident(c) for c in self.columns)
        return f"COPY {qualified(self.table)} ({cols}) FROM STDIN" + (" (FORMAT BINARY)" if self.binary else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_table(
    source_cols: list[Column],
    target_cols: list[Column],
    table: str,
    *,
    masks: dict[str, str] | None = None,
    copy_format: str = "auto",
) -> TablePlan:
    """Compare the columns of both sides and build the source SELECT; problems go to ``plan.error``."""
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


def _stream(src_cur, dst_cur, plan: TablePlan) -> tuple[int, int, int]:
    """COPY out of prod into staging; returns (rows read, rows written, bytes)."""
    from psycopg.copy import QueuedLibpqWriter

    nbytes = 0
    batch = bytearray()
    with (
        src_cur.copy(plan.copy_out_sql()) as out,
        dst_cur.copy(plan.copy_in_sql(), writer=QueuedLibpqWriter(dst_cur)) as into,
    ):
        # PostgreSQL sends one message per row: hand them on in ~128 KiB batches, not row by row,
        # and let the writer thread send to staging while this one reads from prod.
        for chunk in out:
            batch += chunk
            if len(batch) >= BATCH_BYTES:
                nbytes += len(batch)
                into.write(bytes(batch))
                batch.clear()
        if batch:
            nbytes += len(batch)
            into.write(bytes(batch))
    return src_cur.rowcount, dst_cur.rowcount, nbytes


def copy_group(
    source_uri: str,
    target_uri: str,
    plans: list[TablePlan],
    *,
    allow_empty: set[str] | frozenset[str] = frozenset(),
    previous_rows: dict[str, int] | None = None,
    outside_children: dict[str, list[str]] | None = None,
) -> list[TableResult]:
    """Copy one FK group (``plans`` ordered parents first) in one staging transaction.

    Returns one result per table; when any table fails, every table of the group is reported
    failed and staging keeps all its old rows (the transaction is rolled back).
    """
    group = plans[0].table if plans else ""
    results = {p.table: TableResult(p.table, "failed", group=group) for p in plans}
    for p in plans:
        r = results[p.table]
        r.casts, r.masked, r.source_only, r.target_only = p.casts, p.masked, p.source_only, p.target_only
        r.format = "binary" if p.binary else "text"
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
    try:
        with connect(source_uri, read_only=True) as src, connect(target_uri) as dst:
            import psycopg

            src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            src.read_only = True
            with src.cursor() as scur, dst.cursor() as dcur, dst.transaction():
                dcur.execute("SET CONSTRAINTS ALL DEFERRED")
                # The 0-row trap is checked before anything in staging is touched.
                for p in plans:
                    failing = p.table
                    r = results[p.table]
                    r.rows_target_before = count_rows(dst, p.table)
                    has_rows = scur.execute(f"SELECT EXISTS (SELECT 1 FROM {qualified(p.table)})").fetchone()[0]  # noqa: S608
                    had = max(r.rows_target_before, previous_rows.get(p.table) or 0)
                    if not has_rows and had and p.table not in allow_empty:
                        where = "staging has" if r.rows_target_before else "the previous refresh copied"
                        raise TableCopyError(
                            p.table,
                            f"source returned 0 rows; {where} {had}: refusing to empty staging "
                            "(list the table in allow_empty if prod really is empty)",
                        )
                names = ", ".join(qualified(p.table) for p in plans)
                if any(outside_children.get(p.table) for p in plans):
                    # A table not copied references this group: TRUNCATE would refuse, DELETE checks rows.
                    for p in reversed(plans):
                        dcur.execute(f"DELETE FROM {qualified(p.table)}")  # noqa: S608
                else:
                    dcur.execute(f"TRUNCATE {names}")
                for p in plans:
                    failing = p.table
                    started = time.monotonic()
                    rows_out, rows_in, nbytes = _stream(scur, dcur, p)
                    r = results[p.table]
                    r.rows_source, r.rows_target, r.bytes = rows_out, rows_in, nbytes
                    r.duration_s = round(time.monotonic() - started, 3)
                    if rows_out != rows_in:
                        raise TableCopyError(p.table, f"read {rows_out} rows from prod but staging took {rows_in}")
                    log.info(
                        "copied %s: %d rows, %d bytes (%s) in %.2fs%s",
                        p.table,
                        rows_in,
                        nbytes,
                        r.format,
                        r.duration_s,
                        f"; casts: {p.casts}" if p.casts else "",
                    )
                failing = None
                dcur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred FKs are checked here, still inside
                for p in plans:
                    failing = p.table
                    reset_sequences(dst, p.table)
                failing = None
            src.rollback()
    except Exception as exc:
        reason = exc.reason if isinstance(exc, TableCopyError) else _describe(exc)
        culprit = exc.table if isinstance(exc, TableCopyError) else (failing or group)
        log.error("refresh of FK group %s failed at %s: %s (staging rows unchanged)", group, culprit, reason)
        for p in plans:
            r = results[p.table]
            r.status = "failed"
            r.rows_target = r.rows_target_before
            r.reason = reason if p.table == culprit else f"not copied: {culprit} in the same FK group failed"
        if not isinstance(exc, TableCopyError) and _retryable(exc):
            raise
        return [results[p.table] for p in plans]
    for p in plans:
        results[p.table].status = "synced"
        results[p.table].reason = notes(p)
    return [results[p.table] for p in plans]


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
    import psycopg

    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
