"""The run-completeness rules on hand-written manifests (no servers): branch choice inferred from
which tasks ran, mapped counts from the upstream's output (also when the manifest cut the list),
run ids, pointers. The same rules on real runs: tests/dags/test_check_run.py."""

from __future__ import annotations

import json

import pytest

from greenlight.cli import main
from greenlight.dagsupport.taskmanifest import cli_root
from greenlight.errors import ConfigError
from greenlight.runcheck import check_run, expected_instances, format_table

STRUCTURE = [
    {"task_id": "plan", "upstream": [], "downstream": ["decide", "promote"], "category": "A"},
    {"task_id": "decide", "upstream": ["plan"], "downstream": ["halt", "promote"], "branch": True, "category": "A"},
    {"task_id": "halt", "upstream": ["decide"], "downstream": [], "category": "C"},
    {
        "task_id": "promote",
        "upstream": ["decide", "plan"],
        "downstream": ["verify"],
        "mapped": True,
        "map_source": "plan",
        "category": "A",
    },
    {"task_id": "verify", "upstream": ["promote"], "downstream": [], "category": "B"},
]


def doc(state="success", outputs=None, run_id="r1", end="2026-12-01T08:00:00+00:00"):
    return {"state": state, "outputs": outputs, "run_id": run_id, "end": end, "error": None}


def manifests(n=3, **overrides):
    docs = {"plan": doc(outputs=[{"prefix": str(i)} for i in range(n)]), "decide": doc(), "verify": doc()}
    docs.update({f"promote.{i}": doc() for i in range(n)})
    docs.update(overrides)
    return docs


def test_the_branch_not_taken_is_expected_skipped_and_mapped_counts_follow_the_upstream():
    plan = expected_instances(STRUCTURE, manifests())
    assert sorted(plan["expected"]) == ["decide", "plan", "promote.0", "promote.1", "promote.2", "verify"]
    assert plan["skipped_by_branch"] == ["halt"]

    halted = {"plan": doc(outputs=[1, 2]), "decide": doc(), "halt": doc(state="failed")}
    plan = expected_instances(STRUCTURE, halted)
    assert plan["skipped_by_branch"] == ["promote", "verify"]  # verify only follows the skipped branch
    report = check_run("d", "r1", STRUCTURE, halted)
    assert report["missing"] == [
        "halt is failed (retry category C: fix the cause first (data, contract, "
        "permission, config), then rerun: the failure says do not retry)"
    ]


def test_a_list_cut_by_the_manifest_still_gives_the_map_count():
    cut = [{"i": i} for i in range(50)] + ["…(+70 more items)"]
    plan = expected_instances(STRUCTURE, manifests(n=120, plan=doc(outputs=cut)))
    assert len([n for n in plan["expected"] if n.startswith("promote.")]) == 120


def test_missing_instances_wrong_run_ids_and_pointers():
    docs = manifests()
    del docs["promote.2"]
    docs["verify"] = doc(
        outputs=[
            {"pointer": "s3://m/current/a.json"},
            {"pointer": "s3://m/current/b.json"},
            {"pointer": "s3://m/current/c.json", "changed": False},
        ]
    )
    docs["plan"]["run_id"] = "r0"
    pointers = {
        "s3://m/current/a.json": {"run_id": "r1"},
        "s3://m/current/b.json": {"run_id": "r0", "published_at": "2026-12-01T07:00:00Z"},
        "s3://m/current/c.json": {"run_id": "r0"},
    }
    report = check_run("d", "r1", STRUCTURE, docs, read_pointer=pointers.get)
    assert not report["complete"]
    assert report["missing"][0].startswith("promote.2 has no task manifest (retry category A")
    assert "plan: manifest names run 'r0', not 'r1'" in report["missing"]
    assert "verify: current pointer s3://m/current/b.json did not move to run r1 (it names 'r0')" in report["missing"]
    assert [p["ok"] for p in report["pointers"]] == [True, False, True]  # c: this run changed nothing there
    assert "promote.2" in format_table(report) and "NOT MOVED" in format_table(report)

    pointers["s3://m/current/b.json"]["published_at"] = "2026-12-02T08:00:00Z"  # a later run moved it on
    report = check_run("d", "r1", STRUCTURE, manifests(verify=docs["verify"]), read_pointer=pointers.get)
    assert report["complete"], report["missing"]
    assert report["pointers"][1]["superseded"] is True


