"""Task manifests written by the listener plugin (plugins/greenlight_listener.py) during real
``dag.test()`` runs against the real S3 server.

Airflow loads the plugin itself: conftest points ``AIRFLOW__CORE__PLUGINS_FOLDER`` at plugins/, and
the Task SDK's listener manager integrates the plugin's listeners the first time a task runs.
Nothing here calls the listener or the manifest writer directly.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from unittest import mock

import pytest
from dagrun import ROOT, run_dag
from faultproxy import FaultProxy
from helpers import put
from notifysinks import HttpSink, SmtpSink, smtp_connection

from greenlight.storage.manifests import safe_name

pytestmark = pytest.mark.usefixtures("airflow_db")

TEST_DAGS = ROOT / "tests" / "dag_probes"


# dag.test() serializes the DAG through the DAG bundle that holds it: tests/dags/ is a second
# local bundle next to the default dags-folder one while these tests run.
BUNDLES = json.dumps(
    [
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
        {
            "name": "greenlight-test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(TEST_DAGS)},
        },
    ]
)


def run_test_dag(dag_id: str, conf: dict | None = None):
    """Like dagrun.run_dag, for a DAG file under tests/dags/."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(TEST_DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    with mock.patch.dict(os.environ, {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLES}):
        dr = bag.dags[dag_id].test(run_conf=conf or {})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
        states = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}.{ti.map_index}"): (str(ti.state), ti.try_number)
            for ti in tis
        }
    return str(dr.state), states, dr.run_id


def local_manifests(root: Path, dag_id: str, run_id: str) -> dict[str, dict]:
    folder = root / dag_id / safe_name(run_id)
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def all_text_under(*folders: Path) -> str:
    chunks = []
    for folder in folders:
        if folder.exists():
            for path in folder.rglob("*"):
                if path.is_file():
                    chunks.append(path.read_text(errors="replace"))
    return "\n".join(chunks)


def test_airflow_loads_the_listener_plugin_from_the_plugins_folder():
    from airflow.sdk.listener import get_listener_manager

    assert Path(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"]) == ROOT / "plugins"
    names = {type(p).__name__ for p in get_listener_manager().pm.get_plugins()}
    assert "GreenlightTaskManifestListener" in names


# ------------------------------------------------------------------ the real promotion DAG, S3 root
def test_every_task_of_a_promotion_run_leaves_a_manifest_on_s3(s3, s3env, buckets, area, promotion_config, monkeypatch):
    qa, prod = buckets
    zarr, csv = promotion_config
    put(s3, qa, f"{zarr}.zgroup", '{"zarr_format": 2}')
    put(s3, qa, f"{csv}delivery.csv", "as_of_date,value\n2026-11-21,1\n")
    root = f"s3://{prod}/_task_manifests/{area}"
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", root)

    state, tis, _, run_id = run_dag("artefact_promotion", {"dry_run": False})

    assert state == "success", tis
    prefix = f"_task_manifests/{area}artefact_promotion/{safe_name(run_id)}/"
    listed = s3.list_objects_v2(Bucket=prod, Prefix=prefix).get("Contents", [])
    docs = {
        o["Key"][len(prefix) : -len(".json")]: json.loads(s3.get_object(Bucket=prod, Key=o["Key"])["Body"].read())
        for o in listed
    }
    # Every task that ran has its manifest (a branch skipped by the scheduler never ran).
    ran = sorted(k for k, (st, _) in tis.items() if st not in ("skipped", "upstream_failed"))
    assert sorted(docs) == ran
    assert {"preflight", "plan", "promote.0", "promote.1", "verify", "summary"} <= set(docs)
    for name, doc in docs.items():
        assert doc["state"] == "success", name
        assert doc["dag_id"] == "artefact_promotion" and doc["run_id"] == run_id
        assert doc["try_number"] == 1 and [t["state"] for t in doc["tries"]] == ["success"]
        assert doc["duration_s"] is not None and doc["duration_s"] >= 0
        assert doc["error"] is None
        assert doc["inputs"]["params"]["dry_run"] is False
    assert docs["promote.0"]["map_index"] == 0 and docs["promote.1"]["map_index"] == 1
    promoted = {docs[f"promote.{i}"]["inputs"]["op_kwargs"]["planned"]["prefix"] for i in (0, 1)}
    assert promoted == {f"s3://{qa}/{zarr}", f"s3://{qa}/{csv}"}
    assert docs["summary"]["outputs"]["copied"] == 2
    # verify returns one {"prefix", "equal": true, ...} per prefix: recorded as passed checks.
    assert sorted((c["name"], c["ok"]) for c in docs["verify"]["checks"]) == [
        (f"s3://{qa}/{csv}", True),
        (f"s3://{qa}/{zarr}", True),
    ]
    assert s3env.secret_key not in json.dumps(docs)


# --------------------------------------------------------- probe DAG: retry, contract failure, alerts
@pytest.fixture
def probe_env(tmp_path, monkeypatch, s3env, buckets):
    """Manifests in a local folder; ``gl_probe_s3`` goes through a fault proxy; a second
    connection with a password; SMTP and Slack stand-ins for the failure notifier."""
    root = tmp_path / "task_manifests"
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(root))
    db_password = "pg-" + uuid.uuid4().hex
    smtp_password = "smtp-" + uuid.uuid4().hex
    slack_secret = "T000/B000/" + uuid.uuid4().hex
    with FaultProxy(s3env.endpoint_url) as proxy, SmtpSink() as smtp, HttpSink() as slack:
        conn = json.loads(s3env.airflow_conn())
        conn["extra"]["endpoint_url"] = proxy.url
        monkeypatch.setenv("AIRFLOW_CONN_GL_PROBE_S3", json.dumps(conn))
        monkeypatch.setenv(
            "AIRFLOW_CONN_GL_PROBE_DB",
            json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "login": "probe", "password": db_password}),
        )
        monkeypatch.setenv("AIRFLOW_CONN_GREENLIGHT_SMTP", smtp_connection(smtp, smtp_password, "oncall@example.test"))
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SLACK",
            json.dumps(
                {"conn_type": "http", "host": f"http://127.0.0.1:{slack.port}/services", "password": slack_secret}
            ),
        )
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.test")
        yield {
            "root": root,
            "proxy": proxy,
            "smtp": smtp,
            "slack": slack,
            "secrets": [s3env.secret_key, db_password, smtp_password, slack_secret],
        }


