"""Reconciliation against real pieces: git + DVC repos pushed to SeaweedFS, an MLflow SQLite store
with S3 artifacts, the CLI as a subprocess and the DAG through ``dag.test()``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from reconcilefixtures import (
    BACKUP_BUCKET,
    DVC_BUCKET,
    MLFLOW_BUCKET,
    add_remote,
    clone_cache,
    copy_prefix,
    dvc,
    git,
    make_dvc_repo,
    md5,
)
from test_cli import cli as run_cli

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def golden(tmp_path_factory, s3env, s3):
    """One real DVC repo per module, pushed to a 'golden' remote and backup; tests copy them."""
    return make_dvc_repo(tmp_path_factory.mktemp("dvc"), s3env, s3, f"golden-{uuid.uuid4().hex[:8]}/")


def _exists(s3, bucket, key) -> bool:
    """Whether the key exists; any error other than "not found" (auth, network) fails the test."""
    from greenlight.storage.s3 import object_state

    return object_state(s3, bucket, key) is not None


class Scenario:
    """A per-test copy of the golden remote/backup/cache with five objects made missing:

    - img0 (inside the tracked directory): gone from the remote, still in the cache -> cache
    - img1 (inside the directory): gone from the remote and the cache, in the backup -> fallback
    - the directory's ``.dir`` manifest: gone from the remote, in the cache -> cache
    - out/model.bin (a ``dvc.lock`` output): gone from remote and cache, in the backup -> fallback
    - data/table.csv (a ``.dvc`` file): gone everywhere -> unrecoverable
    """

    def __init__(self, golden, s3, area: str, tmp_path: Path):
        self.golden, self.s3, self.area = golden, s3, area
        gprefix = golden.remote.split("/", 3)[3]
        copy_prefix(s3, DVC_BUCKET, gprefix, area)
        copy_prefix(s3, BACKUP_BUCKET, gprefix, area)
        self.cache = clone_cache(golden, tmp_path / "cache")
        f = golden.files
        self.keys = {
            "img0": golden.key(f["data/images/img0.txt"], area),
            "img1": golden.key(f["data/images/img1.txt"], area),
            "dir": f"{area}files/md5/{golden.dir_md5[:2]}/{golden.dir_md5[2:]}",
            "model": golden.key(f["out/model.bin"], area),
            "table": golden.key(f["data/table.csv"], area),
        }
        for name in self.keys:
            s3.delete_object(Bucket=DVC_BUCKET, Key=self.keys[name])
        for name in ("img1", "model", "table"):
            (self.cache / self.keys[name][len(area) :]).unlink()
        s3.delete_object(Bucket=BACKUP_BUCKET, Key=self.keys["table"])

    def target(self, name="datasets") -> dict:
        return {
            "name": name,
            "kind": "dvc",
            "repo": str(self.golden.path),
            "rev": "main",
            "remote": f"s3://{DVC_BUCKET}/{self.area}",
            "cache_dir": str(self.cache),
            "fallback_remotes": [f"s3://{BACKUP_BUCKET}/{self.area}"],
        }

    def remote_keys(self) -> set[str]:
        out = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=DVC_BUCKET, Prefix=self.area):
            out |= {o["Key"] for o in page.get("Contents", ())}
        return out


@pytest.fixture
def scenario(golden, s3, area, tmp_path):
    return Scenario(golden, s3, area, tmp_path)


def _config(tmp_path, targets, report_uri=None, name="reconcile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"report_uri": report_uri or str(tmp_path / "reports"), "targets": targets}))
    return path


def _by_path(result) -> dict[str, tuple]:
    return {e["path"]: (e["status"], e["route"], tuple(e["tracked_by"])) for e in result["entries"]}


EXPECTED_ROUTES = {
    "data/images": ("cache", ("data/images.dvc",)),
    "data/images/img0.txt": ("cache", ("data/images.dvc",)),
    "data/images/img1.txt": ("fallback", ("data/images.dvc",)),
    "out/model.bin": ("fallback", ("dvc.lock:train",)),
    "data/table.csv": (None, ("data/table.csv.dvc",)),
}


# ---------------------------------------------------------------------------------------- DVC ↔ S3
def test_dvc_check_reports_every_missing_object_with_path_and_dvc_file(scenario, s3, tmp_path):
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.run import reconcile

    before = scenario.remote_keys()
    summary = reconcile(load_config(_config(tmp_path, [scenario.target()])), s3, run_id="check1")

    result = json.loads(Path(summary["report"]).read_text())["targets"][0]
    # 4 images + their .dir + table.csv + model.bin; metrics.json is `cache: false` and not expected
    assert result["checked"] == 7
    assert {p: (r, t) for p, (_, r, t) in _by_path(result).items()} == EXPECTED_ROUTES
    assert {p: s for p, (s, _, _) in _by_path(result).items()} == {
        "data/images": "recoverable",
        "data/images/img0.txt": "recoverable",
        "data/images/img1.txt": "recoverable",
        "out/model.bin": "recoverable",
        "data/table.csv": "unrecoverable",
    }
    keys = {e["path"]: e["key"] for e in result["entries"]}
    assert keys["data/table.csv"] == scenario.keys["table"]
    assert keys["data/images"] == scenario.keys["dir"]
    assert (summary["missing"], summary["repaired"], summary["unrecoverable"], summary["outstanding"]) == (5, 0, 1, 4)
    assert summary["problems"][0].startswith("datasets: ")
    assert scenario.remote_keys() == before  # a check changes nothing


def test_dvc_repair_routes_cache_fallback_unrecoverable_and_dvc_agrees(scenario, golden, s3, s3env, tmp_path):
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.run import reconcile

    config = load_config(_config(tmp_path, [scenario.target()]))
    before = scenario.remote_keys()
    dry = reconcile(config, s3, run_id="dry", repair=True, dry_run=True)
    assert (dry["missing"], dry["repaired"], dry["outstanding"]) == (5, 0, 4)
    assert scenario.remote_keys() == before
    assert json.loads((tmp_path / "reports" / "dry" / "repairs" / "datasets.json").read_text())["status"] == "dry_run"

    summary = reconcile(config, s3, run_id="fix", repair=True)

    result = json.loads(Path(summary["report"]).read_text())["targets"][0]
    assert {p: s for p, (s, _, _) in _by_path(result).items()} == {
        "data/images": "repaired",
        "data/images/img0.txt": "repaired",
        "data/images/img1.txt": "repaired",
        "out/model.bin": "repaired",
        "data/table.csv": "unrecoverable",
    }
    for name, path in (("img0", "data/images/img0.txt"), ("img1", "data/images/img1.txt"), ("model", "out/model.bin")):
        body = s3.get_object(Bucket=DVC_BUCKET, Key=scenario.keys[name])["Body"].read()
        assert body == golden.files[path]
    manifest = json.loads((tmp_path / "reports" / "fix" / "repairs" / "datasets.json").read_text())
    assert manifest["status"] == "complete"
    assert sorted((r["route"] or "-", r["status"]) for r in manifest["repairs"]) == [
        ("-", "unrecoverable"),
        ("cache", "repaired"),
        ("cache", "repaired"),
        ("fallback", "repaired"),
        ("fallback", "repaired"),
    ]
    # DVC itself (one HEAD per file) now finds only the unrecoverable file missing from this remote.
    add_remote(golden.path, "reconciled", f"s3://{DVC_BUCKET}/{scenario.area}", s3env, local=True)
    out = json.loads(dvc(golden.path, "data", "status", "--not-in-remote", "--granular", "--json", "-r", "reconciled"))
    assert sorted(out.get("not_in_remote", [])) == ["data/table.csv"]
    # And a second check agrees.
    again = reconcile(config, s3, run_id="recheck")
    assert (again["missing"], again["unrecoverable"]) == (1, 1)


def test_dvc_remote_read_from_dvc_config_at_the_ref_and_dir_expanded_from_remote(golden, s3, tmp_path):
    """A git URL, no ``remote``, no cache: the default remote of .dvc/config at the ref, read from a
    bare clone; the ``.dir`` manifest read from the remote itself."""
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.dvc import check_dvc

    config = load_config(_config(tmp_path, [{"name": "d", "kind": "dvc", "repo": golden.path.as_uri()}]))
    result = check_dvc(config.targets[0], s3, repair=True).as_dict()
    assert result["details"]["remote"] == golden.remote
    assert (result["checked"], result["missing"]) == (7, 0)


# ------------------------------------------------------------------- crafted and malformed DVC files
def _crafted_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repo holding hand-written DVC files (no ``dvc`` involved: they are what an attacker or
    a broken tool could commit)."""
    repo = root / "crafted"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "crafted")
    return repo