def test_an_unknown_map_count_is_reported_not_guessed():
    docs = manifests()
    docs["plan"] = doc(state="failed")
    report = check_run("d", "r1", STRUCTURE, docs)
    assert "promote: map count unknown: upstream 'plan' has no successful output" in report["missing"]


def test_a_self_skipped_task_and_an_empty_map_skip_what_follows():
    chain = [
        {"task_id": "gate", "upstream": [], "downstream": ["publish"], "category": "A"},
        {"task_id": "publish", "upstream": ["gate"], "downstream": ["notify"], "category": "B"},
        {"task_id": "notify", "upstream": ["publish"], "downstream": [], "category": "A"},
        {"task_id": "items", "upstream": [], "downstream": ["work"], "category": "A"},
        {
            "task_id": "work",
            "upstream": ["items"],
            "downstream": ["after"],
            "mapped": True,
            "map_source": "items",
            "category": "A",
        },
        {"task_id": "after", "upstream": ["work"], "downstream": [], "category": "A"},
        {"task_id": "always", "upstream": ["work"], "downstream": [], "trigger_rule": "none_failed"},
    ]
    # a dry run: gate ran, publish skipped itself; items returned [] (Airflow skips the mapped task)
    docs = {
        "gate": doc(),
        "publish": doc(state="skipped"),
        "items": doc(outputs=[]),
        "always": doc(),
    }
    report = check_run("d", "r1", chain, docs)
    assert report["complete"], report["missing"]
    assert report["skipped_after_skip"] == ["after", "notify"]  # "always" runs anyway (none_failed)
    assert "an upstream task skipped (expected)" in format_table(report)
    # the same run without the "always" manifest is incomplete: it is not skipped by its trigger rule
    del docs["always"]
    assert check_run("d", "r1", chain, docs)["missing"] == ["always has no task manifest"]


def test_a_rollback_moved_the_pointer_when_it_names_the_rollback_run():
    structure = [{"task_id": "restore", "upstream": [], "downstream": [], "category": "B"}]
    docs = {"restore": doc(outputs={"pointer": "s3://m/current/models/x.json"}, run_id="rb1")}
    restored = {"run_id": "p1", "version": "1", "restored_from": {"version": "2", "by_run": "rb1"}}
    report = check_run("d", "rb1", structure, docs, read_pointer=lambda _uri: restored)
    assert report["complete"] and report["pointers"][0]["ok"]
    other = {**restored, "restored_from": {"version": "2", "by_run": "rb0"}}
    report = check_run("d", "rb1", structure, docs, read_pointer=lambda _uri: other)
    assert report["missing"] == [
        "restore: current pointer s3://m/current/models/x.json did not move to run rb1 (it names 'p1')"
    ]


def test_cli_commands_refuse_when_task_manifests_are_turned_off(monkeypatch, tmp_path, capsys):
    """check-run, backfill and model check-consumer read the manifests: with them turned off and no
    root given, refused (exit 2) naming the variable and the flag to pass; a flag wins over the env."""
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", "off")
    assert main(["check-run", "--dag-id", "any_dag"]) == 2
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    assert error == "task manifests are turned off (GREENLIGHT_TASK_MANIFEST_ROOT=off): pass --root"
    with pytest.raises(ConfigError, match=r"=off\): pass --manifest-root$"):
        cli_root(None, "--manifest-root")
    assert cli_root(str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", "s3://bucket/manifests/")
    assert cli_root(None) == "s3://bucket/manifests/"
