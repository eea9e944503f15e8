"""models.yaml is validated by pydantic models through the shared loader: every mistake is one
ConfigError (exit 2) that names the file and the key path at fault; a good file gives the plain
objects model_promotion and the consumers use."""

from __future__ import annotations

import pytest

from greenlight.errors import ConfigError
from greenlight.models import config as models_config

GOOD = {
    "pointer_uri": "s3://prod/_greenlight/",
    "models": {
        "yield-forecaster": {"output": {"prediction": "float"}, "consumers": ["commodity_hindcast_prod"]},
        "bare": None,
        "aliased": {"alias": "production"},
    },
}


def test_good_file_gives_the_models_with_defaults():
    config = models_config.parse(GOOD, path="models.yaml")
    assert config.pointer_uri == "s3://prod/_greenlight/"
    forecaster = config.model("yield-forecaster")
    assert (forecaster.alias, forecaster.output, forecaster.consumers) == (
        "champion",
        {"prediction": "float"},
        ("commodity_hindcast_prod",),
    )
    assert config.model("bare").alias == "champion" and config.model("bare").output == {}
    assert config.model("aliased").alias == "production"


def test_the_shipped_models_yaml_loads(tmp_path):
    config = models_config.load()
    assert config.models, "include/config/models.yaml configures no model"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], "models.yaml: expected a mapping with pointer_uri and models, got []"),
        ({"models": {}}, "models.yaml: missing required key 'pointer_uri'"),
        ({"pointer_uri": "", "models": {}}, "models.yaml: pointer_uri: expected s3://bucket/prefix/"),
        (
            {"pointer_uri": "s3://b/p/", "models": {"m": {"outptu": {}}}},
            "models.yaml: models.m: unknown key 'outptu' (did you mean 'output'?); allowed: alias, consumers, output",
        ),
        (
            {"pointer_uri": "s3://b/p/", "models": {"m": {"output": {"prediction": "double"}}}},
            "models.yaml: models.m.output.prediction:",
        ),
        ({"pointer_uri": "s3://b/p/", "models": {"m": {"consumers": "dag"}}}, "models.m.consumers: expected a list"),
        ({"pointer_uri": "s3://b/p/", "models": {"m": {"consumers": [1]}}}, "models.m.consumers[0]: expected a DAG id"),
        ({"pointer_uri": "s3://b/p/", "models": {"m": "x"}}, "models.yaml: models.m: expected a mapping, got 'x'"),
        ({"pointer_uri": "s3://b/p/", "models": []}, "models.yaml: models: expected a mapping of model name"),
        ({"pointer_uri": "s3://b/p/", "models": {}, "pointer": "x"}, "unknown key 'pointer' (did you mean"),
    ],
    ids=[
        "not-a-mapping",
        "no-pointer-uri",
        "empty-pointer-uri",
        "misspelt-key",
        "unknown-output-type",
        "consumers-not-a-list",
        "consumer-not-a-string",
        "model-not-a-mapping",
        "models-not-a-mapping",
        "misspelt-top-level-key",
    ],
)
def test_mistakes_name_the_key_path(raw, expected):
    with pytest.raises(ConfigError) as err:
        models_config.parse(raw, path="models.yaml")
    assert expected in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_model_names_the_configured_ones():
    config = models_config.parse(GOOD, path="models.yaml")
    with pytest.raises(ConfigError, match=r"model 'nope' is not configured .*'aliased', 'bare', 'yield-forecaster'"):
        config.model("nope")


def test_load_reads_the_file_named_by_the_env(tmp_path, monkeypatch):
    path = tmp_path / "models.yaml"
    path.write_text("pointer_uri: s3://b/p/\nmodels:\n  m: {alias: live}\n  m: {alias: dup}\n")
    monkeypatch.setenv(models_config.CONFIG_ENV, str(path))
    with pytest.raises(ConfigError, match="duplicate key 'm'"):
        models_config.load()
