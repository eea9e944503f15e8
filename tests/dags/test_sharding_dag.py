"""Sharding of a huge prefix and the run-held lease, with ``dag.test()`` (no Celery) on real SeaweedFS.

One prefix above ``shard_objects`` is promoted in key-range shards (one mapped ``promote`` task
each, deletes only after every shard copied, one manifest part per shard); the CLI gives the same
result and manifests shape; a rollback restores every shard exactly. The DAG run holds the prod
prefix's lease from ``plan`` to ``summary``: a second writer between ``gate`` and ``promote`` (the
CLI's promote, a rollback) is refused naming the run.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from dagrun import run_dag
from helpers import put, rel_listing, write_config

from greenlight.cli import main as cli
from greenlight.dagsupport import promotion as tasks
from greenlight.promotion import run
from greenlight.promotion.config import parse_config
from greenlight.promotion.gates import pointer_manifests, stored_pointer
from greenlight.storage.manifests import ManifestStore, read_manifest_uri

pytestmark = pytest.mark.usefixtures("airflow_db")


def _value(xcom):
    return json.loads(xcom) if isinstance(xcom, str) else xcom


@pytest.fixture
def huge_prefix(tmp_path, monkeypatch, buckets, area):
    """One prefix whose shard threshold is 20 objects (the default is 250,000)."""
    qa, prod = buckets
    doc = {
        "prefixes": [f"s3://{qa}/{area}big/"],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        "defaults": {"stale_after_hours": None, "shard_objects": 20},
    }
    path = write_config(tmp_path / "promotion.yaml", doc)
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(path))
    return path, parse_config(doc)


def _cli(*argv: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(list(argv))
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_sharded_prefix_promotes_in_parallel_shards_refuses_a_second_writer_and_rolls_back_exactly(
    huge_prefix, s3, buckets, area, monkeypatch
):
    qa, prod = buckets
    path, config = huge_prefix
    big = f"{area}big/"
    for i in range(70):
        put(s3, qa, f"{big}k{i:03d}.bin", f"v1-{i}")

    # The CLI shards the same way, in-process: 70 keys at 20 per shard -> 4 shards, one manifest part each.
    code, first = _cli("promote", "--config", str(path), "--run-id", "cli__first", "--no-progress")
    assert code == 0, first
    v1 = rel_listing(s3, qa, big)
    assert rel_listing(s3, prod, big) == v1
    first_index = first["manifest"]
    rows = read_manifest_uri(first_index, s3)["prefixes"]
    assert [r["shard"]["index"] for r in rows] == [0, 1, 2, 3] and sum(r["copied"] for r in rows) == 70
    assert len({r["manifest"] for r in rows}) == 4 and all("shard-000" in r["manifest"] for r in rows)

    # QA v2: 10 overwritten, 10 added, 5 removed (deleted from prod, after every shard copied).
    for i in range(0, 70, 7):
        put(s3, qa, f"{big}k{i:03d}.bin", f"v2-{i}")
    for i in range(70, 80):
        put(s3, qa, f"{big}k{i:03d}.bin", f"v2-{i}")
    s3.delete_objects(Bucket=qa, Delete={"Objects": [{"Key": f"{big}k{i:03d}.bin"} for i in range(61, 66)]})

    # Between the gates and the promote tasks, two other writers try the same prod prefix.
    second: dict[str, tuple[int, dict]] = {}
    real_decide = tasks.decide

    def decide_after_two_other_writers(gates):
        second["promote"] = _cli("promote", "--config", str(path), "--run-id", "cli__second", "--no-progress")
        second["rollback"] = _cli("rollback", "--manifest", first_index, "--config", str(path))
        return real_decide(gates)

    monkeypatch.setattr(tasks, "decide", decide_after_two_other_writers)
    state, tis, xcoms, run_id = run_dag("artefact_promotion", {})

    assert state == "success", tis
    for what in ("promote", "rollback"):
        code, out = second[what]
        assert code == 2, (what, out)
        assert f"run {run_id!r}" in out["error"] and "holds the lease" in out["error"], out
    shards = [k for k in tis if k.startswith("promote.")]
    assert sorted(shards) == ["promote.0", "promote.1", "promote.2", "promote.3"]
    assert all(tis[k][0] == "success" for k in shards)
    assert rel_listing(s3, prod, big) == rel_listing(s3, qa, big)

    summary = _value(xcoms["summary"])
    assert (summary["copied"], summary["deleted"]) == (19, 5)  # k063 was overwritten, then removed
    assert summary["leases_released"] == [f"s3://{prod}/{big}"]
    index = read_manifest_uri(summary["manifest"], s3)
    assert index["status"] == "complete" and [r["shard"]["index"] for r in index["prefixes"]] == [0, 1, 2, 3]
    # Each shard copied only its own range; every delete is recorded in the part of its range.
    parts = [read_manifest_uri(r["manifest"], s3) for r in index["prefixes"]]
    deleted = sorted(a["key"].rsplit("/", 1)[-1] for p in parts for a in p["actions"] if a["action"] == "delete")
    assert deleted == [f"k{i:03d}.bin" for i in range(61, 66)]
    for p in parts:
        lo, hi = p["shard"]["start_after"], p["shard"]["end"]
        rels = [a["key"].removeprefix(big) for a in p["actions"]]
        assert all((lo is None or r > lo) and (hi is None or r <= hi) for r in rels), (lo, hi, rels)

    # The current pointer names every shard's manifest part, in shard order.
    pointer = stored_pointer(ManifestStore(config.manifest_uri, s3), config.prefixes[0])
    assert pointer["run_id"] == run_id
    assert pointer_manifests(pointer) == [r["manifest"] for r in index["prefixes"]] and len(index["prefixes"]) == 4

    # The run released its hold: the same CLI promote now goes through (nothing left to do).
    code, out = _cli("promote", "--config", str(path), "--run-id", "cli__third", "--no-progress")
    assert code == 0 and out["copied"] == 0, out

    # The rollback of the DAG run restores every shard exactly: prod is QA v1 again.
    code, out = _cli("rollback", "--manifest", summary["manifest"], "--config", str(path))
    assert code == 0, out
    assert rel_listing(s3, prod, big) == v1


def test_cli_and_dag_shard_the_same_plan(huge_prefix, s3, buckets, area):
    """The DAG's ``shards`` task and the CLI cut the same ranges from the same plan."""
    from greenlight.promotion.engine import Engine
    from greenlight.promotion.shards import ranges_for

    qa, _ = buckets
    for i in range(45):
        put(s3, qa, f"{area}big/k{i:03d}.bin", f"x{i}")
    _, config = huge_prefix
    planned = run.plan(Engine(config, s3))
    ranges = ranges_for(planned[0])
    flattened = tasks.shard_tasks([{**planned[0].summary(), "shards": [r.as_dict() for r in ranges]}])
    assert [f["shard"]["index"] for f in flattened] == [0, 1, 2] and [r.count for r in ranges] == [3, 3, 3]
    assert tasks.task_label(flattened[1]).endswith("big/ shard 2/3")
