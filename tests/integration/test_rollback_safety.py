"""A rollback never silently undoes later work, stays inside greenlight's domain, refuses bad
manifests with exit 2, merges its retries, restores big versions by UploadPartCopy and waits its
turn behind another writer's lease (real S3 server)."""

from __future__ import annotations

import json
import os

import pytest
from helpers import body, listing, put, versions, write_config

from greenlight.cli import main as cli_main
from greenlight.errors import QAChangedError, RefusedError
from greenlight.promotion import rollback as rb
from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine
from greenlight.promotion.run import promote
from greenlight.storage.lease import Lease, LeaseHeldError
from greenlight.storage.manifests import ManifestStore


def config(buckets, area):
    qa, prod = buckets
    return parse_config(
        {
            "prefixes": [{"source": f"s3://{qa}/{area}", "max_delete_fraction": 1.0}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )


@pytest.fixture
def cfg(buckets, area):
    return config(buckets, area)


@pytest.fixture
def promoted(s3, buckets, area, cfg):
    """night-1 puts a, b, old in prod; night-2 changes a, adds new, deletes old."""
    qa, _ = buckets
    for key, text in {"a.csv": "a-v1", "b.csv": "b-v1", "old.csv": "old"}.items():
        put(s3, qa, area + key, text)
    promote(cfg, s3, run_id="night-1")
    put(s3, qa, area + "a.csv", "a-v2-longer")
    put(s3, qa, area + "new.csv", "new")
    s3.delete_object(Bucket=qa, Key=area + "old.csv")
    return promote(cfg, s3, run_id="night-2")["manifest"]


def test_later_promotion_is_not_undone_without_force(s3, buckets, area, cfg, promoted):
    qa, prod = buckets
    put(s3, qa, area + "a.csv", "a-v3 from night 3")
    promote(cfg, s3, run_id="night-3")
    state = versions(s3, prod, area)

    with pytest.raises(RefusedError) as caught:
        rb.rollback(promoted, s3, config=cfg)

    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"s3://{prod}/{area}a.csv" in message and "'night-3'" in message
    assert "new.csv" not in message  # unchanged since night-2: not a conflict
    assert versions(s3, prod, area) == state  # nothing changed

    forced = rb.rollback(promoted, s3, config=cfg, force=True)
    assert body(s3, prod, area + "a.csv") == b"a-v1"
    assert len(forced["forced"]) == 1


def test_hand_edit_is_named_and_refused(s3, buckets, area, cfg, promoted):
    _, prod = buckets
    put(s3, prod, area + "new.csv", "edited by hand in prod")

    with pytest.raises(RefusedError, match=r"new\.csv.*something else"):
        rb.rollback(promoted, s3, config=cfg)
    assert body(s3, prod, area + "new.csv") == b"edited by hand in prod"


def test_key_whose_copy_failed_is_not_deleted(s3, buckets, area, cfg):
    """A QA object that changes between plan and copy fails its copy (If-Match); a later run
    promotes it. Rolling back the failed run must leave that later object alone."""
    qa, prod = buckets
    put(s3, qa, area + "a.csv", "a-v1")
    promote(cfg, s3, run_id="night-1")
    put(s3, qa, area + "a.csv", "a-v2")
    put(s3, qa, area + "late.csv", "late-v1")
    engine = Engine(cfg, s3)
    (plan,) = engine.plan_all()
    put(s3, qa, area + "late.csv", "late-v2 written during the copy")
    with pytest.raises(QAChangedError, match="late.csv"):
        engine.execute(plan, "failed-run")
    failed_manifest = engine.manifests.uri(engine.manifest_path("failed-run", cfg.prefixes[0]))
    promote(cfg, s3, run_id="night-3")  # a.csv unchanged since failed-run; late.csv promoted now

    summary = rb.rollback(failed_manifest, s3, config=cfg)

    assert body(s3, prod, area + "late.csv") == b"late-v2 written during the copy"
    assert summary["left_alone"] == [f"s3://{prod}/{area}late.csv"]
    assert body(s3, prod, area + "a.csv") == b"a-v1" and summary["restored"] == 1


def test_retried_rollback_merges_into_its_manifest(s3, buckets, area, cfg, promoted):
    _, prod = buckets
    after_promotion = listing(s3, prod, area)
    first = rb.rollback(promoted, s3, config=cfg, run_id="undo-2")
    again = rb.rollback(promoted, s3, config=cfg, run_id="undo-2")  # e.g. a cleared task rerun

    assert again["rollback_manifests"] == first["rollback_manifests"]
    doc = ManifestStore(cfg.manifest_uri, s3).read(first["rollback_manifests"][0].split(str(cfg.manifest_uri))[1])
    assert doc["attempts"] == 2 and len(doc["actions"]) == 3  # a.csv, new.csv, old.csv kept
    rb.rollback(first["rollback_manifests"][0], s3, config=cfg, run_id="redo-2")
    assert listing(s3, prod, area) == after_promotion


def test_big_restore_uses_upload_part_copy_from_the_version(s3, buckets, area, cfg, monkeypatch):
    qa, prod = buckets
    original = os.urandom(6 * 1024 * 1024 + 17)
    put(s3, qa, area + "big.bin", original)
    promote(cfg, s3, run_id="night-1")
    put(s3, qa, area + "big.bin", b"smaller now")
    manifest = promote(cfg, s3, run_id="night-2")["manifest"]
    monkeypatch.setattr(rb, "MAX_SINGLE_COPY", 1024 * 1024)  # stands in for 5 GiB
    monkeypatch.setattr(rb, "PART_SIZE", 5 * 1024 * 1024)

    rb.rollback(manifest, s3, config=cfg)

    head = s3.head_object(Bucket=prod, Key=area + "big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # two parts copied: UploadPartCopy, not CopyObject
    assert body(s3, prod, area + "big.bin") == original


def test_manifest_outside_manifest_uri_is_refused(s3, buckets, area, cfg, promoted):
    _, prod = buckets
    doc = json.loads(s3.get_object(Bucket=prod, Key=promoted.split(f"s3://{prod}/")[1])["Body"].read())
    dropped = f"{area}dropped/index.json"
    s3.put_object(Bucket=prod, Key=dropped, Body=json.dumps(doc).encode())
    state = versions(s3, prod, area)

    with pytest.raises(RefusedError, match=f"manifest s3://{prod}/{dropped} .not under manifest_uri"):
        rb.rollback(f"s3://{prod}/{dropped}", s3, config=cfg)
    assert versions(s3, prod, area) == state


def test_keys_outside_the_prod_prefixes_are_refused(s3, buckets, area, cfg, promoted):
    _, prod = buckets
    put(s3, prod, f"other-team-{area}precious.csv", "not greenlight's")
    store = ManifestStore(cfg.manifest_uri, s3)
    crafted = {
        "kind": "greenlight.promotion/v1",
        "run_id": "crafted",
        "source": "x",
        "destination": f"s3://{prod}/{area}",
        "bucket": prod,
        "actions": [{"key": f"other-team-{area}precious.csv", "action": "copy", "before": None}],
    }
    uri = store.write("promotions/crafted/evil.json", crafted)

    with pytest.raises(RefusedError, match=f"other-team-{area}precious.csv"):
        rb.rollback(uri, s3, config=cfg)
    assert body(s3, prod, f"other-team-{area}precious.csv") == b"not greenlight's"

    crafted.update(bucket=buckets[0], actions=[{"key": f"{area}a.csv", "before": None}])
    uri = store.write("promotions/crafted/qa.json", crafted)
    with pytest.raises(RefusedError, match="not a 'prod-' bucket"):
        rb.rollback(uri, s3, config=cfg)


def test_bad_manifest_arguments_exit_2(s3env, s3, buckets, area, tmp_path, capsys):
    qa, prod = buckets
    config_path = write_config(
        tmp_path / "promotion.yaml",
        {"prefixes": [f"s3://{qa}/{area}"], "manifest_uri": f"s3://{prod}/_greenlight/{area}"},
    )
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "nobucket.json").write_text(json.dumps({"kind": "greenlight.promotion/v1", "destination": "x"}))
    (tmp_path / "latin1.json").write_bytes(b'{"kind": "\xe9"}')
    cases = {
        str(tmp_path): "is a folder",
        str(tmp_path / "list.json"): "JSON list",
        str(tmp_path / "nobucket.json"): "'bucket' is missing",
        str(tmp_path / "latin1.json"): "not valid JSON",
        f"s3://{prod}": "names a bucket or a folder",
        f"s3://{prod}/_greenlight/": "names a bucket or a folder",
    }
    for manifest, expected in cases.items():
        code = cli_main(["rollback", "--config", str(config_path), "--manifest", manifest])
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (code, out["exit_code"]) == (2, 2), (manifest, out)
        assert expected in out["error"], (manifest, out)


def test_rollback_refuses_while_a_promotion_holds_the_prefix(s3env, s3, buckets, area, cfg, promoted, capsys):
    _, prod = buckets
    holder = Lease(s3, cfg.manifest_uri, f"s3://{prod}/{area}", run_id="nightly-4", operation="promote").acquire()
    try:
        state = versions(s3, prod, area)
        with pytest.raises(LeaseHeldError, match="'nightly-4'"):
            rb.rollback(promoted, s3, config=cfg)
        assert versions(s3, prod, area) == state
    finally:
        holder.release()
    assert rb.rollback(promoted, s3, config=cfg)["restored"] == 2
