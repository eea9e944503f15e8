"""The refresh sequence, step by step, shared by the ``staging_refresh`` DAG and ``python -m greenlight refresh``.

preflight → (sync buckets ‖ copy tables, one FK group at a time) → migrate → health → verify → summary

Every step takes and returns plain JSON-able dicts, so the DAG passes them through XCom and the
CLI calls the same functions in order (:func:`refresh`). Connections are resolved by a callable
(``PostgresHook`` in a task, ``AIRFLOW_CONN_<ID>`` env vars in the CLI); S3 clients likewise.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from greenlight.errors import ConfigError, RefreshError, RefusedError
from greenlight.refresh import catalog as pgcat
from greenlight.refresh import leases
from greenlight.refresh import tables as pg
from greenlight.refresh.checks import health, migrate
from greenlight.refresh.config import ALWAYS_SKIPPED, RefreshConfig, looks_like_prod
from greenlight.refresh.connections import PgConn
from greenlight.refresh.psqlreader import find_psql, find_stdbuf
from greenlight.refresh.streamcopy import SplitClient
from greenlight.refresh.verification import verify
from greenlight.storage.manifests import ManifestStore, safe_name

log = logging.getLogger("greenlight.refresh")

MANIFEST_DIR = "staging_refresh"
SUMMARY_KIND = "greenlight.staging-refresh/v1"


@dataclass
class Refresh:
    """One refresh run: the config, what was asked, and how to reach the servers."""

    config: RefreshConfig
    run_id: str
    resolve: Callable[[str], PgConn]  # connection id -> PgConn
    s3: Callable[[], Any] | None = None  # -> S3 client (only called when buckets or an s3:// manifest need it)
    s3_source: Callable[[], Any] | None = None  # -> S3 client of ``source_aws_conn`` (prod), when configured
    # CLI: raises ConfigError when an HTTP connection id is not defined (``AIRFLOW_CONN_<ID>``), so a
    # missing migration endpoint is refused in preflight, before anything is copied.
    check_http_conn: Callable[[str], None] | None = None
    only: list[str] = field(default_factory=list)
    dry_run: bool = False
    skip_migrations: bool = False
    wait: float = 0.0  # seconds to wait for another run's lease on a target (greenlight.refresh.leases)

    _client: Any = field(default=None, repr=False)
    _source_client: Any = field(default=None, repr=False)

    def client(self):
        if self._client is None:
            if self.s3 is None:
                raise ConfigError("an S3 client is needed (buckets or an s3:// manifest_uri) but none is configured")
            self._client = self.s3()
        return self._client

    def mappings(self):
        return self.config.select(self.only)[0]

    def engine(self):
        # local: refresh.buckets loads the promotion engine (~50 ms), needed only with bucket mappings
        from greenlight.refresh.buckets import make_engine

        client = self.client()
        if self.config.source_aws_conn:
            if self.s3_source is None:
                raise ConfigError(f"source_aws_conn {self.config.source_aws_conn!r} is set but cannot be resolved here")
            if self._source_client is None:
                self._source_client = self.s3_source()
            buckets = {m.source_uri.bucket for m in self.mappings()}
            client = SplitClient(self._source_client, client, buckets)
        return make_engine(self.config, self.mappings(), client)

    def manifests(self):
        uri = self.config.manifest_uri
        if not uri:
            return None
        return ManifestStore(uri, self.client() if uri.startswith("s3://") else None)


# ---------------------------------------------------------------------------------------- preflight
def _connections(r: Refresh) -> tuple[PgConn, PgConn]:
    section = r.config.postgres
    source, target = r.resolve(section.source_conn), r.resolve(section.target_conn)
    for what in (target.database, target.host):
        if looks_like_prod(what):
            raise RefusedError(
                f"postgres target {target.describe()}", f"{what!r} is named like prod; a refresh never writes to prod"
            )
    return source, target


def preflight(r: Refresh, *, keep: list | None = None) -> dict[str, Any]:
    """Runbook: "fix profiles" + dry run. Resolve both connections, refuse unsafe targets, list tables
    and FK groups, record schema versions, check every bucket pair (refusals raise, exit 2).

    ``keep``: a list that receives the prod (read-only) and staging connections preflight opened,
    idle, instead of closing them (the CLI copies on them; the caller closes them)."""
    out: dict[str, Any] = {"run_id": r.run_id, "dry_run": r.dry_run, "groups": [], "skipped": [], "buckets": []}
    mappings, only_tables = r.config.select(r.only, known_tables=None) if r.only else (r.mappings(), None)
    section = r.config.postgres
    http = r.config.migrations.http if r.config.migrations else None
    if http is not None and r.check_http_conn is not None and not r.skip_migrations:
        r.check_http_conn(http.conn_id)
    if section is not None:
        out.update(_postgres_preflight(r, only_tables if r.only else None, keep))
    elif only_tables:
        raise ConfigError(f"only: {sorted(only_tables)} name tables but no 'postgres' section is configured")
    if mappings:
        # local: refresh.buckets loads the promotion engine (~50 ms), needed only with bucket mappings
        from greenlight.refresh.buckets import preflight as bucket_preflight

        out["buckets"] = bucket_preflight(r.engine())
        for row in out["buckets"]:
            log.info(
                "bucket %s -> %s: prod %d objects / %d B, staging %d objects / %d B; to copy %d (%d B), to delete %d",
                row["source"],
                row["target"],
                row["source_objects"],
                row["source_bytes"],
                row["target_objects"],
                row["target_bytes"],
                row["to_copy"],
                row["bytes_to_copy"],
                row["to_delete"],
            )
    return out


def _postgres_preflight(r: Refresh, only_tables: set[str] | None, keep: list | None = None) -> dict[str, Any]:
    section = r.config.postgres
    source, target = _connections(r)
    psql = find_psql(section.reader, section.psql)  # refused here (exit 2) when psql is required but missing
    # Tables whose columns are read in the same pass as the listing (the configured ones); when
    # ``tables`` is not set, the copied tables are known only from prod's listing: a second pass.
    wanted = [section.qualify(t) for t in section.tables] if section.tables is not None else None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gl-preflight") as pool:
        # Prod and staging are read side by side: every step below waits on one server only.
        src_side = pool.submit(pgcat.read_server, source.conninfo, section.schemas, wanted, read_only=True)
        dst_side = pool.submit(pgcat.read_server, target.conninfo, section.schemas, wanted, read_only=False)
        if psql:
            find_stdbuf()  # tried once per process (a child process): here, while both servers answer
        sides = [f.exception() or f.result() for f in (src_side, dst_side)]
    opened = [s.conn for s in sides if isinstance(s, pgcat.ServerRead)]
    try:
        for failed in sides:
            if isinstance(failed, BaseException):
                raise failed
        src, dst = sides
        if pgcat.same_database(src.identity, dst.identity):
            raise RefusedError(
                f"postgres target {target.describe()}",
                f"it is the same server and database as the source {source.describe()}",
            )
        if not src.identity["read_only"]:
            raise RefusedError(f"postgres source {source.describe()}", "the session did not open read-only")
        prod_tables, staging_tables, edges = src.tables, dst.tables, dst.edges
        versions = {"prod": src.version, "staging": dst.version}
        chosen = wanted if wanted is not None else list(prod_tables)
        unknown = sorted(set(chosen) - set(prod_tables) - set(staging_tables))
        if unknown:
            raise ConfigError(f"postgres.tables: {', '.join(unknown)} not found in prod or staging ({section.schemas})")
        if only_tables is not None:
            missing = sorted(only_tables - set(chosen))
            if missing:
                raise ConfigError(f"only: {', '.join(missing)} is not a configured table (tables: {', '.join(chosen)})")
            chosen = [t for t in chosen if t in only_tables]
        for key in section.mask:
            owner = section.qualify(".".join(key.split(".")[:-1]))
            if owner not in prod_tables:
                raise ConfigError(f"postgres.mask.{key}: table {owner} is not in prod")
        for name in section.checksum:
            if section.qualify(name) not in prod_tables:
                raise ConfigError(f"postgres.checksum.{name}: table {section.qualify(name)} is not in prod")
        skip = {section.qualify(t): "in skip_tables" for t in section.skip_tables}
        for name, why in ALWAYS_SKIPPED.items():
            for schema in section.schemas:
                skip.setdefault(f"{schema}.{name}", why)
        copy = [t for t in chosen if t not in skip]
        if wanted is None:  # columns of every copied table, one catalog query per side, side by side
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gl-preflight") as pool:
                prod_cat, staging_cat = pool.map(lambda conn: pgcat.catalog(conn, copy), (src.conn, dst.conn))
        else:
            prod_cat, staging_cat = src.catalog, dst.catalog
        if keep is not None:  # the CLI copies on them (see :func:`refresh`)
            keep.extend(opened)
            opened = []
    finally:
        for conn in opened:
            conn.close()
    skipped = [{"table": t, "reason": skip[t]} for t in chosen if t in skip]
    if section.tables is None and only_tables is None:
        skipped += [
            {"table": t, "reason": "only in staging (created by a migration ahead of prod)"}
            for t in staging_tables
            if t not in prod_tables and t not in skip
        ]
    plans = {t: _plan(section, t, prod_cat.get(t), staging_cat.get(t)).as_dict() for t in copy}
    groups = pg.table_groups(copy, edges)
    outside = {t: sorted({c for c, p in edges if p == t and c not in copy}) for t in copy}
    for t in skipped:
        log.info("skip %s: %s", t["table"], t["reason"])
    relation = _version_relation(r.config, versions["prod"], versions["staging"])
    log.info("schema versions: prod %s, staging %s (%s)", versions["prod"], versions["staging"], relation)
    log.info("prod is read by %s", f"psql ({psql})" if psql else "python (greenlight's own connection)")
    return {
        "source": source.describe(),
        "target": target.describe(),
        "groups": groups,
        "plans": plans,
        "skipped": skipped,
        "outside_children": {t: c for t, c in outside.items() if c},
        "versions": {**versions, "relation": relation},
        "previous_rows": _previous_rows(r),
    }


def _plan(section, table: str, prod: pgcat.TableInfo | None, staging: pgcat.TableInfo | None) -> pg.TablePlan:
    plan = pg.plan_table(
        prod.columns if prod else [],
        staging.columns if staging else [],
        table,
        masks=section.masks_for(table),
        copy_format=section.copy_format,
        checksum=section.checksum_for(table),
    )
    plan.size = prod.size if prod else 0
    plan.kind = staging.kind if staging else "r"
    plan.source_kind = prod.kind if prod else "r"
    return plan


def _version_relation(config: RefreshConfig, prod: str | None, staging: str | None) -> str:
    if prod is None and staging is None:
        return "no alembic_version table"
    if prod == staging:
        return "same"
    location = config.migrations.alembic_script_location if config.migrations else None
    if location and prod and staging:
        try:
            # local: alembic.script costs ~0.3 s to import; only a configured script location needs it
            from alembic.script import ScriptDirectory

            script = ScriptDirectory(location)
            ancestors = {rev.revision for rev in script.iterate_revisions(staging, "base")}
            if prod in ancestors:
                return "staging ahead of prod (expected)"
            return "staging is not a descendant of prod"
        except Exception as exc:  # noqa: BLE001 - the relation is informational
            log.warning("could not compare alembic revisions: %s", exc)
    return "staging differs from prod (staging ahead of prod is expected)"


def _previous_rows(r: Refresh) -> dict[str, int]:
    """Rows each table had after the previous refresh (its manifest), for the 0-row trap."""
    store = r.manifests()
    if store is None:
        return {}
    latest = store.read(f"{MANIFEST_DIR}/latest.json") or {}
    return {t["table"]: t["rows_target"] for t in latest.get("tables", ()) if t.get("rows_target")}


# ---------------------------------------------------------------------------------------- copy tables
def copy_tables(
    r: Refresh,
    group: list[str],
    pre: dict[str, Any],
    *,
    snapshot: str | None = None,
    pair: pg.ConnPair | None = None,
) -> list[dict[str, Any]]:
    """Runbook: "sync database via Lambda". Copy one FK group (dry run: count both sides only).

    The plans (columns compared, casts chosen) come from ``preflight``; ``snapshot`` (an exported
    prod snapshot) and ``pair`` (open connections) are the CLI's: see :func:`refresh`."""
    section = r.config.postgres
    source, target = _connections(r)
    stored = pre.get("plans") or {}
    if all(t in stored for t in group):
        plans = [pg.TablePlan.from_dict(stored[t]) for t in group]
    else:  # a ``pre`` from before plans were part of it
        with pgcat.connect(source.conninfo, read_only=True) as src, pgcat.connect(target.conninfo) as dst:
            prod_cat, staging_cat = pgcat.catalog(src, group), pgcat.catalog(dst, group)
        plans = [_plan(section, t, prod_cat.get(t), staging_cat.get(t)) for t in group]
    if r.dry_run:
        return _dry_run_counts(source, target, group, plans)
    results = pg.copy_group(
        source.conninfo,
        target.conninfo,
        plans,
        allow_empty={section.qualify(t) for t in section.allow_empty},
        previous_rows=pre.get("previous_rows") or {},
        outside_children=pre.get("outside_children") or {},
        snapshot=snapshot,
        pair=pair,
        serial_index_builds=pair is not None and section.workers > 1,
        psql=find_psql(section.reader, section.psql),
    )
    return [res.as_dict() for res in results]


