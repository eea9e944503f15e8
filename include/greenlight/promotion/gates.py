"""Contract gates: decide per prefix whether QA may reach prod, before anything is copied.

A gate reads the QA artefact's schema (metadata only; a small sample for tables whose contract
checks values), compares it with the prefix's contract and with what prod holds now (drift), and
validates the same contract with Great Expectations. The result is a JSON record that goes to XCom,
the task log and the run's manifests (``promotions/<run>/gates/<prefix>.json``).

Drift needs to know which contract version prod was promoted under: every verified promotion
publishes a **current pointer** per prod prefix (``current/<prefix>.json``: run id, manifest,
contract and version, plus the pointer it replaced), written only after verification passed. A
sharded prefix's pointer also names every shard's manifest part (``manifests``; ``manifest`` is the
first, as before): read it with :func:`pointer_manifests`, which also reads the older pointers.

No Airflow imports here: the DAG and the CLI share it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from greenlight.errors import ContractError, GreenlightError, PublishedError
from greenlight.promotion.config import PrefixConfig
from greenlight.storage.manifests import ManifestStore, legacy_safe_name, safe_name, utcnow

log = logging.getLogger("greenlight.promotion.gates")

POINTER_KIND = "greenlight.current-pointer/v1"
GATE_KIND = "greenlight.gate/v1"

#: ``validate(contract, qa_schema, sample, now)`` -> ``{"success", "suite", "results": [...]}``
Validator = Callable[..., dict[str, Any]]


class GateFailedError(GreenlightError):
    """One or more prefixes do not meet their contract (or drifted from prod): nothing was promoted."""

    exit_code = 2
    kind = "contract"

    def __init__(self, gates: list[dict[str, Any]]):
        self.gates = [g for g in gates if not g["passed"]]
        lines = [reason for g in self.gates for reason in g["reasons"]]
        shown = "; ".join(lines[:12]) + (f" (+{len(lines) - 12} more)" if len(lines) > 12 else "")
        names = ", ".join(g["name"] or g["prefix"] for g in self.gates)
        super().__init__(f"contract gate failed for {names}: {shown}")


# ------------------------------------------------------------------------------ current pointers


def _dest_name(prefix: PrefixConfig | str) -> str:
    """A prod prefix (configured, or its ``s3://`` URI as manifests record it) as a file name."""
    dest = prefix if isinstance(prefix, str) else str(prefix.destination)
    return safe_name(dest.removeprefix("s3://"))


def pointer_path(prefix: PrefixConfig | str) -> str:
    return f"current/{_dest_name(prefix)}.json"


def _legacy_pointer_path(prefix: PrefixConfig | str) -> str:
    dest = prefix if isinstance(prefix, str) else str(prefix.destination)
    return f"current/{legacy_safe_name(dest.removeprefix('s3://'))}.json"


def stored_pointer(store: ManifestStore, prefix: PrefixConfig | str) -> dict[str, Any] | None:
    """The pointer at its collision-free name, else one written under the old name for the same
    destination (the old names could be shared by several prefixes, hence the destination check)."""
    doc = store.read(pointer_path(prefix))
    if doc is not None:
        return doc
    dest = prefix if isinstance(prefix, str) else str(prefix.destination)
    legacy = store.read(_legacy_pointer_path(prefix))
    if legacy is not None and legacy.get("destination") == dest:
        return legacy
    return None


def pointer_manifests(pointer: dict[str, Any] | None) -> list[str]:
    """Every promotion manifest a pointer names: one per shard of a sharded prefix (``manifests``),
    else its ``manifest`` (unsharded prefixes, and pointers written before shards named every part:
    :func:`greenlight.promotion.rollback.shard_parts` finds a part's siblings from its name)."""
    if not pointer:
        return []
    parts = pointer.get("manifests")
    if isinstance(parts, list) and parts:
        return [p for p in parts if isinstance(p, str) and p]
    return [pointer["manifest"]] if isinstance(pointer.get("manifest"), str) and pointer["manifest"] else []


def read_pointer(store: ManifestStore | None, prefix: PrefixConfig) -> dict[str, Any] | None:
    return stored_pointer(store, prefix) if store is not None else None


#: ``publish_pointer(..., replacing=UNREAD)``: the caller has not read the current pointer.
UNREAD: Any = object()


def publish_pointer(store: ManifestStore, prefix: PrefixConfig, *, replacing: Any = UNREAD, **fields: Any) -> str:
    """Point ``current/<prefix>.json`` at a verified promotion, keeping the pointer it replaces.

    One PUT (or temp + rename), so readers see the old or the new pointer, never half of one.
    Rolling back the pointer is writing ``previous`` back (see :func:`restore_pointer`).
    ``replacing``: the current pointer (None: there is none) when the caller already read it
    while holding the prefix's lease (no second read); otherwise it is read here.
    """
    rel = pointer_path(prefix)
    old = stored_pointer(store, prefix) if replacing is UNREAD else replacing
    if old and fields.get("run_id") is not None and old.get("run_id") == fields.get("run_id"):
        # Retry category B: a publishing step does not run twice under one run id. A rerun that
        # would publish the very same outputs is a no-op; anything else is refused, unchanged.
        ensure_same_publish(store.uri(rel), old, fields)
        return store.uri(rel)
    if old:
        old = {k: v for k, v in old.items() if k != "previous"}
    doc = {
        "kind": POINTER_KIND,
        "source": str(prefix.source),
        "destination": str(prefix.destination),
        "published_at": utcnow(),
        **fields,
        "previous": old or None,
    }
    return store.write(rel, doc)


def ensure_same_publish(where: str, published: dict[str, Any], fields: dict[str, Any]) -> None:
    """Refuse (``PublishedError``, exit 2, nothing written) a second publish under the run id that
    already published ``published`` at ``where`` unless every field is identical.

    Shared by every publishing step (current pointers, model aliases): clearing a category-B step
    after it succeeded must not leave a half-published state behind or rewrite history.
    """

    def norm(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    differing = sorted(k for k, v in fields.items() if norm(published.get(k)) != norm(v))
    if not differing:
        log.info("%s already published by run %s with the same outputs: nothing to do", where, fields.get("run_id"))
        return
    shown = "; ".join(f"{k}: published {published.get(k)!r}, now {fields[k]!r}" for k in differing[:6])
    raise PublishedError(
        f"{where} was already published by run {fields.get('run_id')} with different outputs ({shown}): "
        "a publishing step does not run twice under one run id — trigger a new run (retry category B)"
    )


def restore_pointer(store: ManifestStore, prefix: PrefixConfig | str, run_id: str) -> bool:
    """After a rollback of ``run_id``: put back the pointer that run replaced (if it is current).

    ``prefix`` is a configured prefix or the prod destination URI a manifest records."""
    rel = pointer_path(prefix)
    current = stored_pointer(store, prefix)
    if not current or current.get("run_id") != run_id:
        return False
    previous = current.get("previous")
    doc = (
        {**previous, "previous": None, "restored_at": utcnow(), "restored_from": run_id}
        if previous
        else {
            "kind": POINTER_KIND,
            "source": current.get("source"),
            "destination": current.get("destination"),
            "run_id": None,
            "contract": None,
            "contract_version": None,
            "restored_at": utcnow(),
            "restored_from": run_id,
            "previous": None,
        }
    )
    store.write(rel, doc)
    return True


# ------------------------------------------------------------------------------ one gate


def _gx_reasons(label: str, gx_result: dict[str, Any] | None) -> list[str]:
    reasons = []
    for item in (gx_result or {}).get("results", ()):
        if item.get("success"):
            continue
        kwargs = item.get("kwargs") or {}
        what = item.get("expectation")
        column = kwargs.get("column")
        detail = []
        if item.get("missing"):
            detail.append(f"missing {item['missing']}")
        if item.get("unexpected"):
            detail.append(f"unexpected {item['unexpected']}")
        if not detail:
            expected = {k: v for k, v in kwargs.items() if k in ("min_value", "max_value", "value_set")}
            detail.append(f"observed {item.get('observed')!r}, expected {expected or 'success'}")
        if item.get("exception"):
            detail.append(f"error {item['exception']}")
        reasons.append(f"{label}: GX {what} on {column}: {', '.join(detail)}")
    return reasons


def evaluate_gate(
    client,
    prefix: PrefixConfig,
    *,
    store: ManifestStore | None = None,
    now: dt.datetime | None = None,
    validate: Validator | None = None,
) -> dict[str, Any]:
    """Check one prefix against its contract and against prod; never raises for a data problem.

    A QA artefact that cannot be read (missing prefix, no object matching ``select``, unreadable
    file) is a failed gate, not an error. S3 errors that a retry can fix propagate.
    Returns ``{"prefix", "name", "destination", "contract", "contract_version",
    "prod_contract_version", "passed", "mismatches", "gx", "reasons", "qa_object", "checked_at"}``.
    """
    base = {
        "kind": GATE_KIND,
        "prefix": prefix.label,
        "name": prefix.name,
        "destination": str(prefix.destination),
        "checked_at": utcnow(),
    }
    if not prefix.contract:
        return {**base, "contract": None, "passed": True, "mismatches": [], "gx": None, "reasons": []}
    # Local: greenlight.contracts costs ~0.4 s to import (measured with -X importtime); pointer
    # readers (rollback, datasets, models) import this module and never check a contract.
    from greenlight import contracts

    contract = contracts.load_contract(prefix.contract)
    pointer = read_pointer(store, prefix)
    prod_version = None
    if pointer and pointer.get("contract") == contract.name and pointer.get("contract_version") is not None:
        prod_version = int(pointer["contract_version"])
    base.update(contract=contract.name, contract_version=contract.version, prod_contract_version=prod_version)
    label = prefix.name or prefix.label
    try:
        qa_schema, sample = contracts.read_artefact(
            client, prefix.source.bucket, prefix.source.prefix, contract, now=now
        )
    except ContractError as exc:
        record = {
            "prefix": prefix.label,
            "contract": contract.name,
            "layer": "contract",
            "check": "unreadable",
            "role": None,
            "name": None,
            "expected": "a readable artefact",
            "observed": exc.reason,
            "message": str(exc),
        }
        return {**base, "passed": False, "mismatches": [record], "gx": None, "reasons": [f"{label}: {exc}"]}
    prod_schema = contracts.read_schema(
        client, prefix.destination.bucket, prefix.destination.prefix, contract, now=now, missing_ok=True
    )
    mismatches = contracts.check(
        contract, qa_schema, prod_schema, prod_contract_version=prod_version, sample=sample, now=now
    )
    validate = validate or contracts.validate_with_gx
    gx_result = validate(contract, qa_schema, sample, now)
    # One line per problem: a drift finding about a column the contract check already reported
    # (e.g. a renamed column is both) stays in ``mismatches`` but is not repeated in ``reasons``.
    seen = {(m["role"], m["name"]) for m in mismatches if m["layer"] == "contract"}
    reasons = [
        f"{label}: {m['message']}" for m in mismatches if m["layer"] == "contract" or (m["role"], m["name"]) not in seen
    ]
    if not mismatches:  # GX states the same contract: report it only when it alone disagrees
        reasons += _gx_reasons(label, gx_result)
    return {
        **base,
        "passed": not mismatches and bool(gx_result.get("success")),
        "mismatches": mismatches,
        "gx": gx_result,
        "reasons": reasons,
        "qa_object": qa_schema.get("key") or qa_schema.get("prefix"),
        "drift_checked": prod_schema is not None,
    }


def gate_path(run_id: str, prefix: PrefixConfig) -> str:
    return f"promotions/{safe_name(run_id)}/gates/{_dest_name(prefix)}.json"


def record_gate(store: ManifestStore | None, run_id: str, prefix: PrefixConfig, gate: dict[str, Any]) -> str | None:
    """Keep the gate's result with the run's manifests (the place an on-call engineer looks first)."""
    if store is None:
        return None
    return store.write(gate_path(run_id, prefix), {**gate, "run_id": run_id})


def log_gate(gate: dict[str, Any]) -> None:
    label = gate["name"] or gate["prefix"]
    if gate.get("contract") is None:
        log.info("gate %s: no contract configured, nothing to check", label)
        return
    if gate["passed"]:
        drift = "and prod schema" if gate.get("drift_checked") else "(no prod data yet: drift not checked)"
        log.info("gate %s: PASS contract %s v%s %s", label, gate["contract"], gate["contract_version"], drift)
        return
    log.error("gate %s: FAIL contract %s v%s", label, gate["contract"], gate["contract_version"])
    for reason in gate["reasons"]:
        log.error("  %s", reason)
