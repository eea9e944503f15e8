"""A small client for the Airflow 3 REST API: pause, unpause and delete DAGs, manage pools.

Task code in a real deployment cannot use the metadata DB; the REST API is the supported way to
change another DAG. A token comes from ``POST /auth/token`` (user + password); DAGs are read with
``GET /api/v2/dags/{dag_id}`` and paused with ``PATCH /api/v2/dags/{dag_id}`` ``{"is_paused": ...}``.
The password is only ever sent in the token request body; it is never logged or returned.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from greenlight.errors import ConfigError, GreenlightError


class AirflowApiError(GreenlightError):
    """The Airflow API answered with an error that a retry will not fix (auth, unknown DAG)."""

    kind = "permission"


class AirflowApiUnavailable(GreenlightError):
    """The Airflow API could not be reached or answered 5xx: retried."""

    kind = "transient"
    retryable = True


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"Airflow API base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None

    def __repr__(self) -> str:  # never shows the password
        return f"AirflowApi({self.base_url!r}, user={self.username!r})"

    def _request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) checked above
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            where = f"{method} {self.base_url}{path}"
            if exc.code >= 500 or exc.code == 429:
                raise AirflowApiUnavailable(f"{where}: HTTP {exc.code} {detail}") from exc
            raise AirflowApiError(f"{where}: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise AirflowApiUnavailable(f"{method} {self.base_url}{path}: {exc}") from exc
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self._password}, auth=False
            )
            self._token = answer["access_token"]
        return self._token

    def get(self, path: str) -> Any:
        """GET ``path`` (e.g. ``/api/v2/dags/x``); None when the resource does not exist."""
        try:
            return self._request("GET", path)
        except AirflowApiError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def post(self, path: str, body: dict) -> Any:
        """POST ``body`` as JSON to ``path`` (e.g. ``/api/v2/dags/x/dagRuns``)."""
        return self._request("POST", path, body)

    def put(self, path: str, body: dict) -> Any:
        """PUT ``body`` as JSON to ``path`` (e.g. ``/api/v2/backfills/7/cancel``)."""
        return self._request("PUT", path, body)

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        return self.get(f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}")

    def get_variable(self, key: str) -> str | None:
        """A Variable's raw value (None when it does not exist)."""
        answer = self.get(f"/api/v2/variables/{urllib.parse.quote(key, safe='')}")
        return None if answer is None else answer.get("value")

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return self._request(
            "PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}", {"is_paused": bool(paused)}
        )

    def delete_dag(self, dag_id: str) -> bool:
        """Delete a DAG's metadata (runs, task instances, ...), not its file: True if it existed.

        The DAG processor re-creates a DAG whose file still defines it."""
        try:
            self._request("DELETE", f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}")
        except AirflowApiError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise
        return True

    def ensure_pool(self, name: str, slots: int, description: str = "") -> str:
        """Create the pool, or set its slots: returns "created", "updated" or "unchanged"."""
        path = f"/api/v2/pools/{urllib.parse.quote(name, safe='')}"
        current = self.get(path)
        if current is None:
            self._request("POST", "/api/v2/pools", {"name": name, "slots": int(slots), "description": description})
            return "created"
        if current.get("slots") == int(slots):
            return "unchanged"
        self._request("PATCH", path, {"name": name, "slots": int(slots), "description": description})
        return "updated"

    def delete_pool(self, name: str) -> bool:
        """Delete a pool: True if it existed."""
        try:
            self._request("DELETE", f"/api/v2/pools/{urllib.parse.quote(name, safe='')}")
        except AirflowApiError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise
        return True


def base_url_from(host: str | None, port: int | None, schema: str | None) -> str:
    """The API base URL from an Airflow connection's host/port/schema (host may be a full URL)."""
    if not host:
        raise ConfigError("the Airflow API connection has no host (e.g. http://airflow-apiserver:8080)")
    if host.startswith(("http://", "https://")):
        parsed = urllib.parse.urlsplit(host)
        netloc = parsed.netloc if parsed.port or not port else f"{parsed.netloc}:{port}"
        return f"{parsed.scheme}://{netloc}{parsed.path}".rstrip("/")
    scheme = schema if schema in ("http", "https") else "http"
    return f"{scheme}://{host}" + (f":{port}" if port else "")
