"""promotion.yaml validation: every mistake is named, nothing is guessed."""

from __future__ import annotations

import pytest

from greenlight.errors import ConfigError
from greenlight.promotion.config import DEFAULT_CONFIG_PATH, load_config, parse_config


def test_minimal_config_gets_defaults():
    config = parse_config({"prefixes": ["s3://qa-data/usda/nass"]})
    (p,) = config.prefixes
    assert str(p.source) == "s3://qa-data/usda/nass/"  # a prefix is a directory
    assert str(p.destination) == "s3://prod-data/usda/nass/"
    assert p.settings.max_delete_fraction == 0.10
    assert p.settings.stale_after_hours == 24
    assert str(config.manifest_uri) == "s3://prod-data/_greenlight/manifests/"


def test_packaged_config_is_valid():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert len(config.prefixes) >= 3


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "missing required key 'prefixes'"),
        ({"prefixes": []}, "non-empty list"),
        ({"prefixes": ["s3://qa-x/a/"], "prefixs": []}, "unknown key 'prefixs'"),
        ({"prefixes": [{"source": "s3://qa-x/a/", "allow_emtpy": True}]}, "did you mean 'allow_empty'"),
        ({"prefixes": ["https://qa-x/a/"]}, "prefixes[0].source: 'https://qa-x/a/' is not an s3:// URI"),
        ({"prefixes": ["s3://QA_Bad/a/"]}, "invalid bucket name 'QA_Bad'"),
        ({"prefixes": ["s3://qa-x/a//b/"]}, "empty path segment"),
        ({"prefixes": ["s3://qa-x/"]}, "is a whole bucket"),
        ({"prefixes": ["s3://staging-x/a/"]}, "does not start with 'qa-'"),
        ({"prefixes": ["s3://qa-x/a/", "s3://qa-x/a"]}, "listed more than once"),
        ({"prefixes": ["s3://qa-x/a/", "s3://qa-x/a/b/"]}, "overlaps s3://qa-x/a/"),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "destination": "s3://prod-other/a/"}]},
            "outside the destination rule",
        ),
        ({"prefixes": [{"source": "s3://qa-x/a/", "max_delete_fraction": 2}]}, "between 0 and 1"),
        ({"prefixes": [{"source": "s3://qa-x/a/", "max_delete_count": -1}]}, "whole number >= 0"),
        ({"prefixes": ["s3://qa-x/a/"], "manifest_uri": "s3://qa-x/m/"}, "in a source bucket"),
        ({"prefixes": ["s3://qa-x/a/"], "manifest_uri": "s3://prod-x/a/m/"}, "overlaps destination"),
        ({"prefixes": ["s3://qa-x/a/"], "workers": 0}, "'workers' must be"),
    ],
)
def test_invalid_configs_are_named(doc, message):
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_custom_destination_rule_and_path():
    config = parse_config(
        {
            "destination_rule": {"source_bucket_prefix": "stg-", "destination_bucket_prefix": "live-"},
            "prefixes": [{"source": "s3://stg-x/a/", "destination": "s3://live-x/b/", "name": "a"}],
        }
    )
    assert str(config.prefixes[0].destination) == "s3://live-x/b/"
    assert config.select(["a"]).prefixes == config.prefixes


def test_select_unknown_prefix_names_it():
    config = parse_config({"prefixes": ["s3://qa-x/a/"]})
    with pytest.raises(ConfigError, match="'s3://qa-x/zzz/' is not a configured prefix"):
        config.select(["s3://qa-x/zzz/"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prefixes: [s3://qa-x/a/\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("prefixes: [s3://qa-x/a/]\nprefixes: [s3://qa-x/b/]\n")
    with pytest.raises(ConfigError, match="duplicate key 'prefixes'"):
        load_config(path)


def test_delete_limit_rounds_up_and_caps():
    settings = parse_config({"prefixes": [{"source": "s3://qa-x/a/", "max_delete_count": 50}]}).prefixes[0].settings
    assert settings.delete_limit(3) == 1
    assert settings.delete_limit(20) == 2
    assert settings.delete_limit(10_000) == 50
    assert settings.delete_limit(0) == 0
