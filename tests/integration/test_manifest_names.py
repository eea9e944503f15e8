"""Manifest, pointer and gate file names: distinct for distinct prefixes, confined to their folder,
and pointers written under the old names still found (real S3 server)."""

from __future__ import annotations

from helpers import body, put

from greenlight.promotion.config import parse_config
from greenlight.promotion.gates import gate_path, pointer_path, publish_pointer, read_pointer
from greenlight.promotion.rollback import rollback
from greenlight.promotion.run import promote
from greenlight.storage.manifests import ManifestStore, legacy_safe_name, safe_name


def test_similar_prefixes_get_their_own_manifests_and_pointers(s3, buckets, area):
    qa, prod = buckets
    rels = ["a/b/", "a_b/", "a+b/"]
    cfg = parse_config(
        {
            "prefixes": [f"s3://{qa}/{area}{r}" for r in rels],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, "max_delete_fraction": 1.0},
        }
    )
    for r in rels:
        put(s3, qa, f"{area}{r}x.csv", f"v1 of {r}")
    promote(cfg, s3, run_id="night-1")
    for r in rels:
        put(s3, qa, f"{area}{r}x.csv", f"v2 of {r}")
    summary = promote(cfg, s3, run_id="night-2")

    assert len(set(summary["manifests"])) == 3
    assert len({pointer_path(p) for p in cfg.prefixes}) == 3
    assert len({gate_path("night-2", p) for p in cfg.prefixes}) == 3
    store = ManifestStore(cfg.manifest_uri, s3)
    assert [read_pointer(store, p)["destination"] for p in cfg.prefixes] == [str(p.destination) for p in cfg.prefixes]

    # Rolling back one prefix's manifest touches that prefix only.
    (a_b,) = [m for m in summary["manifests"] if safe_name(f"{prod}/{area}a_b/") in m]
    rollback(a_b, s3, config=cfg)
    assert body(s3, prod, f"{area}a_b/x.csv") == b"v1 of a_b/"
    assert body(s3, prod, f"{area}a/b/x.csv") == b"v2 of a/b/"
    assert body(s3, prod, f"{area}a+b/x.csv") == b"v2 of a+b/"


def test_pointer_under_the_old_name_is_still_read(s3, buckets, area):
    qa, prod = buckets
    cfg = parse_config({"prefixes": [f"s3://{qa}/{area}t/"], "manifest_uri": f"s3://{prod}/_greenlight/{area}"})
    (prefix,) = cfg.prefixes
    store = ManifestStore(cfg.manifest_uri, s3)
    old_rel = f"current/{legacy_safe_name(f'{prod}/{area}t/')}.json"
    assert old_rel != pointer_path(prefix)
    store.write(old_rel, {"run_id": "before-upgrade", "destination": str(prefix.destination), "contract": None})

    assert read_pointer(store, prefix)["run_id"] == "before-upgrade"
    publish_pointer(store, prefix, run_id="after-upgrade", manifest=None, objects=1)
    pointer = read_pointer(store, prefix)
    assert (pointer["run_id"], pointer["previous"]["run_id"]) == ("after-upgrade", "before-upgrade")


def test_run_ids_cannot_leave_their_folder(tmp_path):
    for run_id in ("..", "../../etc", "a/../../b", "."):
        name = safe_name(run_id)
        assert "/" not in name and name.strip(".") and name not in (".", "..")
    store = ManifestStore(tmp_path / "root")
    written = store.write(f"promotions/{safe_name('../../x')}/index.json", {"ok": True})
    assert written.startswith(str((tmp_path / "root").resolve()))


def test_local_roots_refuse_paths_outside_them(tmp_path):
    import pytest

    from greenlight.errors import ManifestInvalidError

    store = ManifestStore(tmp_path / "root")
    (tmp_path / "secret.json").write_text('{"secret": true}')
    for rel in ("../secret.json", "/etc/passwd", "a/../../secret.json"):
        with pytest.raises(ManifestInvalidError, match="outside the manifest root"):
            store.read(rel)
        with pytest.raises(ManifestInvalidError, match="outside the manifest root"):
            store.write(rel, {"x": 1})
    assert (tmp_path / "secret.json").read_text() == '{"secret": true}'
