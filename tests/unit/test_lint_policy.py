"""The lint step really enforces the Airflow 3 rules (a config typo would silently disable them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.exists() else shutil.which("ruff")


def test_air3_rules_flag_airflow2_code(tmp_path):
    dag = tmp_path / "old_style.py"
    dag.write_text(
        "from airflow import DAG\n"
        "from airflow.operators.python import PythonOperator\n\n"
        "with DAG(dag_id='x', schedule_interval='@daily') as dag:\n"
        "    PythonOperator(task_id='t', python_callable=print)\n"
    )
    out = subprocess.run(
        [ruff(), "check", "--config", str(ROOT / "pyproject.toml"), "--output-format", "json", str(dag)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    codes = {item["code"] for item in json.loads(out.stdout)}
    assert "AIR301" in codes, codes  # schedule_interval is gone in Airflow 3


def test_dags_are_clean_under_the_same_rules():
    out = subprocess.run(
        [ruff(), "check", "--config", str(ROOT / "pyproject.toml"), str(ROOT / "dags"), str(ROOT / "include")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout
