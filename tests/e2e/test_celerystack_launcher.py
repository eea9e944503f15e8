"""``make airflow-celery`` (``python -m greenlight.dev.celerystack``) stops everything it started on SIGTERM.

A background ``make`` ignores SIGINT (FACTS.md), so SIGTERM is how scripts and CI stop it. The
launcher is stopped while the stack is still starting (every process spawned, not yet healthy),
the moment a careless shutdown is most likely to leave something behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenlight.dev.celerystack import MARKER_ENV
from greenlight.dev.localstack import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def processes_of(state: Path) -> dict[int, str]:
    """PID -> command of every process whose command line or working folder names ``state``, or
    whose environment carries the stack's marker (redis-server overwrites its command line and
    environment with its title, but works in its data folder)."""
    found = {}
    needle = str(state).encode()
    marker = f"{MARKER_ENV}={state}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd").encode()
        except OSError:
            continue
        if needle in cmdline or needle in cwd or marker in environ.split(b"\0"):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


def test_sigterm_while_starting_stops_every_process(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenlight.dev.celerystack",
            "--state",
            str(state),
            "--port",
            str(free_port()),
            "--no-seed",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (state / "logs" / "worker2.log").exists() and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.stdout.read()
            time.sleep(0.5)
        time.sleep(2)  # the Airflow processes are spawned together, workers last
        started = processes_of(state)
        commands = " | ".join(started.values())
        for part in ("postgres", "redis-server", "weed", "mlflow", "api-server", "scheduler", "triggerer"):
            assert part in commands, f"{part} not running before the SIGTERM: {commands}"
        assert commands.count("celery worker") >= 2

        launcher.send_signal(signal.SIGTERM)
        out, _ = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, out
        assert "stopping" in out
        assert processes_of(state) == {}, "left running after SIGTERM"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        for pid in processes_of(state):  # never leave anything behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
