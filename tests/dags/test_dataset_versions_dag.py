"""Staged dataset versions end to end: ``dag.test()`` of a generated staged DAG on the real
SeaweedFS server, then ``python -m greenlight datasets promote|cleanup`` against a real
``airflow api-server`` (REST pause/delete of the DAGs ``dag.test()`` registered, pools) and S3
(pointer moved, store paths untouched); a config error as one DAG import error; the parse cost of
150 dataset versions (300 DAGs), printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from dagrun import run_dag
from helpers import listing

from greenlight.dagsupport.api import AirflowApi
from greenlight.datasets.config import CONFIG_ENV, load_config
from greenlight.datasets.jobs import run_job
from greenlight.datasets.ops import ensure_pools

pytestmark = pytest.mark.usefixtures("airflow_db")
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
# staged versions for the DAG tests
base: {base}
pointer_root: {pointers}
datasets:
  - id: {id}
    owner: weather-team
    schedule: "0 6 * * *"
    primary: 0.2.0   # what users read
    update: greenlight.datasets.example:update
    validate: greenlight.datasets.example:validate
    staged:
      - version: 0.3.0
        template_version: 0.3.0
      - version: 0.4.0
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "datasets", *args], capture_output=True, text=True, env=os.environ.copy()
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory, s3, buckets, airflow_api):
    """A dataset with a primary (0.2.0) and two staged versions on S3, its pools created through
    the REST API, the primary's and 0.4.0's stores written, then ``dag.test()`` of the staged
    0.3.0 update DAG with a listing of the whole area before and after."""
    _, prod = buckets
    token = uuid.uuid4().hex[:6]
    area = f"datasets-{token}/"
    dataset_id = f"corn-{token}"
    path = tmp_path_factory.mktemp("datasets") / "datasets.yaml"
    path.write_text(
        CONFIG.format(base=f"s3://{prod}/{area}stores", pointers=f"s3://{prod}/{area}pointers/", id=dataset_id)
    )
    patch = pytest.MonkeyPatch()
    patch.setenv(CONFIG_ENV, str(path))
    api = AirflowApi(airflow_api.url, "admin", airflow_api.password)
    config = load_config(path)
    pools = ensure_pools(config, api)  # the pools the generated tasks run in
    for version, role in (("0.2.0", "primary"), ("0.4.0", "staged")):
        run_job(config, dataset_id, "update", role=role, version=version, s3_client_factory=lambda: s3)
    before = listing(s3, prod, area)
    dag_id = f"staging__{dataset_id}__v0-3-0__update"
    state, states, xcoms, _ = run_dag(dag_id, file="dataset_versions.py")
    after = listing(s3, prod, area)
    try:
        yield SimpleNamespace(
            path=path,
            dataset_id=dataset_id,
            prod=prod,
            area=area,
            api=api,
            pools=pools,
            dag_id=dag_id,
            state=state,
            states=states,
            xcoms=xcoms,
            before=before,
            after=after,
            store=lambda v: f"s3://{prod}/{area}stores/{dataset_id}/v{v}.zarr",
        )
    finally:
        patch.undo()


def test_staged_update_writes_only_its_own_path(staged):
    assert staged.pools == {
        f"dataset__{staged.dataset_id}__v0-2-0": "created",
        f"dataset__{staged.dataset_id}__v0-3-0": "created",
        f"dataset__{staged.dataset_id}__v0-4-0": "created",
    }
    assert staged.state == "success", staged.states
    result = staged.xcoms["update"]
    result = json.loads(result) if isinstance(result, str) else result
    assert result["store_path"] == staged.store("0.3.0") and result["role"] == "staged"
    staged_prefix = f"{staged.area}stores/{staged.dataset_id}/v0.3.0.zarr/"
    written = {k for k in staged.after if staged.before.get(k) != staged.after[k]}
    assert written and all(k.startswith(staged_prefix) for k in written), sorted(written)
    assert f"{staged_prefix}.zmetadata" in written
    assert {k: staged.after[k] for k in staged.before} == staged.before  # primary and 0.4.0 untouched


def test_promote_moves_the_pointer_and_removes_the_staged_dags(staged, s3):
    staged_ids = [f"staging__{staged.dataset_id}__v0-3-0__{job}" for job in ("update", "validate")]
    assert all(staged.api.get_dag(d) is not None for d in staged_ids)  # registered by dag.test()
    before = listing(s3, staged.prod, f"{staged.area}stores/")
    # The cleanup test may have removed 0.4.0 already (tests share the module's dataset, any order).
    still_staged = [
        s.version for s in load_config(staged.path).dataset(staged.dataset_id).staged if s.version != "0.3.0"
    ]
    proc = cli("promote", "--config", str(staged.path), "--dataset-id", staged.dataset_id, "--version", "0.3.0")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(summary["deleted_dags"]) == sorted(staged_ids)
    assert all(staged.api.get_dag(d) is None for d in staged_ids)
    assert staged.api.get(f"/api/v2/pools/dataset__{staged.dataset_id}__v0-3-0") is not None  # now the primary's
    key = f"{staged.area}pointers/current/datasets_{staged.dataset_id}.json"
    pointer = json.loads(s3.get_object(Bucket=staged.prod, Key=key)["Body"].read())
    assert pointer["store_path"] == staged.store("0.3.0") and pointer["version"] == "0.3.0"
    assert pointer["previous_primary"] == {"version": "0.2.0", "store_path": staged.store("0.2.0")}
    assert listing(s3, staged.prod, f"{staged.area}stores/") == before  # no store path written or deleted
    text = staged.path.read_text()
    assert "# what users read" in text
    entry = yaml.safe_load(text)["datasets"][0]
    assert entry["primary"] == "0.3.0" and [s["version"] for s in entry.get("staged", [])] == still_staged
    assert entry["template_version"] == "0.3.0"  # moved with the version
    again = cli("promote", "--config", str(staged.path), "--dataset-id", staged.dataset_id, "--version", "0.3.0")
    assert again.returncode == 2 and "already the primary" in again.stdout


def test_cleanup_pauses_deletes_and_keeps_the_store(staged, s3):
    ids = [f"staging__{staged.dataset_id}__v0-4-0__{job}" for job in ("update", "validate")]
    for dag_id in ids:
        staged.api.set_paused(dag_id, False)
    store_prefix = f"{staged.area}stores/{staged.dataset_id}/v0.4.0.zarr/"
    store_before = listing(s3, staged.prod, store_prefix)
    assert store_before

    dry = cli(
        "cleanup", "--config", str(staged.path), "--dataset-id", staged.dataset_id, "--version", "0.4.0", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert all(staged.api.get_dag(d)["is_paused"] is False for d in ids)
    assert "version: 0.4.0" in staged.path.read_text()

    proc = cli("cleanup", "--config", str(staged.path), "--dataset-id", staged.dataset_id, "--version", "0.4.0")
    assert proc.returncode == 0, proc.stderr
    assert f"Not deleted (clean up manually when ready):\n  {staged.store('0.4.0')}\n" in proc.stdout
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(summary["paused"]) == sorted(ids) and sorted(summary["deleted_dags"]) == sorted(ids)
    assert all(staged.api.get_dag(d) is None for d in ids)
    assert listing(s3, staged.prod, store_prefix) == store_before
    assert "0.4.0" not in [s.version for s in load_config(staged.path).dataset(staged.dataset_id).staged]

    primary = load_config(staged.path).dataset(staged.dataset_id).primary.version
    refused = cli("cleanup", "--config", str(staged.path), "--dataset-id", staged.dataset_id, "--version", primary)
    assert refused.returncode == 2
    assert json.loads(refused.stdout.splitlines()[-1])["kind"] == "refused"
    assert f"{staged.dataset_id}__update" not in refused.stdout  # nothing about the primary's DAGs was touched


def test_a_config_error_is_one_import_error(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    doc = yaml.safe_load((ROOT / "include/config/datasets.yaml").read_text())
    doc["datasets"][0]["staged"].append({"version": doc["datasets"][0]["primary"]})
    doc["datasets"][0]["staged"][0]["template_version"] = "9.9.9"
    bad = tmp_path / "datasets.yaml"
    bad.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(CONFIG_ENV, str(bad))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert list(bag.import_errors) == [str(ROOT / "dags" / "dataset_versions.py")]
    (error,) = bag.import_errors.values()
    assert f"{bad}: 2 problems in the datasets config:" in error
    assert "datasets[0].staged[1].version: dataset 'corn-stress-index' version '0.2.0'" in error
    assert "[rule: staged-differs-from-primary]" in error and "[rule: template-version]" in error
    assert error.count("[rule: staged-differs-from-primary]") == 1
    assert "dataset_version_promotion" in bag.dags and "artefact_promotion" in bag.dags
    assert not any(d.startswith("staging__") for d in bag.dags)


def test_parse_cost_of_150_dataset_versions(tmp_path, monkeypatch):
    """50 datasets x (primary + 2 staged) = 300 DAGs. Prints the figure; asserts no timing."""
    from airflow.dag_processing.dagbag import DagBag

    datasets = [
        {
            "id": f"dataset-{i:02d}",
            "primary": "1.0.0",
            "schedule": f"{i % 60} 6 * * *",
            "update": "greenlight.datasets.example:update",
            "validate": "greenlight.datasets.example:validate",
            "tags": ["bench"],
            "staged": [{"version": "1.1.0"}, {"version": "2.0.0"}],
        }
        for i in range(50)
    ]
    big = tmp_path / "datasets.yaml"
    big.write_text(yaml.safe_dump({"base": "s3://prod-x/datasets", "datasets": datasets}))
    dag_file = str(ROOT / "dags" / "dataset_versions.py")
    DagBag(dag_folder=dag_file)  # warm: imports paid once per parser process, as in the DAG processor
    monkeypatch.setenv(CONFIG_ENV, str(big))
    wall, cpu = [], []
    for _ in range(3):
        started, started_cpu = time.perf_counter(), time.process_time()
        bag = DagBag(dag_folder=dag_file)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        assert bag.import_errors == {} and len(bag.dags) == 300
    started_cpu = time.process_time()
    load_config(big)
    config_cpu = time.process_time() - started_cpu
    # CPU time as well as wall time: on a shared machine the wall time mostly measures the neighbours.
    print(
        f"\nparse cost, 50 datasets x 3 versions = 300 DAGs, DagBag of dags/dataset_versions.py: "
        f"CPU median {sorted(cpu)[1]:.3f} s (runs {', '.join(f'{t:.3f}' for t in cpu)}), "
        f"wall median {sorted(wall)[1]:.3f} s; of which config load + validation {config_cpu * 1000:.0f} ms CPU; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
