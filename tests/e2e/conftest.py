"""The stack ``make airflow`` starts, once per test session, for the end-to-end tests that use it.

``local_stack`` is :func:`greenlight.dev.airflowstack.start` in a temporary folder: SeaweedFS with the
demo QA bucket, PostgreSQL (demo bars, Feast registry) + Redis, the demo DVC repo and its remotes,
the MLflow store and ``airflow standalone`` with the connections every DAG uses. The only
difference from ``make airflow``: schedules are off (``none``), so that the runs a test waits for
are the ones it triggered. Stopped by PID at the end of the session.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from e2ehelpers import Api


@pytest.fixture(scope="session")
def local_stack(request):
    from greenlight.dev import airflowstack

    # Not under pytest's tmp_path: concurrent pytest sessions prune old /tmp/pytest-of-* dirs.
    workdir = Path(tempfile.mkdtemp(prefix="greenlight-localstack-"))
    started = time.monotonic()
    # A generous start timeout: ~35 s alone on 2 cores, minutes when the machine is shared.
    stack = airflowstack.start(
        workdir, credentials_file=workdir / "credentials.env", schedules=False, start_timeout=900
    )
    try:
        stack.wait_for_dags(timeout=600)
        print(f"\nlocal stack up in {time.monotonic() - started:.0f}s ({stack.url}; state under {workdir})")
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(f"\nlocal stack state (Airflow logs, task logs) kept for a look: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_api(local_stack) -> Api:
    return Api(local_stack.url, local_stack.admin_password())
