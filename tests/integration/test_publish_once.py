"""Publishing steps (retry category B) do not run twice under one run id: the current pointer of a
prod prefix on the real S3 server, through the library and through the engine's
``publish_verified`` (what the ``verify`` task and the CLI call)."""

from __future__ import annotations

import pytest
from helpers import versions, write_config

from greenlight.errors import PublishedError
from greenlight.promotion.config import load_config
from greenlight.promotion.engine import Engine
from greenlight.promotion.gates import pointer_path, publish_pointer, read_pointer


@pytest.fixture
def prefix_and_store(tmp_path, buckets, area, s3):
    qa, prod = buckets
    cfg = write_config(
        tmp_path / "promotion.yaml",
        {"prefixes": [f"s3://{qa}/{area}data/"], "manifest_uri": f"s3://{prod}/_greenlight/{area}"},
    )
    config = load_config(cfg)
    engine = Engine(config, s3)
    return config, engine


def pointer_versions(s3, prod: str, area: str, prefix) -> int:
    key = f"_greenlight/{area}{pointer_path(prefix)}"
    return len([v for v in versions(s3, prod, key) if v[0] == key])


def test_an_identical_republish_is_a_no_op_and_a_different_one_is_refused(prefix_and_store, s3, buckets, area):
    config, engine = prefix_and_store
    (prefix,) = config.prefixes
    store = engine.manifests
    publish_pointer(store, prefix, run_id="r1", manifest="m1", objects=3)
    publish_pointer(store, prefix, run_id="r2", manifest="m2", objects=4)
    first = read_pointer(store, prefix)
    written = pointer_versions(s3, buckets[1], area, prefix)

    # cleared and rerun with the same outputs: nothing is written, history is intact
    publish_pointer(store, prefix, run_id="r2", manifest="m2", objects=4)
    assert read_pointer(store, prefix) == first
    assert pointer_versions(s3, buckets[1], area, prefix) == written

    # a rerun under the same run id that would publish something else is refused, nothing written
    with pytest.raises(PublishedError) as info:
        publish_pointer(store, prefix, run_id="r2", manifest="m2-second-attempt", objects=5)
    message = str(info.value)
    assert info.value.exit_code == 2 and info.value.retryable is False
    assert store.uri(pointer_path(prefix)) in message
    assert "manifest: published 'm2', now 'm2-second-attempt'" in message and "objects: published 4, now 5" in message
    assert "trigger a new run (retry category B)" in message
    assert read_pointer(store, prefix) == first
    assert pointer_versions(s3, buckets[1], area, prefix) == written
    assert first["previous"]["run_id"] == "r1"  # the pointer it replaced is still the one to roll back to


def test_the_engine_publish_of_a_verified_prefix_follows_the_same_rule(prefix_and_store, s3, buckets, area):
    config, engine = prefix_and_store
    (prefix,) = config.prefixes
    where = engine.publish_verified(prefix, "run-a", "s3://m/run-a.json", 10)
    assert engine.publish_verified(prefix, "run-a", "s3://m/run-a.json", 10) == where  # clear + rerun of verify
    with pytest.raises(PublishedError, match="objects: published 10, now 11"):
        engine.publish_verified(prefix, "run-a", "s3://m/run-a.json", 11)
    assert engine.publish_verified(prefix, "run-b", "s3://m/run-b.json", 11) == where  # a new run publishes
    current = read_pointer(engine.manifests, prefix)
    assert (current["run_id"], current["objects"], current["previous"]["run_id"]) == ("run-b", 11, "run-a")
