"""Shared fixtures: a real SeaweedFS S3 server, an Airflow home with a migrated SQLite DB.

The suite starts what it needs itself and stops it by PID. To use existing servers instead set
``GREENLIGHT_TEST_S3_ENDPOINT`` (+ ``GREENLIGHT_TEST_S3_ACCESS_KEY`` / ``..._SECRET_KEY``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="greenlight-tests-"))

# Airflow reads its configuration when first imported: set it before any test module imports it.
AIRFLOW_HOME = _TMP / "airflow_home"
AIRFLOW_HOME.mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MPLCONFIGDIR": str(_TMP / "mpl"),
        # the CLI's validated-config cache (greenlight.doccache): per test session, never the user's own
        "GREENLIGHT_CACHE_DIR": str(_TMP / "config-cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "include"), os.environ.get("PYTHONPATH")])),
    }
)
sys.path.insert(0, str(ROOT / "include"))

# Credentials of the test S3 server: made up per run, never real.
S3_ACCESS_KEY = os.environ.get("GREENLIGHT_TEST_S3_ACCESS_KEY", "gl-test-" + uuid.uuid4().hex[:8])
S3_SECRET_KEY = os.environ.get("GREENLIGHT_TEST_S3_SECRET_KEY", "gl-secret-" + uuid.uuid4().hex)


class S3Env:
    """Connection details of the S3 server the tests talk to."""

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str, server=None):
        self.endpoint_url = endpoint_url
        self.access_key = access_key
        self.secret_key = secret_key
        self.server = server

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def airflow_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.access_key,
                "password": self.secret_key,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
            }
        )

    def client(self):
        from greenlight.storage.s3 import make_client

        return make_client(
            endpoint_url=self.endpoint_url, access_key=self.access_key, secret_key=self.secret_key, max_pool=32
        )


@pytest.fixture(scope="session")
def s3env():
    endpoint = os.environ.get("GREENLIGHT_TEST_S3_ENDPOINT")
    server = None
    if endpoint:
        env = S3Env(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    else:
        from greenlight.dev.localstack import start_seaweedfs

        server = start_seaweedfs(_TMP / "seaweedfs", S3_ACCESS_KEY, S3_SECRET_KEY)
        env = S3Env(server.endpoint_url, S3_ACCESS_KEY, S3_SECRET_KEY, server=server)
    os.environ.update(env.env())
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = env.airflow_conn()
    try:
        yield env
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def s3(s3env):
    return s3env.client()


_bucket_pairs: dict[str, tuple[str, str]] = {}


def _ensure_bucket(client, name: str, versioned: bool) -> None:
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture(scope="session")
def buckets(s3):
    """One versioned qa-/prod- bucket pair shared by the tests; each test uses its own prefix.

    SeaweedFS gives every bucket with data its own storage volumes, so tests share buckets.
    """
    qa, prod = "qa-greenlight-test", "prod-greenlight-test"
    _ensure_bucket(s3, qa, versioned=True)
    _ensure_bucket(s3, prod, versioned=True)
    return qa, prod


_counter = itertools.count()


@pytest.fixture
def area(request, buckets):
    """A fresh prefix name unique to this test, e.g. ``t007-test_full_sync/``."""
    name = request.node.name.split("[")[0][:40]
    return f"t{next(_counter):03d}-{name}-{uuid.uuid4().hex[:6]}/"


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate a fresh SQLite metadata DB once per session (``dag.test()`` needs one)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_api(airflow_db):
    """A real ``airflow api-server`` on the test DB; tasks reach it through the ``airflow_api``
    connection (set in the environment), as they would in a deployment."""
    from greenlight.dev.devstack import ApiServer

    server = ApiServer(os.environ.copy()).start(timeout=float(os.environ.get("GREENLIGHT_TEST_API_TIMEOUT", "300")))
    os.environ["AIRFLOW_CONN_AIRFLOW_API"] = server.connection()
    try:
        yield server
    finally:
        server.stop()
        os.environ.pop("AIRFLOW_CONN_AIRFLOW_API", None)


@pytest.fixture
def promotion_config(tmp_path, monkeypatch, buckets, area):
    """A two-prefix promotion config (``<area>zarr/``, ``<area>csv/``) that the DAGs read through
    ``$GREENLIGHT_PROMOTION_CONFIG``; returns the two relative prefixes."""
    from helpers import write_config

    qa, prod = buckets
    areas = [f"{area}zarr/", f"{area}csv/"]
    path = write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [f"s3://{qa}/{a}" for a in areas],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": 24},
        },
    )
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(path))
    return areas


def pytest_addoption(parser):
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the collected tests in reverse order (proves no test depends on one run before it)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        # Modules in reverse order, and the tests inside each module too, except in a module marked
        # ``story`` (the steps of one scenario on one expensive stack), which keeps its own order.
        modules: dict[str, list] = {}
        for item in items:
            modules.setdefault(item.nodeid.split("::")[0], []).append(item)
        items[:] = [
            item
            for group in reversed(list(modules.values()))
            for item in (group if group[0].get_closest_marker("story") else reversed(group))
        ]
