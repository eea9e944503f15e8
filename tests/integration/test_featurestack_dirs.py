"""The local PostgreSQL of tests and the demo must not widen the permissions of the invoking
user's directories (as root it runs as another user, who cannot enter a home of mode 700)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from greenlight.dev.featurestack import start_postgres

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to a separate server user")


def test_postgres_under_a_private_home_leaves_its_permissions_alone(tmp_path):
    import psycopg

    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    home.chmod(0o700)
    (tmp_path / "home").chmod(0o750)
    server = start_postgres(home / "stack")
    try:
        with psycopg.connect(server.uri, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert home.stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "home").stat().st_mode & 0o777 == 0o750
        outside = Path((home / "stack" / "pgdata.location").read_text().strip())
        assert outside.stat().st_mode & 0o777 == 0o700 and outside.stat().st_uid != 0
    finally:
        server.stop()
        location = home / "stack" / "pgdata.location"
        if location.exists():
            shutil.rmtree(location.read_text().strip(), ignore_errors=True)
