"""The local stack behind ``make demo``, ``make airflow`` and the end-to-end tests.

Everything runs on 127.0.0.1 from pip packages: SeaweedFS for S3, SQLite for Airflow's metadata
DB, and ``airflow standalone`` (LocalExecutor) for the web UI. State lives under ``.local/``
(git-ignored). Credentials for the local S3 server are generated once per checkout and kept in
``.local/credentials.env``; they never appear in code or logs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from greenlight.dev.localstack import S3Server, free_port, start_seaweedfs, stop_pid
from greenlight.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
LOCAL = ROOT / ".local"


def credentials(path: Path | None = None) -> dict[str, str]:
    """Load (or create once) the local S3 server's access key and secret."""
    path = path or LOCAL / "credentials.env"
    if path.exists():
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        values = {k.strip(): v.strip() for k, v in pairs}
        if values.get("GREENLIGHT_S3_ACCESS_KEY") and values.get("GREENLIGHT_S3_SECRET_KEY"):
            return values
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {
        "GREENLIGHT_S3_ACCESS_KEY": "gl" + secrets.token_hex(8),
        "GREENLIGHT_S3_SECRET_KEY": secrets.token_urlsafe(24),
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


def start_s3(name: str = "demo") -> S3Server:
    """SeaweedFS with data under ``.local/<name>/s3`` so a second run sees the first run's state."""
    creds = credentials()
    return start_seaweedfs(
        LOCAL / name / "s3",
        creds["GREENLIGHT_S3_ACCESS_KEY"],
        creds["GREENLIGHT_S3_SECRET_KEY"],
        log_file=LOCAL / name / "seaweedfs.log",
    )


def ensure_buckets(client, names: list[str], *, versioned: bool = True) -> None:
    for name in names:
        try:
            client.create_bucket(Bucket=name)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            pass
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def airflow_env(home: Path, s3: S3Server, *, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Airflow processes: SQLite DB under ``home``, the repo's DAGs, S3 connection."""
    home.mkdir(parents=True, exist_ok=True)
    conn = {
        "conn_type": "aws",
        "login": s3.access_key,
        "password": s3.secret_key,
        "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
    }
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "include"), os.environ.get("PYTHONPATH")])),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "MPLCONFIGDIR": str(home / ".mpl"),
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        }
    )
    env.update(s3.env())
    env.update(extra or {})
    return env


def airflow(env: dict[str, str], *args: str, check: bool = True, capture: bool = True, timeout: float = 600):
    """Run the ``airflow`` CLI of this interpreter's venv."""
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        check=check,
        capture_output=capture,
        text=True,
        timeout=timeout,
    )


def descendants(pid: int) -> list[int]:
    """All child PIDs of ``pid`` (recursively), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_tree(pid: int, timeout: float = 20.0) -> None:
    """Stop a process and every descendant by PID (``airflow standalone`` leaves workers behind)."""
    kids = descendants(pid)
    stop_pid(pid, timeout=timeout)
    for child in kids:
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    for child in kids:
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float, healthy, log_path: Path) -> bool:
    """Poll an Airflow health endpoint until ``healthy(answer)``; False on timeout. A process that
    exits meanwhile raises (its log says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            what = " ".join(map(str, proc.args[2:4]))
            raise RuntimeError(f"{what} exited early (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if healthy(json.loads(resp.read())):
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


class Standalone:
    """``airflow standalone`` on a chosen port, stopped with all its children."""

    def __init__(self, env: dict[str, str], *, port: int | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        self.env = dict(env)
        self.env.update(
            {
                "AIRFLOW__API__HOST": "127.0.0.1",  # loopback only (the default binds every interface)
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.port}/execution/",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            }
        )
        self.home = Path(self.env["AIRFLOW_HOME"])
        self.log_path = log_path or self.home / "standalone.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self, timeout: float = 180.0) -> Standalone:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        healthy = lambda health: health.get("scheduler", {}).get("status") == "healthy"  # noqa: E731
        if _wait_healthy(self.proc, f"{self.url}/api/v2/monitor/health", timeout, healthy, self.log_path):
            return self
        self.stop()
        raise RuntimeError(f"airflow standalone not healthy after {timeout}s; see {self.log_path}")

    def admin_password(self) -> str:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())["admin"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_tree(self.proc.pid)
        self.proc = None


class ApiServer:
    """``airflow api-server`` (core API only) on 127.0.0.1, for tasks that pause DAGs over REST.

    The admin password is chosen here and written to the SimpleAuthManager's password file before
    the server starts; ``connection()`` gives the ``airflow_api`` connection tasks use.
    """

    def __init__(self, env: dict[str, str], *, port: int | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        self.env = dict(env)
        self.home = Path(self.env["AIRFLOW_HOME"])
        self.log_path = log_path or self.home / "api-server.log"
        self.password = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> str:
        """The ``airflow_api`` connection as the JSON Airflow reads from ``AIRFLOW_CONN_AIRFLOW_API``."""
        return json.dumps({"conn_type": "http", "host": self.url, "login": "admin", "password": self.password})

    def start(self, timeout: float = 120.0) -> ApiServer:
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        passwords.write_text(json.dumps({"admin": self.password}))
        passwords.chmod(0o600)
        self.env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--apps", "core", "-w", "1"]
            + ["-H", "127.0.0.1", "-p", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if _wait_healthy(self.proc, f"{self.url}/api/v2/monitor/health", timeout, lambda _h: True, self.log_path):
            return self
        self.stop()
        raise RuntimeError(f"airflow api-server not answering after {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_tree(self.proc.pid)
        self.proc = None
