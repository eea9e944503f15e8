"""The manual DAGs, each triggered once under a real scheduler on the stack ``make airflow`` starts
(``local_stack``: nothing is configured by the test): ``staging_refresh`` (prod and staging on two
embedded PostgreSQL servers), ``model_promotion`` (a registered model on the stack's MLflow store),
and one generated dataset DAG. Each run must succeed, its final ``check_run`` included; the model
promotion's Asset event starts the consumer, whose run must have used the promoted version.
"""

from __future__ import annotations

import pytest
from e2ehelpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

RUN_TIMEOUT = 1200  # seconds: generous; the machine is shared
DATASET_DAG = "corn-stress-index__update"


def assert_succeeded(api, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    state = api.wait_finished(dag_id, run_id, RUN_TIMEOUT)
    states = api.task_states(dag_id, run_id)
    assert state == "success", f"{dag_id} run {run_id} {state}: {sorted(states.items())}"
    return states


def test_manual_dags_run_green_under_the_scheduler(local_stack, stack_api):
    from greenlight.dev.airflowstack import MANUAL_DAGS
    from greenlight.models import config as models_config
    from greenlight.models.consumers import check_consumer
    from greenlight.models.promotion import pointer_store
    from greenlight.runcheck import ManifestRoot

    api, model = stack_api, local_stack.model
    local_stack.wait_for_dags(MANUAL_DAGS, timeout=600)
    # The model head's Asset event must be able to start the consumer: a halt tested earlier in the
    # session (test_ui_browser) may have paused it.
    api.client.set_paused("commodity_hindcast_prod", False)
    runs = {
        "staging_refresh": api.trigger("staging_refresh"),
        "model_promotion": api.trigger(
            "model_promotion",
            {"model_name": model["model"], "candidate": model["version"], "smoke_partition": model["partition"]},
        ),
        DATASET_DAG: api.trigger(DATASET_DAG),
    }

    # Staging refresh: every table copied from prod, the pending migration applied, verified.
    states = assert_succeeded(api, "staging_refresh", runs["staging_refresh"])
    assert states[("check_run", -1)] == "success"
    summary = api.xcom("staging_refresh", runs["staging_refresh"], "summary")
    assert summary["rows_synced"] > 0 and summary["problems"] == [], summary
    assert "failed" not in {t["status"] for t in summary["tables"]}, summary["tables"]
    assert summary["migrations"]["version_after"] == "c3_author_tier", summary["migrations"]

    # Model promotion: the alias and pointer moved to the registered version.
    states = assert_succeeded(api, "model_promotion", runs["model_promotion"])
    assert states[("check_run", -1)] == "success" and states[("rollback_model", -1)] == "skipped"
    promoted = api.xcom("model_promotion", runs["model_promotion"], "promote_model")
    assert (promoted["model"], promoted["version"]) == (model["model"], model["version"]), promoted

    # The dataset DAG (its job task in its version's pool, created by the stack; then check_run).
    states = assert_succeeded(api, DATASET_DAG, runs[DATASET_DAG])
    assert states[("update", -1)] == "success"

    # The head's Asset event started the consumer; its first run after the promotion used the version.
    config = models_config.load()
    store = pointer_store(config, local_stack.client())
    manifests = ManifestRoot(str(local_stack.standalone.home / "greenlight" / "task_manifests"))

    def consumer_checked():
        report = check_consumer(config, config.model(model["model"]), store, manifests)
        return report if report["status"] != "pending" else None

    report = wait_for(consumer_checked, RUN_TIMEOUT, "a consumer run after the model promotion")
    assert report["status"] == "ok", report
    consumer_run = report["first_run"]["run_id"]
    states = assert_succeeded(api, "commodity_hindcast_prod", consumer_run)
    assert states[("check_run", -1)] == "success"