def test_failed_retried_and_mapped_tasks_leave_manifests_and_alerts(probe_env, buckets, capfd):
    qa, _ = buckets
    proxy = probe_env["proxy"]
    proxy.faults = ["503"]  # the flaky task's first (and only) S3 request on try 1: SlowDown

    state, tis, run_id = run_test_dag("greenlight_listener_probe", {"bucket": qa})

    assert state == "failed"  # contract failed
    assert tis["flaky"] == ("success", 2)  # try 1 got the 503, Airflow retried it
    assert tis["contract"] == ("failed", 1)  # ContractError: no retry although retries=2
    assert tis["after_contract"][0] == "upstream_failed"
    assert proxy.injected == 1

    docs = local_manifests(probe_env["root"], "greenlight_listener_probe", run_id)
    # Every task that ran has a manifest; the one that never ran has none.
    assert sorted(docs) == ["checked", "contract", "flaky", "square.0", "square.1"]

    checked = docs["checked"]
    assert checked["state"] == "success" and checked["outputs"]["rows"] == 3
    assert checked["checks"] == [{"name": "rows_positive", "ok": True}, {"name": "no_nulls", "ok": True}]
    assert checked["inputs"]["params"] == {"bucket": qa, "rows": 3}

    flaky = docs["flaky"]
    assert flaky["state"] == "success" and flaky["try_number"] == 2
    assert flaky["outputs"] == {"listed": flaky["outputs"]["listed"], "try_number": 2}
    assert [(t["try_number"], t["state"], t["error_kind"]) for t in flaky["tries"]] == [
        (1, "up_for_retry", "transient"),
        (2, "success", None),
    ]
    assert flaky["error"] is None
    assert "SlowDown" in flaky["tries"][0]["error_message"]
    # Both templated secrets were rendered for the task, and neither reached the manifest.
    assert flaky["inputs"]["op_kwargs"]["bucket"] == qa
    assert flaky["inputs"]["op_kwargs"]["api_token"] == "***"  # sensitive key name
    assert flaky["inputs"]["op_kwargs"]["note"] == "***"  # innocuous name: Airflow's masker

    contract = docs["contract"]
    assert contract["state"] == "failed" and contract["try_number"] == 1
    assert [(t["try_number"], t["state"], t["error_kind"]) for t in contract["tries"]] == [(1, "failed", "contract")]
    assert contract["error"]["kind"] == "contract" and contract["error"]["retryable"] is False
    assert contract["error"]["will_retry"] is False
    assert "column 'value' is missing" in contract["error"]["message"]
    assert contract["error"]["hint"].startswith("the data does not match its contract")
    assert contract["inputs"]["op_args"] == [f"s3://{qa}/deliveries/"]

    assert [docs[f"square.{i}"]["outputs"] for i in (0, 1)] == [4, 9]
    assert [docs[f"square.{i}"]["map_index"] for i in (0, 1)] == [0, 1]

    # The failure notifier ran once, for the task that finally failed (the retried try sent nothing).
    mails = probe_env["smtp"].messages
    assert len(mails) == 1, [m["subject"] for m in mails]
    assert mails[0]["subject"] == "[greenlight] greenlight_listener_probe.contract failed (contract)"
    assert mails[0]["to"] == ["oncall@example.test"]
    posts = probe_env["slack"].requests
    assert len(posts) == 1
    assert posts[0]["path"] == "/services/" + probe_env["secrets"][3]
    text = json.loads(posts[0]["body"])["text"]
    assert "error class: contract" in text and "column 'value' is missing" in text
    assert (
        f"https://airflow.example.test/dags/greenlight_listener_probe/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}/tasks/contract?try_number=1"
        in text
    )  # noqa: E501

    # No secret in any manifest, alert, task log file or the output of the whole run.
    out, err = capfd.readouterr()
    # tests/conftest.py set it; "from conftest import" could name tests/e2e/conftest.py in a full run
    AIRFLOW_HOME = Path(os.environ["AIRFLOW_HOME"])  # noqa: N806

    written = "\n".join(
        [
            all_text_under(probe_env["root"], AIRFLOW_HOME / "logs"),
            json.dumps(mails),
            json.dumps([p["body"] for p in posts]),
            out,
            err,
        ]
    )
    assert "column 'value' is missing" in out + err  # the output was really captured
    for secret in probe_env["secrets"]:
        assert secret not in written


