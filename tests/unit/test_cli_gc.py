"""A CLI process loads its command's modules with the cyclic GC off, then runs the command with it on."""

from __future__ import annotations

import gc

import pytest

from greenlight.cli import main, promote


@pytest.fixture
def gc_restored():
    yield
    gc.unfreeze()  # this test process goes on: let what main() froze be collected again
    gc.enable()


def test_the_command_runs_with_the_gc_on_and_the_start_up_objects_frozen(gc_restored, monkeypatch, tmp_path, capsys):
    seen = {}

    def spy_load(*args, **kwargs):  # called by the command, after its modules were loaded
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        raise FileNotFoundError("missing.yaml")

    monkeypatch.setattr(promote, "load_config", spy_load)

    main(["promote", "--config", str(tmp_path / "missing.yaml")], whole_process=True)

    assert seen["enabled"] and seen["frozen"] > 0


def test_bad_arguments_leave_the_gc_on(gc_restored, capsys):
    with pytest.raises(SystemExit):
        main(["--no-such-option"], whole_process=True)
    assert gc.isenabled()


def test_an_in_process_call_freezes_nothing(tmp_path, capsys):
    before = gc.get_freeze_count()
    main(["promote", "--config", str(tmp_path / "missing.yaml")])
    assert gc.isenabled() and gc.get_freeze_count() == before
