"""The README's "CLI against the local stack" block, run as written: ``make airflow`` writes
``cli.env``, and with it sourced in a fresh shell every CLI command of that block reaches the same
servers and configs as the DAGs (no other variable set by hand).

Real parts: the session's local stack (SeaweedFS, PostgreSQL + Redis, the DVC repo, MLflow store,
the refresh demo's two PostgreSQL servers, ``airflow standalone``); the CLI runs as a subprocess
under ``bash`` with a clean environment (only PATH and HOME), from the project folder.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from greenlight.dev import devstack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # the first test may start the session stack

GREENLIGHT = Path(sys.executable).parent / "greenlight"

# The read-only commands of the README block and their exit code on the demo stack: reconcile's
# dry run finds the two objects the demo's DVC remote lost (exit 1 until a repair run).
COMMANDS = {
    "greenlight promote --config include/config/promotion.yaml --dry-run": 0,
    "greenlight reconcile --dry-run": 1,
    "greenlight features plan": 0,
    "greenlight refresh --dry-run": 0,
    "greenlight datasets check": 0,
}


def run_sourced(env_file: Path, command: str) -> subprocess.CompletedProcess:
    script = f'set -a; . "{env_file}"; set +a; {command.replace("greenlight ", f"{GREENLIGHT} ", 1)}'
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        ["bash", "-c", script], cwd=devstack.ROOT, env=clean, capture_output=True, text=True, timeout=300
    )


def test_cli_env_file_is_private_and_complete(local_stack):
    path = local_stack.cli_env_file
    assert path is not None and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the S3 keys and the admin password
    env = local_stack.cli_env()
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_URI",
        "AIRFLOW_HOME",
        "GREENLIGHT_PG_URI",
        "GREENLIGHT_REDIS_URL",
        "GREENLIGHT_REFRESH_CONFIG",
        "GREENLIGHT_RECONCILE_CONFIG",
        "AIRFLOW_CONN_AIRFLOW_API",
    ):
        assert env.get(name), name
    assert json.loads(env["AIRFLOW_CONN_AIRFLOW_API"])["host"] == local_stack.url


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_cli_block_runs_against_the_stack(local_stack, command):
    done = run_sourced(local_stack.cli_env_file, command)
    expected = COMMANDS[command]
    assert done.returncode == expected, (
        f"{command}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    if command.startswith("greenlight promote"):
        assert json.loads(done.stdout.strip().splitlines()[-1])["dry_run"] is True
    if command.startswith("greenlight reconcile"):
        # The demo repo's DVC remote, found through the env file's S3 endpoint: both lost objects.
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert (summary["dry_run"], summary["missing"], summary["unrecoverable"]) == (True, 2, 0), summary


def test_without_the_env_file_the_cli_names_what_is_missing(local_stack):
    """The same command with nothing sourced does not silently reach some other server."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    done = subprocess.run(
        [str(GREENLIGHT), "features", "plan"],
        cwd=devstack.ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "GREENLIGHT_PG_URI" in done.stderr + done.stdout
