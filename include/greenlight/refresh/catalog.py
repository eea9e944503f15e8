"""The PostgreSQL side of a refresh that is not copying: connections with one set of session
settings on both servers, the catalog (columns, tables, foreign keys, row counts, the alembic
version) read in as few queries as possible, and the check that two connections are not the same
database. :mod:`greenlight.refresh.tables` plans and copies with what this module reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from greenlight.refresh.casts import quote_ident

FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: types below it are built in

# ---------------------------------------------------------------------------------------- connections
#: Session settings of both sides, so values print and parse the same on prod and staging (text
#: COPY of dates, casts to text, checksums), whatever each server's defaults are.
SESSION_SETTINGS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1"


def connect(uri: str, *, read_only: bool = False, application: str = "greenlight-refresh"):
    """A psycopg 3 connection; ``read_only`` sets ``default_transaction_read_only`` for the session.

    The session settings travel in the startup packet (``options``), so they cost no round trip;
    ``options`` from the connection's extra are kept.
    """
    # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    options = " ".join(
        o
        for o in (
            conninfo_to_dict(uri).get("options"),
            SESSION_SETTINGS,
            "-c default_transaction_read_only=on" if read_only else "",
        )
        if o
    )
    return psycopg.connect(uri, application_name=application, connect_timeout=10, options=options)


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


def _column(r) -> Column:
    return Column(
        name=r[0],
        type=r[1],
        builtin=r[2] < FIRST_USER_OID and (not r[3] or r[3] < FIRST_USER_OID) and r[4] != "c",
        not_null=r[5],
        has_default=r[6],
        generated=r[7],
    )


def columns(conn, table: str) -> list[Column]:
    return [_column(r) for r in conn.execute(_COLUMNS_SQL, split_name(table)).fetchall()]


_CATALOG_SQL = """
SELECT n.nspname || '.' || c.relname, c.relkind, c.relpages,
       a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, t.typelem, t.typtype,
       a.attnotnull, (a.atthasdef OR a.attidentity <> ''), a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS wanted(nsp, rel) ON wanted.nsp = n.nspname AND wanted.rel = c.relname
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p')
ORDER BY 1, a.attnum
"""


@dataclass
class TableInfo:
    columns: list[Column] = field(default_factory=list)
    kind: str = "r"
    size: int = 0  # bytes, from pg_class.relpages (as of the last VACUUM/ANALYZE): for scheduling only


def catalog(conn, tables: list[str]) -> dict[str, TableInfo]:
    """Columns, kind and estimated size of many tables in one query (tables absent are left out)."""
    if not tables:
        return {}
    names = [split_name(t) for t in tables]
    out: dict[str, TableInfo] = {}
    for r in conn.execute(_CATALOG_SQL, ([n[0] for n in names], [n[1] for n in names])).fetchall():
        info = out.setdefault(r[0], TableInfo(kind=r[1], size=max(int(r[2] or 0), 0) * 8192))
        info.columns.append(_column(r[3:]))
    conn.rollback()
    return out


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


# ---------------------------------------------------------------------------------------- one server's preflight
@dataclass
class ServerRead:
    """What the refresh's preflight reads on one server, and the connection it read on (left idle)."""

    conn: Any
    identity: dict[str, Any]
    tables: list[str]
    edges: list[tuple[str, str]]  # foreign keys: read on staging only (``read_only=False``)
    version: str | None
    catalog: dict[str, TableInfo]


def read_server(conninfo: str, schemas: list[str], wanted: list[str] | None, *, read_only: bool) -> ServerRead:
    """Open a connection and read the server's identity, tables, foreign keys (staging), alembic
    version and, for ``wanted`` tables, their columns. The connection is returned idle (closed on
    an error): the caller closes it or copies on it."""
    conn = connect(conninfo, read_only=read_only)
    try:
        read = ServerRead(
            conn,
            server_identity(conn),
            list_tables(conn, schemas),
            [] if read_only else foreign_keys(conn, schemas),
            alembic_version(conn, schemas),
            catalog(conn, wanted) if wanted is not None else {},
        )
        conn.rollback()
        return read
    except BaseException:
        conn.close()
        raise
