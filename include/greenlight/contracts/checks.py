"""Checks: an artefact's schema (and sample) against its contract, and against what prod holds (drift).

:func:`check` returns mismatch records (an empty list = the artefact may be promoted);
:func:`evaluate` is one whole gate: read QA (and prod), check, and validate with GX.
"""

from __future__ import annotations

import datetime as dt

from greenlight.contracts.gx import validate_with_gx
from greenlight.contracts.model import UNKNOWN, Contract, freshness_cutoff, roles, specs
from greenlight.contracts.readers import read_artefact, read_schema
from greenlight.contracts.values import as_date, as_utc, is_null, location, utc_now


def _spec_text(role: str, spec: tuple[str, tuple | None]) -> str:
    dtype, dims = spec
    if role == "variable":
        return f"{dtype}({', '.join(dims) if dims is not None else '?'})"
    return dtype


def _diff(role: str, expected: dict, observed: dict, *, allow_extra: bool, record, unknown_ok=False) -> list[dict]:
    out: list[dict] = []
    missing = [n for n in expected if n not in observed]
    added = [n for n in observed if n not in expected]
    renamed: dict[str, str] = {}
    for name in missing:
        candidates = [a for a in added if observed[a] == expected[name]]
        if len(candidates) == 1 and sum(expected[m] == observed[candidates[0]] for m in missing) == 1:
            renamed[name] = candidates[0]
    retype_check = "column_retyped" if role == "column" else "dtype_changed"
    for name, spec in expected.items():
        if name in renamed:
            new = renamed[name]
            out.append(
                record(
                    f"{role}_renamed",
                    role,
                    name,
                    name,
                    new,
                    f"{role} {name!r} ({_spec_text(role, spec)}) is missing and a new {role} {new!r} of the same type "
                    f"appeared: renamed to {new!r}?",
                )
            )
        elif name not in observed:
            out.append(
                record(
                    f"{role}_missing",
                    role,
                    name,
                    _spec_text(role, spec),
                    None,
                    f"{role} {name!r} ({_spec_text(role, spec)}) is missing",
                )
            )
        else:
            (exp_type, exp_dims), (obs_type, obs_dims) = spec, observed[name]
            if exp_type != obs_type and not (unknown_ok and obs_type == UNKNOWN):
                note = " (all sampled values are empty)" if obs_type == UNKNOWN else ""
                out.append(
                    record(
                        retype_check,
                        role,
                        name,
                        exp_type,
                        obs_type,
                        f"{role} {name!r} should be {exp_type} but is {obs_type}{note}",
                    )
                )
            if exp_dims is not None and obs_dims is not None and tuple(exp_dims) != tuple(obs_dims):
                out.append(
                    record(
                        "dims_changed",
                        role,
                        name,
                        list(exp_dims),
                        list(obs_dims),
                        f"{role} {name!r} should have dims ({', '.join(exp_dims)}) but has ({', '.join(obs_dims)})",
                    )
                )
    if not allow_extra:
        for name in added:
            if name not in renamed.values():
                spec = observed[name]
                out.append(
                    record(
                        f"{role}_added",
                        role,
                        name,
                        None,
                        _spec_text(role, spec),
                        f"unexpected new {role} {name!r} ({_spec_text(role, spec)})",
                    )
                )
    return out


