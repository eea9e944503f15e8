"""docker-compose.yaml and ``greenlight.dev.celerystack`` (``make airflow-celery``) describe one topology.

The compose file is what users deploy; the local stack is what the Celery e2e test runs. These
checks fail when one changes without the other: a service added to compose with no local
counterpart, an env var or connection id renamed on one side, a setting whose value drifts. No
server is started: the local stack's processes and environment are planned, not run.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from greenlight.dev import celerystack
from greenlight.dev.celerystack import COMPOSE_SERVICES, CONTAINER_ONLY_ENV, SECRET_NAMES, CeleryStack

ROOT = Path(__file__).resolve().parents[2]
IMAGE_HOME = "/opt/airflow"  # AIRFLOW_HOME in the image; ./include is mounted below it

#: Settings the local stack adds and compose does not need (the image and its mounts provide them,
#: or a port is fixed inside a container). Anything else set only locally is a drift.
LOCAL_ONLY_ENV = {
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT",  # one machine runs every component: tasks wait longer
    celerystack.MARKER_ENV,  # finds the stack's processes in /proc
}
_OURS = re.compile(r"^(AIRFLOW_|GREENLIGHT_|MLFLOW_)")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


def environment(block: dict) -> dict[str, str]:
    env = block.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def common_env() -> dict[str, str]:
    return environment(compose()["x-airflow-common"])


def default(value: str) -> str:
    """A compose value with every ``${VAR:-default}`` replaced by its default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


@pytest.fixture
def stack(tmp_path, monkeypatch):
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    s3 = celerystack.Endpoint("http://127.0.0.1:9", "test-key", "test-secret")
    stack = CeleryStack(tmp_path / "state", s3=s3)
    stack.plan()
    return stack


def test_every_compose_service_has_a_local_counterpart_and_nothing_else():
    services = compose()["services"]
    assert set(COMPOSE_SERVICES) == set(services)
    for name, (kind, _what) in COMPOSE_SERVICES.items():
        one_shot = name.endswith("-init")
        assert (kind == "job") == one_shot, f"{name}: a one-shot compose job must be a local step (and only those)"
        uses_airflow_image = (
            services[name].get("image") == compose()["x-airflow-common"]["image"] and "command" in (services[name])
        )
        if kind == "airflow":
            assert uses_airflow_image, f"{name} is an Airflow component locally but not in compose"


def test_one_process_per_long_running_airflow_service_with_the_compose_command(stack):
    services = compose()["services"]
    planned: dict[str, list[list[str]]] = {}
    for proc in stack.plan().values():
        planned.setdefault(proc.service, []).append(proc.args)
    long_running = {n for n, (kind, _) in COMPOSE_SERVICES.items() if kind != "job"} - {"postgres", "redis", "minio"}
    assert set(planned) == long_running
    for name, runs in planned.items():
        if name == "mlflow":
            assert all(args[1] == "server" for args in runs)
            continue
        command = services[name]["command"]
        # airflow-apiserver's compose command is a bash script that ends in `exec airflow api-server`.
        words = command.split() if isinstance(command, str) else command[-1].split("exec airflow", 1)[-1].split()
        for args in runs:
            assert args[1:3] == ["-m", "airflow"] and args[3 : 3 + len(words)] == words, (name, args)
    assert len(planned["airflow-worker"]) == 2
    hostnames = [a[a.index("--celery-hostname") + 1] for a in planned["airflow-worker"]]
    assert len(set(hostnames)) == 2 and hostnames == stack.worker_names


def test_every_process_stays_on_loopback(stack):
    for proc in stack.plan().values():
        args = proc.args
        if "api-server" in args:
            assert args[args.index("-H") + 1] == "127.0.0.1"
        if "mlflow" in proc.service:
            assert "--host=127.0.0.1" in args
        if "worker" in args or "triggerer" in args:
            assert "--skip-serve-logs" in args, f"{proc.name}: its log server would bind every interface"
    env = stack.airflow_env()
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"


