"""The contract as a Great Expectations 1.x suite, and its validation in an ephemeral GX context.

:func:`schema_frame` turns a schema (plus sample rows) into a DataFrame; :func:`gx_suite` expresses
the contract as expectations over it; :func:`validate_with_gx` runs them. The DAG runs the same
suite and frame through the GX provider's operator and reports with :func:`gx_result_entry`.
GX and pandas are imported inside the functions: GX takes seconds to import (and prints ~200 INFO
lines), which neither DAG parsing nor a CLI run without gates should pay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from greenlight.contracts.model import Contract, freshness_cutoff, roles, specs
from greenlight.contracts.values import as_date, is_null

SAMPLE_PREFIX = "sample."  # sample columns in the GX frame: "sample.<column>"

SCHEMA_FRAME_COLUMNS = ["part", "role", "name", "dtype", "dims", "signature"]


def signature(role: str, name: str, dtype: str | None, dims: Any = None) -> str:
    """One schema element as text: ``column:forecast_yield:float``, ``coordinate:lat:float64``,
    ``variable:stress_index:float32(time,lat,lon)``."""
    text = f"{role}:{name}:{dtype}"
    if role == "variable":
        text += f"({','.join(dims) if dims is not None else '?'})"
    return text


def expected_signatures(contract: Contract) -> list[str]:
    return sorted(
        signature(role, name, dtype, dims)
        for role in roles(contract.kind)
        for name, (dtype, dims) in specs(contract, role).items()
    )


def schema_frame(schema: dict, sample: list[dict] | None = None):
    """A pandas DataFrame for GX: one ``part == "schema"`` row per column/variable/coordinate
    (``role, name, dtype, dims, signature``), then, with a ``sample``, one ``part == "sample"``
    row per sampled record whose values are in ``sample.<column>`` columns (date columns as
    ``datetime.date``, datetime columns as naive-UTC timestamps)."""
    import pandas as pd  # heavy: see the module docstring

    rows = []
    for role in roles(schema.get("kind", "table")):
        for name, (dtype, dims) in specs(schema, role).items():
            shown_dims = ",".join(dims) if dims is not None else (name if role == "coordinate" else None)
            rows.append(
                {
                    "part": "schema",
                    "role": role,
                    "name": name,
                    "dtype": dtype,
                    "dims": shown_dims,
                    "signature": signature(role, name, dtype, dims),
                }
            )
    frame = pd.DataFrame(rows, columns=SCHEMA_FRAME_COLUMNS)
    if not sample:
        return frame
    types = schema.get("columns", {})
    columns = list(dict.fromkeys(c for row in sample for c in row))
    data: dict[str, Any] = {"part": ["sample"] * len(sample)}
    for col in columns:
        values = [None if is_null(row.get(col)) else row.get(col) for row in sample]
        if types.get(col) == "date":  # datetime.date objects: GX compares them with a date min_value
            data[SAMPLE_PREFIX + col] = pd.Series([as_date(v) for v in values], dtype="object")
        elif types.get(col) == "datetime":
            parsed = pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce", utc=True, format="ISO8601")
            data[SAMPLE_PREFIX + col] = parsed.dt.tz_localize(None)
        else:
            data[SAMPLE_PREFIX + col] = pd.Series(values, dtype="object")
    return pd.concat([frame, pd.DataFrame(data)], ignore_index=True)


def _quiet_gx() -> None:
    """GX logs ~200 INFO lines; one of its modules sets its own logger to INFO on import."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # heavy: GX is imported here, not at the top (see the module docstring)
    import great_expectations.data_context.types.base  # noqa: F401  (sets its logger to INFO)

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def gx_suite(contract: Contract, *, now: dt.datetime | None = None, sample: bool = True, context=None):
    """The contract as a GX 1.x ExpectationSuite over :func:`schema_frame`'s frame.

    * the set of ``signature`` values of the schema rows equals the contract's (contains it with
      ``allow_extra``);
    * with ``sample`` (tables that check values): sample rows exist, ``sample.<key>`` values are
      not null, and the freshness column's max is at least the cutoff (``now`` - max_age_days).

    Each expectation's ``meta`` says which greenlight check it is (``schema``, ``empty``,
    ``null_keys``, ``stale``). With ``context`` (e.g. in GXValidateDataFrameOperator's
    ``configure_expectations``) the suite is added to that context, as a validation definition needs,
    and the context's progress bars are turned off.
    """
    _quiet_gx()
    # heavy: GX is imported here, not at the top (see the module docstring)
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    base_meta = {"contract": contract.name, "contract_version": contract.version}
    expectations: list = []
    schema_rows = Column("part") == "schema"
    set_expectation = (
        gx.expectations.ExpectColumnDistinctValuesToContainSet
        if contract.allow_extra
        else gx.expectations.ExpectColumnDistinctValuesToEqualSet
    )
    expectations.append(
        set_expectation(
            column="signature",
            value_set=expected_signatures(contract),
            row_condition=schema_rows,
            meta={**base_meta, "greenlight_check": "schema"},
        )
    )
    if sample and contract.needs_sample:
        sample_rows = Column("part") == "sample"
        expectations.append(
            gx.expectations.ExpectColumnDistinctValuesToContainSet(
                column="part", value_set=["schema", "sample"], meta={**base_meta, "greenlight_check": "empty"}
            )
        )
        for col in contract.non_null:
            expectations.append(
                gx.expectations.ExpectColumnValuesToNotBeNull(
                    column=SAMPLE_PREFIX + col,
                    row_condition=sample_rows,
                    meta={**base_meta, "greenlight_check": "null_keys", "name": col},
                )
            )
        if contract.freshness:
            cutoff = freshness_cutoff(contract, now)
            is_date = contract.columns[contract.freshness.column] == "date"
            minimum = cutoff.date().isoformat() if is_date else cutoff.replace(tzinfo=None).isoformat()
            expectations.append(
                gx.expectations.ExpectColumnMaxToBeBetween(
                    column=SAMPLE_PREFIX + contract.freshness.column,
                    min_value=minimum,
                    row_condition=sample_rows,
                    meta={**base_meta, "greenlight_check": "stale", "name": contract.freshness.column},
                )
            )
    # Built in the constructor: add_expectation() would need a current GX data context.
    suite = gx.ExpectationSuite(
        name=f"greenlight.{contract.name}.v{contract.version}", expectations=expectations, meta=dict(base_meta)
    )
    if len(suite.expectations) != len(expectations):  # the constructor only logs invalid ones
        raise RuntimeError(f"GX dropped expectations of contract {contract.name}: see the GX log")
    if context is not None:
        # local: great_expectations takes seconds to import (see the module docstring)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in task logs
        suite = context.suites.add_or_update(suite)
    return suite


