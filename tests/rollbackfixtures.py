"""A promotion to roll back, for the rollback tests (tests/integration/test_rollback.py and
tests/dags/test_rollback_dag.py): ``config`` builds the one-prefix promotion config, the ``promoted``
fixture promotes twice (prod changed: a rewritten, new added, old deleted) and returns prod's
listing before the second promotion and its manifest, ``config_file`` writes the config where the
DAGs read it. A test module takes the fixtures with ``promoted = rollbackfixtures.promoted``."""

from __future__ import annotations

import pytest
from helpers import listing, put, write_config

from greenlight.promotion.config import parse_config
from greenlight.promotion.run import promote


def config_doc(buckets, area) -> dict:
    qa, prod = buckets
    return {
        "prefixes": [{"source": f"s3://{qa}/{area}", "max_delete_fraction": 1.0}],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        "defaults": {"stale_after_hours": None},
    }


def config(buckets, area):
    return parse_config(config_doc(buckets, area))


@pytest.fixture
def promoted(s3, buckets, area):
    """Prod holds a, b, old; QA has a changed, b unchanged, new added, old removed; then promoted."""
    qa, prod = buckets
    for key, text in {"a.csv": "a-v1", "b.csv": "b-v1", "old.csv": "old"}.items():
        put(s3, qa, area + key, text)
    promote(config(buckets, area), s3, run_id="night-1")
    before = listing(s3, prod, area)
    put(s3, qa, area + "a.csv", "a-v2-longer")
    put(s3, qa, area + "new.csv", "new")
    s3.delete_object(Bucket=qa, Key=area + "old.csv")
    summary = promote(config(buckets, area), s3, run_id="night-2")
    assert (summary["copied"], summary["deleted"]) == (2, 1)
    return before, summary["manifest"]


@pytest.fixture
def config_file(tmp_path, monkeypatch, buckets, area):
    """The same config as :func:`config` as a file, also what the DAGs read."""
    path = write_config(tmp_path / "promotion.yaml", config_doc(buckets, area))
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(path))
    return str(path)
