"""A sharded prefix's current pointer names every shard's manifest part, and a rollback covers and
attributes every shard (real SeaweedFS, the engine's own calls).

Before, the pointer named shard 1's part only: a rollback refused for a key a later run changed in
another shard said "by something else (a hand edit …)" instead of naming that run.
"""

from __future__ import annotations

import pytest
from helpers import put, rel_listing

from greenlight.errors import RefusedError
from greenlight.promotion import rollback as rb
from greenlight.promotion.config import parse_config
from greenlight.promotion.gates import pointer_manifests, pointer_path, stored_pointer
from greenlight.promotion.run import promote
from greenlight.storage.manifests import ManifestStore


@pytest.fixture
def sharded(s3, buckets, area):
    """70 keys at ``shard_objects: 20``: four shards (k000-k017, k018-k035, k036-k053, k054-k069)."""
    qa, prod = buckets
    cfg = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}huge/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, "shard_objects": 20},
        }
    )
    for i in range(70):
        put(s3, qa, f"{area}huge/k{i:03d}.bin", f"v1-{i}")
    return cfg, f"{area}huge/"


def test_a_conflict_in_shard_3_names_the_later_run_and_its_shard_and_one_part_rolls_back_all(s3, buckets, sharded):
    qa, prod = buckets
    cfg, prefix = sharded
    (p,) = cfg.prefixes
    store = ManifestStore(cfg.manifest_uri, s3)
    first = promote(cfg, s3, run_id="shard-run-a")
    assert first["copied"] == 70 and "errors" not in first, first
    v1 = rel_listing(s3, prod, prefix)
    assert v1 == rel_listing(s3, qa, prefix) and len(v1) == 70

    # Run B changes one key in shard 1 and one in shard 3.
    put(s3, qa, f"{prefix}k005.bin", "v2-5")
    put(s3, qa, f"{prefix}k040.bin", "v2-40")
    second = promote(cfg, s3, run_id="shard-run-b")
    assert second["copied"] == 2 and "errors" not in second, second
    pointer = stored_pointer(store, p)
    assert pointer["run_id"] == "shard-run-b"
    parts = pointer_manifests(pointer)
    assert len(parts) == 2 and "shard-0001-of-0004" in parts[0] and "shard-0003-of-0004" in parts[1], parts
    assert pointer["manifest"] == parts[0]  # readers of the old field still find shard 1's part

    # Rolling back run A would undo run B's work in two shards: refused, each key attributed.
    dest = f"s3://{prod}/{prefix}"
    with pytest.raises(RefusedError) as refused:
        rb.rollback(first["manifest"], s3, config=cfg)
    message = str(refused.value)
    assert "2 key(s) changed" in message and "by something else" not in message, message
    assert (
        f"s3://{prod}/{prefix}k040.bin (shard 3/4 of {dest}) changed since run 'shard-run-a': "
        f"by promotion run 'shard-run-b' (shard 3/4 of {dest})"
    ) in message
    assert f"s3://{prod}/{prefix}k005.bin (shard 1/4 of {dest}) changed since run 'shard-run-a': " in message
    assert rel_listing(s3, prod, prefix)["k040.bin"] != v1["k040.bin"]  # nothing was changed

    # A pointer in the old format (shard 1's part only) still attributes shard 3's key.
    old = {k: v for k, v in pointer.items() if k != "manifests"}
    store.write(pointer_path(p), old)
    with pytest.raises(RefusedError) as refused_old:
        rb.rollback(first["manifest"], s3, config=cfg)
    assert f"k040.bin (shard 3/4 of {dest}) changed since run 'shard-run-a': by promotion run 'shard-run-b'" in str(
        refused_old.value
    )

    # Rolling back run B from one part (what the old pointer handed out) covers both of its parts.
    summary = rb.rollback(parts[0], s3, config=cfg, run_id="rollback-b")
    assert summary["restored"] == 2 and len(summary["rollback_manifests"]) == 2, summary
    assert rel_listing(s3, prod, prefix) == v1
    assert stored_pointer(store, p)["run_id"] == "shard-run-a"
