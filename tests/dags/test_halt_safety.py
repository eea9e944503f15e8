"""A halt is crash-safe: the DAGs it is about to pause are recorded first, so a retry after a crash
between pausing and recording still resumes exactly those (a real ``airflow api-server``)."""

from __future__ import annotations

import pytest
from dagrun import ROOT

from greenlight.dagsupport.api import AirflowApi
from greenlight.promotion import halt

pytestmark = pytest.mark.usefixtures("airflow_db")

CONSUMERS = ["commodity_hindcast_prod", "artefact_rollback"]


@pytest.fixture(scope="module")
def api(airflow_api):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    with create_session() as session:  # test setup, in the test process (not task code)
        DagBundlesManager().sync_bundles_to_db(session=session)
    sync_bag_to_db(DagBag(dag_folder=str(ROOT / "dags")), "dags-folder", None)  # the consumer DAGs exist
    return AirflowApi(airflow_api.url, "admin", airflow_api.password)


class Crash(Exception):
    """The task process dies (worker lost, OOM) right after its first pause."""


class CrashAfterFirstPause:
    def __init__(self, api):
        self.api = api
        self.paused = 0

    def get_dag(self, dag_id):
        return self.api.get_dag(dag_id)

    def set_paused(self, dag_id, paused):
        self.api.set_paused(dag_id, paused)
        self.paused += 1
        raise Crash(dag_id)


def test_retry_after_a_crash_mid_halt_resumes_exactly_the_dags_it_paused(api):
    for dag_id in CONSUMERS:
        api.set_paused(dag_id, False)
    variable: dict = {}  # what the DAG keeps in the Variable greenlight_promotion_halt

    def record_intent(pausing):
        variable.clear()
        variable.update(
            halt.record(
                run_id="r1",
                dag_id="artefact_promotion",
                gates=[],
                paused={"paused_by_greenlight": pausing, "already_paused": [], "missing": []},
                manifest=None,
            )
        )

    with pytest.raises(Crash):
        halt.pause(CrashAfterFirstPause(api), CONSUMERS, None, record_intent=record_intent)
    assert api.get_dag(CONSUMERS[0])["is_paused"] is True  # paused, then the process died
    assert sorted(variable["paused_by_greenlight"]) == sorted(CONSUMERS)  # the intent was recorded first

    retried = halt.pause(api, CONSUMERS, variable, record_intent=record_intent)  # Airflow's retry
    assert sorted(retried["paused_by_greenlight"]) == sorted(CONSUMERS) and retried["already_paused"] == []

    outcome = halt.resume(api, {**variable, **retried}, run_id="r2")
    assert sorted(outcome["resumed"]) == sorted(CONSUMERS)
    assert all(api.get_dag(d)["is_paused"] is False for d in CONSUMERS)


def test_a_dag_paused_by_hand_before_the_halt_is_never_in_the_intent(api):
    api.set_paused(CONSUMERS[0], False)
    api.set_paused(CONSUMERS[1], True)  # an operator's pause
    intents = []
    result = halt.pause(api, CONSUMERS, None, record_intent=intents.append)
    assert intents == [[CONSUMERS[0]]]
    assert result["paused_by_greenlight"] == [CONSUMERS[0]] and result["already_paused"] == [CONSUMERS[1]]
    api.set_paused(CONSUMERS[0], False)
