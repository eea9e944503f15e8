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


# ------------------------------------------------------------------ key paths from the pydantic models
@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"prefixes": ["s3://qa-x/a/", {"source": "s3://qa-x/b/", "max_delete_fraction": 1.5}]},
            "prefixes[1].max_delete_fraction: expected a number between 0 and 1, got 1.5",
        ),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "allow_empty": "yes"}]},
            "prefixes[0].allow_empty: expected true or false",
        ),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "max_delete_count": True}]},
            "prefixes[0].max_delete_count: expected",
        ),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "consumers": ["ok_dag", "not a dag id"]}]},
            "prefixes[0].consumers[1]: expected a list of Airflow dag ids, got 'not a dag id'",
        ),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "signoff_marker": "../up"}]},
            "prefixes[0].signoff_marker: expected a key",
        ),
        (
            {"prefixes": [{"source": "s3://qa-x/a/", "stale_after_hours": 0}]},
            "prefixes[0].stale_after_hours: expected a positive",
        ),
        ({"prefixes": [{"source": 5}]}, "prefixes[0].source: expected an s3:// URI string, got 5"),
        ({"prefixes": [{"name": "a"}]}, "prefixes[0]: missing required key 'source'"),
        ({"prefixes": [7]}, "prefixes[0]: expected an s3:// URI or a mapping with 'source', got 7"),
        ({"prefixes": "s3://qa-x/a/"}, "'prefixes' must be a non-empty list"),
        ({"prefixes": ["s3://qa-x/a/"], "defaults": []}, "'defaults' must be a mapping"),
        ({"prefixes": ["s3://qa-x/a/"], "defaults": {"max_delete_fraction": "10%"}}, "defaults.max_delete_fraction"),
        ({"prefixes": ["s3://qa-x/a/"], "defaults": {"max_delet_count": 3}}, "did you mean 'max_delete_count'"),
        ({"prefixes": ["s3://qa-x/a/"], "destination_rule": []}, "'destination_rule' must be a mapping"),
        ({"prefixes": ["s3://qa-x/a/"], "workers": "8"}, "'workers' must be a whole number from 1 to 512, got '8'"),
        (["s3://qa-x/a/"], "expected a mapping with a 'prefixes' list at the top level"),
    ],
)
def test_errors_name_the_key_path(doc, message):
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_every_mistake_in_a_file_is_reported_at_once():
    doc = {
        "prefixes": [{"source": "s3://qa-x/a/", "max_delete_fraction": 2, "allow_emtpy": True}],
        "workers": 0,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    text = str(err.value)
    assert "prefixes[0].max_delete_fraction" in text
    assert "prefixes[0]: unknown key 'allow_emtpy'" in text
    assert "'workers' must be" in text


def test_defaults_and_overrides_combine_as_before():
    config = parse_config(
        {
            "defaults": {"max_delete_count": 5, "consumers": ["a", "a", "b"], "stale_after_hours": None},
            "prefixes": [
                "s3://qa-x/a/",
                {"source": "s3://qa-x/b/", "max_delete_count": 9, "mlflow_experiments": [" e "]},
            ],
        }
    )
    first, second = (p.settings for p in config.prefixes)
    assert (first.max_delete_count, first.consumers, first.stale_after_hours) == (5, ("a", "b"), None)
    assert (second.max_delete_count, second.consumers, second.mlflow_experiments) == (9, ("a", "b"), ("e",))
    assert second.max_delete_fraction == 0.10  # neither level set it: the built-in default


def test_settings_model_and_prefix_settings_have_the_same_keys():
    from greenlight.promotion.config import PrefixSettings
    from greenlight.promotion.configschema import SettingsModel

    assert set(SettingsModel.model_fields) == set(PrefixSettings.__dataclass_fields__)


def test_non_utf8_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("prefixes: [s3://qa-x/caf\u00e9/]\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "not UTF-8" in str(err.value)
    assert err.value.exit_code == 2


def test_a_folder_given_as_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# --------------------------------------------------- distinct manifest/pointer/gate files per prefix (P7.5)
def _lossy_safe_name(text: str) -> str:
    """The file-name rule greenlight used before P7: '/', '+' and '_' all became '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


def test_prefixes_whose_files_would_share_a_name_are_refused(monkeypatch):
    """The check asks the manifest store for each destination's file name; with a lossy rule in
    place (the pre-P7 one, patched in) a/b/, a_b/ and a+b/ collide and the config is refused."""
    from greenlight.storage import manifests

    monkeypatch.setattr(manifests, "safe_name", _lossy_safe_name)
    with pytest.raises(ConfigError) as err:
        parse_config({"prefixes": ["s3://qa-x/a/b/", "s3://qa-x/c/", "s3://qa-x/a+b/"]})
    text = str(err.value)
    assert "s3://qa-x/a/b/" in text and "s3://qa-x/a+b/" in text and "'prod-x_a_b'" in text
    assert err.value.exit_code == 2


def test_distinct_file_names_per_destination_with_the_store_rule():
    """With the store's own rule, a config is accepted only if every destination gets its own file."""
    from greenlight.promotion.config import destination_file_name

    doc = {"prefixes": ["s3://qa-x/a/b/", "s3://qa-x/a_b/", "s3://qa-x/a+b/"]}
    try:
        config = parse_config(doc)
    except ConfigError as err:  # the store's rule still maps two of them to one name
        assert "would share the manifest, pointer and gate files" in str(err)
    else:
        names = [destination_file_name(p.destination) for p in config.prefixes]
        assert len(set(names)) == 3
