"""Key-range splitting of a huge prefix (``greenlight.promotion.shards``): no servers."""

from __future__ import annotations

import logging
import random

import pytest

from greenlight.promotion.config import parse_config
from greenlight.promotion.plan import PrefixPlan
from greenlight.promotion.shards import KeyRange, list_range, order_hazard, ranges_for, split_ranges
from greenlight.storage.s3 import S3Uri, list_prefix


def _owner(ranges: list[KeyRange], key: str) -> list[int]:
    return [r.index for r in ranges if r.contains(key)]


def test_4000_keys_at_1000_make_4_equal_shards_that_partition_the_keys():
    keys = [f"part-{i:05d}.bin" for i in range(4000)]
    random.Random(7).shuffle(keys)
    ranges = split_ranges(keys, 1000)
    assert [(r.index, r.count) for r in ranges] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert ranges[0].start_after is None and ranges[-1].end is None
    sizes = [sum(1 for k in keys if r.contains(k)) for r in ranges]
    assert sizes == [1000, 1000, 1000, 1000]
    # Boundaries chain: each range starts after the previous one's end.
    assert all(a.end == b.start_after for a, b in zip(ranges, ranges[1:], strict=False))
    # Keys that were not in the listing (added later, or before the first / after the last key)
    # fall in exactly one range too.
    for extra in ["", "a", "part-00999.bin~", "part-02000.bin0", "zzz", "part-", "\U0001f600"]:
        assert len(_owner(ranges, extra)) == 1, extra


def test_at_or_below_the_threshold_one_open_range():
    assert split_ranges([f"k{i}" for i in range(1000)], 1000) == [KeyRange(0, 1, None, None)]
    assert split_ranges([], 5) == [KeyRange(0, 1, None, None)]


def test_uneven_counts_and_duplicates():
    keys = [f"k{i:04d}" for i in range(2501)] * 2  # the source and the destination list the same keys
    ranges = split_ranges(keys, 1000)
    assert len(ranges) == 3
    sizes = [sum(1 for k in set(keys) if r.contains(k)) for r in ranges]
    assert sum(sizes) == 2501 and max(sizes) <= 1000


def test_order_is_the_listing_order_of_s3():
    # S3 lists keys in UTF-8 byte order; Python's str order is the same for any key.
    keys = ["a/b", "a.b", "a-b", "a~b", "aé", "a\U0001f600", "A", "a/"]
    ranges = split_ranges(keys, 2)
    assert sorted(keys) == sorted(keys, key=lambda k: k.encode())
    for k in keys:
        assert len(_owner(ranges, k)) == 1


def test_round_trip_through_xcom_and_bad_threshold():
    r = KeyRange(1, 4, "a", "b")
    assert KeyRange.from_dict(r.as_dict()) == r and r.label == "shard 2/4" and r.suffix == "shard-0002-of-0004"
    with pytest.raises(ValueError, match="shard_objects"):
        split_ranges(["a"], 0)


@pytest.mark.parametrize("objects", [1, 2, 7, 60, 99, 100, 101, 1000, 4001, 20_000])
@pytest.mark.parametrize("asked", [1, 2, 3, 4, 5, 8])
def test_asking_for_n_shards_gives_the_expected_count_covering_every_key_once(objects, asked):
    """``shard_objects = ceil(K / N)`` (how the shard benchmark asks for N shards) gives
    ``ceil(K / shard_objects)`` ranges: N whenever N divides K (never more than N), and every key of
    the listing lies in exactly one range, with no gap and no overlap at the boundaries."""
    keys = [f"obj-{i:07d}.bin" for i in range(objects)]
    per_shard = -(-objects // asked)
    ranges = split_ranges(keys, per_shard)
    expected = 1 if objects <= per_shard else -(-objects // per_shard)
    assert len(ranges) == expected <= asked
    if objects % asked == 0:
        assert len(ranges) == asked
    assert [r.index for r in ranges] == list(range(len(ranges))) and {r.count for r in ranges} == {len(ranges)}
    assert ranges[0].start_after is None and ranges[-1].end is None
    assert all(a.end == b.start_after for a, b in zip(ranges, ranges[1:], strict=False))
    owners = [_owner(ranges, k) for k in keys]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [r.index]) for r in ranges]
    assert sum(sizes) == objects and max(sizes) <= per_shard
    # The boundary keys themselves: the end of a range is in it, not in the next one.
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.contains(a.end) and not b.contains(a.end)


class _EchoingStartAfter:
    """A stand-in for an S3 server whose StartAfter is inclusive (older SeaweedFS versions on
    versioned buckets, rustfs): the real SeaweedFS 4.48 here is exclusive, so this one case is
    simulated. It serves ``list_objects_v2`` from a sorted list, two keys per page."""

    def __init__(self, keys: list[str]):
        self.keys = sorted(keys)

    def list_objects_v2(self, *, Bucket, Prefix, MaxKeys, StartAfter=None, ContinuationToken=None):  # noqa: N803, ARG002
        start = ContinuationToken or StartAfter
        keys = [k for k in self.keys if k.startswith(Prefix)]
        if start is not None:
            first = next((i for i, k in enumerate(keys) if k >= start), len(keys))
            if ContinuationToken is not None and first < len(keys) and keys[first] == start:
                first += 1  # the token continues after the last key served
            keys = keys[first:]
        page, rest = keys[:2], keys[2:]
        out = {"Contents": [{"Key": k, "Size": 1, "ETag": '"e"'} for k in page], "IsTruncated": bool(rest)}
        if rest:
            out["NextContinuationToken"] = page[-1]
        return out


