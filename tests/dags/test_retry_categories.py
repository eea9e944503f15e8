"""Every task of every greenlight DAG in dags/ states its retry category (A/B/C) in its doc (shown in
the UI), docs/runbooks.md lists every task with the same category, and every task carries the
retry policy that fails non-retryable classes at once."""

from __future__ import annotations

import re

import pytest
from dagrun import ROOT

from greenlight.retrycategory import CATEGORIES, category_of, docs_table


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    found = {dag_id: dag for dag_id, dag in bag.dags.items() if "greenlight" in (dag.tags or ())}
    assert len(found) >= 5, sorted(bag.dags)  # the DagBag really read the folder
    return found


def test_every_task_doc_names_its_category(dags):
    missing = [
        f"{dag_id}.{task.task_id}"
        for dag_id, dag in dags.items()
        for task in dag.tasks
        if category_of(task.doc_md) not in CATEGORIES
    ]
    assert missing == [], f"tasks without 'Retry category: A|B|C' in their docstring: {missing}"


def _table_id(dag) -> str:
    """A DAG generated per dataset version is listed once, as its id pattern
    (``staging__{dataset_id}__v{version}__update``)."""
    dataset = next((t.split(":", 1)[1] for t in dag.tags or () if t.startswith("dataset:")), None)
    if dataset is None:
        return dag.dag_id
    generic = dag.dag_id.replace(dataset, "{dataset_id}")
    return re.sub(r"__v[0-9][0-9a-z-]*__", "__v{version}__", generic)


def test_the_runbook_table_lists_every_task_with_the_same_category(dags):
    table = docs_table(ROOT / "docs" / "runbooks.md")
    in_dags = {(_table_id(dag), task.task_id): category_of(task.doc_md) for dag in dags.values() for task in dag.tasks}
    assert sorted(set(in_dags) - set(table)) == [], "tasks missing from docs/runbooks.md's retry-categories table"
    assert sorted(set(table) - set(in_dags)) == [], "docs/runbooks.md lists tasks that no DAG has"
    differ = {k: (in_dags[k], table[k]) for k in in_dags if in_dags[k] != table[k]}
    assert differ == {}, "docstring category != docs table category"
    # the categories are used as the runbook means them: the pointer publish is B, halts are C
    assert in_dags[("artefact_promotion", "verify")] == "B"
    assert in_dags[("artefact_promotion", "halt_prod_consumers")] == "C"


def test_every_task_has_the_greenlight_retry_policy(dags):
    without = [
        f"{dag_id}.{task.task_id}"
        for dag_id, dag in dags.items()
        for task in dag.tasks
        if type(getattr(task, "retry_policy", None) or getattr(task, "partial_kwargs", {}).get("retry_policy")).__name__
        != "GreenlightRetryPolicy"
    ]
    assert without == []