def _dvc_bucket(s3) -> None:
    try:
        s3.create_bucket(Bucket=DVC_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def _crafted_target(repo: Path, area: str, cache: Path | None = None) -> dict:
    target = {"name": "crafted", "kind": "dvc", "repo": str(repo), "rev": "main", "remote": f"s3://{DVC_BUCKET}/{area}"}
    if cache is not None:
        target["cache_dir"] = str(cache)
    return target


def test_dvc_crafted_md5_cannot_read_outside_the_cache_or_upload_it(s3env, s3, area, tmp_path):
    """P7.8: a legacy output whose md5 is ``../secret.txt`` used to map to ``<cache>/..//secret.txt``,
    i.e. a file beside the cache, which ``--repair`` then uploaded to the remote. Now it is refused
    (exit 2, naming the DVC file and the value) before any cache path or key is built."""
    _dvc_bucket(s3)
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "secret.txt").write_text("not for the remote")
    repo = _crafted_repo(tmp_path, {"evil.dvc": "outs:\n- md5: ../secret.txt\n  path: evil\n"})
    cfg = str(_config(tmp_path, [_crafted_target(repo, area, cache)]))

    code, summary, stderr = cli(s3env, "reconcile", "--config", cfg, "--repair")

    assert code == 2, stderr
    assert "evil.dvc" in summary["error"] and "'../secret.txt'" in summary["error"]
    assert "not 32 hex digits" in summary["error"]
    listed = s3.list_objects_v2(Bucket=DVC_BUCKET, Prefix=area)
    assert listed.get("KeyCount", 0) == 0  # nothing uploaded


