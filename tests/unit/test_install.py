"""The project is installed into the venv: ``greenlight`` and ``python -m greenlight`` work from any
folder without ``PYTHONPATH``, and resolve to this checkout's ``include/greenlight``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env


@pytest.mark.parametrize(
    "argv",
    [
        [str(BIN / "greenlight"), "promote", "--help"],
        [sys.executable, "-m", "greenlight", "reconcile", "--help"],
        [str(BIN / "greenlight"), "rollback", "--help"],
    ],
    ids=["console-script-promote", "python-m-reconcile", "console-script-rollback"],
)
def test_cli_runs_from_any_folder_without_pythonpath(argv, tmp_path):
    proc = subprocess.run(argv, cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: greenlight {argv[-2]}"), proc.stdout[:200]


def test_installed_package_is_this_checkout(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import greenlight; print(greenlight.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == ROOT / "include" / "greenlight" / "__init__.py"


def test_unknown_subcommand_is_bad_input_exit_2(tmp_path):
    proc = subprocess.run(
        [str(BIN / "greenlight"), "promot"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice: 'promot'" in proc.stderr
