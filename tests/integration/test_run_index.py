"""The run index (the handle a rollback is given) under concurrent writers, on the real S3 server:
every writer's rows survive, however the updates interleave (conditional PUTs, no lease)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine
from greenlight.storage.manifests import ManifestStore


def config(buckets, area, n):
    qa, prod = buckets
    return parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}p{i}/" for i in range(n)],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        }
    )


def row(prefix, status):
    return {
        "prefix": str(prefix.source),
        "destination": str(prefix.destination),
        "manifest": f"s3://m/{prefix.source.prefix}",
        "copied": 1,
        "deleted": 0,
        "unchanged": 0,
        "objects_seen": 1,
        "bytes_copied": 1,
        "status": status,
    }


def test_concurrent_writers_of_one_run_index_lose_no_row(s3, buckets, area):
    """Eight writers (mapped tasks: one engine each) record 'in progress' then 'complete' for their own
    prefix at the same moment: the index ends with all eight, each complete."""
    cfg = config(buckets, area, 8)

    def task(prefix):
        engine = Engine(cfg, s3)
        engine.write_run_index("run-1", [row(prefix, "in_progress")], status="in_progress")
        return engine.write_run_index("run-1", [row(prefix, "complete")], status="in_progress")

    with ThreadPoolExecutor(max_workers=8) as pool:
        uris = set(pool.map(task, cfg.prefixes))

    index = ManifestStore(cfg.manifest_uri, s3).read("promotions/run-1/index.json")
    assert uris == {f"s3://{buckets[1]}/_greenlight/{area}promotions/run-1/index.json"}
    assert [r["prefix"] for r in index["prefixes"]] == sorted(str(p.source) for p in cfg.prefixes)
    assert {r["status"] for r in index["prefixes"]} == {"complete"}


def test_a_writer_with_an_old_copy_merges_into_the_newer_index(s3, buckets, area):
    """An engine that wrote the index earlier keeps its version; when another writer changed the index
    since, its next update must keep the other writer's row (and its failure), not overwrite it."""
    cfg = config(buckets, area, 2)
    first, other = Engine(cfg, s3), Engine(cfg, s3)
    first.write_run_index("run-2", [row(cfg.prefixes[0], "in_progress")], status="in_progress")
    other.write_run_index("run-2", [{**row(cfg.prefixes[1], "failed"), "errors": ["copy failed"]}])

    first.write_run_index("run-2", [row(cfg.prefixes[0], "complete")], status="complete", verified=1)

    index = ManifestStore(cfg.manifest_uri, s3).read("promotions/run-2/index.json")
    rows = {r["prefix"]: r for r in index["prefixes"]}
    assert rows[str(cfg.prefixes[0].source)]["status"] == "complete"
    assert rows[str(cfg.prefixes[1].source)]["errors"] == ["copy failed"]
    assert index["status"] == "failed"  # a failed prefix makes the run failed, whatever the writer says
    assert index["verified"] == 1


def test_local_store_conditional_write(tmp_path):
    """A local manifest root gives the same compare-and-write as S3 (for tools that keep records on disk)."""
    store = ManifestStore(tmp_path)
    first = store.write_if("promotions/r/index.json", {"n": 1}, etag=None)
    assert store.write_if("promotions/r/index.json", {"n": 2}, etag=None) is None
    doc, etag = store.read_tagged("promotions/r/index.json")
    assert (doc, etag) == ({"n": 1}, first)
    assert store.write_if("promotions/r/index.json", {"n": 3}, etag=etag) is not None
    assert store.write_if("promotions/r/index.json", {"n": 4}, etag=etag) is None
    assert store.read("promotions/r/index.json") == {"n": 3}