def _dry_run_counts(source: PgConn, target: PgConn, group: list[str], plans: list[pg.TablePlan]) -> list[dict]:
    rows = []
    with pgcat.connect(source.conninfo, read_only=True) as src, pgcat.connect(target.conninfo) as dst:
        for p in plans:
            res = pg.TableResult(p.table, "failed" if p.error else "would_sync", group=group[0], reason=p.error or "")
            res.casts, res.masked, res.source_only, res.target_only = (
                p.casts,
                p.masked,
                p.source_only,
                p.target_only,
            )
            res.rows_source = pgcat.count_rows(src, p.table) if not p.error or "prod" not in p.error else None
            res.rows_target = pgcat.count_rows(dst, p.table) if not p.error or "staging" not in p.error else None
            res.format = "binary" if p.binary else "text"
            rows.append(res.as_dict())
            log.info(
                "(dry run) %s: prod %s rows, staging %s rows%s%s",
                p.table,
                res.rows_source,
                res.rows_target,
                f"; casts {p.casts}" if p.casts else "",
                f"; WOULD FAIL: {p.error}" if p.error else "",
            )
    return rows


# ---------------------------------------------------------------------------------------- buckets
def sync_buckets(r: Refresh) -> list[dict[str, Any]]:
    """Runbook: "sync S3 images via script". The promotion engine's plan/copy per bucket mapping."""
    if not r.mappings():
        return []
    # local: refresh.buckets loads the promotion engine (~50 ms), needed only with bucket mappings
    from greenlight.refresh.buckets import sync

    return sync(r.engine(), r.run_id, dry_run=r.dry_run)


