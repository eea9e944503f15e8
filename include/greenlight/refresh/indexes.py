"""Indexes of a staging table set aside during its COPY and built again before the commit.

A COPY into a table with a btree index inserts (and WAL-logs) every row into the index one at a
time, while ``CREATE INDEX`` afterwards sorts once and writes whole pages. On the refresh
benchmark (1 M rows, five tables with a primary key each) the index inserts were about 40 % of
staging's CPU. :func:`set_aside` drops the indexes (and the primary key / unique / exclusion
constraints they implement) of a table just emptied by ``TRUNCATE``; :func:`rebuild` recreates
them from their own definitions (``pg_get_indexdef`` / ``pg_get_constraintdef``) after the COPY.
Both run inside the group's staging transaction: a duplicate key fails the rebuild, the
transaction rolls back, and staging keeps its old rows *and* its old indexes.

Only indexes nothing else refers to are set aside, so nothing but the index (with the constraint's
internal parts, e.g. the trigger of a deferrable unique key) is dropped and recreated: not one a
foreign key references (the FK would have to go too), a replica-identity or
clustered index, one with a comment, a non-default tablespace, per-column statistics targets or
(for a constraint's index) storage options that the definitions above do not carry, nor an index
of a partitioned table or a partition. Those keep being maintained row by row, as before.
Small tables keep their indexes too (:data:`MIN_BYTES`): there a rebuild costs more than it saves.

Foreign keys between tables of the same FK group (:func:`set_aside_foreign_keys`) are handled
the same way: with the key in place every copied child row queues a deferred check that runs one
lookup in the parent at the commit; added back after the COPY (:func:`add_back`), PostgreSQL
validates all rows with one join, and the parent's key, no longer referenced meanwhile, can be
rebuilt too. A row without its parent fails the ``ADD CONSTRAINT`` and rolls the group back.
A key that was ``NOT VALID`` is added back ``NOT VALID`` (its definition says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlight.refresh.casts import quote_ident
from greenlight.refresh.catalog import qualified, split_name

#: Estimated prod size of a table below which its indexes are left in place during the COPY.
MIN_BYTES = 4 * 1024 * 1024

_DROPPABLE = """
SELECT ic.relname, c.conname, pg_get_indexdef(i.indexrelid), pg_get_constraintdef(c.oid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_constraint c
  ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %s::regclass
  AND t.relkind = 'r' AND NOT t.relispartition AND ic.relkind = 'i'
  AND i.indisvalid AND i.indisready AND i.indislive AND NOT i.indisreplident AND NOT i.indisclustered
  AND ic.reltablespace = 0
  AND (c.oid IS NULL OR ic.reloptions IS NULL)
  AND obj_description(i.indexrelid, 'pg_class') IS NULL
  AND (c.oid IS NULL OR obj_description(c.oid, 'pg_constraint') IS NULL)
  AND NOT EXISTS (
    SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND coalesce(a.attstattarget, -1) >= 0)
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid AND d.deptype <> 'i')
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = c.oid AND d.deptype <> 'i')
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.deptype = 'e')
ORDER BY c.contype NULLS LAST, ic.relname
"""


_GROUP_FKS = """
SELECT n.nspname || '.' || t.relname, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class p ON p.oid = c.confrelid
WHERE c.contype = 'f' AND c.conrelid = ANY(%s::regclass[]) AND c.confrelid = ANY(%s::regclass[])
  AND c.conparentid = 0 AND t.relkind = 'r' AND NOT t.relispartition AND p.relkind = 'r' AND NOT p.relispartition
  AND obj_description(c.oid, 'pg_constraint') IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = c.oid AND d.deptype <> 'i')
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class SetAside:
    """One index (or the constraint it implements) dropped for the COPY, with how to build it again."""

    table: str  # schema.name
    index: str
    constraint: str | None
    definition: str  # CREATE INDEX … or the constraint's definition

    def create_sql(self) -> str:
        if self.constraint is None:
            return self.definition
        return f"ALTER TABLE {qualified(self.table)} ADD CONSTRAINT {quote_ident(self.constraint)} {self.definition}"

    def drop_sql(self) -> str:
        if self.constraint is None:
            return f"DROP INDEX {quote_ident(split_name(self.table)[0])}.{quote_ident(self.index)}"
        return f"ALTER TABLE {qualified(self.table)} DROP CONSTRAINT {quote_ident(self.constraint)}"


def set_aside(conn, table: str) -> list[SetAside]:
    """Drop the indexes of ``table`` (schema.name) that can be rebuilt from their definitions; returns them.

    Call it in the transaction that emptied the table, before the COPY, and :func:`rebuild` with
    the result before that transaction commits.
    """
    rows = conn.execute(_DROPPABLE, (qualified(table),)).fetchall()
    out = [SetAside(table, index, constraint, cdef or idef) for index, constraint, idef, cdef in rows]
    for item in out:
        conn.execute(item.drop_sql())
    return out


def rebuild(conn, items: list[SetAside], *, serial: bool = False) -> None:
    """Build every index :func:`set_aside` dropped (unique ones check their rows here).

    ``serial``: other tables are being copied side by side, which keeps the server's cores busy;
    a parallel build's workers then only add their start-up and merge cost (measured on the
    refresh bench, two workers on two cores: 0.14 s less staging CPU without them).
    """
    if items and serial:
        conn.execute("SET LOCAL max_parallel_maintenance_workers = 0")
    for item in items:
        conn.execute(item.create_sql())


def set_aside_foreign_keys(conn, tables: list[str], children: set[str]) -> list[SetAside]:
    """Drop the foreign keys from one of ``children`` to one of ``tables`` (schema.name each): the
    children worth it are the large ones (a per-row check costs per child row). Returns them.

    Call it after the ``TRUNCATE`` of all of them and :func:`add_back` after their COPY (and
    :func:`rebuild`), in the same transaction.
    """
    names = [qualified(t) for t in tables]
    rows = conn.execute(_GROUP_FKS, (names, names)).fetchall()
    out = [SetAside(table, "", constraint, definition) for table, constraint, definition in rows if table in children]
    for item in out:
        conn.execute(item.drop_sql())
    return out


def add_back(conn, items: list[SetAside]) -> None:
    """Add back the foreign keys :func:`set_aside_foreign_keys` dropped (each validates every row)."""
    rebuild(conn, items)