def test_same_env_names_as_compose(stack):
    local = stack.airflow_env()
    compose_names = set(common_env())
    assert compose_names - set(local) == set(), "env vars compose sets and the local stack does not"
    ours = {k for k in local if _OURS.match(k) and k not in os.environ}
    extra = ours - compose_names - LOCAL_ONLY_ENV
    assert not extra, f"set only locally (add them to docker-compose.yaml or to LOCAL_ONLY_ENV): {sorted(extra)}"
    services = compose()["services"]
    for proc in stack.plan().values():
        if proc.service.startswith("airflow-"):
            own = set(environment(services[proc.service])) - compose_names - CONTAINER_ONLY_ENV
            assert own <= set(proc.env), f"{proc.service}: lacks {sorted(own - set(proc.env))}"


def test_same_connection_ids_types_and_fields(stack):
    local = {k: json.loads(v) for k, v in stack.airflow_env().items() if k.startswith("AIRFLOW_CONN_")}
    theirs = {k: json.loads(v) for k, v in common_env().items() if k.startswith("AIRFLOW_CONN_")}
    assert set(local) == set(theirs)
    assert {k.removeprefix("AIRFLOW_CONN_").lower() for k in local} == set(celerystack.CONNECTION_IDS)
    for name, conn in theirs.items():
        mine = local[name]
        assert set(mine) == set(conn), f"{name}: fields differ"
        assert mine["conn_type"] == conn["conn_type"]
        assert set(mine.get("extra", {})) == set(conn.get("extra", {})), f"{name}: extra fields differ"
        for field in ("schema", "login"):
            if field in conn and "${" not in conn[field]:
                assert mine[field] == conn[field], f"{name}.{field}"
        if isinstance(conn.get("extra"), dict):
            for key, value in conn["extra"].items():
                if key != "endpoint_url":
                    assert mine["extra"][key] == value, f"{name}.extra.{key}"
        host = mine.get("host") or urlsplit(mine["extra"]["endpoint_url"]).hostname
        assert host == "127.0.0.1", f"{name}: not on loopback"


def test_same_values_where_compose_fixes_them(stack):
    local = stack.airflow_env()
    for name, value in common_env().items():
        if name.startswith("AIRFLOW_CONN_"):
            continue
        mine = local[name]
        plain = default(value)
        if "${" in value:  # a secret or user-chosen value: the local stack generates its own
            assert mine, f"{name} is empty locally"
            continue
        if plain.startswith(IMAGE_HOME + "/include"):
            assert mine == str(ROOT / "include") + plain[len(IMAGE_HOME + "/include") :], name
        elif plain.startswith(IMAGE_HOME + "/"):
            assert mine == str(stack.home / plain[len(IMAGE_HOME) + 1 :]), name
        elif "://" in plain:
            a, b = urlsplit(plain), urlsplit(mine)
            assert (a.scheme, a.username, a.path) == (b.scheme, b.username, b.path), name
            assert b.hostname == "127.0.0.1", name
        else:
            assert mine == plain, name
    # URLs with a service name and no ${}: the database, user and Redis db must match too.
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        a, b = urlsplit(default(common_env()[name])), urlsplit(local[name])
        assert (a.scheme, a.username, a.path) == (b.scheme, b.username, b.path), name


def test_every_compose_secret_is_a_local_secret():
    secret = re.compile(r"PASSWORD|SECRET|FERNET|_KEY$|ROOT_USER$")
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "docker-compose.yaml").read_text()))
    assert {v for v in used if secret.search(v)} == set(SECRET_NAMES)


def test_secrets_are_generated_once_private_and_overridable(tmp_path, monkeypatch):
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "secrets.env"
    first = celerystack.load_secrets(path)
    assert set(first) == set(SECRET_NAMES) and all(len(v) >= 16 for v in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert celerystack.load_secrets(path) == first
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "from-the-environment")
    assert celerystack.load_secrets(path)["AIRFLOW_ADMIN_PASSWORD"] == "from-the-environment"
    from cryptography.fernet import Fernet

    Fernet(first["AIRFLOW_FERNET_KEY"])  # a usable Fernet key, or Airflow cannot store connections
