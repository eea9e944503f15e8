"""``make demo``'s staged-dataset-versions step (runbook 002), also runnable alone:
``python -m greenlight.dev.datasets_demo`` (starts its own S3 server and Airflow API server).

:func:`datasets_step` works on a copy of ``include/config/datasets.yaml`` under
``.local/demo/`` (promotion rewrites the config it is given; the packaged file stays as it is):

1. creates the pools of every dataset version through the REST API;
2. runs the primary's and the staged version's update DAGs (``airflow dags test``): each writes a
   small Zarr v2 store to its own path, shown with the ``dataset_version`` it declares;
3. shows a bad staged entry refused by ``greenlight datasets check`` (exit 2, one line per rule);
4. promotes the staged version (validate, pointer, config, staged DAGs deleted through the REST
   API), keeping the old primary as a staged legacy version;
5. cleans up that legacy version and prints what it left on purpose (its store path).

Running it again is safe: the config copy is fresh each time, the stores are rewritten in place
and the pointer records the promotion it replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from greenlight.dagsupport.api import AirflowApi
from greenlight.datasets import naming
from greenlight.datasets.config import CONFIG_ENV, load_config
from greenlight.datasets.ops import ensure_pools, read_current
from greenlight.dev import devstack
from greenlight.storage.s3 import make_client, parse_s3_uri

DATASET = "corn-stress-index"
PRIMARY = "0.2.0"
STAGED = "0.3.0"
SOURCE_CONFIG = devstack.ROOT / "include" / "config" / "datasets.yaml"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "datasets", *args], env=env, capture_output=True, text=True, check=False
    )


def _declared(client, store_path: str) -> str:
    uri = parse_s3_uri(store_path.rstrip("/") + "/", what="store path")
    keys = sum(
        1
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=uri.prefix)
        for _ in page.get("Contents", ())
    )
    meta = json.loads(client.get_object(Bucket=uri.bucket, Key=uri.prefix + ".zmetadata")["Body"].read())
    attrs = meta["metadata"][".zattrs"]
    variables = sorted({k.split("/")[0] for k in meta["metadata"] if k.endswith("/.zarray")})
    return f"{keys} objects, dataset_version={attrs['dataset_version']}, variables={','.join(variables)}"


def datasets_step(env: dict[str, str], client, api, *, step: int = 8, folder: Path | None = None) -> int:
    """The demo step; ``env`` is the demo's Airflow env (with ``AIRFLOW_CONN_AIRFLOW_API``), ``client``
    an S3 client, ``api`` a :class:`~greenlight.dagsupport.api.AirflowApi`. Returns 0 or 1."""
    from greenlight.dev.demo import run_dag  # local: import cycle, greenlight.dev.demo imports this module

    folder = folder or devstack.LOCAL / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "datasets.yaml"
    shutil.copyfile(SOURCE_CONFIG, config_path)
    env = {**env, CONFIG_ENV: str(config_path)}
    config = load_config(config_path)
    dataset = config.dataset(DATASET)
    devstack.ensure_buckets(client, [dataset.primary.store_path[5:].split("/", 1)[0]], versioned=True)

    _say(
        f"{step}. staged dataset versions (runbook 002): {DATASET} primary {PRIMARY} + staged {STAGED}, from {config_path}"
    )
    created = ensure_pools(config, api)
    _say("   pools (REST API): " + ", ".join(f"{name} {outcome}" for name, outcome in created.items()))
    for spec in dataset.versions:
        dag_id = spec.dag_id("update")
        if not run_dag(env, dag_id, {}, folder / f"{dag_id}.log"):
            return 1
        _say(f"   {spec.store_path}: {_declared(client, spec.store_path)}")

    bad = folder / "datasets-bad.yaml"
    doc = yaml.safe_load(config_path.read_text())
    doc["datasets"][0]["staged"] += [
        {"version": PRIMARY},  # a staged entry equal to the primary
        {"version": "0.4.0", "template_version": "0.4.1"},  # its template declares another version
    ]
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    check = _cli(env, "check", "--config", str(bad), "--no-import")
    _say(
        f"   a bad staged entry: greenlight datasets check exits {check.returncode} (the DAG file shows the same import error):"
    )
    error = json.loads(check.stdout.splitlines()[-1])["error"] if check.stdout.strip() else check.stderr
    for line in error.splitlines()[1:]:
        _say(f"   {line.strip()}")
    if check.returncode != 2:
        return 1

    _say(f"   promoting {STAGED} (keeping {PRIMARY} as a staged legacy version):")
    promote = _cli(
        env, "promote", "--config", str(config_path), "--dataset-id", DATASET, "--version", STAGED, "--keep-previous"
    )
    for line in promote.stderr.splitlines():
        if line.lstrip().startswith(("1.", "2.", "3.", "staging__", "pool", "no Airflow")) or line.startswith("   "):
            _say(f"   {line.strip()}")
    if promote.returncode != 0:
        _say(promote.stderr[-3000:])
        return 1
    after = load_config(config_path)
    staged_dag = naming.dag_id(DATASET, STAGED, "update", staged=True)
    pointer = read_current(after, DATASET, lambda: client)
    _say(
        f"   current pointer -> {pointer['store_path']} (previous primary {pointer['previous_primary']['version']}); "
        f"config primary now {after.dataset(DATASET).primary.version}; "
        f"{staged_dag} still in Airflow: {api.get_dag(staged_dag) is not None}"
    )

    _say(f"   cleaning up the legacy version {PRIMARY}:")
    cleanup = _cli(env, "cleanup", "--config", str(config_path), "--dataset-id", DATASET, "--version", PRIMARY)
    for line in cleanup.stdout.splitlines()[:-1]:
        _say(f"   {line}")
    if cleanup.returncode != 0:
        _say(cleanup.stderr[-3000:])
        return 1
    refused = _cli(env, "cleanup", "--config", str(config_path), "--dataset-id", DATASET, "--version", STAGED)
    _say(f"   cleanup of the primary {STAGED} is refused: exit {refused.returncode}")
    return 0 if refused.returncode == 2 else 1


def main() -> int:
    """Run the step alone: SeaweedFS + a migrated SQLite Airflow + an API server, all stopped after."""
    s3 = devstack.start_s3("demo")
    api_server = None
    try:
        env = devstack.airflow_env(
            devstack.LOCAL / "airflow", s3, extra={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
        )
        devstack.airflow(env, "db", "migrate")
        # A generous start timeout: on a busy machine the API server needs minutes, not seconds.
        api_server = devstack.ApiServer(env, log_path=devstack.LOCAL / "demo" / "api-server.log").start(timeout=600)
        env["AIRFLOW_CONN_AIRFLOW_API"] = api_server.connection()
        client = make_client(endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key=s3.secret_key)
        return datasets_step(env, client, AirflowApi(api_server.url, "admin", api_server.password), step=1)
    finally:
        if api_server is not None:
            api_server.stop()
        s3.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
