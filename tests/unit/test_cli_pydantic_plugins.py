"""The CLI turns pydantic's plugin scan off for its own process, unless the user decided."""

from __future__ import annotations

import os

import pytest

from greenlight.cli import main


def test_the_cli_skips_the_plugin_scan_by_default(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    assert main(["promote", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    assert "missing.yaml" in capsys.readouterr().out


@pytest.mark.parametrize("chosen", ["", "logfire", "__all__"])
def test_a_users_own_setting_is_kept(monkeypatch, tmp_path, chosen):
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", chosen)  # "" keeps every plugin
    assert main(["promote", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == chosen
