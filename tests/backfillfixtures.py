"""The small Airflow the backfill end-to-end tests run on: ``airflow standalone`` (LocalExecutor)
with a PostgreSQL metadata DB, a DAGs folder holding only the DAG files a test names, task
manifests under a local folder, and the ``airflow_api`` connection tasks use to reach this same API
server (the backfill summary hook asks it which backfill a run belongs to)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2ehelpers import Api, wait_for

from greenlight.dev import devstack
from greenlight.dev.featurestack import start_postgres
from greenlight.storage.manifests import safe_name

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BackfillAirflow:
    api: Api
    cli_env: dict[str, str]  # the environment an operator's `greenlight backfill` runs with
    manifests: Path
    dags: Path

    def task_manifest(self, dag_id: str, run_id: str, task: str) -> dict:
        """The task manifest of ``task`` (``name.<map index>`` for a mapped one) in run ``run_id``."""
        return json.loads((self.manifests / dag_id / safe_name(run_id) / f"{task}.json").read_text())


@contextlib.contextmanager
def backfill_airflow(home: Path, s3env, dag_files: list[Path], dag_ids: list[str], extra: dict | None = None):
    """Start the stack with ``dag_files`` copied into its DAGs folder; yields a :class:`BackfillAirflow`
    once each of ``dag_ids`` is parsed; stops every process by PID at the end."""
    dags = home / "dags"
    dags.mkdir(parents=True)
    for path in dag_files:
        shutil.copy(path, dags / path.name)
    manifests = home / "task_manifests"
    # PostgreSQL, not SQLite, for the metadata DB: creating a backfill writes every run in one
    # request while the scheduler writes too, and SQLite's "database is locked" can cut it short.
    pg = start_postgres(home / "pg", database="airflow")
    env = devstack.airflow_env(
        home,
        s3env,
        extra={
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg.user}@{pg.host}:{pg.port}/airflow",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # One API server answers every task's Execution API calls: on 2 busy cores the default
            # 5 s timeout fails tasks before they start.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "GREENLIGHT_TASK_MANIFEST_ROOT": str(manifests),
            **(extra or {}),
        },
    )
    standalone = None
    try:
        devstack.airflow(env, "db", "migrate")
        standalone = devstack.Standalone(env)
        # The admin password is chosen before the server starts, so the tasks' connection has it.
        password = secrets.token_urlsafe(16)
        (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
        connection = json.dumps({"conn_type": "http", "host": standalone.url, "login": "admin", "password": password})
        standalone.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
        standalone.env["AIRFLOW_CONN_AIRFLOW_API"] = connection
        standalone.start(timeout=600)
        assert standalone.admin_password() == password
        api = Api(standalone.url, password)
        for dag_id in dag_ids:
            wait_for(lambda dag_id=dag_id: api.get(f"/dags/{dag_id}"), 300, f"{dag_id} to be parsed")
        cli_env = dict(os.environ)
        cli_env.update(
            {
                "AIRFLOW_CONN_AIRFLOW_API": connection,
                "GREENLIGHT_TASK_MANIFEST_ROOT": str(manifests),
                "PYTHONPATH": str(ROOT / "include"),
            }
        )
        yield BackfillAirflow(api, cli_env, manifests, dags)
    finally:
        if standalone is not None:
            standalone.stop()
        pg.stop()


def greenlight_backfill(env: dict[str, str], dags_folder: Path, *args: str):
    """``python -m greenlight backfill ARGS`` as an operator runs it: (exit code, JSON result, stderr)."""
    cmd = [sys.executable, "-m", "greenlight", "backfill", "--dags-folder", str(dags_folder), "--poll", "1", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def airflow_summary(manifests: Path, airflow_id: int) -> dict | None:
    """``backfills/airflow-<N>/summary.json``: what the backfill's runs wrote themselves."""
    path = manifests / "backfills" / f"airflow-{airflow_id}" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def states_of(summary: dict | None) -> list[tuple[str, str]]:
    return [(p["partition"], p["state"]) for p in (summary or {}).get("partitions", ())]


def backfill_succeeds(stack: BackfillAirflow, dag_id: str, start: str, end: str, partitions: list[str]) -> dict:
    """``greenlight backfill --dag-id DAG --start START --end END --max-parallel 2``, checked as an
    operator would: exit 0, exactly ``partitions`` ran, each a success in the summary file and in the
    summary the backfill's runs wrote themselves. Returns the summary file's content."""
    started = time.monotonic()
    args = ("--dag-id", dag_id, "--start", start, "--end", end, "--max-parallel", "2")
    code, out, err = greenlight_backfill(stack.cli_env, stack.dags, *args)
    print(f"\nbackfill of {len(partitions)} partition(s) of {dag_id}: {time.monotonic() - started:.0f}s")
    assert code == 0, err[-3000:]
    assert out["ran"] == partitions and out["counts"] == {"success": len(partitions)}, out
    succeeded = [(p, "success") for p in partitions]
    summary = json.loads(Path(out["summary"]).read_text())
    assert summary["status"] == "succeeded" and states_of(summary) == succeeded, summary
    (airflow_id,) = out["airflow_backfill_ids"]
    assert states_of(airflow_summary(stack.manifests, airflow_id)) == succeeded
    return summary
