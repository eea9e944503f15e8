"""Key-range splitting of a huge prefix (``greenlight.promotion.shards``): no servers."""

from __future__ import annotations

import random

import pytest

from greenlight.promotion.shards import KeyRange, split_ranges


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
