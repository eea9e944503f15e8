"""The validated-document cache of ``promotion.yaml`` (greenlight.doccache, issue P11 point 4).

A CLI run whose config was validated before by the same schema skips pydantic; the schema stays the
only judge. pydantic imported in the process turns the cache off (the rule for Airflow processes),
and pytest's process imports it sooner or later: the in-process tests below switch that one check
off with monkeypatch to run the cache path, and the subprocess tests at the end check the real thing: a fresh process that loads a
cached config never imports pydantic.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from greenlight import doccache
from greenlight.errors import ConfigError
from greenlight.promotion import config as promotion_config
from greenlight.promotion.config import (
    DestinationRule,
    PrefixSettings,
    PromotionConfig,
    load_config,
    parse_config,
)

CONFIGS = {
    "minimal": {"prefixes": ["s3://qa-x/a/"]},
    "defaults and overrides": {
        "defaults": {
            "max_delete_count": 5,
            "consumers": ["dag_a", "dag_a", "dag_b"],
            "stale_after_hours": None,
            "mlflow_experiments": [" qa-exp "],
            "max_delete_fraction": 1,
        },
        "prefixes": [
            "s3://qa-x/a/",
            {
                "source": "s3://qa-x/b/",
                "max_delete_count": 9,
                "allow_empty": True,
                "allow_unversioned": True,
                "stale_after_hours": 12,
                "signoff_marker": "_QA_SIGNED_OFF",
                "shard_objects": 10,
                "consumers": [],
            },
        ],
    },
    "URI shorthand beside a mapping": {"prefixes": ["s3://qa-x/a/", {"source": "s3://qa-x/b/"}, "s3://qa-y/c/"]},
    "destination, name and contract": {
        "prefixes": [
            {
                "source": "s3://qa-x/a/",
                "destination": "s3://prod-x/elsewhere/",
                "name": "deliveries",
                "contract": "./contract.yaml",
            },
            {"source": "s3://qa-x/b/", "name": None, "destination": None, "contract": None},
        ]
    },
    "destination rule, workers, manifest_uri": {
        "destination_rule": {"source_bucket_prefix": "stage-", "destination_bucket_prefix": "live-"},
        "workers": 8,
        "manifest_uri": "s3://live-meta/_greenlight/manifests/",
        "prefixes": ["s3://stage-x/a/"],
    },
    "sections set to null": {
        "defaults": None,
        "destination_rule": None,
        "manifest_uri": None,
        "prefixes": ["s3://qa-x/a/"],
    },
}

# A document the schema refuses (three keys at fault) and one it accepts but the cross-key checks refuse.
SCHEMA_INVALID = {
    "workers": 0,
    "prefixes": [{"source": "s3://qa-x/a/", "max_delete_fraction": 1.5, "allow_emtpy": True}],
}
OVERLAPPING = {"prefixes": ["s3://qa-x/a/", "s3://qa-x/a/b/"]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache on, in a directory of this test. pydantic is imported in this process, which would
    turn the cache off: the check is switched off here (the subprocess tests check it for real)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(directory))
    monkeypatch.delenv(doccache.SWITCH_ENV, raising=False)
    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    return directory


@pytest.fixture
def validations(monkeypatch):
    """Counts the schema's validations (the real ones: each call goes through)."""
    calls = []
    real = promotion_config.validate_document

    def counting(raw, path):
        calls.append(path)
        return real(raw, path)

    monkeypatch.setattr(promotion_config, "validate_document", counting)
    return calls


def entries(directory) -> list:
    return sorted(p.name for p in directory.glob("*.json")) if directory.is_dir() else []


def config_path(tmp_path) -> str:
    (tmp_path / "contract.yaml").write_text("name: c\n")  # the contract file must exist; preflight parses it
    return str(tmp_path / "promotion.yaml")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_cache_hit_gives_the_config_direct_validation_gives(name, tmp_path, monkeypatch, validations):
    path = config_path(tmp_path)
    directory = tmp_path / "cache"
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(directory))
    importlib.import_module("pydantic")  # as in an Airflow process: validated directly, nothing cached
    assert doccache.validator_loaded()
    direct = parse_config(CONFIGS[name], path=path)
    assert entries(directory) == [] and len(validations) == 1

    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    missed = parse_config(CONFIGS[name], path=path)
    assert len(validations) == 2 and len(entries(directory)) == 1
    hit = parse_config(CONFIGS[name], path=path)
    assert len(validations) == 2, "the second load must come from the cache"
    for got in (missed, hit):
        assert got == direct
        assert repr(got) == repr(direct)  # same values and same types (1 stays 1, 1.0 stays 1.0)


