"""Everything ``make airflow`` starts, so that every greenlight DAG runs green in the web UI.

All on 127.0.0.1, from pip packages, with its state under one work folder:

* SeaweedFS (S3) with the demo QA bucket seeded and signed off — ``artefact_promotion``,
  ``artefact_rollback`` (and, through the promotion's Asset events, ``commodity_hindcast_prod``);
* an MLflow store (SQLite) with the finished QA run the promotion's preflight looks for;
* PostgreSQL with a day of demo 5-minute bars, the SQL feature views and Feast's registry applied,
  and Redis as Feast's online store — ``feature_materialization``. A feed appends the newest bars
  every minute, so the hourly schedule keeps finding fresh data for as long as the stack runs;
* a git + DVC repo with two S3 remotes whose main remote lost two objects, and the reconcile config
  that checks it — ``artefact_reconciliation`` (``repair`` on: one object comes back from the local
  cache, one from the backup remote);
* two more PostgreSQL servers, prod and staging of the refresh demo (``make demo`` step 8's
  databases, image bucket pair and alembic scripts) — ``staging_refresh``;
* a registered model ``yield-forecaster`` (version 1, artifacts on S3) and a smoke partition on the
  QA bucket — ``model_promotion`` (param ``smoke_partition``: see ``describe()``);
* a copy of the datasets config under the work folder (promotion and cleanup rewrite it) and the
  pool of every dataset version — the generated dataset DAGs, ``dataset_version_promotion`` and
  ``dataset_version_cleanup``;
* ``airflow standalone`` (LocalExecutor, SQLite metadata DB) with the connections the DAGs use,
  handed over as ``AIRFLOW_CONN_*`` environment variables of that process: ``aws_default``,
  ``greenlight_postgres``, ``greenlight_redis``, ``bluemoxon_db``, ``bluemoxon_staging_db`` and
  ``airflow_api`` (this same API server: the contract-halt path pauses consumer DAGs through it),
  plus ``MLFLOW_TRACKING_URI``.

No secret is written to a project file: the S3 keys live in the git-ignored credentials file
(mode 600), the admin password in Airflow's own SimpleAuthManager password file. ``cli.env`` in
the work folder (mode 600, git-ignored like it) holds everything the ``greenlight`` CLI needs to
act on the stack as the DAGs do (:meth:`LocalStack.cli_env`). The
``make airflow`` launcher is :func:`greenlight.dev.demo.cmd_airflow`; the end-to-end tests start the
same stack in a temporary folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from greenlight.dagsupport.api import AirflowApi, AirflowApiUnavailable
from greenlight.datasets.config import load_config as load_datasets
from greenlight.datasets.ops import ensure_pools
from greenlight.dev import devstack, models_demo, refresh_demo
from greenlight.dev.datasets_demo import SOURCE_CONFIG
from greenlight.dev.features_demo import run_demo
from greenlight.dev.featurestack import start_stack
from greenlight.dev.localstack import S3Server, start_seaweedfs
from greenlight.features import FeatureSettings, generate_bars, insert_bars, symbols
from greenlight.storage.s3 import make_client

log = logging.getLogger("greenlight.airflowstack")

PROMOTION_CONFIG = devstack.ROOT / "include" / "config" / "promotion.yaml"
GREENLIGHT_DAGS = ("artefact_promotion", "artefact_rollback", "feature_materialization", "artefact_reconciliation")
ALL_DAGS = (*GREENLIGHT_DAGS, "commodity_hindcast_prod")
#: The manual DAGs the stack also configures (the dataset DAG: the demo dataset's primary update).
MANUAL_DAGS = ("staging_refresh", "model_promotion", "dataset_version_promotion", "corn-stress-index__update")
SCHEDULE_ENVS = ("GREENLIGHT_PROMOTION_SCHEDULE", "GREENLIGHT_RECONCILE_SCHEDULE", "GREENLIGHT_FEATURES_SCHEDULE")


class BarFeed:
    """Appends the newest 5-minute demo bars to PostgreSQL every ``interval`` seconds (a thread).

    Stands in for the market-data loader upstream of the feature store, so that
    ``feature_materialization``'s freshness check passes for as long as the stack runs.
    """

    def __init__(self, pg_uri: str, redis_url: str, *, n_symbols: int = 5, interval: float = 60.0):
        self.pg_uri, self.redis_url = pg_uri, redis_url
        self.n_symbols = n_symbols
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="greenlight-bar-feed", daemon=True)

    def start(self) -> BarFeed:
        self._thread.start()
        return self

    def feed_once(self) -> int:
        settings = FeatureSettings.from_env(self.pg_uri, self.redis_url)
        now = dt.datetime.now(dt.UTC)
        rows = generate_bars(symbols(self.n_symbols), now - dt.timedelta(minutes=15), now)
        return insert_bars(settings, rows, upsert=False)  # bars already there are kept as they are

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.feed_once()
            except Exception as exc:  # noqa: BLE001 - a missed tick is retried at the next one
                log.warning("bar feed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class LocalStack:
    """The running stack; :meth:`stop` ends every process it started, by PID."""

    workdir: Path
    s3: S3Server
    features: Any  # greenlight.featurestack.FeatureStack
    standalone: devstack.Standalone | None = None
    feed: BarFeed | None = None
    reconcile_config: Path | None = None
    tracking_uri: str = ""
    dvc_repo: Path | None = None
    dvc_remote: str = ""
    refresh_servers: list = field(default_factory=list)
    refresh_config: Path | None = None
    datasets_config: Path | None = None
    model: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cli_env_file: Path | None = None

    @property
    def url(self) -> str:
        return self.standalone.url

    @property
    def env(self) -> dict[str, str]:
        """The environment of the Airflow processes (use it for ``airflow`` CLI calls)."""
        return self.standalone.env

    def admin_password(self) -> str:
        return self.standalone.admin_password()

    def cli_env(self) -> dict[str, str]:
        """What the ``greenlight`` CLI needs to act on this stack as the DAGs do: the S3 endpoint and
        keys, the MLflow store, ``AIRFLOW_HOME`` (task manifests), each config, PostgreSQL and Redis
        of the features demo, the refresh demo's two connections and ``airflow_api``."""
        names = (
            "AIRFLOW_HOME",
            "MLFLOW_TRACKING_URI",
            "GREENLIGHT_PROMOTION_CONFIG",
            "GREENLIGHT_RECONCILE_CONFIG",
            "GREENLIGHT_REFRESH_CONFIG",
            "GREENLIGHT_DATASETS_CONFIG",
        )
        env = {name: self.env[name] for name in names if name in self.env}
        env.update(self.s3.env())
        env.update(self.features.env())
        env.update({k: v for k, v in self.env.items() if k.startswith("AIRFLOW_CONN_")})
        return env

    def write_cli_env(self, path: Path) -> Path:
        """:meth:`cli_env` as a shell file for ``set -a; . FILE; set +a`` (mode 600: it holds the
        stack's S3 keys and admin password, like the credentials file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(self.cli_env().items()))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        path.chmod(0o600)
        return path

    def client(self):
        return make_client(
            endpoint_url=self.s3.endpoint_url, access_key=self.s3.access_key, secret_key=self.s3.secret_key
        )

    def api(self):
        return AirflowApi(self.url, "admin", self.admin_password())

    def wait_for_dags(self, dag_ids=ALL_DAGS, timeout: float = 180.0) -> None:
        """Until the DAG processor has parsed every DAG in ``dag_ids`` (visible in the API)."""
        api = self.api()
        missing = list(dag_ids)
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            try:
                missing = [d for d in missing if api.get_dag(d) is None]
            except AirflowApiUnavailable:
                pass
            if missing:
                time.sleep(1)
        if missing:
            raise RuntimeError(f"DAGs {missing} not parsed after {timeout}s; see {self.standalone.log_path}")

    def describe(self) -> list[str]:
        pg, rd = self.features.postgres, self.features.redis
        home = self.standalone.home
        return [
            f"Airflow UI: {self.url}  user: admin  password: in {home}/simple_auth_manager_passwords.json.generated",
            f"S3 (SeaweedFS): {self.s3.endpoint_url}  buckets: {_demo().QA_BUCKET}, {_demo().PROD_BUCKET}",
            f"PostgreSQL: {pg.host}:{pg.port}/{pg.database} (demo bars, feature views, Feast registry)  "
            f"Redis: {rd.host}:{rd.port} (Feast online store)",
            f"MLflow store: {self.tracking_uri}",
            f"DVC repo: {self.dvc_repo} (remote lost 2 objects; reconcile config {self.reconcile_config})",
            f"staging_refresh: prod PostgreSQL :{self.refresh_servers[0].port}, staging "
            f":{self.refresh_servers[1].port}, config {self.refresh_config}",
            f"model_promotion: model_name {self.model.get('model')}, candidate {self.model.get('version')}, "
            f"smoke_partition {self.model.get('partition')}",
            f"datasets config (a copy: promotion rewrites it): {self.datasets_config}",
            "Connections (env): aws_default, greenlight_postgres, greenlight_redis, bluemoxon_db, "
            "bluemoxon_staging_db, airflow_api",
        ]

    def stop(self) -> None:
        for step in (
            lambda: self.standalone and self.standalone.stop(),
            lambda: self.feed and self.feed.stop(),
            lambda: self.features and self.features.stop(),
            *(server.stop for server in self.refresh_servers),
            lambda: self.s3.stop(),
        ):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log.warning("stopping the local stack: %s", exc)


def _demo():
    from greenlight.dev import demo  # local: import cycle, greenlight.dev.demo imports this module (cmd_airflow)

    return demo


def _admin_password(home: Path) -> str:
    """The admin password of this Airflow home: kept from an earlier start, else a new random one,
    in the SimpleAuthManager's own password file (mode 600)."""
    path = home / "simple_auth_manager_passwords.json.generated"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads(path.read_text())["admin"])
    password = secrets.token_urlsafe(16)
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"admin": password}))
    path.chmod(0o600)
    return password