def test_a_range_never_lists_its_start_after_key_even_if_the_server_echoes_it():
    keys = [f"p/k{i:02d}" for i in range(10)]
    client = _EchoingStartAfter(keys)
    ranges = split_ranges([k.removeprefix("p/") for k in keys], 4)
    listed = [sorted(list_range(client, S3Uri("qa-x", "p/"), r)) for r in ranges]
    assert [len(x) for x in listed] == [4, 4, 2]  # 10 keys at 4 per shard: 3 ranges
    flat = [k for part in listed for k in part]
    assert sorted(flat) == sorted(k.removeprefix("p/") for k in keys) and len(flat) == len(set(flat))


def _walk_order_agrees(keys: list[str]) -> bool:
    """The model behind :func:`order_hazard`: a directory walk (SeaweedFS's filer) lists keys in the
    order of their '/'-separated parts; StartAfter on a key that is also a directory skips it."""
    dirs = {k[:i] for k in keys for i, ch in enumerate(k) if ch == "/"}
    return sorted(keys) == sorted(keys, key=lambda k: k.split("/")) and not dirs & set(keys)


@pytest.mark.parametrize(
    ("keys", "flagged"),
    [
        (["part-0001.bin", "d1/x.bin", "d10/y.bin", "d1x", "a_b", "a0/c"], False),
        (["a/x", "a/y", "ab", "a0", "a_b", "a~"], False),  # siblings that sort above '/'
        (["a/x", "a-b"], True),
        (["a/x", "a.c"], True),
        (["a/x", "a b/c"], True),
        (["n/d/a/x.bin", "n/d/a.c"], True),  # nested, inside one sub-prefix
        (["a", "a/x"], True),  # an object and a directory: StartAfter='a' skips a/
        (["a/", "a/x"], False),  # a directory marker is listed before its contents either way
    ],
)
def test_order_hazard_names_keys_a_directory_walk_lists_out_of_byte_order(keys, flagged):
    why = order_hazard(keys)
    assert (why is not None) is flagged, why
    assert _walk_order_agrees(keys) is not flagged
    if flagged:
        assert any(repr(k) in why for k in keys), why


def test_order_hazard_agrees_with_the_directory_walk_model_on_random_keys():
    rng = random.Random(11)
    for _ in range(400):
        keys = list(
            {"".join(rng.choice("ab/-._") for _ in range(rng.randint(1, 6))).strip("/") or "a" for _ in range(6)}
        )
        assert (order_hazard(keys) is None) is _walk_order_agrees(keys), keys


def _plan(keys: list[str], *, byte_ordered: bool = True) -> PrefixPlan:
    config = parse_config({"prefixes": ["s3://qa-x/huge/"], "defaults": {"shard_objects": 2}})
    snapshot = dict.fromkeys(keys, (1, "e"))
    return PrefixPlan(prefix=config.prefixes[0], snapshot=snapshot, byte_ordered=byte_ordered)


def test_ranges_are_unbounded_when_the_keys_or_the_listing_are_not_in_byte_order(caplog):
    clean = [f"d{i}/k{j}" for i in range(3) for j in range(2)]
    with caplog.at_level(logging.INFO, logger="greenlight.promotion.shards"):
        assert all(r.bounded for r in ranges_for(_plan(clean)))
        assert "each shard lists its own key range" in caplog.text
        caplog.clear()
        mixed = ranges_for(_plan([*clean, "d1-old", "d1.c"]))
        assert len(mixed) == 4 and not any(r.bounded for r in mixed)
        assert "each shard lists the whole prefix" in caplog.text and "'d1.c'" in caplog.text
        caplog.clear()
        assert not any(r.bounded for r in ranges_for(_plan(clean, byte_ordered=False)))
        assert "listed it out of byte order" in caplog.text
    # The mode survives XCom; a range from before the field existed is bounded, as it was listed then.
    r = mixed[1]
    assert KeyRange.from_dict(r.as_dict()) == r and r.as_dict()["bounded"] is False
    old = {k: v for k, v in r.as_dict().items() if k != "bounded"}
    assert KeyRange.from_dict(old).bounded is True


class _WalkOrder:
    """A stand-in for a server that lists a flat prefix in directory-walk order (the real SeaweedFS
    does so too: tests/integration/test_shard_order.py); here to check the listing's own verdict
    without a server. ``list_objects_v2`` without Delimiter, one page."""

    def __init__(self, keys: list[str]):
        self.keys = sorted(keys, key=lambda k: k.split("/"))

    def list_objects_v2(self, *, Bucket, Prefix, MaxKeys):  # noqa: N803, ARG002
        return {"Contents": [{"Key": k, "Size": 1, "ETag": '"e"'} for k in self.keys if k.startswith(Prefix)]}


def test_a_listing_tells_whether_it_came_back_in_byte_order():
    uri = S3Uri("qa-x", "p/")
    assert list_prefix(_WalkOrder(["p/a/x", "p/b", "p/c/d"]), uri).byte_ordered is True
    walked = list_prefix(_WalkOrder(["p/a/x", "p/a-b", "p/a.c"]), uri)
    assert walked.byte_ordered is False and sorted(walked) == ["a-b", "a.c", "a/x"]