def test_dvc_malformed_outs_and_dir_manifest_exit_2_naming_the_file(s3env, s3, area, tmp_path):
    """P7.9: ``outs:`` given as a mapping used to be read as a list of its keys (every output
    silently skipped, the check 'passed'); a ``.dir`` manifest that is JSON but not a list of
    {md5, relpath} crashed with a traceback. Both are bad input: exit 2 naming the file."""
    _dvc_bucket(s3)
    bad_dir = b'{"md5": "not a list"}'
    dir_md5 = md5(bad_dir)
    s3.put_object(Bucket=DVC_BUCKET, Key=f"{area}files/md5/{dir_md5[:2]}/{dir_md5[2:]}.dir", Body=bad_dir)
    repo = _crafted_repo(
        tmp_path,
        {
            "mapping/data.dvc": f"outs:\n  md5: {'0' * 32}\n  path: data.csv\n",
            "dir/images.dvc": f"outs:\n- md5: {dir_md5}.dir\n  path: images\n  hash: md5\n",
        },
    )
    only_mapping = dict(_crafted_target(repo, area), name="mapping")
    code, summary, stderr = cli(s3env, "reconcile", "--config", str(_config(tmp_path, [only_mapping])))
    assert code == 2, stderr
    assert "mapping/data.dvc: 'outs' must be a list of outputs, got a dict" in summary["error"]

    # The same repo without the mapping file: the .dir manifest (read from the real remote) is refused.
    git(repo, "rm", "-q", "mapping/data.dvc")
    git(repo, "commit", "-qm", "drop the mapping file")
    code, summary, stderr = cli(s3env, "reconcile", "--config", str(_config(tmp_path, [_crafted_target(repo, area)])))
    assert code == 2, stderr
    assert f"s3://{DVC_BUCKET}/{area}files/md5/{dir_md5[:2]}/{dir_md5[2:]}.dir" in summary["error"]
    assert "must be a JSON list of {md5, relpath}" in summary["error"]


