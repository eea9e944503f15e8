"""Feature settings that need no server: the parity sample must be at least 1.

A parity check of 0 entities compares nothing, yet the DAG's ``parity`` task would succeed and emit
the view's Asset event as if it had been verified. Each way of setting it is refused as a config
error (exit 2, no retry) naming the setting, before Feast is imported or a server is contacted: the
stores below point at a closed port, so a late check would surface as a backend error instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from greenlight import features as F
from greenlight.dev.localstack import free_port
from greenlight.errors import ConfigError


@pytest.fixture
def nowhere(monkeypatch):
    """Env-var config pointing at ports nothing listens on."""
    env = {
        "GREENLIGHT_PG_URI": f"postgresql://postgres@127.0.0.1:{free_port()}/features",
        "GREENLIGHT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GREENLIGHT_FEATURES_PARITY_SAMPLE", raising=False)
    return env


@pytest.mark.parametrize("raw", ["0", "-3"])
def test_parity_sample_env_var_below_one_is_refused(nowhere, monkeypatch, raw):
    monkeypatch.setenv("GREENLIGHT_FEATURES_PARITY_SAMPLE", raw)
    with pytest.raises(
        ConfigError, match=rf"GREENLIGHT_FEATURES_PARITY_SAMPLE={int(raw)}: must be an integer >= 1"
    ) as info:
        F.FeatureSettings.from_env()
    assert info.value.exit_code == 2 and info.value.retryable is False


def test_default_and_valid_parity_sample(nowhere, monkeypatch):
    assert F.FeatureSettings.from_env().parity_sample == 20
    monkeypatch.setenv("GREENLIGHT_FEATURES_PARITY_SAMPLE", "1")
    settings = F.FeatureSettings.from_env()
    assert settings.parity_sample == 1
    with pytest.raises(ConfigError, match=r"parity_sample=0: must be an integer >= 1"):
        settings.replace(parity_sample=0)


@pytest.mark.parametrize("sample", [0, -1])
def test_parity_check_refuses_a_sample_below_one_before_touching_the_stores(nowhere, sample):
    settings = F.FeatureSettings.from_env()
    with pytest.raises(ConfigError, match=rf"parity_sample={sample}: must be an integer >= 1"):
        F.parity_check(settings, "technical_features", datetime.now(UTC), sample=sample)


def test_the_dag_parity_task_fails_without_retry_on_a_zero_sample(nowhere):
    """The DAG param ``parity_sample`` reaches the task as 0: the task fails at once (a failed task emits
    no Asset event), instead of passing a check that compared nothing."""
    from airflow.sdk.exceptions import AirflowFailException

    from greenlight.dagsupport import features as steps

    result = {"view": "technical_features", "start": "2026-03-01T10:00:00+00:00", "end": "2026-03-01T11:00:00+00:00"}
    with pytest.raises(AirflowFailException, match=r"\[config\] parity_sample=0: must be an integer >= 1"):
        steps.parity(result, run_id="manual__test", sample=0)


def test_cli_refuses_a_zero_sample_with_exit_2(nowhere, tmp_path):
    """``python -m greenlight.features`` (the old entry point, now ``greenlight features``) from another folder."""
    env = {**os.environ, **nowhere}
    out = subprocess.run(
        [sys.executable, "-m", "greenlight.features", "parity", "--sample", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "config" and summary["error"].startswith("--sample=0: must be an integer >= 1")