def test_the_cached_settings_are_the_validated_ones(cache, tmp_path, validations):
    """Spot checks of what the hit returns: inheritance, stripped strings, deduplicated consumers,
    the built-in defaults for keys no level sets."""
    path = config_path(tmp_path)
    parse_config(CONFIGS["defaults and overrides"], path=path)
    config = parse_config(CONFIGS["defaults and overrides"], path=path)
    assert len(validations) == 1
    first, second = (p.settings for p in config.prefixes)
    assert (first.max_delete_count, first.consumers, first.mlflow_experiments) == (5, ("dag_a", "dag_b"), ("qa-exp",))
    assert first.stale_after_hours is None and first.max_delete_fraction == 1
    assert (second.max_delete_count, second.consumers, second.stale_after_hours) == (9, (), 12)
    assert second.signoff_marker == "_QA_SIGNED_OFF" and second.allow_empty and second.shard_objects == 10
    assert first.shard_objects == PrefixSettings().shard_objects


@pytest.mark.parametrize("raw", [SCHEMA_INVALID, OVERLAPPING], ids=["schema", "cross-key"])
def test_an_invalid_config_gives_the_same_error_every_time_and_is_not_cached(raw, tmp_path, monkeypatch):
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as direct:
        parse_config(raw, path="promotion.yaml")
    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    for _ in range(3):
        with pytest.raises(ConfigError) as err:
            parse_config(raw, path="promotion.yaml")
        assert str(err.value) == str(direct.value) and err.value.exit_code == 2
    assert entries(tmp_path / "cache") == []
    if raw is SCHEMA_INVALID:
        text = str(direct.value)
        assert "'workers' must be a whole number" in text and "prefixes[0].max_delete_fraction" in text
        assert "did you mean 'allow_empty'?" in text


def test_an_edited_config_is_validated_again(cache, tmp_path, validations):
    path = tmp_path / "promotion.yaml"
    path.write_text("prefixes:\n  - source: s3://qa-x/a/\n    max_delete_fraction: 0.5\n")
    assert load_config(path).prefixes[0].settings.max_delete_fraction == 0.5
    assert load_config(path).prefixes[0].settings.max_delete_fraction == 0.5
    assert len(validations) == 1 and len(entries(cache)) == 1

    path.write_text("prefixes:\n  - source: s3://qa-x/a/\n    max_delete_fraction: 2\n")  # now invalid
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"prefixes\[0\]\.max_delete_fraction: expected a number between 0 and 1"):
            load_config(path)
    path.write_text("prefixes:\n  - source: s3://qa-x/a/\n    max_delete_fraction: 0.25\n")
    assert load_config(path).prefixes[0].settings.max_delete_fraction == 0.25
    assert len(validations) == 4 and len(entries(cache)) == 2


def test_a_contract_deleted_after_caching_is_still_refused(cache, tmp_path, validations):
    """The checks outside the schema run on every load, cache hit or not."""
    path = config_path(tmp_path)
    raw = CONFIGS["destination, name and contract"]
    assert parse_config(raw, path=path).prefixes[0].contract == str(tmp_path / "contract.yaml")
    (tmp_path / "contract.yaml").unlink()
    with pytest.raises(ConfigError, match=r"prefixes\[0\]\.contract: contract .* not found"):
        parse_config(raw, path=path)
    assert len(validations) == 1  # the schema's verdict came from the cache; the file check did not


def test_a_changed_schema_misses(cache, tmp_path, monkeypatch, validations, request):
    """The source of the schema modules is part of the key: after an edit the document is validated
    again (here an extra module stands for the schema, so the real one is left alone)."""
    (tmp_path / "schema_part.py").write_text("LIMIT = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(promotion_config, "SCHEMA_SOURCES", (*promotion_config.SCHEMA_SOURCES, "schema_part"))
    request.addfinalizer(doccache.fingerprint.cache_clear)
    parse_config(CONFIGS["minimal"])
    parse_config(CONFIGS["minimal"])
    assert len(validations) == 1

    (tmp_path / "schema_part.py").write_text("LIMIT = 2\n")
    doccache.fingerprint.cache_clear()  # a new process reads the sources afresh
    parse_config(CONFIGS["minimal"])
    parse_config(CONFIGS["minimal"])
    assert len(validations) == 2 and len(entries(cache)) == 2


def test_a_schema_without_readable_source_is_never_cached(cache, monkeypatch, validations):
    monkeypatch.setattr(promotion_config, "SCHEMA_SOURCES", (*promotion_config.SCHEMA_SOURCES, "no_such_module_x"))
    for _ in range(2):
        parse_config(CONFIGS["minimal"])
    assert len(validations) == 2 and entries(cache) == []


def test_an_unwritable_cache_dir_still_loads(tmp_path, monkeypatch, validations):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(blocker / "cache"))  # cannot be created, even by root
    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    configs = [parse_config(CONFIGS["defaults and overrides"]) for _ in range(2)]
    assert configs[0] == configs[1] and configs[0].prefixes[1].settings.max_delete_count == 9
    assert len(validations) == 2


