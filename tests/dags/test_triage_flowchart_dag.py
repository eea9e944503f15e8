"""One ``dag.test()`` run of tests/dag_probes/triage_flowchart_probe.py where Airflow itself applies
the triage flowchart: an empty upstream partition fails at once as ``missing_input`` with the
upstream manifest in its hint; a real EADDRINUSE is retried after the retry policy's service
backoff; the alerts are routed by class to real local SMTP / HTTP receivers."""

from __future__ import annotations

import json
import socket

import pytest

from greenlight.storage.manifests import safe_name


def held_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.usefixtures("airflow_db")
def test_dag_run_missing_input_fails_at_once_and_a_service_error_is_retried_after_the_backoff(
    s3env, buckets, area, tmp_path, monkeypatch
):
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from notifysinks import HttpSink, SmtpSink
    from test_task_manifests import local_manifests, run_test_dag

    root = tmp_path / "task_manifests"
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(root))
    monkeypatch.setenv("GREENLIGHT_SERVICE_RETRY_DELAY_S", "1")  # the backoff is asserted, not waited for
    monkeypatch.setenv("GREENLIGHT_NOTIFY_ROUTES", "smtp=@fatal;slack=service")
    holder = held_port()
    with SmtpSink() as smtp, HttpSink() as slack:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SMTP",
            json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port, "extra": {"to": "oncall@x.test"}}),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SLACK",
            json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{slack.port}/hook", "password": "T/B/c"}),
        )
        try:
            state, tis, run_id = run_test_dag(
                "triage_flowchart_probe", {"bucket": buckets[0], "prefix": area, "port": holder.getsockname()[1]}
            )
        finally:
            holder.close()

    assert state == "failed"
    assert tis["produce"] == ("success", 1)
    assert tis["consume"] == ("failed", 1)  # missing_input: no retry although retries=2
    assert tis["bind_port"] == ("failed", 2)  # service: retried once (retries=1), then failed

    docs = local_manifests(root, "triage_flowchart_probe", run_id)
    consume = docs["consume"]["error"]
    assert (consume["kind"], consume["retryable"], consume["will_retry"]) == ("missing_input", False, False)
    produce_manifest = root / "triage_flowchart_probe" / safe_name(run_id) / "produce.json"
    assert produce_manifest.exists() and f"{produce_manifest} — each must say state=success" in consume["hint"]
    assert f"(run {run_id})" in consume["hint"]
    assert "do not retry" in consume["message"] and "empty" in consume["message"]
    assert [(t["try_number"], t["state"], t["error_kind"]) for t in docs["bind_port"]["tries"]] == [
        (1, "up_for_retry", "service"),
        (2, "failed", "service"),
    ]
    with create_session() as session:
        first_try = (
            session.query(TaskInstanceHistory)
            .filter_by(dag_id="triage_flowchart_probe", run_id=run_id, task_id="bind_port", try_number=1)
            .one()
        )
        assert first_try.retry_delay_override == 1.0  # the retry policy's service backoff, not retry_delay
        assert first_try.retry_reason.startswith("[service] retry in")

    # routed: the fatal missing input paged by mail, the flapping service went to chat
    assert [m["subject"] for m in smtp.messages] == [
        "[greenlight] triage_flowchart_probe.consume failed (missing_input)"
    ]
    assert str(produce_manifest) in smtp.messages[0]["body"]
    assert len(slack.requests) == 1 and "bind_port failed (service)" in json.loads(slack.requests[0]["body"])["text"]