# ---------------------------------------------------------------------------------------- summary
def summarize(
    r: Refresh,
    pre: dict[str, Any],
    tables: list[dict[str, Any]],
    buckets: list[dict[str, Any]],
    migration: dict[str, Any] | None = None,
    health_result: dict[str, Any] | None = None,
    verification: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The final report: one row per table, totals, and the run manifest (not on a dry run)."""
    rows = sorted(
        [*tables, *({"table": s["table"], "status": "skipped", "reason": s["reason"]} for s in pre.get("skipped", ()))],
        key=lambda t: t["table"],
    )
    checked = {v["table"]: v["checksum"] for v in (verification or {}).get("tables", ()) if "checksum" in v}
    table_rows = [
        {
            "table": t["table"],
            "status": t["status"],
            "rows_source": t.get("rows_source"),
            "rows_target": t.get("rows_target"),
            "reason": t.get("reason") or "",
            **({"checksum": checked[t["table"]]} if t["table"] in checked else {}),
        }
        for t in rows
    ]
    problems = list((verification or {}).get("problems", ()))
    failed = [t for t in table_rows if t["status"] == "failed"]
    summary = {
        "run_id": r.run_id,
        "dry_run": r.dry_run,
        "tables": table_rows,
        "rows_synced": sum(t["rows_target"] or 0 for t in table_rows if t["status"] == "synced"),
        "tables_synced": sum(1 for t in table_rows if t["status"] == "synced"),
        "tables_skipped": sum(1 for t in table_rows if t["status"] == "skipped"),
        "tables_failed": len(failed),
        "objects_copied": sum(b.get("objects_copied", 0) for b in buckets),
        "objects_deleted": sum(b.get("objects_deleted", 0) for b in buckets),
        "bytes_copied": sum(b.get("bytes_copied", 0) for b in buckets),
        "buckets": buckets or pre.get("buckets", []),
        "versions": pre.get("versions"),
        "migrations": migration,
        "health": health_result,
        "problems": problems,
        "manifest": None,
    }
    if r.dry_run:
        summary["would_fail"] = [t["table"] for t in failed]
    for line in table_lines(table_rows):
        log.info("%s", line)
    store = None if r.dry_run else r.manifests()
    if store is not None:
        doc = {
            "kind": SUMMARY_KIND,
            "source": pre.get("source"),
            "target": pre.get("target"),
            "detail": {"tables": tables, "verification": verification},
            **summary,
        }
        summary["manifest"] = store.write(f"{MANIFEST_DIR}/{safe_name(r.run_id)}/summary.json", doc)
        if not failed and not problems:
            # The next run's 0-row trap compares against the last complete refresh of each table
            # (merged, so a run with ``only`` does not forget the other tables).
            previous = store.read(f"{MANIFEST_DIR}/latest.json") or {}
            merged = {t["table"]: t for t in previous.get("tables", ())}
            merged.update({t["table"]: t for t in table_rows if t["status"] == "synced"})
            latest = {
                **doc,
                "manifest": summary["manifest"],
                "tables": sorted(merged.values(), key=lambda t: t["table"]),
            }
            store.write(f"{MANIFEST_DIR}/latest.json", latest)
    return summary


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-table result table for the log."""
    width = max([len(t["table"]) for t in rows] + [5])
    out = [f"{'table':<{width}}  {'status':<10} {'prod rows':>10} {'staging rows':>12}  reason"]
    for t in rows:
        src = "" if t["rows_source"] is None else str(t["rows_source"])
        dst = "" if t["rows_target"] is None else str(t["rows_target"])
        out.append(f"{t['table']:<{width}}  {t['status']:<10} {src:>10} {dst:>12}  {t['reason']}")
    return out


def exit_code(summary: dict[str, Any]) -> int:
    """0 every table synced or skipped by config (and buckets, health, verify fine); 1 otherwise."""
    return 1 if summary["tables_failed"] or summary["problems"] else 0


# ---------------------------------------------------------------------------------------- the CLI's sequence
def refresh(r: Refresh) -> dict[str, Any]:
    """Every step in order, buckets and table groups side by side (the DAG runs the same steps).

    Tables: ``postgres.workers`` threads copy the FK groups, largest first, each worker reusing
    one prod and one staging connection. Every group is still one staging transaction, and all of
    them read prod as of **one** snapshot: a coordinating read-only transaction exports it
    (``pg_export_snapshot()``) and each group's transaction adopts it (``SET TRANSACTION
    SNAPSHOT``), so tables copied side by side are as consistent as one ``pg_dump``. (The DAG's
    mapped tasks run in separate processes, possibly minutes apart: there each group reads its own
    snapshot.) The workers' staging connections then verify the counts and checksums side by side.

    From after the preflight to after the summary the run holds the lease of every bucket target
    and of the staging database (:mod:`greenlight.refresh.leases`): another run holding one refuses
    this one (exit 2, nothing changed) unless it lets go within ``r.wait`` seconds.
    """
    kept: list = []  # preflight's prod and staging connections: the snapshot holder and a worker's staging
    try:
        pre = preflight(r, keep=kept)
        specs = leases.run_specs(r)
        with leases.holding(r.client() if specs else None, specs, run_id=r.run_id, wait=r.wait) as held:
            summary = _refresh(r, pre, held, kept)
            summary["leases"] = held.report()
        return summary
    finally:
        for conn in kept:  # closing twice is harmless: most were handed on and closed by their user
            conn.close()


def _refresh(r: Refresh, pre: dict[str, Any], held, kept: list) -> dict[str, Any]:
    section = r.config.postgres
    plans = pre.get("plans") or {}
    groups = sorted(pre["groups"], key=lambda g: -sum((plans.get(t) or {}).get("size", 0) for t in g))
    workers = max(1, min(section.workers if section else 1, len(groups)))
    holder = snapshot = None
    prod, spare = (kept[0], kept[1:]) if kept else (None, [])  # spare: staging, for the first worker
    if groups and not r.dry_run:
        source = r.resolve(section.source_conn)
        try:
            holder, snapshot = pg.export_snapshot(source.conninfo, conn=prod)
        except Exception as exc:  # noqa: BLE001 - e.g. a standby without the right: groups then read their own
            log.warning("could not export a prod snapshot (%s): each FK group reads its own snapshot", exc)
    if holder is None and prod is not None:
        prod.close()
    local = threading.local()
    pairs: list[pg.ConnPair] = []
    lock = threading.Lock()

    def copy(group: list[str]) -> list[dict[str, Any]]:
        if r.dry_run:
            return copy_tables(r, group, pre)
        if getattr(local, "pair", None) is None:
            source, target = _connections(r)
            local.pair = pg.ConnPair(source.conninfo, target.conninfo)
            with lock:
                pairs.append(local.pair)
                if spare:
                    local.pair.dst = spare.pop()
        return copy_tables(r, group, pre, snapshot=snapshot, pair=local.pair)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gl-buckets") as side:
            bucket_future = side.submit(sync_buckets, r)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gl-tables") as pool:
                table_rows = [row for rows in pool.map(copy, groups) for row in rows]
            buckets = bucket_future.result()
    finally:
        if holder is not None:
            holder.close()
        for conn in spare:  # not handed to a worker (dry run, or no table to copy)
            conn.close()
        for pair in pairs:
            if pair.src is not None:
                pair.src.close()
    migration = health_result = verification = None
    errors: list[str] = []
    try:
        held.check()  # another writer took a lease over (ours expired): stop before migrating
        try:
            migration = migrate(r)
            health_result = health(r)
        except RefreshError as exc:  # a step failed: reported with the tables and verification
            errors.append(str(exc))
        staging = [p.dst for p in pairs if p.dst is not None and not p.dst.closed]
        # Nothing but a migration changes staging's tables between the commits and here.
        recount = migration is None or bool(migration.get("ran", True))
        verification = verify(r, table_rows, connections=staging, recount=recount)
    finally:
        for pair in pairs:
            pair.close()
    verification["problems"] = errors + verification["problems"]
    return summarize(r, pre, table_rows, buckets, migration, health_result, verification)


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, default=str, sort_keys=True)
