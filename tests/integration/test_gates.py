"""Contract gates as a library and on the CLI path (real SeaweedFS, real GX): drift against prod,
an expected change through a contract version bump, current pointers, config validation."""

from __future__ import annotations

import pytest
import yaml
from helpers import put, rel_listing, versions, write_config
from test_cli import cli

from greenlight.errors import ConfigError
from greenlight.promotion.config import load_config, parse_config
from greenlight.promotion.gates import evaluate_gate, publish_pointer, read_pointer, restore_pointer
from greenlight.storage.manifests import ManifestStore

V1 = "id,region,value\n1,north,2.5\n2,south,3.0\n"
V2 = "id,region,value,unit\n1,north,2.5,t\n2,south,3.0,t\n"  # one column added


def contract(folder, version: int, columns: dict, allow_extra: bool = False):
    doc = {
        "name": "widgets",
        "version": version,
        "kind": "table",
        "format": "csv",
        "select": "*.csv",
        "columns": columns,
        "non_null": ["id"],
        "allow_extra": allow_extra,
    }
    path = folder / "widgets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def setup(tmp_path, buckets, area, s3):
    qa, prod = buckets
    folder = tmp_path / "contracts"
    folder.mkdir()
    contract(folder, 1, {"id": "int", "region": "string", "value": "float"}, allow_extra=True)
    cfg = write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [{"name": "widgets", "source": f"s3://{qa}/{area}", "contract": "contracts/widgets.yaml"}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        },
    )
    config = load_config(cfg)
    store = ManifestStore(config.manifest_uri, s3)
    return config, store, folder, cfg


def test_added_column_is_drift_until_the_contract_version_is_bumped(setup, s3, buckets, area):
    qa, prod = buckets
    config, store, folder, _ = setup
    (prefix,) = config.prefixes
    put(s3, prod, f"{area}w.csv", V1)  # prod was promoted under v1
    publish_pointer(store, prefix, run_id="run-1", manifest=None, contract="widgets", contract_version=1)
    put(s3, qa, f"{area}w.csv", V2)

    gate = evaluate_gate(s3, prefix, store=store)
    # The contract tolerates extra columns, but prod consumers have never seen "unit": drift.
    assert not gate["passed"] and gate["prod_contract_version"] == 1
    assert [(m["layer"], m["check"], m["name"]) for m in gate["mismatches"]] == [("drift", "column_added", "unit")]
    assert "bump the contract version" in gate["reasons"][0]

    contract(folder, 2, {"id": "int", "region": "string", "value": "float", "unit": "string"})
    gate = evaluate_gate(s3, prefix, store=store)
    assert gate["passed"], gate["reasons"]
    assert (gate["contract_version"], gate["prod_contract_version"]) == (2, 1)
    assert gate["gx"]["success"] is True


def test_unreadable_qa_is_a_failed_gate_naming_the_prefix(setup, s3, buckets, area):
    config, store, _, _ = setup
    (prefix,) = config.prefixes
    put(s3, buckets[0], f"{area}notes.txt", "no csv here")
    gate = evaluate_gate(s3, prefix, store=store)
    assert not gate["passed"]
    assert gate["mismatches"][0]["check"] == "unreadable"
    assert area in gate["reasons"][0] and "*.csv" in gate["reasons"][0]


def test_pointer_keeps_the_previous_one_and_a_rollback_restores_it(setup, s3):
    config, store, _, _ = setup
    (prefix,) = config.prefixes
    publish_pointer(store, prefix, run_id="r1", manifest="m1", contract="widgets", contract_version=1)
    publish_pointer(store, prefix, run_id="r2", manifest="m2", contract="widgets", contract_version=2)
    publish_pointer(store, prefix, run_id="r2", manifest="m2", contract="widgets", contract_version=2)  # same rerun
    current = read_pointer(store, prefix)
    assert (current["run_id"], current["manifest"], current["previous"]["run_id"]) == ("r2", "m2", "r1")
    assert "previous" not in current["previous"]  # one level kept, no ever-growing chain

    assert restore_pointer(store, prefix, "r1") is False  # r1 is not current: nothing to restore
    assert restore_pointer(store, prefix, "r2") is True
    restored = read_pointer(store, prefix)
    assert (restored["run_id"], restored["contract_version"], restored["restored_from"]) == ("r1", 1, "r2")


def test_cli_refuses_a_failed_gate_with_exit_2_and_changes_nothing(setup, s3env, s3, buckets, area):
    qa, prod = buckets
    _, _, _, cfg = setup
    put(s3, prod, f"{area}w.csv", V1)
    put(s3, qa, f"{area}w.csv", "id,region,value\n,north,2.5\n")  # empty key column
    before = versions(s3, prod, area)

    code, summary, _, stderr = cli(s3env, "promote", "--config", str(cfg))

    assert code == 2, stderr
    assert summary["kind"] == "contract" and "widgets" in summary["error"] and "id" in summary["error"]
    assert versions(s3, prod, area) == before

    put(s3, qa, f"{area}w.csv", V1.replace("2.5", "2.75"))
    code, summary, _, stderr = cli(s3env, "promote", "--config", str(cfg))
    assert code == 0, stderr
    assert summary["gates"] == [
        {"prefix": f"s3://{qa}/{area}", "contract": "widgets", "contract_version": 1, "passed": True}
    ]
    assert rel_listing(s3, prod, area) == rel_listing(s3, qa, area)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"contract": "no_such_contract"}, "prefixes[0].contract: contract 'no_such_contract' not found"),
        ({"contract": 3}, "prefixes[0].contract: expected a contract name"),
        ({"consumers": "one_dag"}, "prefixes[0].consumers: expected a list of Airflow dag ids"),
        ({"consumers": ["bad id!"]}, "prefixes[0].consumers[0]: expected a list of Airflow dag ids"),
    ],
)
def test_bad_contract_or_consumer_settings_name_the_key(entry, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"prefixes": [{"source": "s3://qa-x/p/", **entry}]})
