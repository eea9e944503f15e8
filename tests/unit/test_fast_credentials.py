"""The lean S3 path reads static keys from the environment exactly as botocore's chain would."""

from __future__ import annotations

import botocore.session
import pytest

from greenlight.storage.fast import FastS3, environment_credentials


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    (tmp_path / "credentials").write_text("[other]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = p\n")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    return monkeypatch


def botocore_keys():
    frozen = botocore.session.Session().get_credentials().get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def ours():
    frozen = environment_credentials().get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


@pytest.mark.parametrize(
    "extra",
    [{}, {"AWS_SESSION_TOKEN": "tok"}, {"AWS_SECURITY_TOKEN": "old-tok"}, {"AWS_PROFILE": "other"}],
    ids=["keys", "session-token", "security-token", "profile-set-too"],
)
def test_same_keys_as_botocores_chain(aws_env, extra):
    for name, value in extra.items():
        aws_env.setenv(name, value)

    assert ours() == botocore_keys()
    assert ours()[0] == "AKIDENV"


@pytest.mark.parametrize(
    ("unset", "extra"),
    [("AWS_ACCESS_KEY_ID", {}), ("AWS_SECRET_ACCESS_KEY", {}), (None, {"AWS_CREDENTIAL_EXPIRATION": "2030-01-01"})],
    ids=["no-key", "no-secret", "expiring"],
)
def test_anything_else_is_left_to_botocore(aws_env, unset, extra):
    if unset:
        aws_env.delenv(unset)
    for name, value in extra.items():
        aws_env.setenv(name, value)

    assert environment_credentials() is None


def test_from_environment_signs_with_the_environment_keys(aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    fast = FastS3.from_environment()

    frozen = fast.credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AKIDENV", "env-secret", None)
    assert fast.host == "127.0.0.1:1"
