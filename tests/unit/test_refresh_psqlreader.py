"""Choosing the prod reader (``postgres.reader``, ``postgres.psql``) and psql's command line."""

from __future__ import annotations

import pytest

from greenlight.errors import ConfigError
from greenlight.refresh.psqlreader import STDOUT_BUFFER, PsqlUnsupported, command, find_psql
from greenlight.refresh.tables import TablePlan


def executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_auto_uses_psql_from_path_and_falls_back_to_python(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_psql("auto", None) is None
    psql = executable(tmp_path / "psql")
    assert find_psql("auto", None) == psql
    assert find_psql("python", None) is None


def test_a_required_or_named_psql_that_is_missing_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"postgres\.reader: no psql on PATH"):
        find_psql("psql", None)
    with pytest.raises(ConfigError, match=r"postgres\.psql: '/no/such/psql' is not an executable file"):
        find_psql("auto", "/no/such/psql")
    assert find_psql("psql", executable(tmp_path / "psql-18")) == str(tmp_path / "psql-18")


def test_the_command_line_holds_the_copy_and_the_snapshot_only():
    plan = TablePlan("public.books", columns=["id", "title"], select=['"id" AS "id"', '"title" AS "title"'])
    argv = command("/usr/bin/psql", "00000003-0000001B-1", plan.copy_source(), binary=True, tags_fd=7, conninfo=[])
    assert argv[0] == "/usr/bin/psql" and "--no-password" in argv and "--output=/dev/fd/7" in argv
    assert "--command=SET TRANSACTION SNAPSHOT '00000003-0000001B-1'" in argv
    assert '--command=\\copy "public"."books" ("id", "title") to pstdout with (format binary)' in argv
    assert not any("host" in a or "user" in a or "dbname" in a for a in argv)
    with pytest.raises(PsqlUnsupported):
        command("psql", "1-1", '"public"."odd\nname" ("id")', binary=False, tags_fd=7, conninfo=[])


def test_under_stdbuf_psql_gets_a_larger_stdout_buffer_and_the_same_arguments():
    plain = command("/usr/bin/psql", "1-1", '"public"."books" ("id")', binary=True, tags_fd=7, conninfo=[])
    argv = command(
        "/usr/bin/psql", "1-1", '"public"."books" ("id")', binary=True, tags_fd=7, conninfo=[], stdbuf="/usr/bin/stdbuf"
    )
    assert argv == ["/usr/bin/stdbuf", f"--output={STDOUT_BUFFER}", *plain]
