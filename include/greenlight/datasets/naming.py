"""The one naming convention that links a staged version's branch, DAGs, pool, pod names and store.

| component | primary | staged version |
|---|---|---|
| git branch (team CI) | ``main`` | ``stage/{dataset_id}/v{version}`` |
| Airflow DAG ids | ``{dataset_id}__update`` / ``__validate`` | ``staging__{dataset_id}__v{version_dashes}__update`` / ``__validate`` |
| Airflow pool | ``dataset__{dataset_id}__v{version_dashes}`` | same rule |
| Kubernetes names | ``{dataset_id}-update`` / ``-validate`` | ``staging-{dataset_id}-v{version_dashes}-update`` / ``-validate`` |
| store path | ``{base}/{dataset_id}/v{version}.{ext}`` (the template's default) | same template |

Dots in the version become dashes in ids and Kubernetes names (DNS labels allow no dots).
"""

from __future__ import annotations

import re

JOBS = ("update", "validate")
PRIMARY = "primary"
STAGED = "staged"
BRANCH_PREFIX = "stage/"

#: Airflow's rule for dag ids, task ids and pool names (``airflow.utils.helpers.KEY_REGEX``), max 250.
AIRFLOW_ID = re.compile(r"^[\w.-]+$")
AIRFLOW_ID_MAX = 250
#: RFC 1123 DNS label, the rule for Kubernetes CronJob / pod names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63


def version_dashes(version: str) -> str:
    return version.replace(".", "-")


def dag_id(dataset_id: str, version: str, job: str, *, staged: bool) -> str:
    if not staged:
        return f"{dataset_id}__{job}"
    return f"staging__{dataset_id}__v{version_dashes(version)}__{job}"


def pool_name(dataset_id: str, version: str) -> str:
    return f"dataset__{dataset_id}__v{version_dashes(version)}"


def kubernetes_name(dataset_id: str, version: str, job: str, *, staged: bool) -> str:
    if not staged:
        return f"{dataset_id}-{job}"
    return f"staging-{dataset_id}-v{version_dashes(version)}-{job}"


def branch(dataset_id: str, version: str) -> str:
    return f"{BRANCH_PREFIX}{dataset_id}/v{version}"


def parse_branch(name: str) -> tuple[str, str]:
    """``stage/{dataset_id}/v{version}`` -> (dataset_id, version), as the team's CI parses it.

    Refs like ``refs/heads/stage/...`` are accepted; anything else is a ValueError."""
    name = name.removeprefix("refs/heads/")
    if not name.startswith(BRANCH_PREFIX):
        raise ValueError(f"branch {name!r} does not start with {BRANCH_PREFIX!r}")
    dataset_id, sep, version = name[len(BRANCH_PREFIX) :].rpartition("/v")
    if not sep or not dataset_id or not version or "/" in dataset_id:
        raise ValueError(f"branch {name!r} is not {BRANCH_PREFIX}<dataset_id>/v<version>")
    return dataset_id, version


def airflow_id_problem(name: str) -> str | None:
    if len(name) > AIRFLOW_ID_MAX:
        return f"{len(name)} characters, Airflow allows {AIRFLOW_ID_MAX}"
    if not AIRFLOW_ID.match(name):
        return "only letters, digits, '_', '.' and '-' are allowed"
    return None


def dns_label_problem(name: str) -> str | None:
    if len(name) > DNS_LABEL_MAX:
        return f"{len(name)} characters, a Kubernetes name (DNS label) allows {DNS_LABEL_MAX}"
    if not DNS_LABEL.match(name):
        return "a Kubernetes name (DNS label) allows only lowercase letters, digits and '-', not at either end"
    return None
