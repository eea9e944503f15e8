"""The refresh's leases on the real S3 server (SeaweedFS) and embedded PostgreSQL: one writer per
staging bucket target (shared with promotions into that prefix) and one refresh per staging database.

The bucket pair: prod ``prod-greenlight-test/<area>img/`` → staging ``staging-greenlight-test/<area>img/``.
A promotion config with the destination rule ``qa-`` → ``staging-`` writes the same staging prefix,
with its manifests (and leases) in their default place, ``_greenlight/manifests/`` of that bucket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import refreshfixtures
from helpers import put, rel_listing, write_config
from refreshfixtures import seed_runbook_schema

from greenlight.promotion import run as promotion
from greenlight.promotion.config import parse_config as promotion_config
from greenlight.refresh import leases
from greenlight.refresh.config import parse_config
from greenlight.refresh.connections import from_env
from greenlight.refresh.run import Refresh
from greenlight.storage.lease import LEASE_KIND, Lease, LeaseHeldError, holding, lease_key

pg_pair = refreshfixtures.pg_pair  # the session's two PostgreSQL servers
refresh_dbs = refreshfixtures.refresh_dbs  # a fresh database on each

STAGING = "staging-greenlight-test"


@pytest.fixture(scope="module")
def staging(s3):
    try:
        s3.create_bucket(Bucket=STAGING)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_versioning(Bucket=STAGING, VersioningConfiguration={"Status": "Enabled"})
    return STAGING


@pytest.fixture
def pair(tmp_path, s3, buckets, area, staging):
    """A bucket-only refresh config (manifests on local disk) and its staging target."""
    _, prod = buckets
    for i in range(3):
        put(s3, prod, f"{area}img/{i}.jpg", os.urandom(1500 + i))
    target = f"s3://{staging}/{area}img/"
    raw = {
        "buckets": [{"name": "images", "source": f"s3://{prod}/{area}img/", "target": target}],
        "manifest_uri": str(tmp_path / "manifests"),
    }
    return raw, target


@pytest.fixture
def gate_server():
    """A staging health URL that answers only once ``state['go']`` is set (a refresh stays in its
    lease meanwhile), with 200 or, when ``state['healthy']`` is false, 503."""
    state = {"go": threading.Event(), "called": threading.Event(), "healthy": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state["called"].set()
            state["go"].wait(60)
            self.send_response(200 if state["healthy"] else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", state
    state["go"].set()
    server.shutdown()
    server.server_close()


def run_main(capsys, tmp_path, raw, *args):
    from greenlight.cli import main

    path = write_config(tmp_path / "staging_refresh.yaml", raw)
    code = main(["refresh", "--config", str(path), *args])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def stored(s3, root, resource):
    return json.loads(s3.get_object(Bucket=root.bucket, Key=lease_key(root, resource))["Body"].read())


def promo_config(buckets, area):
    qa, _ = buckets
    return promotion_config(
        {
            "destination_rule": {"source_bucket_prefix": "qa-", "destination_bucket_prefix": "staging-"},
            "prefixes": [f"s3://{qa}/{area}img/"],
        }
    )


def test_a_refresh_is_refused_while_a_promotion_writes_its_target_then_waits_for_it(
    tmp_path, capsys, s3, buckets, area, pair
):
    raw, target = pair
    promo = promo_config(buckets, area)
    (prefix,) = promo.prefixes
    assert str(prefix.destination) == target  # the promotion writes the refresh's target prefix
    # The promotion's own lease, where and as it takes it (greenlight.promotion.run.promote).
    with holding(s3, promo.manifest_uri, [target], run_id="scheduled__promo-1", operation="promote"):
        code, out = run_main(capsys, tmp_path, raw, "--run-id", "cli__refresh-1")
    assert code == 2, out
    assert target in out["error"] and "promote run 'scheduled__promo-1'" in out["error"]
    assert rel_listing(s3, STAGING, f"{area}img/") == {}  # nothing copied into staging

    holder = Lease(s3, promo.manifest_uri, target, run_id="scheduled__promo-2", operation="promote").acquire()
    threading.Timer(1.5, holder.release).start()
    try:
        code, out = run_main(capsys, tmp_path, raw, "--run-id", "cli__refresh-2", "--wait", "60")
    finally:
        holder.release()
    assert code == 0, out
    assert out["objects_copied"] == 3
    assert [row["resource"] for row in out["leases"]] == [target]
    assert out["leases"][0]["lease"].startswith(f"s3://{STAGING}/_greenlight/manifests/leases/")
    doc = stored(s3, promo.manifest_uri, target)  # the same lease object the promotion used
    assert doc["run_id"] == "cli__refresh-2" and doc["operation"] == "refresh" and doc["released_at"]


def test_a_promotion_into_the_target_during_a_refresh_is_excluded(tmp_path, s3, buckets, area, pair, gate_server):
    qa, _ = buckets
    raw, target = pair
    url, state = gate_server
    for i in range(3):
        put(s3, qa, f"{area}img/{i}.jpg", f"QA's {i}")
    config = parse_config({**raw, "health": {"url": url, "timeout_s": 60}})
    r = Refresh(config, run_id="cli__refresh-long", resolve=from_env, s3=lambda: s3)
    from greenlight.refresh.run import refresh

    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(refresh(r)), daemon=True)
    worker.start()
    try:
        assert state["called"].wait(60)  # the refresh copied its objects and is at its health check
        with pytest.raises(LeaseHeldError, match="refresh run 'cli__refresh-long'") as refused:
            promotion.promote(promo_config(buckets, area), s3, run_id="cli__promote-during")
        assert target in str(refused.value)
        staged = rel_listing(s3, STAGING, f"{area}img/")
        assert staged == rel_listing(s3, buckets[1], f"{area}img/")  # prod's objects, not QA's
    finally:
        state["go"].set()
        worker.join(60)
    assert result["problems"] == [] and result["objects_copied"] == 3
    # The refresh released its lease at its end: the promotion gets in now.
    summary = promotion.promote(promo_config(buckets, area), s3, run_id="cli__promote-after")
    assert summary["copied"] == 3


def test_a_dead_refresh_holders_lease_is_taken_over_and_a_failed_refresh_releases_its_own(
    tmp_path, capsys, s3, area, pair, gate_server
):
    raw, target = pair
    root = parse_config(raw).lease_root(parse_config(raw).buckets[0])
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process now
    crashed = {
        "kind": LEASE_KIND,
        "resource": target,
        "run_id": "cli__crashed",
        "operation": "refresh",
        "host": socket.gethostname(),
        "pid": gone.pid,
        "token": "t",
        "ttl_s": 3600,
        "scope": "process",
        "expires_at": "2099-01-01T00:00:00Z",
        "expires_epoch": 4070908800,
    }
    s3.put_object(Bucket=root.bucket, Key=lease_key(root, target), Body=json.dumps(crashed).encode())
    url, state = gate_server
    state["healthy"] = False
    state["go"].set()

    code, out = run_main(capsys, tmp_path, {**raw, "health": {"url": url}}, "--run-id", "cli__after-crash")

    assert code == 1 and any("503" in p for p in out["problems"]), out  # the refresh failed (health)
    assert out["leases"][0]["took_over_from"] == "cli__crashed"
    assert out["objects_copied"] == 3
    doc = stored(s3, root, target)
    assert doc["run_id"] == "cli__after-crash" and doc["released_at"]  # released although it failed
    code, out = run_main(capsys, tmp_path, raw, "--run-id", "cli__next")
    assert code == 0 and out["leases"][0]["took_over_from"] is None


def test_two_refreshes_of_one_staging_database_exclude_each_other(tmp_path, capsys, s3, area, staging, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    dbs.run("staging", "DELETE FROM users")
    raw = {
        "postgres": {"source_conn": dbs.source_conn, "target_conn": dbs.target_conn, "tables": ["users"]},
        "lease_uri": f"s3://{staging}/_greenlight/{area}",
    }
    other = Refresh(parse_config(raw), run_id="manual__dag-run", resolve=from_env, s3=lambda: s3)
    (spec,) = leases.run_specs(other)
    assert spec["resource"].startswith("postgres:") and spec["resource"].endswith(
        "/" + dbs.query("staging", "SELECT current_database()")[0][0]
    )

    with leases.holding(s3, [spec], run_id="manual__dag-run", scope="run"):
        code, out = run_main(capsys, tmp_path, raw, "--run-id", "cli__by-hand")
    assert code == 2 and spec["resource"] in out["error"] and "'manual__dag-run'" in out["error"], out
    assert dbs.query("staging", "SELECT count(*) FROM users") == [(0,)]  # nothing copied

    assert leases.release(s3, [spec], run_id="manual__dag-run") == [spec["resource"]]
    code, out = run_main(capsys, tmp_path, raw, "--run-id", "cli__by-hand")
    assert code == 0, out
    assert dbs.query("staging", "SELECT count(*) FROM users") != [(0,)]
