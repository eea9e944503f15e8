"""Real DVC and MLflow setups for the reconcile tests (tests/integration/test_reconcile.py and
tests/dags/test_reconcile_dag.py): a git repo with ``dvc init``/``dvc add``/``dvc repro``/``dvc push``
to the test S3 server, an MLflow SQLite store with S3 artifacts, and the ``golden``/``scenario``
fixtures (a test module takes them with ``golden = reconcilefixtures.golden``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from greenlight.storage.s3 import object_state

BIN = Path(sys.executable).parent
DVC_BUCKET = "dvc-greenlight-test"
BACKUP_BUCKET = "dvcbak-greenlight-test"
MLFLOW_BUCKET = "mlflow-greenlight-test"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "greenlight-test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "greenlight-test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV, **(env or {})}, timeout=300
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo)


def dvc(repo: Path, *args: str) -> str:
    return run([str(BIN / "dvc"), *args], repo, {"DVC_NO_ANALYTICS": "1"})


def md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


def add_remote(repo: Path, name: str, url: str, s3env, *, default: bool = False, local: bool = False) -> None:
    """``dvc remote add`` (``--local``: in .dvc/config.local, not committed) + endpoint and keys
    with ``dvc remote modify --local`` (never committed)."""
    flags = (["-d"] if default else []) + (["--local"] if local else [])
    dvc(repo, "remote", "add", *flags, "--force", name, url)
    dvc(repo, "remote", "modify", "--local", name, "endpointurl", s3env.endpoint_url)
    dvc(repo, "remote", "modify", "--local", name, "access_key_id", s3env.access_key)
    dvc(repo, "remote", "modify", "--local", name, "secret_access_key", s3env.secret_key)


@dataclass
class DvcRepo:
    """A committed DVC repo pushed to ``remote`` and ``backup``; files by workspace path."""

    path: Path
    remote: str  # s3://bucket/prefix/
    backup: str
    files: dict[str, bytes] = field(default_factory=dict)
    dir_md5: str = ""
    clean_rev: str = ""

    def key(self, data: bytes, prefix: str) -> str:
        h = md5(data)
        return f"{prefix}files/md5/{h[:2]}/{h[2:]}"

    def cache_file(self, h: str) -> Path:
        return self.path / ".dvc" / "cache" / "files" / "md5" / h[:2] / h[2:]


TRAIN = """import json, pathlib
params = __import__("yaml").safe_load(open("params.yaml"))
pathlib.Path("out").mkdir(exist_ok=True)
data = open("data/table.csv", "rb").read()
open("out/model.bin", "wb").write(data * 3 + str(params["lr"]).encode())
json.dump({"rows": data.count(b"\\n")}, open("metrics.json", "w"))
"""

DVC_YAML = """stages:
  train:
    cmd: python train.py
    deps:
    - data/table.csv
    - data/images
    - train.py
    params:
    - lr
    outs:
    - out/model.bin
    metrics:
    - metrics.json:
        cache: false
"""


def make_dvc_repo(root: Path, s3env, s3, prefix: str) -> DvcRepo:
    """git init + dvc init, ``dvc add`` of a directory, a ``dvc repro`` stage, ``dvc push`` to the main
    remote and to the backup remote, everything committed."""
    for bucket in (DVC_BUCKET, BACKUP_BUCKET):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    remote, backup = f"s3://{DVC_BUCKET}/{prefix}", f"s3://{BACKUP_BUCKET}/{prefix}"
    add_remote(repo, "storage", remote, s3env, default=True)
    add_remote(repo, "backup", backup, s3env)
    files = {f"data/images/img{i}.txt": f"image {i}\n".encode() * (i + 1) for i in range(4)}
    files["data/table.csv"] = b"a,b\n1,2\n3,4\n"
    for rel, data in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(data)
    (repo / "train.py").write_text(TRAIN)
    (repo / "params.yaml").write_text("lr: 0.1\nepochs: 3\n")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    dvc(repo, "add", "-q", "data/images", "data/table.csv")
    dvc(repo, "repro", "-q")
    dvc(repo, "push", "-q")
    dvc(repo, "push", "-q", "-r", "backup")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data and pipeline")
    files["out/model.bin"] = (repo / "out" / "model.bin").read_bytes()
    import yaml

    dir_md5 = yaml.safe_load((repo / "data" / "images.dvc").read_text())["outs"][0]["md5"]
    return DvcRepo(repo, remote, backup, files, dir_md5, git(repo, "rev-parse", "HEAD").strip())


def copy_prefix(s3, bucket: str, src: str, dst: str) -> int:
    """Server-side copy of every object under ``src`` to ``dst`` (a fresh remote for one test)."""
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src):
        for obj in page.get("Contents", ()):
            s3.copy_object(
                Bucket=bucket, Key=dst + obj["Key"][len(src) :], CopySource={"Bucket": bucket, "Key": obj["Key"]}
            )
            n += 1
    return n


def clone_cache(repo: DvcRepo, dest: Path) -> Path:
    shutil.copytree(repo.path / ".dvc" / "cache", dest)
    for p in dest.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    return dest


# ------------------------------------------------------------------ fixtures shared by test modules
@pytest.fixture(scope="module")
def golden(tmp_path_factory, s3env, s3):
    """One real DVC repo per module, pushed to a 'golden' remote and backup; tests copy them."""
    return make_dvc_repo(tmp_path_factory.mktemp("dvc"), s3env, s3, f"golden-{uuid.uuid4().hex[:8]}/")


def object_exists(s3, bucket, key) -> bool:
    """Whether the key exists; any error other than "not found" (auth, network) fails the test."""
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


def reconcile_config(tmp_path, targets, report_uri=None, name="reconcile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"report_uri": report_uri or str(tmp_path / "reports"), "targets": targets}))
    return path
