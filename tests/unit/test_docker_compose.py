"""Static checks of the Docker Compose stack (docker-compose.yaml, Dockerfile, .env.example).

No Docker engine is needed: the files are parsed with PyYAML (``safe_load`` resolves anchors and
``<<`` merge keys the same way Compose does) and checked against the rules the stack promises.
The module uses no fixtures from conftest.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
ENV_EXAMPLE = ROOT / ".env.example"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
REQUIRED_SERVICES = {*AIRFLOW_SERVICES, "postgres", "redis", "minio", "minio-init", "mlflow"}
PROJECT_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./plugins": "/opt/airflow/plugins",
    "./include": "/opt/airflow/include",
}
PROD_BUCKET = "prod-greenlight-demo"
QA_BUCKET = "qa-greenlight-demo"
MLFLOW_BUCKET = "mlflow-artifacts"

# A whole value that is one Compose substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}.
SUBSTITUTION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?])[^}]*)?\}$")
# Variables Compose interpolates ($$ is an escape for a literal $ handled by the container).
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|FERNET|(?:^|_)KEY(?:$|_)|ACCESS_KEY", re.IGNORECASE)
NOT_A_SECRET_NAME = re.compile(r"_(?:FILE|PATH|ID)$|^AWS_ACCESS_KEY_ID$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]*)@", re.IGNORECASE)
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "::1")


# --------------------------------------------------------------------------- helpers


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def is_one_shot(name: str) -> bool:
    """Init jobs run once and exit; by convention their names end in ``-init``."""
    return name.endswith("-init")


def long_running() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if not is_one_shot(name)}


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container target -> source for short ("src:dst[:mode]") and long volume syntax."""
    result = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            result[vol["target"]] = vol.get("source", "")
        else:
            parts = vol.split(":")
            if len(parts) >= 2:
                result[parts[1]] = parts[0]
    return result


def depends_on(svc: dict[str, Any]) -> dict[str, Any]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: no condition at all
        return {name: {} for name in deps}
    return deps


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def script_of(svc: dict[str, Any]) -> str:
    return as_text(svc.get("entrypoint")) + "\n" + as_text(svc.get("command"))