def test_dvc_data_hashes_agree_with_dvc_and_hashlib(golden):
    """The md5 greenlight checks cache copies with is dvc-data's: the same value DVC recorded for
    every file of the real repo, and the same as a plain hashlib md5 for DVC 3 outputs. Legacy
    (DVC 2) outputs hash text with CRLF -> LF, binary files as they are."""
    import hashlib

    import yaml

    from greenlight.reconcile.dvc import content_md5, parse_dir_manifest

    dir_body = golden.cache_file(golden.dir_md5).read_bytes()
    recorded = {f"data/images/{e['relpath']}": e["md5"] for e in parse_dir_manifest(dir_body, "golden .dir")}
    recorded["data/table.csv"] = yaml.safe_load((golden.path / "data/table.csv.dvc").read_text())["outs"][0]["md5"]
    assert len(recorded) == 5
    for rel, want in recorded.items():
        path = str(golden.path / rel)
        assert content_md5(path) == want == hashlib.md5(golden.files[rel]).hexdigest()
    assert content_md5(data=dir_body) == golden.dir_md5.removesuffix(".dir")

    text, binary = b"a,b\r\n1,2\r\n", b"\x00\x01bin\r\n\xff"
    assert content_md5(data=text, legacy=True) == hashlib.md5(b"a,b\n1,2\n").hexdigest()
    assert content_md5(data=binary, legacy=True) == hashlib.md5(binary).hexdigest()


# ---------------------------------------------------------------------------------------- git ↔ DVC
def test_git_dvc_clean_ref_and_stale_lock(golden, tmp_path):
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.gitdvc import check_git_dvc

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(golden.path), str(clone))
    (clone / "params.yaml").write_text("lr: 0.2\nepochs: 3\n")
    (clone / "train.py").write_text((clone / "train.py").read_text() + "# tweak\n")
    spec = yaml.safe_load((clone / "dvc.yaml").read_text())
    spec["stages"]["evaluate"] = {"cmd": "python eval.py", "deps": ["out/model.bin"], "metrics": ["eval.json"]}
    (clone / "dvc.yaml").write_text(yaml.safe_dump(spec))
    git(clone, "commit", "-qam", "change params and code without dvc repro")
    (clone / "out").mkdir(exist_ok=True)
    (clone / "out" / "model.bin").write_bytes(b"committed by mistake")
    git(clone, "add", "-f", "out/model.bin")
    git(clone, "commit", "-qm", "commit a DVC output to git")

    targets = [
        {"name": "clean", "kind": "git_dvc", "repo": str(clone), "rev": golden.clean_rev},
        {"name": "stale", "kind": "git_dvc", "repo": str(clone), "rev": "HEAD"},
    ]
    config = load_config(_config(tmp_path, targets))
    clean = check_git_dvc(config.target("clean")).as_dict()
    assert (clean["checked"], clean["missing"]) == (1, 0)

    stale = check_git_dvc(config.target("stale")).as_dict()
    by_what = {e["what"]: e for e in stale["entries"]}
    assert set(by_what) == {"dvc.lock:train", "dvc.lock:evaluate", "out/model.bin"}
    train = by_what["dvc.lock:train"]["reasons"]
    assert "param params.yaml:lr changed: dvc.lock 0.1, params.yaml 0.2" in train
    assert any(r.startswith("dep train.py changed: dvc.lock has md5 ") for r in train)
    assert len(train) == 2  # data/table.csv and data/images match their .dvc files
    assert by_what["dvc.lock:evaluate"]["reasons"] == [
        "stage 'evaluate' is in dvc.yaml but not in dvc.lock (never run or lock not committed)"
    ]
    assert "tracked by both git and DVC" in by_what["out/model.bin"]["reasons"][0]
    assert all(e["status"] == "unrecoverable" for e in stale["entries"])