def feature_connections(features) -> dict[str, str]:
    """``AIRFLOW_CONN_GREENLIGHT_POSTGRES`` / ``..._REDIS`` for the local servers (no passwords:
    they accept loopback connections only)."""
    pg, rd = features.postgres, features.redis
    return {
        "AIRFLOW_CONN_GREENLIGHT_POSTGRES": json.dumps(
            {
                "conn_type": "postgres",
                "host": pg.host,
                "port": pg.port,
                "login": pg.user,
                "schema": pg.database,
                "extra": {"sslmode": "disable"},
            }
        ),
        "AIRFLOW_CONN_GREENLIGHT_REDIS": json.dumps(
            {"conn_type": "redis", "host": rd.host, "port": rd.port, "extra": {"db": 0}}
        ),
    }


def start(
    workdir: str | Path,
    *,
    airflow_home: str | Path | None = None,
    credentials_file: str | Path | None = None,
    port: int | None = None,
    schedules: bool = True,
    feed_interval: float = 60.0,
    start_timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _line: None,
) -> LocalStack:
    """Start the whole stack with its state under ``workdir``; returns once the scheduler is healthy.

    ``schedules=False`` sets every greenlight schedule to ``none`` (the tests trigger each DAG
    themselves); ``make airflow`` keeps them, so the scheduler runs each scheduled DAG's latest
    interval at once. A failure stops whatever was already started.
    """
    demo = _demo()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    home = Path(airflow_home).resolve() if airflow_home else workdir / "airflow"
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    creds = devstack.credentials(Path(credentials_file) if credentials_file else None)
    s3 = start_seaweedfs(
        workdir / "s3",
        creds["GREENLIGHT_S3_ACCESS_KEY"],
        creds["GREENLIGHT_S3_SECRET_KEY"],
        log_file=workdir / "seaweedfs.log",
    )
    stack = LocalStack(workdir=workdir, s3=s3, features=None, tracking_uri=demo.mlflow_uri(workdir))
    try:
        stack.features = start_stack(workdir / "features")
        timings["servers"] = time.monotonic() - t0
        progress(
            f"S3 {s3.endpoint_url}, PostgreSQL {stack.features.postgres.host}:{stack.features.postgres.port}, "
            f"Redis {stack.features.redis.host}:{stack.features.redis.port} started"
        )
        stack.reconcile_config = workdir / "reconcile.yaml"
        refresh = refresh_setup(workdir, stack)
        stack.datasets_config = datasets_setup(workdir, schedules=schedules)
        env = devstack.airflow_env(
            home,
            s3,
            extra={
                "GREENLIGHT_PROMOTION_CONFIG": str(PROMOTION_CONFIG),
                "GREENLIGHT_RECONCILE_CONFIG": str(stack.reconcile_config),
                "MLFLOW_TRACKING_URI": stack.tracking_uri,
                "GREENLIGHT_REFRESH_CONFIG": str(stack.refresh_config),
                "GREENLIGHT_DATASETS_CONFIG": str(stack.datasets_config),
                **refresh["connections"],
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # One API server answers the UI and every task's Execution API calls: on a busy
                # laptop the default 5 s timeout fails tasks before they start.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
                **feature_connections(stack.features),
                **({} if schedules else dict.fromkeys(SCHEDULE_ENVS, "none")),
            },
        )
        client = stack.client()

        def reconcile_repo() -> dict[str, Any]:
            built = demo.build_reconcile_repo(s3, client, workdir / "reconcile")
            demo.write_reconcile_config(stack.reconcile_config, built["targets"])
            return built

        # The DVC repo is built by subprocesses (git, dvc): beside the in-process seeding (Feast and
        # MLflow imports are CPU-bound and stay in this thread). `airflow standalone` migrates its
        # metadata DB itself.
        with ThreadPoolExecutor(1, thread_name_prefix="gl-stack") as pool:
            repo = pool.submit(reconcile_repo)
            started = time.monotonic()
            counts = demo.seed(client, dt.date.today(), tracking_uri=stack.tracking_uri)
            progress(
                f"seeded s3://{demo.QA_BUCKET}/ ({counts['uploaded']} uploaded, {counts['unchanged']} unchanged); "
                f"QA signed off; QA run finished in MLflow"
            )
            stack.model = _models_demo().register(stack.tracking_uri, s3.env(), client, demo.QA_BUCKET)
            progress(f"model {stack.model['model']} version {stack.model['version']} registered in MLflow")
            timings["seed_promotion"] = time.monotonic() - started
            started = time.monotonic()
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars to stdout
                summary = _features_demo(workdir, stack.features)
            timings["seed_features"] = time.monotonic() - started
            progress(
                f"PostgreSQL seeded ({summary['seeded']['rows']} bars), Feast registry applied, "
                f"views {', '.join(summary['feature_views'])} materialized and parity-checked"
            )
            built = repo.result()
            stack.dvc_repo, stack.dvc_remote = built["repo"], built["remote"]
            progress(f"DVC repo {built['repo']} pushed to {built['remote']} (+ backup); 2 objects lost from the remote")
        timings["prepared"] = time.monotonic() - t0
        stack.feed = BarFeed(stack.features.postgres.uri, stack.features.redis.url, interval=feed_interval).start()

        standalone = devstack.Standalone(env, port=port)
        password = _admin_password(standalone.home)
        standalone.env["AIRFLOW_CONN_AIRFLOW_API"] = json.dumps(
            {"conn_type": "http", "host": standalone.url, "login": "admin", "password": password}
        )
        stack.standalone = standalone
        progress(f"starting airflow standalone on {standalone.url} (log: {standalone.log_path}) ...")
        started = time.monotonic()
        standalone.start(timeout=start_timeout)
        timings["standalone"] = time.monotonic() - started
        pools = dataset_pools(load_datasets(stack.datasets_config), stack.api())
        progress(f"dataset pools (REST API): {', '.join(pools)}")
        stack.cli_env_file = stack.write_cli_env(workdir / "cli.env")
        timings["total"] = time.monotonic() - t0
        stack.timings = timings
        return stack
    except BaseException:
        stack.stop()
        raise


