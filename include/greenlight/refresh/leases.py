"""The refresh's leases: one writer per staging bucket target, and one refresh per staging database.

Each bucket mapping's target prefix is leased exactly as a promotion leases its destination
(:mod:`greenlight.storage.lease`: same resource, the prefix URI, under the same root by default,
``_greenlight/manifests/`` of the target's bucket; see ``RefreshConfig.lease_root``), so two
refreshes, or a refresh and a promotion into the same prefix, never copy into it at once. The
staging database gets one lease too (resource ``postgres:<host>:<port>/<database>`` of the target
connection, known without connecting, so the DAG's failure callback can release it): each FK group's
transaction already locks its tables from TRUNCATE to commit, but two runs interleaving groups, a
migration and verification would leave staging a mix of two runs that neither run's verification
describes.

The CLI holds every lease from after the preflight to after the summary (one process); a DAG run
holds them run-scoped, from ``preflight`` to ``summary`` across its tasks, like ``artefact_promotion``.
Dry runs hold nothing.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from greenlight.storage.lease import Lease, Leases, release_run
from greenlight.storage.s3 import parse_s3_uri

log = logging.getLogger("greenlight.refresh.leases")

OPERATION = "refresh"


def database_resource(conn) -> str:
    """The lease name of the staging database a :class:`~greenlight.refresh.connections.PgConn` reaches
    (no conn id in it: two conn ids naming one database share it)."""
    return f"postgres:{conn.host or 'localhost'}:{conn.port or 5432}/{conn.database or ''}"


def run_specs(r) -> list[dict[str, str]]:
    """What the refresh run ``r`` (a ``greenlight.refresh.run.Refresh``) leases; nothing on a dry run."""
    if r.dry_run:
        return []
    section = r.config.postgres
    database = database_resource(r.resolve(section.target_conn)) if section is not None else None
    return specs(r.config, r.mappings(), database)


def specs(config, mappings, database: str | None) -> list[dict[str, str]]:
    """``{"resource", "root"}`` per bucket target of ``mappings`` (and for the staging database)."""
    out = [{"resource": m.target, "root": str(config.lease_root(m))} for m in mappings]
    root = config.database_lease_root()
    if database and root is not None:
        out.append({"resource": database, "root": str(root)})
    elif database:
        log.warning("no s3:// lease_uri or manifest_uri: the staging database is refreshed without a lease")
    return out


def _group(client, leases: list[dict[str, str]], *, run_id: str, wait: float, scope: str) -> Leases:
    return Leases(
        [
            Lease(
                client,
                parse_s3_uri(s["root"]),
                s["resource"],
                run_id=run_id,
                operation=OPERATION,
                wait=wait,
                scope=scope,
            )
            for s in leases
        ]
    )


@contextmanager
def holding(client, leases: list[dict[str, str]], *, run_id: str, wait: float = 0.0, scope: str = "process"):
    """Hold every lease of ``leases`` (all or none; :class:`~greenlight.storage.lease.LeaseHeldError`
    naming the resource and its holder, exit 2, after ``wait`` seconds) for the ``with`` block.
    Released at the end, success or failure; ``scope="run"`` (a DAG task) parks them instead."""
    with _group(client, leases, run_id=run_id, wait=wait, scope=scope).held(scope=scope) as group:
        yield group


def release(client, leases: list[dict[str, str]], *, run_id: str) -> list[str]:
    """End a DAG run's hold (its summary, or the failure callback); leases taken over meanwhile stay."""
    released: list[str] = []
    for root in sorted({s["root"] for s in leases}):
        resources = [s["resource"] for s in leases if s["root"] == root]
        released += release_run(client, parse_s3_uri(root), resources, run_id=run_id)
    return released