_GX: dict[str, Any] = {}


def _gx_batch_definition():
    """One ephemeral context + pandas datasource + dataframe asset + whole-frame batch definition."""
    if "batch_definition" not in _GX:
        _quiet_gx()
        # heavy: GX is imported here, not at the top (see the module docstring)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in task logs
        source = context.data_sources.add_pandas(name="greenlight_contracts")
        asset = source.add_dataframe_asset(name="schema_frame")
        _GX["batch_definition"] = asset.add_batch_definition_whole_dataframe(name="whole_frame")
    return _GX["batch_definition"]


def _gx_observed(result: dict) -> Any:
    if result.get("observed_value") is not None:
        return result["observed_value"]
    keys = (
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "partial_unexpected_list",
        "missing_count",
        "partial_missing_list",
    )
    return {k: result[k] for k in keys if k in result} or None


def validate_with_gx(
    contract: Contract, schema: dict, sample: list[dict] | None = None, now: dt.datetime | None = None
) -> dict:
    """Run :func:`gx_suite` on :func:`schema_frame` in an ephemeral GX context.

    Returns ``{"success", "suite", "results": [{"expectation", "check", "kwargs", "success",
    "observed", "missing"?, "unexpected"?, "exception"?}]}`` (JSON-serialisable). Sample
    expectations run only when a ``sample`` is given.
    """
    frame = schema_frame(schema, sample)
    suite = gx_suite(contract, now=now, sample=sample is not None)
    batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": frame})
    outcome = batch.validate(suite, result_format="SUMMARY")
    results = []
    for item in outcome.results:
        doc = item.to_json_dict()
        config = doc.get("expectation_config") or {}
        info = doc.get("exception_info") or {}
        results.append(
            gx_result_entry(
                config.get("type"),
                (config.get("meta") or {}).get("greenlight_check"),
                config.get("kwargs"),
                doc.get("success"),
                doc.get("result"),
                info.get("exception_message") if info.get("raised_exception") else None,
            )
        )
    out = {
        "success": bool(outcome.success),
        "suite": suite.name,
        "statistics": dict(outcome.statistics or {}),
        "results": results,
    }
    return json.loads(json.dumps(out, default=str))


def gx_result_entry(expectation, check, kwargs, success, result, exception=None) -> dict[str, Any]:
    """One expectation's outcome in greenlight's gate format (shared by the ephemeral-context
    validation here and the GX provider operator's ``describe_dict()`` in the DAG)."""
    # ``row_condition``/``condition_parser`` select schema or sample rows (``check`` says which) and
    # serialise differently in the two runners: left out so both record the same entry.
    kwargs = {k: v for k, v in (kwargs or {}).items() if k not in ("batch_id", "row_condition", "condition_parser")}
    result = result or {}
    entry: dict[str, Any] = {
        "expectation": expectation,
        "check": check,
        "kwargs": kwargs,
        "success": bool(success),
        "observed": _gx_observed(result),
    }
    if "value_set" in kwargs:  # set expectations: what the contract lacks / what is new
        entry["missing"] = sorted(map(str, result.get("partial_missing_list") or []))
        entry["unexpected"] = sorted(map(str, result.get("partial_unexpected_list") or []))
    if exception:
        entry["exception"] = exception
    return entry
