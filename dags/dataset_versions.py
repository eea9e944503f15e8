"""
### dataset_versions — the primary and staged versions of every dataset, generated from one config

Automates runbook 002 (staged dataset versions): instead of a `stage/<id>/v<version>` branch
deploying renamed Kubernetes cronjobs, each version listed in `include/config/datasets.yaml`
(or `$GREENLIGHT_DATASETS_CONFIG`) gets its own Airflow update and validate DAG:

| DAG | for |
|---|---|
| `{dataset_id}__update`, `{dataset_id}__validate` | the primary version |
| `staging__{dataset_id}__v{version_dashes}__update` / `__validate` | each staged version (tags `staging`, `dataset:<id>`) |

Each DAG has one task in the version's pool `dataset__{dataset_id}__v{version_dashes}`,
`max_active_runs=1`, the version as its `version` param; the store path is derived from it and a
staged version never writes the primary's path (checked in the task, at run time). Staged
schedules are the primary's shifted by a few minutes. A config error is one import error of this
file, listing every problem (`python -m greenlight datasets check` shows the same, exit 2).
See docs/datasets.md.
"""

from __future__ import annotations

from greenlight.datasets.config import load_config
from greenlight.datasets.factory import build_dags

DAGS = build_dags(load_config())
globals().update(DAGS)