def test_git_dvc_dep_changed_upstream_and_git_tracked_directory(golden, tmp_path):
    """A dep's md5 in the lock is compared with the .dvc file that now tracks it."""
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.gitdvc import check_git_dvc

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(golden.path), str(clone))
    doc = yaml.safe_load((clone / "data" / "table.csv.dvc").read_text())
    doc["outs"][0]["md5"] = md5(b"new table\n")
    (clone / "data" / "table.csv.dvc").write_text(yaml.safe_dump(doc))
    git(clone, "commit", "-qam", "new data version, pipeline not rerun")
    config = load_config(_config(tmp_path, [{"name": "p", "kind": "git_dvc", "repo": str(clone)}]))
    result = check_git_dvc(config.targets[0]).as_dict()
    (entry,) = result["entries"]
    assert entry["reasons"] == [
        f"dep data/table.csv changed: dvc.lock has md5 {md5(golden.files['data/table.csv'])}, recorded by "
        f"data/table.csv.dvc it is {md5(b'new table' + bytes([10]))}"
    ]


# ------------------------------------------------------------------------------------ MLflow ↔ S3
@pytest.fixture
def mlflow_store(s3env, s3, area, tmp_path, monkeypatch):
    try:
        s3.create_bucket(Bucket=MLFLOW_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3env.endpoint_url)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    location = f"s3://{MLFLOW_BUCKET}/{area}exp"
    exp_id = client.create_experiment("reconcile-test", artifact_location=location)

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("report a")
    (files / "b.txt").write_text("report b")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifact(str(files / "a.txt"), "reports")
        mlflow.log_artifact(str(files / "b.txt"), "reports")
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="gl-echo")
    with mlflow.start_run(experiment_id=exp_id) as doomed:
        mlflow.log_artifact(str(files / "a.txt"), "reports")
    return {
        "client": client,
        "uri": uri,
        "exp_id": exp_id,
        "run_id": run.info.run_id,
        "doomed": doomed.info.run_id,
        "model_id": info.model_id,
        "prefix": f"{area}exp/",
    }


