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


def promoted(s3, buckets, area, names=("a.csv", "b.csv", "c/d.csv"), folder="v"):
    """QA ``<area><folder>/`` holding ``names`` promoted to prod by run ``<folder>-1``."""
    qa, prod = buckets
    for name in names:
        put(s3, qa, f"{area}{folder}/{name}", f"{name}\n")
    cfg = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}{folder}/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )
    engine = Engine(cfg, s3)
    (planned,) = run.plan(engine, run_id=f"{folder}-1", dry_run=False)
    engine.execute(planned, f"{folder}-1")
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


def test_verify_finds_every_difference_whichever_sub_prefix_it_is_in(s3, buckets, area):
    """Prod is listed per first-level sub-prefix, the ones the snapshot names beside the top-level
    listing: a difference is found in the first and the last of them, at the top level, and in a
    sub-prefix the snapshot does not know."""
    _qa, prod = buckets
    names = ("a/1.csv", "a/2.csv", "m/3.csv", "z/4.csv", "z/5.csv", "top.csv")
    engine, planned = promoted(s3, buckets, area, names, folder="w")
    assert engine.verify(planned.prefix, planned.snapshot)["objects"] == 6

    put(s3, prod, f"{area}w/a/1.csv", "A/1.csv\n")  # first sub-prefix: same size, other content
    s3.delete_object(Bucket=prod, Key=f"{area}w/z/5.csv")  # last sub-prefix: gone
    put(s3, prod, f"{area}w/new/6.csv", "6\n")  # a sub-prefix the snapshot does not know
    put(s3, prod, f"{area}w/extra.csv", "e\n")  # top level
    with pytest.raises(VerificationError) as caught:
        engine.verify(planned.prefix, planned.snapshot)

    message = str(caught.value)
    for line in (
        "missing or different: a/1.csv",
        "missing or different: z/5.csv",
        "extra in destination: new/6.csv",
        "extra in destination: extra.csv",
    ):
        assert line in message
    assert "m/3.csv" not in message and "top.csv" not in message


def test_cli_run_catches_a_prod_write_after_its_copies_and_keeps_the_pointer(s3, buckets, area, monkeypatch):
    """In a CLI run prod's re-list starts as soon as the copies are done, beside the manifest
    write: a write to prod made then (by a writer that ignored the lease) still fails verify, and
    the current pointer keeps naming the earlier verified run. The rogue writer is injected just
    before the listing (wrapping Engine.list_destination): there is no other way to time it."""
    qa, prod = buckets
    cfg = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}c/", f"s3://{qa}/{area}d/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )
    for name in ("c/x.csv", "c/sub/y.csv", "d/z.csv"):
        put(s3, qa, f"{area}{name}", f"{name} v1\n")
    first = run.promote(cfg, s3, run_id="cli-1")
    assert not first.get("errors") and first["copied"] == 3

    put(s3, qa, f"{area}c/x.csv", "c/x.csv v2\n")
    put(s3, qa, f"{area}d/z.csv", "d/z.csv v2\n")
    listed = Engine.list_destination

    def rogue_then_list(self, prefix, expected=()):
        if prefix.destination.prefix == f"{area}c/":
            put(s3, prod, f"{area}c/rogue.csv", "not from QA\n")
        return listed(self, prefix, expected)

    monkeypatch.setattr(Engine, "list_destination", rogue_then_list)
    second = run.promote(cfg, s3, run_id="cli-2")

    assert second["copied"] == 2 and second["verified"] == 1
    assert any("extra in destination: rogue.csv" in e for e in second["errors"])
    engine = Engine(cfg, s3)
    pointers = {str(p.destination): engine.current_pointer(p) for p in cfg.prefixes}
    assert pointers[f"s3://{prod}/{area}c/"]["run_id"] == "cli-1"  # verify failed: the pointer stays
    moved = pointers[f"s3://{prod}/{area}d/"]
    assert (moved["run_id"], moved["previous"]["run_id"]) == ("cli-2", "cli-1")  # the pointer it replaced
