"""Verify after a promotion lists only prod and compares it with the QA snapshot the run gated
(real SeaweedFS): a prod object changed or added behind the run's back is reported, a QA change
made after the plan is not what this run promised to promote."""

from __future__ import annotations

import pytest
from helpers import put

from greenlight.errors import VerificationError
from greenlight.promotion import run
from greenlight.promotion.config import parse_config
from greenlight.promotion.engine import Engine


def promoted(s3, buckets, area):
    qa, _prod = buckets
    for name in ("a.csv", "b.csv", "c/d.csv"):
        put(s3, qa, f"{area}v/{name}", f"{name}\n")
    cfg = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}v/"],
            "manifest_uri": f"s3://{buckets[1]}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )
    engine = Engine(cfg, s3)
    (planned,) = run.plan(engine, run_id="v-1", dry_run=False)
    engine.execute(planned, "v-1")
    return engine, planned


def test_prod_equal_to_the_gated_snapshot_verifies_even_if_qa_moved_on(s3, buckets, area):
    qa, _prod = buckets
    engine, planned = promoted(s3, buckets, area)
    put(s3, qa, f"{area}v/new-after-plan.csv", "not gated by this run\n")

    check = engine.verify(planned.prefix, engine.read_snapshot("v-1", planned.prefix))

    assert check["equal"] is True and check["objects"] == 3


def test_prod_changed_or_added_after_the_copy_fails_verify_naming_the_keys(s3, buckets, area):
    _qa, prod = buckets
    engine, planned = promoted(s3, buckets, area)
    put(s3, prod, f"{area}v/b.csv", "B.csv\n")  # same size, other content
    put(s3, prod, f"{area}v/stray.csv", "x\n")

    with pytest.raises(VerificationError) as caught:
        engine.verify(planned.prefix, planned.snapshot)

    assert "missing or different: b.csv" in str(caught.value)
    assert "extra in destination: stray.csv" in str(caught.value)
