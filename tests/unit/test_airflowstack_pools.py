"""``make airflow`` creates the dataset pools over REST while the scheduler already runs tasks.

On SQLite the API can answer 500 ("database is locked") for a few seconds; the launcher must
retry instead of stopping the whole stack (seen on a fresh clone: ``make demo`` then
``make airflow`` exited with ``POST /api/v2/pools: HTTP 500``). A real HTTP server on loopback
plays the API: it answers 500 to the first pool creations, then creates.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from greenlight.dagsupport.api import AirflowApi, AirflowApiUnavailable
from greenlight.datasets.config import load_config
from greenlight.dev.airflowstack import dataset_pools
from greenlight.dev.datasets_demo import SOURCE_CONFIG


class FlakyPoolsApi(BaseHTTPRequestHandler):
    failures_left = 0
    pools: dict[str, dict] = {}

    def log_message(self, *_args) -> None:
        pass

    def _answer(self, code: int, body: dict | None = None) -> None:
        raw = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/v2/pools/") and name in self.pools:
            self._answer(200, self.pools[name])
        else:
            self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/auth/token":
            self._answer(201, {"access_token": "t"})
        elif self.path == "/api/v2/pools":
            cls = type(self)
            if cls.failures_left > 0:
                cls.failures_left -= 1
                self._answer(500, {"detail": "database is locked"})
            else:
                cls.pools[body["name"]] = body
                self._answer(201, body)
        else:
            self._answer(404, {})


@pytest.fixture
def flaky_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyPoolsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FlakyPoolsApi.pools = {}
    try:
        yield server, AirflowApi(f"http://127.0.0.1:{server.server_port}", "admin", "pw")
    finally:
        server.shutdown()
        server.server_close()


def test_pools_are_created_after_the_api_answered_500(flaky_api):
    _server, api = flaky_api
    config = load_config(SOURCE_CONFIG)
    FlakyPoolsApi.failures_left = 2
    lines = dataset_pools(config, api, attempts=4, pause=0.01)
    assert sorted(lines) == sorted(f"{name} created" for name in FlakyPoolsApi.pools)
    assert "dataset__corn-stress-index__v0-2-0" in FlakyPoolsApi.pools


def test_a_lasting_5xx_still_fails_naming_the_request(flaky_api):
    _server, api = flaky_api
    FlakyPoolsApi.failures_left = 100
    with pytest.raises(AirflowApiUnavailable, match="POST .*/api/v2/pools: HTTP 500"):
        dataset_pools(load_config(SOURCE_CONFIG), api, attempts=3, pause=0.01)
    assert FlakyPoolsApi.pools == {}