def check(
    contract: Contract,
    qa_schema: dict,
    prod_schema: dict | None = None,
    *,
    prod_contract_version: int | None = None,
    sample: list[dict] | None = None,
    now: dt.datetime | None = None,
) -> list[dict]:
    """Mismatches of the QA artefact; an empty list means it may be promoted.

    Layer ``contract``: QA against the contract (missing/added/renamed/retyped columns, variables,
    coordinates, changed dims; ``empty`` for a table without data rows; with a ``sample``:
    ``null_keys``, ``stale``).
    Layer ``drift``: QA against ``prod_schema`` (what prod holds now): any added, removed or
    retyped column/variable/coordinate, unless ``prod_contract_version`` is given and lower than
    ``contract.version`` (the contract was bumped: the change is expected).

    Each record: ``{"prefix", "contract", "layer", "check", "role", "name", "expected",
    "observed", "message"}``.
    """
    if qa_schema.get("kind") != contract.kind:
        raise ValueError(
            f"contract {contract.name} is kind {contract.kind} but the schema is kind {qa_schema.get('kind')}"
        )
    where = location(qa_schema.get("bucket", "?"), qa_schema.get("key") or qa_schema.get("prefix", ""))
    label = f"contract {contract.name} v{contract.version}"

    def make(layer: str, suffix: str):
        def record(check_name, role, name, expected, observed, message):
            return {
                "prefix": location(qa_schema.get("bucket", "?"), qa_schema.get("prefix", "")),
                "contract": contract.name,
                "layer": layer,
                "check": check_name,
                "role": role,
                "name": name,
                "expected": expected,
                "observed": observed,
                "message": f"{where}: {message}{suffix}",
            }

        return record

    out: list[dict] = []
    record = make("contract", f" ({label})")
    # A file without data rows: say so once instead of reporting every CSV column as of unknown type.
    empty = contract.kind == "table" and (
        qa_schema.get("rows_read") == 0 or qa_schema.get("num_rows") == 0 or sample == []
    )
    for role in roles(contract.kind):
        out += _diff(
            role,
            specs(contract, role),
            specs(qa_schema, role),
            allow_extra=contract.allow_extra,
            record=record,
            unknown_ok=empty,
        )
    if empty:
        out.append(record("empty", "column", None, "at least one data row", 0, "the file has no data rows"))
    elif sample is not None and contract.kind == "table":
        out += _check_sample(contract, qa_schema, sample, now, record)

    drift_expected = prod_contract_version is not None and prod_contract_version < contract.version
    if prod_schema is not None and not drift_expected:
        if prod_schema.get("kind") != contract.kind:
            raise ValueError(
                f"the prod schema is kind {prod_schema.get('kind')}, contract {contract.name} is {contract.kind}"
            )
        prod_where = location(prod_schema.get("bucket", "?"), prod_schema.get("key") or prod_schema.get("prefix", ""))
        shown = "unknown" if prod_contract_version is None else f"v{prod_contract_version}"
        drift = make(
            "drift",
            f" (QA vs prod {prod_where}, promoted under contract {shown}, now {label}; if the change is "
            f"intended, bump the contract version once prod consumers are ready)",
        )
        for role in roles(contract.kind):
            out += _diff(
                role,
                specs(prod_schema, role),
                specs(qa_schema, role),
                allow_extra=False,
                record=drift,
                unknown_ok=empty,
            )
    return out


def _check_sample(contract: Contract, qa_schema: dict, sample: list[dict], now, record) -> list[dict]:
    out: list[dict] = []
    observed = qa_schema.get("columns", {})
    for col in contract.non_null:
        if col not in observed:
            continue  # reported as missing/renamed already
        nulls = sum(1 for row in sample if is_null(row.get(col)))
        if nulls:
            out.append(
                record(
                    "null_keys",
                    "column",
                    col,
                    0,
                    nulls,
                    f"key column {col!r} is empty in {nulls} of the {len(sample)} sampled rows",
                )
            )
    fresh = contract.freshness
    if fresh and fresh.column in observed and observed[fresh.column] in ("date", "datetime"):
        cutoff = freshness_cutoff(contract, now)
        if observed[fresh.column] == "date" or contract.columns[fresh.column] == "date":
            values = [d for d in (as_date(row.get(fresh.column)) for row in sample) if d is not None]
            newest, limit = (max(values) if values else None), cutoff.date()
        else:
            values = [d for d in (as_utc(row.get(fresh.column)) for row in sample) if d is not None]
            newest, limit = (max(values) if values else None), cutoff
        if newest is None or newest < limit:
            age = f"{(utc_now(now).date() - as_date(newest)).days} days old" if newest is not None else "no value"
            out.append(
                record(
                    "stale",
                    "column",
                    fresh.column,
                    f">= {limit.isoformat()}",
                    newest.isoformat() if newest is not None else None,
                    f"newest {fresh.column} is {newest.isoformat() if newest is not None else 'missing'} ({age}); "
                    f"at most {fresh.max_age_days:g} days old is allowed (>= {limit.isoformat()})",
                )
            )
    return out


# ------------------------------------------------------------------------------------ one gate


def evaluate(
    client,
    contract: Contract,
    qa_bucket: str,
    qa_prefix: str,
    *,
    prod_bucket: str | None = None,
    prod_prefix: str | None = None,
    prod_contract_version: int | None = None,
    now: dt.datetime | None = None,
    use_gx: bool = True,
) -> dict:
    """Read QA (and prod, when given; a missing prod prefix skips drift), check, and validate with GX.

    Returns ``{"contract", "version", "passed", "mismatches", "gx", "qa_schema", "prod_schema"}``;
    ``passed`` needs no mismatch and, with ``use_gx``, a successful GX validation.
    """
    qa_schema, sample = read_artefact(client, qa_bucket, qa_prefix, contract, now=now)
    prod_schema = None
    if prod_bucket is not None and prod_prefix is not None:
        prod_schema = read_schema(client, prod_bucket, prod_prefix, contract, now=now, missing_ok=True)
    mismatches = check(
        contract, qa_schema, prod_schema, prod_contract_version=prod_contract_version, sample=sample, now=now
    )
    gx_result = validate_with_gx(contract, qa_schema, sample, now) if use_gx else None
    return {
        "contract": contract.name,
        "version": contract.version,
        "passed": not mismatches and (gx_result is None or gx_result["success"]),
        "mismatches": mismatches,
        "gx": gx_result,
        "qa_schema": qa_schema,
        "prod_schema": prod_schema,
    }