def test_a_corrupt_entry_is_a_miss_and_is_rewritten(cache, validations):
    parse_config(CONFIGS["minimal"])
    (entry,) = cache.glob("*.json")
    for garbage in (b"{not json", b"\xff\xfe", json.dumps({"key": "other", "doc": {}}).encode(), b"[]"):
        entry.write_bytes(garbage)
        assert parse_config(CONFIGS["minimal"]).prefixes[0].destination.bucket == "prod-x"
    assert len(validations) == 5
    parse_config(CONFIGS["minimal"])
    assert len(validations) == 5  # rewritten by the last miss


def test_the_switch_turns_the_cache_off(cache, monkeypatch, validations):
    monkeypatch.setenv(doccache.SWITCH_ENV, "0")
    for _ in range(2):
        parse_config(CONFIGS["minimal"])
    assert len(validations) == 2 and not cache.exists()


def test_the_key_keeps_types_apart_and_ignores_key_order(cache):
    keys = {
        doccache.slot({"workers": value}, kind="k", sources=("greenlight.configmodel",)).key
        for value in (1, 1.0, True, "1")
    }
    assert len(keys) == 4 and "" not in keys
    one = doccache.slot({"a": 1, "b": [1, 2]}, kind="k", sources=("greenlight.configmodel",))
    other = doccache.slot({"b": [1, 2], "a": 1}, kind="k", sources=("greenlight.configmodel",))
    assert one.key == other.key
    assert doccache.slot({"a": 1}, kind="other", sources=("greenlight.configmodel",)).key != one.key


def test_documents_that_are_not_json_data_are_validated_every_time(cache, validations):
    raw = yaml.safe_load("prefixes:\n  - source: s3://qa-x/a/\n    name: 2026-01-01\n")  # a date, not a string
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"prefixes\[0\]\.name: expected a string"):
            parse_config(raw)
    recursive = yaml.safe_load("prefixes: &p\n  - s3://qa-x/a/\n  - *p\n")
    with pytest.raises(ConfigError):
        parse_config(recursive)
    assert entries(cache) == [] and len(validations) == 3


def test_schema_defaults_are_the_engine_defaults():
    """The normalized document leaves unset keys out, so the engine's objects supply the defaults:
    they must be the schema's."""
    from greenlight.promotion.configschema import PromotionFile, RuleModel, SettingsModel

    for name, info in SettingsModel.model_fields.items():
        default = getattr(PrefixSettings(), name)
        assert (tuple(info.default) if isinstance(info.default, list) else info.default) == default, name
    rule = RuleModel()
    assert DestinationRule(rule.source_bucket_prefix, rule.destination_bucket_prefix) == DestinationRule()
    assert PromotionFile.model_fields["workers"].default == PromotionConfig(()).workers == 64


# ------------------------------------------------------------------------- a real, fresh process
PROBE = textwrap.dedent(
    """
    import json, sys
    import greenlight.cli.promote, greenlight.cli.rollback
    from greenlight.promotion.config import load_config
    config = load_config(sys.argv[1])
    print(json.dumps({"pydantic": "pydantic" in sys.modules, "config": repr(config)}))
    """
)


def fresh_load(path, env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_second_process_loads_a_cached_config_without_pydantic(tmp_path):
    path = tmp_path / "promotion.yaml"
    path.write_text(yaml.safe_dump(CONFIGS["defaults and overrides"]))
    env = {**os.environ, doccache.CACHE_DIR_ENV: str(tmp_path / "cache")}
    env.pop(doccache.SWITCH_ENV, None)

    first = fresh_load(path, env)
    assert first["pydantic"], "a first-ever load must validate with the schema"
    second = fresh_load(path, env)
    assert not second["pydantic"], "a cached config must load without importing pydantic"
    assert second["config"] == first["config"]
    off = fresh_load(path, {**env, doccache.SWITCH_ENV: "0"})
    assert off["pydantic"] and off["config"] == first["config"]


def test_an_invalid_config_is_refused_by_every_fresh_cli_run(tmp_path):
    path = tmp_path / "promotion.yaml"
    path.write_text("prefixes:\n  - source: s3://qa-x/a/\n    max_delete_count: -1\n")
    env = {**os.environ, doccache.CACHE_DIR_ENV: str(tmp_path / "cache")}
    env.pop(doccache.SWITCH_ENV, None)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "greenlight", "promote", "--config", str(path), "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2
        assert "prefixes[0].max_delete_count: expected a whole number >= 0, got -1" in done.stderr
    assert entries(tmp_path / "cache") == []