def image_tag(image: str) -> str | None:
    """Tag of ``registry:port/repo/name:tag[@digest]``, or None when there is none."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def airflow_pin() -> str:
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*apache-airflow(?:\[[^\]]*\])?\s*==\s*([0-9][^\s;,#]*)", line, re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"no exact apache-airflow==X pin in {REQUIREMENTS.name}")


def dockerfile_base_image() -> str:
    """Image of the final FROM, with ARG defaults declared before it substituted."""
    args: dict[str, str] = {}
    base = None
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if match := re.match(r"ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line, re.IGNORECASE):
            args[match.group(1)] = match.group(2).strip("\"'")
        elif re.match(r"FROM\s", line, re.IGNORECASE):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
    assert base, f"{DOCKERFILE.name} has no FROM line"
    return base


def walk_strings(value: Any):
    if isinstance(value, dict):
        for item in value.values():
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)
    elif isinstance(value, str):
        yield value


# --------------------------------------------------------------------------- tests


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` may legitimately be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def test_compose_file_has_no_duplicate_keys():
    yaml.load(COMPOSE_FILE.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)


def test_required_services_exist():
    missing = REQUIRED_SERVICES - services().keys()
    assert not missing, f"docker-compose.yaml lacks services: {sorted(missing)}"


def test_airflow_services_use_celery_and_share_the_common_config():
    common = compose().get("x-airflow-common")
    assert isinstance(common, dict), "the shared Airflow config must be the x-airflow-common anchor"
    common_env = environment(common)
    assert common_env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor"
    assert common_env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith("redis://redis:")
    assert "@postgres:" in common_env.get("AIRFLOW__CELERY__RESULT_BACKEND", "")
    assert "@postgres:" in common_env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")

    for name in AIRFLOW_SERVICES:
        svc = services()[name]
        assert svc.get("image") == common.get("image"), f"{name}: image differs from x-airflow-common"
        assert svc.get("build") == common.get("build"), f"{name}: build differs from x-airflow-common"
        env = environment(svc)
        diverging = sorted(k for k, v in common_env.items() if env.get(k) != v)
        assert not diverging, f"{name}: environment overrides/drops common settings {diverging}"
        assert mounts(common).items() <= mounts(svc).items(), f"{name}: lacks the common volumes"


def test_airflow_common_settings():
    env = environment(compose()["x-airflow-common"])
    assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false"
    assert env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") == "http://airflow-apiserver:8080/execution/"
    assert env.get("MLFLOW_DISABLE_TELEMETRY", "").lower() == "true"
    config = env.get("GREENLIGHT_PROMOTION_CONFIG", "")
    assert config == "/opt/airflow/include/config/promotion.yaml"
    host_config = ROOT / "include" / Path(config).relative_to("/opt/airflow/include")
    assert host_config.is_file(), f"{config} maps to {host_config}, which does not exist"
    assert "/opt/airflow/include" in env.get("PYTHONPATH", "").split(":")
    # One JWT secret for all components, or task tokens signed by the scheduler are rejected.
    assert env.get("AIRFLOW__API_AUTH__JWT_SECRET"), "AIRFLOW__API_AUTH__JWT_SECRET must be shared"


def test_every_image_is_pinned():
    problems = []
    for name, svc in services().items():
        image = svc.get("image")
        if not image:
            problems.append(f"{name}: no image: (a built service needs a pinned local tag)")
            continue
        tag = image_tag(image)
        if "@sha256:" in image:
            continue
        if not tag or tag == "latest" or not re.search(r"\d", tag) or "${" in tag:
            problems.append(f"{name}: image {image!r} is not pinned to a version tag")
    assert not problems, "\n".join(problems)


def test_dockerfile_base_image_matches_the_airflow_pin():
    version = airflow_pin()
    requires = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["requires-python"]
    python = re.search(r">=\s*(\d+\.\d+)", requires).group(1)
    assert dockerfile_base_image() == f"apache/airflow:{version}-python{python}"
    # constraints.txt pins Airflow too: the image install must not move it.
    assert re.search(rf"^apache-airflow=={re.escape(version)}$", CONSTRAINTS.read_text(encoding="utf-8"), re.M)
    install = re.search(r"pip install[^\n]*", DOCKERFILE.read_text(encoding="utf-8"))
    assert install, "Dockerfile does not pip install the requirements"
    assert re.search(r"-r\s+\S*requirements\.txt", install.group(0))
    assert re.search(r"-c\s+\S*constraints\.txt", install.group(0))


def test_built_images_come_from_the_dockerfile_and_follow_the_pin():
    version = airflow_pin()
    built = {name: svc for name, svc in services().items() if "build" in svc}
    assert set(AIRFLOW_SERVICES) <= built.keys()
    for name, svc in built.items():
        build = svc["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile).resolve() == DOCKERFILE.resolve(), f"{name}: builds another Dockerfile"
        assert image_tag(svc["image"]) == version, f"{name}: tag {svc['image']!r} does not follow Airflow {version}"


def test_project_directories_are_mounted_into_airflow():
    for name in AIRFLOW_SERVICES:
        svc_mounts = mounts(services()[name])
        for source, target in PROJECT_MOUNTS.items():
            assert svc_mounts.get(target, "").rstrip("/") == source, f"{name}: {source} not mounted at {target}"


def test_data_lives_in_named_volumes():
    named = set(compose().get("volumes") or {})
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        source = mounts(services()[name]).get(target)
        assert source in named, f"{name}: {target} must be a named volume, got {source!r}"


def test_every_long_running_service_has_a_healthcheck():
    problems = []
    for name, svc in long_running().items():
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or test in (["NONE"], "NONE"):
            problems.append(name)
    assert not problems, f"services without a healthcheck: {problems}"


def test_init_jobs_are_awaited_via_depends_on_conditions():
    all_services = services()
    jobs = {name for name in all_services if is_one_shot(name)}
    assert {"airflow-init", "minio-init"} <= jobs
    problems = []
    for job in sorted(jobs):
        if all_services[job].get("restart") not in (None, "no"):
            problems.append(f"{job}: a one-shot job must not restart")
        dependents = {n: depends_on(s)[job] for n, s in all_services.items() if job in depends_on(s)}
        if not dependents:
            problems.append(f"{job}: nothing waits for it")
        for dependent, spec in dependents.items():
            if spec.get("condition") != "service_completed_successfully":
                problems.append(f"{dependent}: must wait for {job} with service_completed_successfully")
    for name, svc in all_services.items():
        for dep, spec in depends_on(svc).items():
            if not is_one_shot(dep) and spec.get("condition") != "service_healthy":
                problems.append(f"{name}: must wait for {dep} with service_healthy")
    for name in AIRFLOW_SERVICES[1:]:
        if "airflow-init" not in depends_on(all_services[name]):
            problems.append(f"{name}: does not wait for airflow-init")
    assert not problems, "\n".join(problems)


def test_aws_default_connection_is_json_with_an_endpoint_url():
    raw = environment(compose()["x-airflow-common"]).get("AIRFLOW_CONN_AWS_DEFAULT")
    assert raw, "AIRFLOW_CONN_AWS_DEFAULT is not set"
    conn = json.loads(raw)
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    assert SUBSTITUTION.match(conn["login"]) and SUBSTITUTION.match(conn["password"])


def test_connections_for_mlflow_and_the_airflow_api():
    env = environment(compose()["x-airflow-common"])
    mlflow = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert (mlflow["conn_type"], mlflow["host"], int(mlflow["port"])) == ("http", "mlflow", 5000)
    api = json.loads(env["AIRFLOW_CONN_AIRFLOW_API"])
    assert (api["conn_type"], api["host"], int(api["port"])) == ("http", "airflow-apiserver", 8080)
    assert SUBSTITUTION.match(api["login"]) and SUBSTITUTION.match(api["password"])


def test_no_published_port_binds_all_interfaces():
    problems = []
    for name, svc in services().items():
        if svc.get("network_mode") == "host":
            problems.append(f"{name}: network_mode host publishes every port")
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                ok = port.get("host_ip") in LOOPBACK_HOSTS
            else:
                ok = str(port).startswith(tuple(f"{host}:" for host in LOOPBACK_HOSTS))
            if not ok:
                problems.append(f"{name}: port {port!r} is not bound to 127.0.0.1")
    assert not problems, "\n".join(problems)


def test_no_literal_secrets():
    problems = []
    blocks = {key: value for key, value in compose().items() if key.startswith("x-")} | services()
    for name, block in blocks.items():
        if not isinstance(block, dict):
            continue
        for key, value in environment(block).items():
            if SECRET_NAME.search(key) and not NOT_A_SECRET_NAME.search(key) and not SUBSTITUTION.match(value):
                problems.append(f"{name}: {key} must come from ${{...}}, not a literal")
            if value.startswith("{"):
                for field, secret in json.loads(value).items():
                    if SECRET_NAME.search(field) and not SUBSTITUTION.match(str(secret)):
                        problems.append(f"{name}: {key}.{field} must come from ${{...}}")
        for text in walk_strings(block):
            for password in URL_PASSWORD.findall(text):
                if password and not SUBSTITUTION.match(password):
                    problems.append(f"{name}: URL with a literal password in {text!r}")
    if re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY", COMPOSE_FILE.read_text(encoding="utf-8")):
        problems.append("docker-compose.yaml contains a key that looks real")
    assert not problems, "\n".join(problems)


def test_env_example_documents_every_variable():
    used = {var for text in walk_strings(compose()) for var in COMPOSE_VARIABLE.findall(text)}
    documented = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert used, "docker-compose.yaml uses no ${VAR} substitution at all"
    assert not used - documented, f".env.example lacks {sorted(used - documented)}"


def test_minio_init_creates_buckets_and_enables_versioning_on_prod():
    job = services()["minio-init"]
    assert job["image"].split(":", 1)[0].endswith("minio/mc")
    script = script_of(job)
    assert re.search(r"\bset -e", script), "minio-init must stop at the first failing mc command"
    assert re.search(r"\bmc\s+mb\b", script)
    for bucket in (QA_BUCKET, PROD_BUCKET, MLFLOW_BUCKET):
        assert bucket in script, f"minio-init does not create {bucket}"
    for bucket in (PROD_BUCKET, QA_BUCKET):
        assert re.search(rf"\bmc\s+version\s+enable\s+\S*/{bucket}\b", script), f"no versioning on {bucket}"


def test_mlflow_uses_postgres_and_minio():
    svc = services()["mlflow"]
    for job in ("minio-init", "mlflow-db-init"):  # the artifact bucket and the database must exist first
        assert depends_on(svc).get(job, {}).get("condition") == "service_completed_successfully", job
    env = environment(svc)
    script = script_of(svc) + "\n" + "\n".join(f"{k}={v}" for k, v in env.items())
    assert re.search(r"postgresql(\+\w+)?://[^\s]*@postgres:\d+/mlflow\b", script), "backend store is not PostgreSQL"
    assert f"s3://{MLFLOW_BUCKET}" in script, "artifacts do not go to the MinIO bucket"
    assert env.get("MLFLOW_S3_ENDPOINT_URL") == "http://minio:9000"


def test_feature_store_connections_and_database():
    env = environment(compose()["x-airflow-common"])
    pg = json.loads(env["AIRFLOW_CONN_GREENLIGHT_POSTGRES"].replace("${FEATURES_DB_PASSWORD:-features}", "pw"))
    redis = json.loads(env["AIRFLOW_CONN_GREENLIGHT_REDIS"])
    assert (pg["conn_type"], pg["host"], pg["schema"], pg["login"]) == ("postgres", "postgres", "features", "features")
    assert (redis["host"], redis["extra"]["db"]) == ("redis", 1)  # db 0 is the Celery broker
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("/0")
    init = "\n".join(services()["mlflow-db-init"]["command"])
    assert "CREATE DATABASE features OWNER features" in init