def _features_demo(workdir: Path, features) -> dict[str, Any]:
    logging.getLogger("feast").setLevel(logging.WARNING)
    return run_demo(workdir, stack=features)


def _models_demo():
    return models_demo


def refresh_setup(workdir: Path, stack: LocalStack) -> dict[str, Any]:
    """The refresh demo's prod and staging PostgreSQL (kept running: ``stack.stop`` ends them),
    image buckets and config, for ``staging_refresh``."""
    prepared = refresh_demo.prepare(workdir / "refresh", stack.client())
    stack.refresh_servers = prepared["servers"]
    stack.refresh_config = prepared["config"]
    return prepared


def datasets_setup(workdir: Path, *, schedules: bool) -> Path:
    """A copy of the packaged datasets config (``dataset_version_promotion`` / ``cleanup`` rewrite
    the config they are given); without ``schedules`` the generated DAGs are manual."""
    path = workdir / "datasets.yaml"
    if schedules:
        path.write_text(SOURCE_CONFIG.read_text())  # comments kept
        return path
    doc = yaml.safe_load(SOURCE_CONFIG.read_text())
    for dataset in doc.get("datasets") or ():
        dataset["schedule"] = None
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dataset_pools(config, api, *, attempts: int = 6, pause: float = 2.0) -> list[str]:
    """Every dataset version's pool (a DAG whose pool is missing never starts its task).

    ``make airflow`` keeps the schedules, so the scheduler starts the scheduled DAGs as soon as
    ``airflow standalone`` is healthy; on SQLite their first task-state writes can hold the
    metadata DB's lock for seconds and the API then answers 500 ("database is locked"). Creating
    a pool is idempotent (read, then create or update), so a 5xx is retried with a growing pause.
    """
    for attempt in range(1, attempts):
        try:
            outcomes = ensure_pools(config, api)
        except AirflowApiUnavailable as exc:
            log.warning("dataset pools: %s; retrying (%d/%d)", exc, attempt, attempts - 1)
            time.sleep(pause * attempt)
        else:
            return [f"{name} {outcome}" for name, outcome in outcomes.items()]
    return [f"{name} {outcome}" for name, outcome in ensure_pools(config, api).items()]  # last try: errors raise
