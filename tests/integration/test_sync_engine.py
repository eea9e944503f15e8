"""The promotion engine against a real SeaweedFS server: plans, guards, copies, deletes, verify."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers import body, listing, put, rel_listing, versions

from greenlight.errors import QAChangedError, RefusedError, StalePrefixError
from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine
from greenlight.promotion.run import promote
from greenlight.storage.manifests import read_manifest_uri


def config_for(buckets, area, **settings):
    qa, prod = buckets
    entry = {"source": f"s3://{qa}/{area}", **settings}
    return parse_config(
        {
            "prefixes": [entry],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )


def run(s3, buckets, area, *, run_id="run-1", dry_run=False, **settings):
    return promote(config_for(buckets, area, **settings), s3, run_id=run_id, dry_run=dry_run)


def assert_equal_sides(s3, buckets, area):
    qa, prod = buckets
    src = rel_listing(s3, qa, area)
    assert src, "test setup: source is empty"
    assert rel_listing(s3, prod, area) == src


def test_full_sync_copies_everything_with_metadata(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}a.csv", "x,y\n1,2\n", ContentType="text/csv", Metadata={"owner": "qa-team"})
    put(s3, qa, f"{area}nested/deep/b.json", '{"k": 1}', ContentType="application/json")
    put(s3, qa, f"{area}empty.txt", b"")

    summary = run(s3, buckets, area)

    assert (summary["copied"], summary["deleted"], summary["unchanged"]) == (3, 0, 0)
    assert summary["objects_seen"] == 3
    assert summary["bytes_copied"] == len("x,y\n1,2\n") + len('{"k": 1}')
    assert summary["verified"] == 1
    assert_equal_sides(s3, buckets, area)
    head = s3.head_object(Bucket=prod, Key=f"{area}a.csv")
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {"owner": "qa-team"}


def test_noop_rerun_copies_nothing(s3, buckets, area):
    qa, prod = buckets
    for i in range(5):
        put(s3, qa, f"{area}f{i}", f"v{i}")
    run(s3, buckets, area, run_id="first")
    before = versions(s3, prod, area)

    summary = run(s3, buckets, area, run_id="second")

    assert (summary["copied"], summary["deleted"], summary["unchanged"]) == (0, 0, 5)
    assert summary["manifest"] is None  # nothing changed, nothing to roll back
    assert versions(s3, prod, area) == before


def test_same_size_change_is_copied(s3, buckets, area):
    """aws s3 sync decides by size + mtime; a same-size rewrite must still be promoted."""
    qa, prod = buckets
    put(s3, qa, f"{area}table.csv", "value=AAAA")
    run(s3, buckets, area, run_id="r1")
    put(s3, qa, f"{area}table.csv", "value=BBBB")  # same size, new content

    summary = run(s3, buckets, area, run_id="r2")

    assert summary["copied"] == 1
    assert body(s3, prod, f"{area}table.csv") == b"value=BBBB"


def test_prod_rolled_back_to_older_same_size_version_is_restored(s3, buckets, area):
    """After prod was restored to an older version (newer mtime than QA), promotion fixes it."""
    qa, prod = buckets
    put(s3, qa, f"{area}yields.csv", "corn,170")
    run(s3, buckets, area, run_id="r1")
    put(s3, qa, f"{area}yields.csv", "corn,181")
    run(s3, buckets, area, run_id="r2")
    # An operator restores the older prod version by hand: prod is now *newer* than QA.
    old = [v for v in versions(s3, prod, f"{area}yields.csv") if not v[2]][0][1]
    s3.copy_object(
        Bucket=prod, Key=f"{area}yields.csv", CopySource={"Bucket": prod, "Key": f"{area}yields.csv", "VersionId": old}
    )
    assert body(s3, prod, f"{area}yields.csv") == b"corn,170"

    summary = run(s3, buckets, area, run_id="r3")

    assert summary["copied"] == 1
    assert body(s3, prod, f"{area}yields.csv") == b"corn,181"


def test_deletes_extra_prod_objects_and_records_them(s3, buckets, area):
    qa, prod = buckets
    for i in range(10):
        put(s3, qa, f"{area}k{i}", f"v{i}")
    run(s3, buckets, area, run_id="r1")
    s3.delete_object(Bucket=qa, Key=f"{area}k3")
    deleted_version = s3.head_object(Bucket=prod, Key=f"{area}k3")["VersionId"]

    summary = run(s3, buckets, area, run_id="r2")

    assert summary["deleted"] == 1
    assert f"{area}k3" not in listing(s3, prod, area)
    manifest = read_manifest_uri(summary["per_prefix"][0]["manifest"], s3)
    (entry,) = [e for e in manifest["actions"] if e["key"] == f"{area}k3"]
    assert entry["action"] == "delete"
    assert entry["before"]["version_id"] == deleted_version
    assert entry["done"] is True


def test_manifest_records_versions_before_overwrite(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}a", "one")
    run(s3, buckets, area, run_id="r1")
    prod_v1 = s3.head_object(Bucket=prod, Key=f"{area}a")["VersionId"]
    put(s3, qa, f"{area}a", "two!")
    put(s3, qa, f"{area}b", "new")

    summary = run(s3, buckets, area, run_id="r2")

    index = read_manifest_uri(summary["manifest"], s3)
    assert index["run_id"] == "r2"
    manifest = read_manifest_uri(index["prefixes"][0]["manifest"], s3)
    assert manifest["status"] == "complete"
    entries = {e["key"]: e for e in manifest["actions"]}
    assert entries[f"{area}a"]["before"] == {"version_id": prod_v1, "etag": hashlib.md5(b"one").hexdigest(), "size": 3}
    assert entries[f"{area}a"]["after"]["version_id"] == s3.head_object(Bucket=prod, Key=f"{area}a")["VersionId"]
    assert entries[f"{area}b"]["before"] is None  # did not exist: a rollback deletes it
    assert set(entries) == {f"{area}a", f"{area}b"}


def test_awkward_keys_round_trip(s3, buckets, area):
    qa, prod = buckets
    keys = [
        "with space.csv",
        "plus+sign.csv",
        "percent%20.csv",
        "ünïcødé/файл.csv",
        "q?mark=1&x.csv",
        "tilde~#hash.csv",
    ]
    for key in keys:
        put(s3, qa, area + key, key)

    summary = run(s3, buckets, area)

    assert summary["copied"] == len(keys)
    for key in keys:
        assert body(s3, prod, area + key) == key.encode()
    assert run(s3, buckets, area, run_id="again")["copied"] == 0


def test_more_than_one_page_of_keys(s3, buckets, area):
    qa, prod = buckets
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: put(s3, qa, f"{area}{'ab'[i % 2]}/obj-{i:05d}", str(i)), range(2100)))

    summary = run(s3, buckets, area)

    assert summary["copied"] == 2100
    assert_equal_sides(s3, buckets, area)
    assert run(s3, buckets, area, run_id="again")["unchanged"] == 2100


def test_dry_run_changes_nothing_and_prints_plan(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}new", "n")
    put(s3, prod, f"{area}gone", "g")
    for i in range(9):
        put(s3, qa, f"{area}same{i}", "s")
        put(s3, prod, f"{area}same{i}", "s")
    before = versions(s3, prod, area)

    summary = run(s3, buckets, area, dry_run=True)

    assert versions(s3, prod, area) == before
    assert summary["copied"] == 0 and summary["deleted"] == 0
    lines = summary["plan_lines"]
    assert any(line.startswith("copy: ") and line.rstrip().endswith("(1 B)") and "new" in line for line in lines)
    assert any(line.startswith("delete: ") and "gone" in line for line in lines)
    assert len(lines) == 2


def test_source_is_never_written(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}a", "a")
    put(s3, prod, f"{area}old", "o")
    for i in range(9):
        put(s3, qa, f"{area}x{i}", "x")
    source_before = versions(s3, qa, area)

    run(s3, buckets, area)
    run(s3, buckets, area, run_id="again")

    assert versions(s3, qa, area) == source_before


# ---------------------------------------------------------------- refusals (exit 2, nothing changed)


def test_missing_source_prefix_is_refused_and_prod_kept(s3, buckets, area):
    qa, prod = buckets
    put(s3, prod, f"{area}precious", "keep me")
    before = versions(s3, prod, area)

    with pytest.raises(RefusedError) as err:
        run(s3, buckets, area)

    assert f"s3://{qa}/{area}" in str(err.value)
    assert "missing or empty" in str(err.value)
    assert err.value.exit_code == 2
    assert versions(s3, prod, area) == before


def test_allow_empty_source_empties_destination(s3, buckets, area):
    qa, prod = buckets
    put(s3, prod, f"{area}obsolete", "x")

    summary = run(s3, buckets, area, allow_empty=True)

    assert summary["deleted"] == 1
    assert listing(s3, prod, area) == {}


def test_delete_heavy_plan_is_refused(s3, buckets, area):
    qa, prod = buckets
    for i in range(20):
        put(s3, qa, f"{area}k{i:02d}", "v")
    run(s3, buckets, area, run_id="r1")
    for i in range(5):  # 5 of 20 = 25% > 10%
        s3.delete_object(Bucket=qa, Key=f"{area}k{i:02d}")
    before = versions(s3, prod, area)

    with pytest.raises(RefusedError) as err:
        run(s3, buckets, area, run_id="r2")

    assert "deletes 5 of 20" in str(err.value) and f"s3://{qa}/{area}" in str(err.value)
    assert versions(s3, prod, area) == before
    # The limit is configurable per prefix.
    assert run(s3, buckets, area, run_id="r3", max_delete_fraction=0.5)["deleted"] == 5


def test_delete_count_limit(s3, buckets, area):
    qa, prod = buckets
    for i in range(10):
        put(s3, qa, f"{area}k{i}", "v")
    run(s3, buckets, area, run_id="r1")
    for i in range(3):
        s3.delete_object(Bucket=qa, Key=f"{area}k{i}")

    with pytest.raises(RefusedError, match="deletes 3 of 10"):
        run(s3, buckets, area, run_id="r2", max_delete_fraction=1.0, max_delete_count=2)


def test_unversioned_destination_is_refused(s3):
    qa, prod = "qa-greenlight-unversioned", "prod-greenlight-unversioned"
    for name in (qa, prod):
        try:
            s3.create_bucket(Bucket=name)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    put(s3, qa, "p/a", "a")
    config = parse_config({"prefixes": [f"s3://{qa}/p/"], "manifest_uri": f"s3://{prod}/_greenlight/"})

    with pytest.raises(RefusedError, match="versioning") as err:
        promote(config, s3, run_id="r")
    assert f"s3://{qa}/p/" in str(err.value)
    assert listing(s3, prod, "p/") == {}

    allowed = parse_config(
        {
            "prefixes": [{"source": f"s3://{qa}/p/", "allow_unversioned": True}],
            "manifest_uri": f"s3://{prod}/_greenlight/",
        }
    )
    assert promote(allowed, s3, run_id="r2")["copied"] == 1


def test_missing_source_bucket_is_refused(s3):
    bad = parse_config({"prefixes": ["s3://qa-greenlight-nowhere/x/"]})
    with pytest.raises(RefusedError, match="bucket 'qa-greenlight-nowhere' does not exist") as err:
        promote(bad, s3, run_id="r")
    assert "s3://qa-greenlight-nowhere/x/" in str(err.value)


def test_missing_destination_bucket_is_refused(s3):
    """The QA bucket exists, its prod counterpart does not: refused before anything is read or written."""
    try:
        s3.create_bucket(Bucket="qa-greenlight-nodest")  # stays empty: no storage volume needed
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    config = parse_config(
        {"prefixes": ["s3://qa-greenlight-nodest/x/"], "manifest_uri": "s3://prod-greenlight-test/_greenlight/nodest/"}
    )
    assert config.prefixes[0].destination.bucket == "prod-greenlight-nodest"
    with pytest.raises(RefusedError, match="bucket 'prod-greenlight-nodest' does not exist") as err:
        promote(config, s3, run_id="r")
    assert "s3://qa-greenlight-nodest/x/" in str(err.value)


# ---------------------------------------------------------------- failures


def test_failed_copy_blocks_all_deletes(s3, buckets, area):
    """A source object that vanishes after planning fails its copy (QA changed: never retried);
    then nothing is deleted."""
    qa, prod = buckets
    for i in range(10):
        put(s3, qa, f"{area}keep{i}", "k")
    put(s3, qa, f"{area}vanishing", "v")
    put(s3, prod, f"{area}extra", "e")
    engine = Engine(config_for(buckets, area), s3)
    (prefix,) = engine.config.prefixes
    plan = engine.plan(prefix)
    assert len(plan.deletes) == 1
    s3.delete_object(Bucket=qa, Key=f"{area}vanishing")  # QA changes between plan and copy

    with pytest.raises(QAChangedError, match=f"removed since .*{area}vanishing; no object was deleted"):
        engine.execute(plan, "r1")

    assert f"{area}extra" in listing(s3, prod, area)
    # The manifest says what happened, so the partial copy can be rolled back.
    manifest = engine.manifests.read(engine.manifest_path("r1", prefix))
    assert manifest["status"] == "failed"
    assert sum(1 for e in manifest["actions"] if e["done"]) == 10


def test_source_changed_after_plan_is_not_copied_blindly(s3, buckets, area):
    """Copies are conditional on the planned ETag: a concurrent QA rewrite fails the copy."""
    qa, prod = buckets
    put(s3, qa, f"{area}a", "planned")
    engine = Engine(config_for(buckets, area), s3)
    plan = engine.plan(engine.config.prefixes[0])
    put(s3, qa, f"{area}a", "rewritten mid-promotion")

    with pytest.raises(QAChangedError, match=f"QA changed after validation: .*{area}a"):
        engine.execute(plan, "r1")
    assert listing(s3, prod, area) == {}


def test_rerun_keeps_first_attempts_before_state(s3, buckets, area):
    """A rerun of the same run id merges into its manifest: rollback still reaches the original state."""
    qa, prod = buckets
    put(s3, qa, f"{area}a", "v1")
    put(s3, qa, f"{area}b", "v1")
    run(s3, buckets, area, run_id="base")
    original = {k: s3.head_object(Bucket=prod, Key=f"{area}{k}")["VersionId"] for k in "ab"}
    put(s3, qa, f"{area}a", "v2")
    put(s3, qa, f"{area}b", "v2")
    engine = Engine(config_for(buckets, area), s3)
    prefix = engine.config.prefixes[0]
    plan = engine.plan(prefix)
    plan.copies = [c for c in plan.copies if c[0].rel == "a"]  # first attempt got through "a" only
    engine.execute(plan, "night")

    summary = run(s3, buckets, area, run_id="night")  # the rerun copies "b"

    assert summary["copied"] == 1
    manifest = read_manifest_uri(summary["per_prefix"][0]["manifest"], s3)
    assert manifest["attempts"] == 2
    befores = {e["key"][len(area) :]: e["before"]["version_id"] for e in manifest["actions"]}
    assert befores == original


def test_multipart_source_keeps_its_etag(s3, buckets, area):
    qa, prod = buckets
    key = f"{area}big.bin"
    upload = s3.create_multipart_upload(Bucket=qa, Key=key, ContentType="application/octet-stream")
    parts = []
    for number, size in enumerate([5 * 1024 * 1024, 1024 * 1024], start=1):
        part = s3.upload_part(
            Bucket=qa, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=bytes([number]) * size
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(Bucket=qa, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})

    summary = run(s3, buckets, area)

    assert summary["copied"] == 1 and summary["verified"] == 1
    assert listing(s3, prod, area)[key] == listing(s3, qa, area)[key]
    assert run(s3, buckets, area, run_id="again")["copied"] == 0


# ---------------------------------------------------------------- stale guard


def test_stale_prefix_fails_but_recent_noop_is_fine(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}a", "a")
    config = config_for(buckets, area, stale_after_hours=24)
    engine = Engine(config, s3)
    prefix = config.prefixes[0]
    engine.execute(engine.plan(prefix), "r1")
    noop = engine.plan(prefix)

    engine.check_stale(noop)  # modified just now: a no-op rerun within 24 h is success
    with pytest.raises(StalePrefixError) as err:
        engine.check_stale(noop, now=datetime.now(UTC) + timedelta(hours=25))
    assert f"s3://{qa}/{area}" in str(err.value)


def test_summary_is_json_serialisable(s3, buckets, area):
    qa, _ = buckets
    put(s3, qa, f"{area}a", "a")
    summary = run(s3, buckets, area)
    decoded = json.loads(json.dumps(summary, default=str))
    for key in ("copied", "deleted", "unchanged", "objects_seen", "bytes_copied", "manifest"):
        assert key in decoded