def test_untagged_dags_get_no_manifest(tmp_path, monkeypatch):
    root = tmp_path / "task_manifests"
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(root))

    from airflow.sdk.listener import get_listener_manager

    assert get_listener_manager().has_listeners  # the listener is there: it chose not to write
    state, tis, _ = run_test_dag("untagged_probe")

    assert state == "success" and tis == {"hello": ("success", 1)}
    assert not root.exists() or not any(root.rglob("*.json"))


def test_manifest_values_are_bounded_and_sensitive_names_redacted(monkeypatch):
    from greenlight.dagsupport.taskmanifest import MAX_ITEMS, clean, extract_checks

    monkeypatch.setenv("GL_TEST_SECRET_TOKEN", "env-secret-" + uuid.uuid4().hex)
    doc = clean(
        {
            "key": "deliveries/2026-11-21.csv",  # an S3 object key: kept
            "s3_key": "zarr/.zgroup",
            "access_key": "AKIAEXAMPLE",
            "nested": {"api_token": "t0k3n-value", "Password": "hunter22", "sse-customer-key": "k" * 32},
            "note": "uses " + os.environ["GL_TEST_SECRET_TOKEN"],
            "big": list(range(200)),
            "client": object(),
        }
    )
    assert doc["key"] == "deliveries/2026-11-21.csv" and doc["s3_key"] == "zarr/.zgroup"
    assert doc["access_key"] == "***"
    assert doc["nested"] == {"api_token": "***", "Password": "***", "sse-customer-key": "***"}
    assert doc["note"] == "uses ***"
    assert doc["big"][:3] == [0, 1, 2] and len(doc["big"]) == MAX_ITEMS + 1 and doc["big"][-1].endswith("more items)")
    assert doc["client"] == "<object>"

    assert extract_checks({"checks": {"schema": True, "rows": {"ok": False, "rows": 0}}}) == [
        {"name": "schema", "ok": True},
        {"name": "rows", "ok": False, "detail": {"rows": 0}},
    ]
    assert extract_checks([{"prefix": "s3://q/a/", "equal": True, "objects": 2}]) == [
        {"name": "s3://q/a/", "ok": True, "detail": {"prefix": "s3://q/a/", "objects": 2}}
    ]
    assert extract_checks({"rows": 3}) is None and extract_checks([1, 2]) is None
