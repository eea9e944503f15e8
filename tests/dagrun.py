"""Run a DAG with ``dag.test()`` and read back what happened (test process only)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_dag(dag_id: str, file: str | None = None):
    """The DAG from ``dags/<dag_id>.py``, or from ``dags/<file>`` (a factory file generating it)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / (file or f"{dag_id}.py")))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict | None = None, *, file: str | None = None):
    """Run one DagRun to completion; returns (dag run state, {task_id[.map_index]: (state, try)}, xcoms)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = load_dag(dag_id, file)
    dr = dag.test(run_conf=conf or {})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
        states = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}.{ti.map_index}"): (str(ti.state), ti.try_number)
            for ti in tis
        }
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dr.run_id, key="return_value").all()
        xcoms = {(r.task_id if r.map_index < 0 else f"{r.task_id}.{r.map_index}"): r.value for r in rows}
    return str(dr.state), states, xcoms, dr.run_id


def asset_events(uris: list[str], run_id: str | None = None) -> dict[str, list[dict]]:
    """Asset events recorded for these URIs (optionally only those emitted by one DAG run).

    Airflow normalises ``s3://`` asset URIs without the trailing slash; results are keyed by the
    URIs as given."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(AssetEvent, AssetModel.uri).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        stored = {u.rstrip("/"): u for u in uris}
        query = query.filter(AssetModel.uri.in_(list(stored)))
        if run_id is not None:
            query = query.filter(AssetEvent.source_run_id == run_id)
        out: dict[str, list[dict]] = {u: [] for u in uris}
        for event, uri in query.all():
            out[stored[uri]].append(dict(event.extra or {}))
    return out
