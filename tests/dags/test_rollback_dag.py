"""The artefact_rollback DAG through ``dag.test()``: a dry run changes nothing, a rollback restores
prod exactly, a manifest that does not exist fails the plan task without retry (the library and the
CLI: tests/integration/test_rollback.py)."""

from __future__ import annotations

import pytest
import rollbackfixtures
from dagrun import run_dag
from helpers import listing

promoted = rollbackfixtures.promoted  # fixtures shared with tests/integration/test_rollback.py
config_file = rollbackfixtures.config_file


@pytest.mark.usefixtures("airflow_db", "config_file")
def test_rollback_dag(s3, buckets, area, promoted):
    _, prod = buckets
    before, manifest = promoted

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": manifest, "dry_run": True})
    assert state == "success", tis
    assert listing(s3, prod, area) != before

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": manifest})
    assert state == "success", tis
    assert listing(s3, prod, area) == before

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": f"s3://{prod}/_greenlight/{area}none/index.json"})
    assert state == "failed" and tis["plan"] == ("failed", 1)  # bad input: no retry
