"""The operations runbook's safe-retry categories, as every greenlight task states them.

Each task's docstring (its ``doc_md`` in the Airflow UI) carries one line ``Retry category: X``, and
``docs/runbooks.md`` has the same label for every task in its retry-categories table; a test walks
every DAG in ``dags/`` and checks both.

- **A — clear in place** (same run id): the task writes only run-scoped outputs, or converges when
  rerun (re-plans, merges into the run's own manifest). Clear the failed task in the UI.
- **B — trigger a new run**: a publishing step that moves ``current`` pointers or aliases. It
  refuses to run twice under one run id unless its outputs are identical
  (:func:`greenlight.promotion.gates.ensure_same_publish`), so the failed run stays intact for
  forensics and a new run publishes cleanly.
- **C — fix the cause first**: the task fails on purpose when data, contract, permissions or
  config are wrong; its failure message says "do not retry". Fix the cause, then rerun.

Whatever the task's category, a failure whose triage class is not retryable says "do not retry"
in its message: fix its cause first, then rerun as the category says.
"""

from __future__ import annotations

import re
from pathlib import Path

CATEGORIES: dict[str, str] = {
    "A": "clear in place (same run id): run-scoped outputs or a rerun that converges",
    "B": "trigger a new run: a publishing step (moves current pointers / aliases), refuses a second "
    "publish under one run id unless identical",
    "C": "fix the cause first (data, contract, permission, config), then rerun: the failure says do not retry",
}

_LABEL = re.compile(r"Retry category:\s*\**\s*([ABC])\b")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*\**([ABC])\**\s*\|")


def category_of(doc: str | None) -> str | None:
    """The category a task's docstring states (``Retry category: A``), else None."""
    found = _LABEL.findall(doc or "")
    return found[0] if len(set(found)) == 1 else None


def docs_table(path: str | Path) -> dict[tuple[str, str], str]:
    """``(dag_id, task_id) -> category`` from the retry-categories table of ``docs/runbooks.md``
    (rows ``| `dag_id` | `task_id` | A | why |``)."""
    rows: dict[tuple[str, str], str] = {}
    for line in Path(path).read_text().splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows[(match.group(1), match.group(2))] = match.group(3)
    return rows
