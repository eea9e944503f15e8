"""Datasets config (runbook 002): every rule refused with its message, the generated DAGs, the job
guard, and promote/cleanup on local stores (the S3 + REST API versions are in
tests/dags/test_dataset_versions_dag.py)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from greenlight.datasets import naming
from greenlight.datasets.config import load_config, parse_config
from greenlight.datasets.model import DatasetConfigError
from greenlight.datasets.rules import offset_cron
from greenlight.errors import ConfigError, RefusedError

ROOT = Path(__file__).resolve().parents[2]


def base_doc(**top) -> dict:
    return {
        "base": "s3://prod-x/datasets",
        "owner": "platform",
        "datasets": [
            {
                "id": "noaa-gfs-forecast",
                "primary": "0.2.0",
                "schedule": "0 6 * * *",
                "owner": "weather-team",
                "tags": ["weather"],
                "update": "greenlight.datasets.example:update",
                "validate": "greenlight.datasets.example:validate",
                "staged": [{"version": "0.3.0"}, {"version": "0.4.0-rc1", "schedule_offset_minutes": 15}],
            },
            {
                "id": "ecmwf-ifs",
                "primary": "1.0.0",
                "schedule": "@hourly",
                "update": ["python", "-m", "reformat", "{store_path}"],
                "validate": "python -m check {store_path}",
                "store": "{base}/ecmwf/{dataset_id}-v{version}.{ext}",
                "ext": "icechunk",
                "staged": [{"version": "1.1.0", "image": "ecr/reformatters:abc123"}],
            },
        ],
        **top,
    }


def problems_of(doc: dict) -> list[str]:
    with pytest.raises(DatasetConfigError) as info:
        parse_config(doc, path="datasets.yaml")
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------------------ the rules


def test_valid_config_resolves_versions_paths_and_offsets():
    config = parse_config(base_doc(), path="datasets.yaml")
    gfs = config.dataset("noaa-gfs-forecast")
    assert [(v.version, v.role, v.schedule) for v in gfs.versions] == [
        ("0.2.0", "primary", "0 6 * * *"),
        ("0.3.0", "staged", "5 6 * * *"),  # default: 5 minutes per staged version
        ("0.4.0-rc1", "staged", "15 6 * * *"),  # explicit offset
    ]
    assert gfs.primary.store_path == "s3://prod-x/datasets/noaa-gfs-forecast/v0.2.0.zarr"
    assert gfs.staged[0].store_path == "s3://prod-x/datasets/noaa-gfs-forecast/v0.3.0.zarr"
    ecmwf = config.dataset("ecmwf-ifs")
    assert ecmwf.staged[0].store_path == "s3://prod-x/datasets/ecmwf/ecmwf-ifs-v1.1.0.icechunk"
    assert ecmwf.primary.schedule == "0 * * * *" and ecmwf.staged[0].schedule == "5 * * * *"
    assert ecmwf.update.spec == ("python", "-m", "reformat", "{store_path}") and not ecmwf.update.is_callable
    assert config.pointer_root == "s3://prod-x/_greenlight/datasets/"


@pytest.mark.parametrize(
    ("mutate", "where", "expected"),
    [
        (
            lambda d: d["datasets"][0]["staged"].append({"version": "0.2.0"}),
            "datasets[0].staged[2].version",
            "dataset 'noaa-gfs-forecast' version '0.2.0': a staged version must differ from the primary version",
        ),
        (
            lambda d: d["datasets"][0]["staged"].append({"version": "0.3.0"}),
            "datasets[0].staged[2].version",
            "already configured at datasets[0].staged[0].version [rule: unique-version]",
        ),
        (
            lambda d: d["datasets"][0]["staged"][0].update(template_version="0.3.1"),
            "datasets[0].staged[0].version",
            "version '0.3.0': the staged version differs from the version its template declares "
            "(template_version: '0.3.1') [rule: template-version]",
        ),
        (
            lambda d: d["datasets"][0].update(template_version="0.1.0"),
            "datasets[0].primary",
            "the primary version differs from the version its template declares",
        ),
        (
            lambda d: d["datasets"][1].update(store="{base}/noaa-gfs-forecast/v{version}.zarr", primary="0.3.0"),
            "datasets[1].primary",
            "store path s3://prod-x/datasets/noaa-gfs-forecast/v0.3.0.zarr and "
            "s3://prod-x/datasets/noaa-gfs-forecast/v0.3.0.zarr of dataset 'noaa-gfs-forecast' version '0.3.0' "
            "(datasets[0].staged[0]) are the same store path",
        ),
        (
            lambda d: d["datasets"][1].update(store="{base}/{dataset_id}.{ext}"),
            "datasets[1].store",
            "has no {version}: every version would write the same path [rule: store-template]",
        ),
        (
            lambda d: d["datasets"][1].update(store="{base}/{dataset}/v{version}"),
            "datasets[1].store",
            "unknown placeholder(s) ['dataset']",
        ),
        (
            lambda d: d["datasets"][1].update(id="ecmwf-ifs-ens-forecast-15-day-0-25-degree-xx"),
            "datasets[1].staged[0].version",
            "Kubernetes name 'staging-ecmwf-ifs-ens-forecast-15-day-0-25-degree-xx-v1-1-0-update': 66 characters, "
            "a Kubernetes name (DNS label) allows 63 [rule: dns-label]",
        ),
        (
            lambda d: d["datasets"][0].update(kubernetes=True, id="NOAA_gfs"),
            "datasets[0].primary",
            "Kubernetes name 'NOAA_gfs-update': a Kubernetes name (DNS label) allows only lowercase",
        ),
        (
            lambda d: d["datasets"][0].update(id="g" * 240),
            "datasets[0].primary",
            "characters, Airflow allows 250 [rule: airflow-id]",
        ),
        (
            lambda d: d["datasets"][0]["staged"].append({"version": "0-3-0"}),
            "datasets[0].staged[2].version",
            "DAG id 'staging__noaa-gfs-forecast__v0-3-0__update' is also generated by datasets[0].staged[0].version",
        ),
        (
            lambda d: d["datasets"].append(copy.deepcopy(d["datasets"][1])),
            "datasets[2].id",
            "dataset 'ecmwf-ifs': also configured at datasets[1] [rule: unique-dataset-id]",
        ),
        (
            lambda d: d["datasets"][0].update(schedule="0,55 6 * * *"),
            "datasets[0].staged[0].schedule_offset_minutes",
            "cannot offset schedule '0,55 6 * * *' by 5 min",
        ),
    ],
    ids=[
        "staged-equals-primary",
        "duplicate-staged",
        "staged-template-version",
        "primary-template-version",
        "same-store-path",
        "store-without-version",
        "store-unknown-placeholder",
        "dns-label-too-long",
        "dns-label-characters",
        "airflow-id-too-long",
        "dag-id-collision",
        "duplicate-dataset",
        "offset-impossible",
    ],
)
def test_each_rule_is_refused_with_its_message(mutate, where, expected):
    doc = base_doc()
    mutate(doc)
    problems = problems_of(doc)
    assert any(p.startswith(where + ":") and expected in p for p in problems), problems


def test_nested_store_paths_are_refused_too():
    doc = base_doc()
    doc["datasets"][1]["store"] = "{base}/noaa-gfs-forecast/v0.2.0.zarr/sub-v{version}"
    nested = [p for p in problems_of(doc) if "unique-store-path" in p]
    assert [p.split(":")[0] for p in nested] == ["datasets[1].primary", "datasets[1].staged[0].version"]
    assert all(
        "v0.2.0.zarr of dataset 'noaa-gfs-forecast' version '0.2.0' (datasets[0]) are nested" in p for p in nested
    )


def test_shape_errors_name_the_key_path_dataset_and_version():
    doc = base_doc()
    doc["datasets"][1]["staged"][0]["version"] = "v1.1.0"
    doc["datasets"][1]["staged"][0]["offset"] = 5
    doc["datasets"][0]["update"] = "greenlight.datasets.example:"
    del doc["datasets"][0]["validate"]
    problems = problems_of(doc)
    assert any(p.startswith("datasets[1].staged[0].version: dataset 'ecmwf-ifs' version 'v1.1.0':") for p in problems)
    assert "datasets[1].staged[0].offset: dataset 'ecmwf-ifs' version 'v1.1.0': unknown key [rule: unknown-key]" in (
        problems
    )
    assert any(p.startswith("datasets[0].update: dataset 'noaa-gfs-forecast':") and "neither" in p for p in problems)
    assert "datasets[0].validate: dataset 'noaa-gfs-forecast': required key is missing [rule: shape]" in problems


def test_all_problems_are_reported_together():
    doc = base_doc()
    doc["datasets"][0]["staged"].append({"version": "0.2.0"})
    doc["datasets"][1]["staged"][0]["template_version"] = "9.9.9"
    with pytest.raises(DatasetConfigError) as info:
        parse_config(doc, path="datasets.yaml")
    message = str(info.value)
    assert message.startswith("datasets.yaml: 2 problems in the datasets config:")
    assert "staged-differs-from-primary" in message and "template-version" in message


def test_zarr_template_declares_the_version(tmp_path):
    (tmp_path / "v3").mkdir()
    (tmp_path / "v3" / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "attributes": {"dataset_version": "0.3.0"}})
    )
    (tmp_path / "v2.zmetadata").write_text(json.dumps({"metadata": {".zattrs": {"dataset_version": "0.2.0"}}}))
    doc = base_doc()
    doc["datasets"][0]["template"] = "v2.zmetadata"
    doc["datasets"][0]["staged"][0]["template"] = "v3"
    parse_config(doc, path=str(tmp_path / "datasets.yaml"))  # both match
    doc["datasets"][0]["staged"][1]["template"] = "v3"
    problems = problems_of_at(doc, tmp_path)
    assert problems == [
        "datasets[0].staged[1].version: dataset 'noaa-gfs-forecast' version '0.4.0-rc1': the staged version differs "
        "from the version its template declares (template: '0.3.0') [rule: template-version]"
    ]


def problems_of_at(doc, folder: Path) -> list[str]:
    with pytest.raises(DatasetConfigError) as info:
        parse_config(doc, path=str(folder / "datasets.yaml"))
    return [str(p) for p in info.value.problems]


def test_unknown_dataset_and_version_are_refused():
    config = parse_config(base_doc(), path="datasets.yaml")
    with pytest.raises(ConfigError, match=r"dataset 'nope': no such dataset .*\[rule: known-dataset\]"):
        config.dataset("nope")
    with pytest.raises(ConfigError, match=r"version '9.0.0': not configured .*\[rule: known-version\]"):
        config.dataset("ecmwf-ifs").version("9.0.0")


def test_the_packaged_config_is_valid():
    config = load_config(ROOT / "include" / "config" / "datasets.yaml")
    assert [v.role for v in config.versions()] == ["primary", "staged"]


@pytest.mark.parametrize(
    ("cron", "minutes", "expected"),
    [
        ("0 6 * * *", 5, "5 6 * * *"),
        ("55 6 * * *", 10, "5 7 * * *"),
        ("50 23 * * *", 15, "5 0 * * *"),
        ("0,30 * * * *", 10, "10,40 * * * *"),
        ("*/15 * * * *", 20, "5-59/15 * * * *"),
        ("@daily", 5, "5 0 * * *"),
        ("0 6 * * *", 0, "0 6 * * *"),
    ],
)
def test_offset_cron(cron, minutes, expected):
    assert offset_cron(cron, minutes) == expected


@pytest.mark.parametrize("cron", ["50 23 * * 1", "50 6-8 * * *", "*/7 * * * *"])
def test_offset_cron_refuses_what_it_cannot_shift_exactly(cron):
    with pytest.raises(ValueError):
        offset_cron(cron, 15)


def test_branch_names_map_to_config_entries():
    assert naming.branch("noaa-gfs-forecast", "0.3.0") == "stage/noaa-gfs-forecast/v0.3.0"
    assert naming.parse_branch("refs/heads/stage/noaa-gfs-forecast/v0.3.0") == ("noaa-gfs-forecast", "0.3.0")
    with pytest.raises(ValueError):
        naming.parse_branch("feature/noaa-gfs-forecast/v0.3.0")
    longest = naming.kubernetes_name("ecmwf-ifs-ens-forecast-15-day-0-25-degree", "0.3.0", "update", staged=True)
    assert longest == "staging-ecmwf-ifs-ens-forecast-15-day-0-25-degree-v0-3-0-update" and len(longest) == 63
    assert naming.dns_label_problem(longest) is None


# ------------------------------------------------------------------------------ the generated DAGs


def test_factory_output():
    from greenlight.datasets.factory import build_dags

    dags = build_dags(parse_config(base_doc(), path="datasets.yaml"))
    assert sorted(dags) == sorted(
        [
            "noaa-gfs-forecast__update",
            "noaa-gfs-forecast__validate",
            "staging__noaa-gfs-forecast__v0-3-0__update",
            "staging__noaa-gfs-forecast__v0-3-0__validate",
            "staging__noaa-gfs-forecast__v0-4-0-rc1__update",
            "staging__noaa-gfs-forecast__v0-4-0-rc1__validate",
            "ecmwf-ifs__update",
            "ecmwf-ifs__validate",
            "staging__ecmwf-ifs__v1-1-0__update",
            "staging__ecmwf-ifs__v1-1-0__validate",
        ]
    )
    primary, staged = dags["noaa-gfs-forecast__update"], dags["staging__noaa-gfs-forecast__v0-4-0-rc1__update"]
    assert primary.timetable.expression == "0 6 * * *" and staged.timetable.expression == "15 6 * * *"
    assert dags["staging__ecmwf-ifs__v1-1-0__validate"].timetable.expression == "5 * * * *"
    assert set(primary.tags) == {"greenlight", "dataset", "dataset:noaa-gfs-forecast", "weather"}
    assert set(staged.tags) == {
        "greenlight",
        "dataset",
        "dataset:noaa-gfs-forecast",
        "weather",
        "staging",
        "version:0.4.0-rc1",
    }
    for dag in (primary, staged):
        # the job, then the run check every greenlight DAG ends with
        assert [t.task_id for t in dag.tasks] == ["update", "check_run"]
        task = dag.get_task("update")
        assert task.owner == "weather-team" and dag.max_active_runs == 1
    staged_task = staged.get_task("update")
    assert staged_task.params["version"] == "0.4.0-rc1"
    assert staged_task.params.get_param("version").schema["enum"] == ["0.4.0-rc1"]
    assert staged_task.pool == "dataset__noaa-gfs-forecast__v0-4-0-rc1"
    assert primary.get_task("update").pool == "dataset__noaa-gfs-forecast__v0-2-0"
    assert "s3://prod-x/datasets/noaa-gfs-forecast/v0.4.0-rc1.zarr" in staged.doc_md
    assert "stage/noaa-gfs-forecast/v0.4.0-rc1" in staged.doc_md
    assert dags["ecmwf-ifs__validate"].get_task("validate").owner == "platform"  # the file's default owner


def test_factory_manual_schedule_and_no_staged():
    from greenlight.datasets.factory import build_dags

    doc = base_doc()
    doc["datasets"] = doc["datasets"][:1]
    doc["datasets"][0]["schedule"] = None
    doc["datasets"][0]["staged"] = []
    dags = build_dags(parse_config(doc, path="datasets.yaml"))
    assert sorted(dags) == ["noaa-gfs-forecast__update", "noaa-gfs-forecast__validate"]
    assert not dags["noaa-gfs-forecast__update"].timetable.can_be_scheduled


# ------------------------------------------------------------------------------ the job guard


def local_doc(tmp_path: Path) -> dict:
    return {
        "base": str(tmp_path / "stores"),
        "pointer_root": str(tmp_path / "pointers"),
        "datasets": [
            {
                "id": "corn",
                "primary": "0.2.0",
                "update": "greenlight.datasets.example:update",
                "validate": "greenlight.datasets.example:validate",
                "staged": [{"version": "0.3.0"}, {"version": "0.4.0"}],
            }
        ],
    }


def test_guard_refuses_another_version_and_a_version_promoted_since(tmp_path):
    from greenlight.datasets.jobs import guard

    doc = local_doc(tmp_path)
    config = parse_config(doc, path=str(tmp_path / "d.yaml"))
    assert guard(config, "corn", "staged", "0.3.0", "0.3.0").store_path == str(tmp_path / "stores/corn/v0.3.0.zarr")
    with pytest.raises(RefusedError, match=r"param version='0.2.0' is not this DAG's version '0.3.0'"):
        guard(config, "corn", "staged", "0.3.0", "0.2.0")
    # Someone made 0.3.0 the primary while its staged DAG still exists: the staged DAG must not write.
    doc["datasets"][0].update(primary="0.3.0", staged=[{"version": "0.2.0"}])
    promoted = parse_config(doc, path=str(tmp_path / "d.yaml"))
    with pytest.raises(RefusedError, match=r"version 0.3.0 is now the primary of corn: this staged DAG must not"):
        guard(promoted, "corn", "staged", "0.3.0", None)


def test_guard_refuses_a_staged_path_inside_the_primary(tmp_path):
    """A config built without the validations (e.g. by hand) is still refused in the task."""
    from dataclasses import replace

    from greenlight.datasets.jobs import guard

    config = parse_config(local_doc(tmp_path), path=str(tmp_path / "d.yaml"))
    dataset = config.datasets[0]
    bad = replace(dataset.staged[0], store_path=dataset.primary.store_path + "/v0.3.0")
    config = replace(config, datasets=(replace(dataset, staged=(bad,)),))
    with pytest.raises(RefusedError, match="overlaps the primary's .*never writes the primary's path"):
        guard(config, "corn", "staged", "0.3.0", "0.3.0")


def test_command_job_gets_its_own_store_path(tmp_path):
    from greenlight.datasets.jobs import run_job

    doc = local_doc(tmp_path)
    doc["datasets"][0]["update"] = "mkdir -p {store_path} && echo $GREENLIGHT_DATASET_VERSION > {store_path}/v.txt"
    doc["datasets"][0]["validate"] = ["test", "-f", "{store_path}/v.txt"]
    config = parse_config(doc, path=str(tmp_path / "d.yaml"))
    run_job(config, "corn", "update", role="staged", version="0.4.0")
    assert (tmp_path / "stores/corn/v0.4.0.zarr/v.txt").read_text() == "0.4.0\n"
    assert not (tmp_path / "stores/corn/v0.2.0.zarr").exists()
    run_job(config, "corn", "validate", role="staged", version="0.4.0")
    from greenlight.datasets.jobs import DatasetValidationError

    with pytest.raises(DatasetValidationError, match="validate of dataset corn v0.3.0: command exited 1"):
        run_job(config, "corn", "validate", role="staged", version="0.3.0")


# ------------------------------------------------------------------------------ promote / cleanup on local stores

CONFIG_TEXT = """\
# datasets for the unit tests
base: {base}
pointer_root: {pointers}
datasets:
  - id: corn
    primary: 0.2.0          # the version users read
    template_version: 0.2.0
    update: greenlight.datasets.example:update
    validate: greenlight.datasets.example:validate
    staged:
      # from branch stage/corn/v0.3.0
      - version: 0.3.0
        template_version: 0.3.0
      - version: 0.4.0
