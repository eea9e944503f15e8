"""The lean signed-HTTP path: same answers and error codes as botocore, retries on faults."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from faultproxy import FaultProxy
from helpers import put

from greenlight.promotion.config import parse_config
from greenlight.promotion.run import promote
from greenlight.storage.fast import FastS3
from greenlight.storage.s3 import S3Uri, get_if_exists, list_prefix, make_client


@pytest.fixture(scope="module")
def fast(s3):
    f = FastS3.from_client(s3)
    assert f is not None
    return f


def test_copy_head_list_match_botocore(fast, s3, buckets, area):
    qa, prod = buckets
    src = f"{area}dir with space/ü+%#?.csv"
    put(s3, qa, src, "a,b\n", ContentType="text/csv", Metadata={"origin": "qa"})
    etag = s3.head_object(Bucket=qa, Key=src)["ETag"]

    result = fast.copy_object(
        Bucket=prod, Key=src, CopySource={"Bucket": qa, "Key": src}, CopySourceIfMatch=etag, MetadataDirective="COPY"
    )

    head = s3.head_object(Bucket=prod, Key=src)
    assert result["VersionId"] == head["VersionId"]
    assert result["CopyObjectResult"]["ETag"].strip('"') == head["ETag"].strip('"')
    assert head["ContentType"] == "text/csv" and head["Metadata"] == {"origin": "qa"}
    fast_head = fast.head_object(Bucket=prod, Key=src)
    assert (fast_head["ETag"], fast_head["ContentLength"], fast_head["VersionId"]) == (
        head["ETag"],
        head["ContentLength"],
        head["VersionId"],
    )
    for kwargs in ({}, {"Delimiter": "/"}, {"MaxKeys": 1}):
        mine = fast.list_objects_v2(Bucket=prod, Prefix=area, **kwargs)
        theirs = s3.list_objects_v2(Bucket=prod, Prefix=area, **kwargs)
        theirs.pop("ResponseMetadata")
        assert mine == theirs


def test_error_codes_match_botocore(fast, s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}a", "a")
    cases = [
        (lambda c: c.head_object(Bucket=qa, Key=f"{area}missing"), "404"),
        (
            lambda c: c.copy_object(
                Bucket=prod, Key=f"{area}a", CopySource={"Bucket": qa, "Key": f"{area}a"}, CopySourceIfMatch='"0" '
            ),
            "PreconditionFailed",
        ),
        (
            lambda c: c.copy_object(Bucket=prod, Key=f"{area}b", CopySource={"Bucket": qa, "Key": f"{area}nope"}),
            "NoSuchKey",
        ),
        (lambda c: c.list_objects_v2(Bucket="qa-greenlight-absent", Prefix="x/"), "NoSuchBucket"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as mine:
            call(fast)
        with pytest.raises(ClientError) as theirs:
            call(s3)
        assert mine.value.response["Error"]["Code"] == theirs.value.response["Error"]["Code"] == code


def test_wrong_secret_is_rejected(s3env, buckets):
    bad = make_client(endpoint_url=s3env.endpoint_url, access_key=s3env.access_key, secret_key="wrong-secret")
    with pytest.raises(ClientError) as err:
        FastS3.from_client(bad).list_objects_v2(Bucket=buckets[0], Prefix="x/")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_transient_faults_are_retried_and_promotion_succeeds(s3env, s3, buckets, area):
    """503 SlowDown and dropped connections on the way to the real server: retried, converges."""
    qa, prod = buckets
    for i in range(6):
        put(s3, qa, f"{area}k{i}", f"v{i}")
    with FaultProxy(s3env.endpoint_url) as proxy:
        client = make_client(endpoint_url=proxy.url, access_key=s3env.access_key, secret_key=s3env.secret_key)
        config = parse_config(
            {
                "prefixes": [f"s3://{qa}/{area}"],
                "manifest_uri": f"s3://{prod}/_greenlight/{area}",
                "defaults": {"stale_after_hours": None},
            }
        )
        proxy.faults = ["503", None, "drop", None, None, "503", "503"] + [None] * 3 + ["503"] * 2

        summary = promote(config, client, run_id="faulty")

    assert proxy.injected >= 5
    assert summary["copied"] == 6 and summary["verified"] == 1
    assert s3.list_objects_v2(Bucket=prod, Prefix=area)["KeyCount"] == 6


def test_disabled_by_env(monkeypatch, s3):
    monkeypatch.setenv("GREENLIGHT_S3_FAST", "0")
    assert FastS3.from_client(s3) is None


def test_engine_works_on_botocore_alone(monkeypatch, s3, buckets, area):
    """With the fast path off, the same promotion (copy, overwrite, delete, manifest) still works."""
    monkeypatch.setenv("GREENLIGHT_S3_FAST", "0")
    qa, prod = buckets
    for i in range(10):
        put(s3, qa, f"{area}k{i}", f"v{i}")
    put(s3, prod, f"{area}k0", "old")
    put(s3, prod, f"{area}gone", "x")
    config = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )

    summary = promote(config, s3, run_id="botocore-only")

    assert (summary["copied"], summary["deleted"], summary["verified"]) == (10, 1, 1)
    assert summary["manifest"].endswith("index.json")


def test_conditional_put_is_enforced_and_nothing_is_dropped(fast, s3, buckets, area):
    """Leases and the run index rely on conditional PUTs through this path: a condition must hold
    exactly as on botocore, and an argument the lean path does not send must be refused, not ignored."""
    _, prod = buckets
    key = f"{area}lease.json"
    first = fast.put_object(Bucket=prod, Key=key, Body=b"{}", ContentType="application/json", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        fast.put_object(Bucket=prod, Key=key, Body=b'{"b": 1}', IfNoneMatch="*")
    with pytest.raises(ClientError) as stale:
        fast.put_object(Bucket=prod, Key=key, Body=b'{"c": 1}', IfMatch='"0123456789abcdef0123456789abcdef"')
    second = fast.put_object(Bucket=prod, Key=key, Body=b'{"d": 1}', IfMatch=first["ETag"])
    with pytest.raises(TypeError):
        fast.put_object(Bucket=prod, Key=key, Body=b"x", Metadata={"dropped": "never"})

    assert exists.value.response["Error"]["Code"] in ("PreconditionFailed", "412")
    assert stale.value.response["Error"]["Code"] in ("PreconditionFailed", "412")
    got = fast.get_object(Bucket=prod, Key=key)
    assert got["Body"].read() == b'{"d": 1}' and got["ETag"] == second["ETag"]
    assert s3.get_object(Bucket=prod, Key=key, VersionId=first["VersionId"])["Body"].read() == b"{}"


def test_listing_straight_to_objects_matches_botocore(fast, s3, buckets, area):
    """The plan's listing (pages parsed straight to ObjectInfo) sees what botocore's listing sees,
    odd keys and more than one page included."""
    qa, _ = buckets
    keys = [f"{area}dir with space/ü+%#?.csv", f"{area}a&b<c>/'q\".txt", f"{area}top.txt"]
    keys += [f"{area}many/k{i:04d}" for i in range(1005)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: put(s3, qa, k, k[-7:]), keys))
    uri = S3Uri(qa, area)

    for pool in (None, ThreadPoolExecutor(max_workers=4)):
        mine = list_prefix(fast, uri, pool=pool)
        theirs = list_prefix(s3, uri, pool=pool)
        assert mine == theirs
    assert len(mine) == len(keys) and mine["top.txt"].size == 7 and mine["top.txt"].last_modified is not None


def test_a_missing_record_reads_as_none_on_both_paths(fast, s3, buckets, area):
    """Records that may not exist yet (manifests, leases, pointers) read as None, on the lean path
    without an exception; any other error still raises."""
    _, prod = buckets
    put(s3, prod, f"{area}there.json", "{}")

    assert get_if_exists(fast, prod, f"{area}missing.json") is None
    assert get_if_exists(s3, prod, f"{area}missing.json") is None
    assert get_if_exists(fast, prod, f"{area}there.json")["Body"].read() == b"{}"
    with pytest.raises(ClientError) as missing:
        fast.get_object(Bucket=prod, Key=f"{area}missing.json")
    with pytest.raises(ClientError) as no_bucket:
        get_if_exists(fast, "no-such-bucket-greenlight", "x.json")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    assert no_bucket.value.response["Error"]["Code"] == "NoSuchBucket"
