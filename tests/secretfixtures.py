"""Planted secrets for the redaction tests (tests/unit/test_redact.py, tests/integration/test_secrets.py,
tests/dags/test_secrets_dag.py): the planted credentials and ``assert_clean``, a git repository
served over HTTP on 127.0.0.1 (fixture ``git_http``; a test module takes it with
``git_http = secretfixtures.git_http``), and a reconcile config whose targets carry the credentials."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from greenlight.dev.localstack import free_port

TOKEN = "ghp_" + uuid.uuid4().hex + "PLANTEDTOKEN"
PASSWORD = "pw-" + uuid.uuid4().hex + "PLANTEDPW"
DEAD_TOKEN = "glpat-" + uuid.uuid4().hex + "PLANTEDDEAD"
PLANTED = (TOKEN, PASSWORD, DEAD_TOKEN)


def assert_clean(where: str, text: str, planted: tuple[str, ...] = PLANTED) -> None:
    for secret in planted:
        assert secret not in text, f"planted secret found in {where}"


@contextlib.contextmanager
def http_server(handler):
    """``handler`` served on 127.0.0.1 in a thread; yields ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def files_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def git_http(tmp_path_factory):
    """A git repository served over (dumb) HTTP on 127.0.0.1: clone URLs may carry credentials."""
    base = tmp_path_factory.mktemp("githttp")
    work = base / "work"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README").write_text("pipeline\n")
    subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "init"], check=True, env=env)
    served = base / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "repo.git")], check=True, env=env)
    subprocess.run(["git", "-C", str(served / "repo.git"), "update-server-info"], check=True, env=env)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    with http_server(handler) as address:
        yield address


def planted_reconcile_config(tmp_path: Path, git_http: str) -> Path:
    dead = free_port()
    path = tmp_path / "reconcile.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "report_uri": str(tmp_path / "reports"),
                "targets": [
                    {"name": "ok", "kind": "git_dvc", "repo": f"http://x-access-token:{TOKEN}@{git_http}/repo.git"},
                    {"name": "dead_git", "kind": "git_dvc", "repo": f"http://{DEAD_TOKEN}@127.0.0.1:{dead}/r.git"},
                    {"name": "dead_mlflow", "kind": "mlflow", "tracking_uri": f"http://gl:{PASSWORD}@127.0.0.1:{dead}"},
                ],
            }
        )
    )
    return path


FAST_FAIL = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "GIT_TERMINAL_PROMPT": "0"}