"""


def write_local_config(tmp_path: Path) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(CONFIG_TEXT.format(base=tmp_path / "stores", pointers=tmp_path / "pointers"))
    return path


def test_promote_locally_moves_pointer_and_rewrites_config_keeping_comments(tmp_path):
    from greenlight.datasets.jobs import run_job
    from greenlight.datasets.ops import promote, read_current

    path = write_local_config(tmp_path)
    config = load_config(path)
    run_job(config, "corn", "update", role="staged", version="0.3.0")
    lines: list[str] = []
    summary = promote("corn", "0.3.0", path=path, client_factory=lambda: None, keep_previous=True, say=lines.append)
    assert summary["store_path"] == str(tmp_path / "stores/corn/v0.3.0.zarr")
    assert "no Airflow API connection" in lines[-1]
    after = load_config(path)
    corn = after.dataset("corn")
    assert corn.primary.version == "0.3.0"
    assert [v.version for v in corn.staged] == ["0.4.0", "0.2.0"]  # 0.2.0 kept as a legacy version
    text = path.read_text()
    assert "# datasets for the unit tests" in text and "# the version users read" in text
    raw = yaml.safe_load(text)["datasets"][0]
    assert raw["template_version"] == "0.3.0"
    assert raw["staged"][-1] == {"version": "0.2.0", "template_version": "0.2.0"}
    pointer = read_current(after, "corn", lambda: None)
    assert pointer["store_path"] == summary["store_path"] and pointer["version"] == "0.3.0"
    assert pointer["previous_primary"] == {"version": "0.2.0", "store_path": str(tmp_path / "stores/corn/v0.2.0.zarr")}
    with pytest.raises(RefusedError, match="already the primary"):
        promote("corn", "0.3.0", path=path, client_factory=lambda: None)


def test_promote_refuses_an_invalid_staged_store(tmp_path):
    from greenlight.datasets.jobs import DatasetValidationError
    from greenlight.datasets.ops import promote

    path = write_local_config(tmp_path)
    before = path.read_text()
    with pytest.raises(DatasetValidationError, match="no consolidated metadata"):
        promote("corn", "0.4.0", path=path, client_factory=lambda: None)
    assert path.read_text() == before and not (tmp_path / "pointers").exists()


def test_cleanup_locally_removes_the_entry_and_lists_what_is_left(tmp_path):
    from greenlight.datasets.ops import cleanup

    path = write_local_config(tmp_path)
    store = tmp_path / "stores/corn/v0.4.0.zarr"
    store.mkdir(parents=True)
    (store / ".zattrs").write_text("{}")
    lines: list[str] = []
    dry = cleanup("corn", "0.4.0", path=path, dry_run=True, say=lines.append)
    assert not dry["config_entry_removed"] and "version: 0.4.0" in path.read_text()
    lines.clear()
    summary = cleanup("corn", "0.4.0", path=path, say=lines.append)
    assert summary["config_entry_removed"] and summary["not_deleted"] == [str(store)]
    assert lines[-3:] == [
        "Not deleted (clean up manually when ready):",
        f"  {store}",
        "  git branch stage/corn/v0.4.0 (team CI: git push origin --delete stage/corn/v0.4.0)",
    ]
    assert (store / ".zattrs").exists()
    assert [v.version for v in load_config(path).dataset("corn").staged] == ["0.3.0"]
    assert "# from branch stage/corn/v0.3.0" in path.read_text()
    again = cleanup("corn", "0.4.0", path=path, say=lines.append)  # idempotent
    assert not again["config_entry_removed"] and again["not_deleted"] == [str(store)]
    with pytest.raises(RefusedError, match="this is the primary version") as info:
        cleanup("corn", "0.2.0", path=path)
    assert info.value.exit_code == 2
    cleanup("corn", "0.3.0", path=path, say=lines.append)  # the last staged entry: the key goes
    assert "staged" not in yaml.safe_load(path.read_text())["datasets"][0]
    assert load_config(path).dataset("corn").staged == ()


def test_cleanup_removes_a_bad_entry_from_an_invalid_config(tmp_path):
    from greenlight.datasets.ops import cleanup

    path = write_local_config(tmp_path)
    path.write_text(
        path.read_text().replace(
            "      - version: 0.4.0\n",
            "      - version: 0.4.0\n      - version: 0.2.0.1\n        template_version: 0.9.0\n",
        )
    )
    with pytest.raises(DatasetConfigError, match="template-version"):
        load_config(path)
    cleanup("corn", "0.2.0.1", path=path, say=lambda _line: None)
    assert [v.version for v in load_config(path).dataset("corn").staged] == ["0.3.0", "0.4.0"]


def test_cli_check_exit_codes(tmp_path):
    path = tmp_path / "bad.yaml"
    doc = base_doc()
    doc["datasets"][0]["staged"].append({"version": "0.2.0"})
    path.write_text(yaml.safe_dump(doc))
    env_cmd = [sys.executable, "-m", "greenlight", "datasets", "check", "--config"]
    bad = subprocess.run([*env_cmd, str(path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert json.loads(bad.stdout.splitlines()[-1])["kind"] == "config"
    assert "datasets[0].staged[2].version: dataset 'noaa-gfs-forecast' version '0.2.0'" in bad.stderr
    good = subprocess.run(
        [
            *env_cmd,
            str(ROOT / "include/config/datasets.yaml"),
            "--dataset-id",
            "corn-stress-index",
            "--version",
            "0.3.0",
        ],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    summary = json.loads(good.stdout.splitlines()[-1])
    assert summary["dags"] == 4 and summary["checked"]["role"] == "staged"
    assert "staging__corn-stress-index__v0-3-0__update" in good.stdout
    unknown = subprocess.run(
        [*env_cmd, str(ROOT / "include/config/datasets.yaml"), "--dataset-id", "nope"], capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "known-dataset" in unknown.stdout
