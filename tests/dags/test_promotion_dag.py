"""``artefact_promotion`` run with ``dag.test()`` against the real S3 server."""

from __future__ import annotations

import json

import pytest
from dagrun import asset_events, run_dag
from helpers import put, rel_listing, versions

pytestmark = pytest.mark.usefixtures("airflow_db")


def _value(xcom):
    return json.loads(xcom) if isinstance(xcom, str) else xcom


def test_promotion_dag_promotes_each_prefix_and_verifies(s3, buckets, promotion_config):
    qa, prod = buckets
    zarr, csv = promotion_config
    put(s3, qa, f"{zarr}.zgroup", '{"zarr_format": 2}')
    put(s3, qa, f"{zarr}t/0.0", b"\x00" * 64)
    put(s3, qa, f"{csv}delivery.csv", "as_of_date,value\n2026-11-21,1\n")

    state, tis, xcoms, run_id = run_dag("artefact_promotion", {"dry_run": False})

    assert state == "success", tis
    assert {k: v[0] for k, v in tis.items()} == {
        "preflight": "success",
        "plan": "success",
        "gate.0": "success",
        "gate.1": "success",
        "decide": "success",
        "halt_prod_consumers": "skipped",
        "shards": "success",
        "promote.0": "success",
        "promote.1": "success",
        "verify": "success",
        "summary": "success",
        "resume_consumers": "success",
        "check_run": "success",
    }
    for a in promotion_config:
        assert rel_listing(s3, prod, a) == rel_listing(s3, qa, a)
    summary = _value(xcoms["summary"])
    assert summary["copied"] == 3 and summary["deleted"] == 0 and summary["objects_seen"] == 3
    assert summary["manifest"].startswith(f"s3://{prod}/_greenlight/")

    # One Asset event per verified prod prefix, carrying what the run did and its manifest.
    uris = [f"s3://{prod}/{zarr}", f"s3://{prod}/{csv}"]
    events = asset_events(uris, run_id)
    assert {u: len(e) for u, e in events.items()} == {uris[0]: 1, uris[1]: 1}
    assert events[uris[0]][0]["copied"] == 2 and events[uris[1]][0]["copied"] == 1
    assert events[uris[0]][0]["manifest"].startswith(f"s3://{prod}/_greenlight/")

    # Each verified prefix's current pointer names this run's manifest.
    area = zarr[: -len("zarr/")]

    def pointers():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=prod, Prefix=f"_greenlight/{area}current/")["Contents"]]
        return {k: json.loads(s3.get_object(Bucket=prod, Key=k)["Body"].read())["run_id"] for k in keys}

    assert set(pointers().values()) == {run_id} and len(pointers()) == 2

    # The nightly rerun with nothing new is a success and changes nothing, not even the pointers
    # (they keep naming the promotion that made prod what it is).
    before = versions(s3, prod, zarr) + versions(s3, prod, csv)
    state, tis, xcoms, _ = run_dag("artefact_promotion", {})
    assert state == "success", tis
    assert _value(xcoms["summary"])["unchanged"] == 3
    assert versions(s3, prod, zarr) + versions(s3, prod, csv) == before
    assert set(pointers().values()) == {run_id}


def test_dry_run_param_changes_nothing(s3, buckets, promotion_config):
    qa, prod = buckets
    zarr, csv = promotion_config
    put(s3, qa, f"{zarr}a", "a")
    put(s3, qa, f"{csv}b", "b")

    state, tis, xcoms, run_id = run_dag("artefact_promotion", {"dry_run": True})

    assert state == "success", tis
    assert rel_listing(s3, prod, zarr) == {} and rel_listing(s3, prod, csv) == {}
    assert _value(xcoms["summary"])["dry_run"] is True
    uris = [f"s3://{prod}/{zarr}", f"s3://{prod}/{csv}"]
    assert asset_events(uris, run_id) == {u: [] for u in uris}  # nothing verified, nothing announced


def test_refusal_fails_run_without_retry_and_changes_nothing(s3, buckets, promotion_config):
    qa, prod = buckets
    zarr, csv = promotion_config
    put(s3, qa, f"{zarr}a", "a")
    put(s3, prod, f"{csv}precious.csv", "prod only")  # QA csv prefix is empty: would wipe prod
    before = versions(s3, prod, csv)

    state, tis, _, run_id = run_dag("artefact_promotion", {})

    assert state == "failed"
    assert tis["plan"] == ("failed", 1)  # refused on the first try, not retried
    uris = [f"s3://{prod}/{zarr}", f"s3://{prod}/{csv}"]
    assert asset_events(uris, run_id) == {u: [] for u in uris}
    assert not any(k.startswith("promote") and v[0] == "success" for k, v in tis.items())
    assert versions(s3, prod, csv) == before
    assert rel_listing(s3, prod, zarr) == {}  # no prefix promoted when one is refused


def test_only_param_limits_the_run(s3, buckets, promotion_config):
    qa, prod = buckets
    zarr, csv = promotion_config
    put(s3, qa, f"{zarr}a", "a")
    put(s3, qa, f"{csv}b", "b")

    state, tis, _, _ = run_dag("artefact_promotion", {"only": [f"s3://{qa}/{csv}"]})

    assert state == "success", tis
    assert [k for k in tis if k.startswith("promote")] == ["promote.0"]
    assert rel_listing(s3, prod, csv) == rel_listing(s3, qa, csv)
    assert rel_listing(s3, prod, zarr) == {}


def test_unknown_only_prefix_is_a_config_error(s3, buckets, promotion_config):
    state, tis, _, _ = run_dag("artefact_promotion", {"only": ["s3://qa-greenlight-test/not-configured/"]})
    assert state == "failed"
    assert tis["preflight"][0] == "failed" and tis["preflight"][1] == 1