def test_mlflow_missing_artifacts_orphans_and_repair_from_restore_dir(mlflow_store, s3, tmp_path):
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.run import reconcile

    m = mlflow_store
    restore = tmp_path / "restore"
    target = {"name": "models", "kind": "mlflow", "experiments": ["reconcile-test"], "restore_dir": str(restore)}
    config = load_config(_config(tmp_path, [target]))

    first = reconcile(config, s3, run_id="baseline", tracking_uri=m["uri"])
    assert (first["missing"], first["orphans"]) == (0, 0)
    # No baseline yet: the model's MLmodel + the three files it names (pickle, conda.yaml, python_env.yaml).
    assert first["checked"] == 4

    run_art = f"{m['prefix']}{m['run_id']}/artifacts/"
    model_art = f"{m['prefix']}models/{m['model_id']}/artifacts/"
    # A backup copy (mlruns layout) of report a and the pickled model; none of report b.
    for key in (run_art + "reports/a.txt", model_art + "python_model.pkl"):
        dest = restore / m["exp_id"] / key[len(m["prefix"]) :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(s3.get_object(Bucket=MLFLOW_BUCKET, Key=key)["Body"].read())
        s3.delete_object(Bucket=MLFLOW_BUCKET, Key=key)
    s3.delete_object(Bucket=MLFLOW_BUCKET, Key=run_art + "reports/b.txt")
    m["client"].delete_run(m["doomed"])
    ghost = uuid.uuid4().hex
    s3.put_object(Bucket=MLFLOW_BUCKET, Key=f"{m['prefix']}{ghost}/artifacts/x.bin", Body=b"xx")

    summary = reconcile(config, s3, run_id="repair", repair=True, tracking_uri=m["uri"])

    result = json.loads(Path(summary["report"]).read_text())["targets"][0]
    entries = {e["what"]: e for e in result["entries"]}
    base = f"s3://{MLFLOW_BUCKET}/"
    assert {w: e["status"] for w, e in entries.items()} == {
        base + run_art + "reports/a.txt": "repaired",
        base + run_art + "reports/b.txt": "unrecoverable",
        base + model_art + "python_model.pkl": "repaired",
    }
    pkl = entries[base + model_art + "python_model.pkl"]
    assert sorted(pkl["needed_by"]) == sorted(
        [f"logged model {m['model_id']} (reconcile-test)", "model version gl-echo v1"]
    )
    assert entries[base + run_art + "reports/b.txt"]["run_id"] == m["run_id"]
    assert s3.get_object(Bucket=MLFLOW_BUCKET, Key=run_art + "reports/a.txt")["Body"].read() == b"report a"
    orphans = {o["what"]: o["reason"] for o in result["orphan_entries"]}
    assert orphans == {
        f"{base}{m['prefix']}{m['doomed']}/": "run is deleted (`mlflow gc` would purge it)",
        f"{base}{m['prefix']}{ghost}/": "run unknown to the tracking store",
    }
    assert (summary["missing"], summary["repaired"], summary["unrecoverable"], summary["orphans"]) == (3, 2, 1, 2)
    assert summary["checked"] == 6  # + the two artifacts of the active run recorded by the baseline
    assert _exists(s3, MLFLOW_BUCKET, f"{m['prefix']}{ghost}/artifacts/x.bin")  # orphans are never deleted


def test_mlflow_restore_copy_resolving_outside_restore_dir_is_not_used(mlflow_store, s3, tmp_path):
    """P7.8: a copy under ``restore_dir`` that resolves outside it (here a symlink to a file beside
    it) is never read or uploaded; the artifact is reported unrecoverable, saying why."""
    from greenlight.reconcile.config import load_config
    from greenlight.reconcile.run import reconcile

    m = mlflow_store
    restore = tmp_path / "restore"
    target = {"name": "models", "kind": "mlflow", "experiments": ["reconcile-test"], "restore_dir": str(restore)}
    config = load_config(_config(tmp_path, [target]))
    reconcile(config, s3, run_id="baseline", tracking_uri=m["uri"])
    key = f"{m['prefix']}{m['run_id']}/artifacts/reports/a.txt"
    outside = tmp_path / "outside.txt"
    outside.write_text("report a")  # same size as the lost artifact: only the location is wrong
    link = restore / m["exp_id"] / key[len(m["prefix"]) :]
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    s3.delete_object(Bucket=MLFLOW_BUCKET, Key=key)

    summary = reconcile(config, s3, run_id="repair", repair=True, tracking_uri=m["uri"])

    result = json.loads(Path(summary["report"]).read_text())["targets"][0]
    (entry,) = [e for e in result["entries"] if e["what"] == f"s3://{MLFLOW_BUCKET}/{key}"]
    assert entry["status"] == "unrecoverable" and entry["source"] is None
    assert "resolves outside restore_dir" in entry["action"]
    assert not _exists(s3, MLFLOW_BUCKET, key)


# ------------------------------------------------------------------------------------------- CLI
def cli(s3env, *args: str) -> tuple[int, dict, str]:
    """``python -m greenlight reconcile ...`` as an operator runs it: (exit code, JSON summary, stderr)."""
    code, summary, _stdout, stderr = run_cli(s3env, *args)
    return code, summary, stderr


def test_cli_exit_codes_summary_and_report(scenario, golden, s3env, s3, tmp_path):
    targets = [
        scenario.target(),
        {"name": "clean", "kind": "git_dvc", "repo": str(golden.path), "rev": golden.clean_rev},
    ]
    cfg = str(_config(tmp_path, targets))

    code, summary, stderr = cli(s3env, "reconcile", "--config", cfg, "--only", "clean")
    assert code == 0, stderr
    assert {k: summary[k] for k in ("checked", "missing", "repaired", "unrecoverable", "orphans")} == {
        "checked": 1,
        "missing": 0,
        "repaired": 0,
        "unrecoverable": 0,
        "orphans": 0,
    }

    code, summary, stderr = cli(s3env, "reconcile", "--config", cfg)
    assert code == 1, stderr
    assert (summary["missing"], summary["repaired"], summary["unrecoverable"]) == (5, 0, 1)
    report = json.loads(Path(summary["report"]).read_text())
    assert [t["target"] for t in report["targets"]] == ["datasets", "clean"]
    table = Path(summary["report_md"]).read_text()
    assert "| datasets | dvc | 7 | 5 | 0 | 1 | 0 |" in table
    assert "| clean | git_dvc | 1 | 0 | 0 | 0 | 0 |" in table
    assert "UNRECOVERABLE datasets:" in stderr and "data/table.csv" in stderr

    code, summary, _ = cli(s3env, "reconcile", "--config", cfg, "--repair", "--only", "datasets")
    assert code == 1  # table.csv is still gone
    assert (summary["missing"], summary["repaired"], summary["unrecoverable"]) == (5, 4, 1)


def test_cli_bad_input_exits_2_naming_the_key(s3env, tmp_path, golden):
    bad = _config(
        tmp_path, [{"name": "d", "kind": "dvc", "repo": str(golden.path), "fallback_remote": ["s3://x-y/z/"]}]
    )
    code, summary, _ = cli(s3env, "reconcile", "--config", str(bad))
    assert code == 2
    assert "targets[0] (d): unknown key 'fallback_remote' (did you mean 'fallback_remotes'?)" in summary["error"]

    good = _config(tmp_path, [{"name": "d", "kind": "git_dvc", "repo": str(golden.path)}], name="good.yaml")
    code, summary, _ = cli(s3env, "reconcile", "--config", str(good), "--only", "nope")
    assert code == 2 and "'nope' is not a configured target" in summary["error"]

    code, summary, _ = cli(s3env, "reconcile", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in summary["error"]


# ------------------------------------------------------------------------------------------- DAG
@pytest.mark.usefixtures("airflow_db")
def test_dag_repairs_and_fails_listing_unrecoverable(scenario, golden, s3, tmp_path, monkeypatch, area):
    from dagrun import run_dag

    report_uri = f"s3://{DVC_BUCKET}/_reports/{area}"
    targets = [
        scenario.target(),
        {"name": "clean", "kind": "git_dvc", "repo": str(golden.path), "rev": golden.clean_rev},
    ]
    monkeypatch.setenv("GREENLIGHT_RECONCILE_CONFIG", str(_config(tmp_path, targets, report_uri)))

    state, tis, xcoms, run_id = run_dag("artefact_reconciliation", {"repair": True})

    assert state == "failed"
    assert {k: v[0] for k, v in tis.items()} == {
        "targets": "success",
        "reconcile_target.0": "success",
        "reconcile_target.1": "success",
        "report": "failed",
        "check_run": "upstream_failed",  # the run fails on report alone
    }
    assert tis["report"][1] == 1  # unrecoverable: no retry
    assert _exists(s3, DVC_BUCKET, scenario.keys["img1"]) and _exists(s3, DVC_BUCKET, scenario.keys["dir"])
    assert not _exists(s3, DVC_BUCKET, scenario.keys["table"])
    from greenlight.storage.manifests import safe_name

    prefix = f"_reports/{area}{safe_name(run_id)}/"
    report = json.loads(s3.get_object(Bucket=DVC_BUCKET, Key=prefix + "report.json")["Body"].read())
    assert report["totals"]["repaired"] == 4 and report["totals"]["unrecoverable"] == 1
    assert (
        b"| datasets | dvc | 7 | 5 | 4 | 1 | 0 |"
        in s3.get_object(Bucket=DVC_BUCKET, Key=prefix + "report.md")["Body"].read()
    )

    state, tis, xcoms, _ = run_dag("artefact_reconciliation", {"only": ["clean"]})
    assert state == "success", tis
    summary = xcoms["report"] if isinstance(xcoms["report"], dict) else json.loads(xcoms["report"])
    assert summary["targets"] == {
        "clean": {"checked": 1, "missing": 0, "repaired": 0, "unrecoverable": 0, "outstanding": 0, "orphans": 0}
    }
