"""The Airflow 3 REST calls a backfill needs, and the errors greenlight's backfill raises.

:class:`Airflow` wraps :class:`greenlight.dagsupport.api.AirflowApi` (the same client the DAGs'
tasks use through the ``airflow_api`` connection) with the backfill endpoints: ``GET/POST
/api/v2/backfills``, the dry run, one backfill, and a DAG's runs over a range (every page). A GET
that times out is asked again (the API server is often busy with the backfill's own tasks); a POST
is never repeated (a create sent twice would make two backfills). Airflow's refusals (409, 4xx)
become :class:`BackfillRefused` (exit 2) carrying Airflow's own ``detail``.

:func:`backfill_of_run` answers a question Airflow's API does not: which backfill a ``backfill``
run belongs to (the run's ``backfill_id`` is in the metadata DB only, not in the task context nor in
``GET /dagRuns``). Used by the runner and by the summary hook of the DAGs' final task
(:mod:`greenlight.dagsupport.backfillsummary`).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from typing import Any

from greenlight.backfill.plan import iso
from greenlight.dagsupport.api import AirflowApiError, AirflowApiUnavailable
from greenlight.errors import GreenlightError


class BackfillRefused(GreenlightError):
    """Refused before anything started: a DAG that cannot be backfilled now, another backfill of it
    still running, or a request Airflow rejected (exit 2)."""

    exit_code = 2
    kind = "refused"


def say(line: str) -> None:
    """A progress line on stderr (stdout carries the command's JSON result)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Airflow:
    """The few backfill calls of the Airflow 3 REST API, with errors turned into greenlight's."""

    def __init__(self, api):
        self.api = api

    #: A GET that times out (an API server busy with the backfill's own tasks) is asked again.
    GET_TRIES = 6

    def _get(self, path: str) -> Any:
        for attempt in range(1, self.GET_TRIES):
            try:
                return self.api.get(path)
            except AirflowApiUnavailable as exc:
                say(f"Airflow API busy or unreachable ({str(exc)[-80:]}): asking again")
                time.sleep(min(2.0 * attempt, 10.0))
        return self.api.get(path)  # the last try: its error goes to the caller

    def _call(self, method: str, path: str, body: dict | None = None, *, what: str) -> Any:
        try:
            if method == "GET":
                return self._get(path)
            send = {"POST": self.api.post, "PUT": self.api.put}[method]
            return send(path, body)  # never repeated: a create must not be sent twice
        except AirflowApiError as exc:
            text = str(exc)
            if "HTTP 401" in text or "HTTP 403" in text:
                raise
            detail = error_detail(text)
            if "HTTP 409" in text:
                raise BackfillRefused(f"{what}: {detail}") from None
            raise BackfillRefused(f"{what}: Airflow refused it: {detail}") from None

    def dag(self, dag_id: str) -> dict | None:
        return self._get(f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}")

    def backfill(self, backfill_id: int) -> dict | None:
        return self._call("GET", f"/api/v2/backfills/{int(backfill_id)}", what=f"backfill {backfill_id}")

    def backfills(self, dag_id: str) -> list[dict]:
        query = urllib.parse.urlencode({"dag_id": dag_id, "limit": 100, "order_by": "-id"})
        page = self._call("GET", f"/api/v2/backfills?{query}", what=f"backfills of {dag_id}") or {}
        return list(page.get("backfills") or [])

    def dry_run(self, body: dict) -> list[str]:
        answer = self._call("POST", "/api/v2/backfills/dry_run", body, what=f"--dag-id {body['dag_id']}")
        return [iso(b["logical_date"]) for b in answer.get("backfills") or () if b.get("logical_date")]

    def create(self, body: dict) -> dict:
        return self._call("POST", "/api/v2/backfills", body, what=f"backfill of {body['dag_id']}")

    def cancel(self, backfill_id: int) -> dict:
        """``PUT /backfills/{id}/cancel``: fails its queued runs and marks it complete."""
        return self._call("PUT", f"/api/v2/backfills/{int(backfill_id)}/cancel", {}, what=f"backfill {backfill_id}")

    def runs(self, dag_id: str, start: str, end: str) -> list[dict]:
        """Every run of ``dag_id`` whose logical date is in ``[start, end]`` (all pages)."""
        out: list[dict] = []
        offset = 0
        while True:
            query = urllib.parse.urlencode(
                {
                    "logical_date_gte": start,
                    "logical_date_lte": end,
                    "limit": 100,
                    "offset": offset,
                    "order_by": "logical_date",
                }
            )
            page = self._call(
                "GET", f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns?{query}", what=f"runs of {dag_id}"
            )
            runs = list((page or {}).get("dag_runs") or [])
            out += runs
            offset += len(runs)
            if not runs or offset >= int((page or {}).get("total_entries") or 0):
                return out


def error_detail(text: str) -> str:
    """The ``detail`` of a FastAPI error body inside an AirflowApiError message, else the message."""
    start = text.find("{")
    if start >= 0:
        try:
            detail = json.loads(text[start:]).get("detail")
        except ValueError:
            detail = None
        if isinstance(detail, list):
            return "; ".join(str(d.get("msg") if isinstance(d, dict) else d) for d in detail)
        if detail:
            return str(detail)
    return text


def backfill_of_run(backfills: list[dict], logical_date: Any) -> dict | None:
    """The backfill (from ``GET /api/v2/backfills?dag_id=...``) that a ``backfill`` run with this
    logical date belongs to: the one not yet completed whose range holds the date (Airflow allows
    one active backfill per DAG), else the newest whose range holds it (a run cleared again after
    its backfill completed). None when no backfill covers the date."""
    day = iso(logical_date)
    if day is None:
        return None
    covering = [b for b in backfills if iso(b.get("from_date")) <= day <= iso(b.get("to_date"))]
    covering.sort(key=lambda b: int(b["id"]), reverse=True)
    active = [b for b in covering if not b.get("completed_at")]
    return (active or covering or [None])[0]
