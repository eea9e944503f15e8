"""The fast ListObjectsV2 parser returns exactly what botocore's own parser returns."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.config import Config
from helpers import put

from greenlight.storage.s3 import list_prefix, parse_s3_uri


@pytest.fixture(scope="module")
def plain_client(s3env):
    """A client with botocore's stock parser, for comparison."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3env.endpoint_url,
        aws_access_key_id=s3env.access_key,
        aws_secret_access_key=s3env.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def strip(page):
    return {k: v for k, v in page.items() if k != "ResponseMetadata"}


def test_fast_listing_equals_botocore(s3, plain_client, buckets, area):
    qa, _ = buckets
    keys = ["a.csv", "dir/b c.csv", "dir/ü+%.csv", "dir/sub/deep.bin", "z&<x>.txt", "empty"]
    for i, key in enumerate(keys):
        put(s3, qa, area + key, "x" * i)
    for kwargs in ({}, {"Delimiter": "/"}, {"MaxKeys": 2}, {"StartAfter": area + "dir/"}):
        fast = s3.list_objects_v2(Bucket=qa, Prefix=area, **kwargs)
        slow = plain_client.list_objects_v2(Bucket=qa, Prefix=area, **kwargs)
        assert strip(fast) == strip(slow), kwargs
    assert s3.list_objects_v2(Bucket=qa, Prefix=area)["KeyCount"] == len(keys)


def test_errors_still_raise(s3):
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="qa-no-such-bucket-here", Prefix="x/")


def test_list_prefix_parallel_equals_serial(s3, buckets, area):
    qa, _ = buckets
    for i in range(30):
        put(s3, qa, f"{area}{'abc'[i % 3]}/{i}", str(i))
    put(s3, qa, f"{area}top.txt", "t")
    from concurrent.futures import ThreadPoolExecutor

    uri = parse_s3_uri(f"s3://{qa}/{area}")
    with ThreadPoolExecutor(4) as pool:
        parallel = list_prefix(s3, uri, pool=pool)
    serial = list_prefix(s3, uri)
    assert parallel == serial
    assert len(serial) == 31 and "top.txt" in serial and "b/1" in serial


def test_tuned_client_parses_pages_with_the_fast_parser(s3, plain_client, buckets, area, monkeypatch):
    """tune_client hooks botocore's public ``before-parse.s3.ListObjectsV2`` event: if a botocore
    upgrade renames or stops emitting it, listings silently fall back to the slow parser — this
    fails loudly instead."""
    from greenlight.storage import s3 as s3mod

    qa, _ = buckets
    for i in range(3):
        put(s3, qa, f"{area}{i}.txt", str(i))
    pages = []
    fast_parse = s3mod.parse_list_v2
    monkeypatch.setattr(s3mod, "parse_list_v2", lambda body: pages.append(body) or fast_parse(body))

    fast = s3.list_objects_v2(Bucket=qa, Prefix=area)
    assert len(pages) == 1, "the fast ListObjectsV2 parser was not used: botocore's event changed"
    assert strip(fast) == strip(plain_client.list_objects_v2(Bucket=qa, Prefix=area))
    assert fast["ResponseMetadata"]["HTTPStatusCode"] == 200 and fast["ResponseMetadata"]["RequestId"]

    s3mod.tune_client(s3)  # tuning twice registers the hook once
    s3.list_objects_v2(Bucket=qa, Prefix=area)
    assert len(pages) == 2


def test_list_prefix_with_expected_keys_equals_the_plain_listing(s3, buckets, area):
    """Expected keys only decide which sub-prefixes are listed at once: keys under sub-prefixes
    nobody expected, top-level keys and expected sub-prefixes that are gone change nothing."""
    from concurrent.futures import ThreadPoolExecutor

    qa, _ = buckets
    for key in ("a/1", "a/deep/2", "b/3", "new/4", "top.txt", "z-last/5"):
        put(s3, qa, area + key, key)
    uri = parse_s3_uri(f"s3://{qa}/{area}")
    expected = ["a/1", "b/3", "gone/9", "top.txt", "z-last/5"]
    with ThreadPoolExecutor(4) as pool:
        known = list_prefix(s3, uri, pool=pool, expect=expected)
    assert known == list_prefix(s3, uri)
    assert sorted(known) == ["a/1", "a/deep/2", "b/3", "new/4", "top.txt", "z-last/5"]
