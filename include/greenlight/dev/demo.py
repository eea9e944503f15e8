"""``make demo`` / ``make airflow``: greenlight on embedded defaults, no Docker needed.

``python -m greenlight.dev.demo run``      seed a demo QA bucket and run ``artefact_promotion`` with
                                       ``airflow dags test``, then print what was promoted.
``python -m greenlight.dev.demo airflow``  the same stack plus ``airflow standalone`` (web UI on
                                       localhost); Ctrl-C stops everything it started.
Running either twice is safe: state lives under ``.local/`` and the promotion converges.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from greenlight.dagsupport.api import AirflowApi
from greenlight.dev import airflowstack, devstack
from greenlight.dev.datasets_demo import datasets_step
from greenlight.dev.features_demo import run_demo
from greenlight.dev.refresh_demo import run_refresh_demo
from greenlight.promotion.config import load_config
from greenlight.promotion.rollback import rollback
from greenlight.redact import redact_argv, redact_text
from greenlight.storage.manifests import ManifestStore, read_manifest_uri
from greenlight.storage.s3 import make_client

QA_BUCKET = "qa-greenlight-demo"
PROD_BUCKET = "prod-greenlight-demo"
CONFIG = devstack.ROOT / "include" / "config" / "promotion.yaml"
log = logging.getLogger("greenlight.dev.demo")


def say(text: str = "") -> None:
    print(text, flush=True)


QA_EXPERIMENT = "commodity_hindcast_qa"
SIGNOFF_MARKER = "deliveries/csv/_QA_SIGNED_OFF"
CONSUMER = "commodity_hindcast_prod"


def mlflow_uri(workdir: Path | None = None) -> str:
    """The demo's MLflow store (SQLite) under ``workdir`` (default ``.local/demo``)."""
    return f"sqlite:///{(workdir or devstack.LOCAL / 'demo') / 'mlflow.db'}"


def seed(client, as_of: dt.date, variant: str = "clean", *, tracking_uri: str | None = None) -> dict[str, int]:
    """QA bucket content for ``as_of``, the QA sign-off marker, and a FINISHED QA run in MLflow."""
    # local: demo_data imports pandas and pyarrow (~1.2 s); `demo airflow` and the other steps do not need it
    from greenlight.dev.demo_data import DEMO_PREFIXES, build_qa_artefacts, seed_bucket

    devstack.ensure_buckets(client, [QA_BUCKET, PROD_BUCKET], versioned=True)
    artefacts = build_qa_artefacts(as_of, variant=variant)
    counts = seed_bucket(client, QA_BUCKET, artefacts, delete_extra_under=list(DEMO_PREFIXES))
    # QA signs off after the data is written (the marker must be newer than every object).
    client.put_object(
        Bucket=QA_BUCKET, Key=SIGNOFF_MARKER, Body=f"signed off as_of={as_of}\n".encode(), ContentType="text/plain"
    )
    record_qa_run(as_of, tracking_uri)
    return counts


def record_qa_run(as_of: dt.date, tracking_uri: str | None = None) -> None:
    """One finished QA hindcast run per as_of date in a local MLflow store (SQLite by default)."""
    from mlflow.tracking import MlflowClient  # local: mlflow costs ~3 s to import; only this step needs it

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    client = MlflowClient(tracking_uri=tracking_uri or mlflow_uri())
    experiment = client.get_experiment_by_name(QA_EXPERIMENT)
    exp_id = experiment.experiment_id if experiment else client.create_experiment(QA_EXPERIMENT)
    name = f"qa-hindcast-{as_of}"
    if client.search_runs([exp_id], filter_string=f"attributes.run_name = '{name}'"):
        return
    run = client.create_run(exp_id, run_name=name, tags={"as_of": str(as_of)})
    client.log_metric(run.info.run_id, "rmse_corn", 7.9)
    client.set_terminated(run.info.run_id, "FINISHED")


def latest_run_index(client) -> dict | None:
    """The newest promotion run index under the configured manifest location."""
    config = load_config(CONFIG)
    root = config.manifest_uri
    newest = None
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=root.bucket, Prefix=root.prefix + "promotions/"
    ):
        for obj in page.get("Contents", ()):
            if obj["Key"].endswith("/index.json") and (newest is None or obj["LastModified"] > newest["LastModified"]):
                newest = obj
    if newest is None:
        return None
    doc = ManifestStore(root, client).read(newest["Key"][len(root.prefix) :])
    doc["location"] = f"s3://{root.bucket}/{newest['Key']}"
    return doc


def print_run(index: dict) -> None:
    rows = index.get("prefixes", [])
    width = max((len(r["prefix"]) for r in rows), default=10)
    say(f"{'prefix':<{width}}  {'copied':>6}  {'deleted':>7}  {'unchanged':>9}  {'bytes':>9}")
    for r in rows:
        say(
            f"{r['prefix']:<{width}}  {r.get('copied', 0):>6}  {r.get('deleted', 0):>7}  "
            f"{r.get('unchanged', 0):>9}  {r.get('bytes_copied', 0):>9}"
        )
    total = {k: sum(r.get(k, 0) or 0 for r in rows) for k in ("copied", "deleted", "unchanged", "bytes_copied")}
    say(
        f"promotion_done run_id={index['run_id']} copied={total['copied']} deleted={total['deleted']} "
        f"unchanged={total['unchanged']} bytes_copied={total['bytes_copied']}"
    )
    say(f"run manifest: {index['location']}")


def demo_env(s3) -> dict[str, str]:
    return devstack.airflow_env(
        devstack.LOCAL / "airflow",
        s3,
        extra={
            "GREENLIGHT_PROMOTION_CONFIG": str(CONFIG),
            "MLFLOW_TRACKING_URI": mlflow_uri(),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        },
    )


def run_dag(env: dict[str, str], dag_id: str, conf: dict, log_path: Path, *, expect_failure: bool = False) -> bool:
    """``airflow dags test`` with its (long) log in a file; returns True on success."""
    started = time.monotonic()
    proc = devstack.airflow(env, "dags", "test", dag_id, "--conf", json.dumps(conf), check=False, timeout=1800)
    log_path.write_text(proc.stdout + proc.stderr)
    ok = proc.returncode == 0 and "state=failed" not in proc.stdout and "DagRunState.FAILED" not in proc.stdout
    say(
        f"  airflow dags test {dag_id}: {'success' if ok else ('failed, as expected' if expect_failure else 'FAILED')} in {time.monotonic() - started:.0f}s (log: {log_path})"
    )
    if not ok and not expect_failure:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        say(tail)
    return ok


def prod_versions(client) -> list[tuple[str, str]]:
    """(key, version id) of every current prod object: equal lists mean prod is byte-identical."""
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=PROD_BUCKET):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", ()) if v["IsLatest"]]
        out += [(m["Key"], "delete-marker") for m in page.get("DeleteMarkers", ()) if m["IsLatest"]]
    return sorted(kv for kv in out if not kv[0].startswith("_greenlight/"))


def read_json(client, uri: str) -> dict:
    return read_manifest_uri(uri, client)


def show_rollback(client, index: dict) -> bool:
    """Roll back step 2's promotion (dry run first, then for real) and show prod restored."""
    config = load_config(CONFIG)
    plan = rollback(index["location"], client, config=config, dry_run=True)
    if not plan["plan_lines"]:
        say("5. prod did not change in step 2: nothing to roll back")
        return True
    restores = sum(1 for line in plan["plan_lines"] if line.startswith("restore"))
    say(
        f"5. rolling back step 2's promotion from its manifest: {restores} object(s) to restore to their "
        f"recorded version, {len(plan['plan_lines']) - restores} to remove (they did not exist before)"
    )
    say(
        f"   (the CLI's equivalent, with the demo's S3 env vars set: greenlight rollback --manifest {index['location']})"
    )
    done = rollback(index["location"], client, config=config)
    say(
        f"   prod restored and verified object by object: restored={done['restored']} deleted={done['deleted']} "
        f"unchanged={done['unchanged']}; current pointers restored: {len(done.get('pointers_restored', []))}; "
        f"rollback manifests: {len(done.get('rollback_manifests', []))} (a rollback can itself be rolled back)"
    )
    return True


def features_step() -> int:
    """PostgreSQL -> Feast (Redis) on embedded servers: materialize the last hour, check parity."""
    say("6. feature materialization: PostgreSQL (embedded) -> Feast -> Redis, then the parity check")
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints coloured progress lines to stdout
        summary = run_demo(devstack.LOCAL / "demo")
    for row in summary["materialized"]:
        say(f"   materialized {json.dumps(row, default=str)}")
    for row in summary["parity"]:
        say(f"   parity {row['view']}: {row['checked']} entities checked, {len(row['mismatches'])} mismatches")
    say(f"   window {summary['window']}; {summary['duration_s']}s")
    return 0 if all(not row["mismatches"] for row in summary["parity"]) else 1


DVC_BUCKET = "dvc-greenlight-demo"
DVC_BACKUP_BUCKET = "dvc-greenlight-demo-backup"


def run_command(cmd: list[str], cwd: Path) -> None:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "greenlight-demo",
        "GIT_AUTHOR_EMAIL": "demo@example.invalid",
        "GIT_COMMITTER_NAME": "greenlight-demo",
        "GIT_COMMITTER_EMAIL": "demo@example.invalid",
    }
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:  # the command line may hold the S3 secret (dvc remote modify): redacted
        raise RuntimeError(f"{redact_argv(cmd)} failed: {redact_text(proc.stderr[-1000:])}")


def build_reconcile_repo(s3, client, work: Path) -> dict[str, Any]:
    """A DVC repo under ``work/repo`` pushed to the demo S3 (and a backup remote), then two objects
    lost from the remote (one is still in the local cache, the other only in the backup).

    Returns the repo path, the two remotes and the reconcile targets that check it (``yields``: DVC
    against its remote with the backup as fallback; ``pipeline``: git against dvc.lock). Remote
    credentials go to ``.dvc/config.local`` (never committed).
    """
    shutil.rmtree(work, ignore_errors=True)
    repo = work / "repo"
    repo.mkdir(parents=True)
    devstack.ensure_buckets(client, [DVC_BUCKET, DVC_BACKUP_BUCKET], versioned=False)
    dvc = str(Path(sys.executable).parent / "dvc")
    run_command(["git", "init", "-q", "-b", "main"], repo)
    run_command([dvc, "init", "-q"], repo)
    prefix = f"store-{time.strftime('%Y%m%d%H%M%S')}/"
    remote, backup = f"s3://{DVC_BUCKET}/{prefix}", f"s3://{DVC_BACKUP_BUCKET}/{prefix}"
    for name, url, default in (("storage", remote, True), ("backup", backup, False)):
        run_command([dvc, "remote", "add", *(["-d"] if default else []), name, url], repo)
        for key, value in (
            ("endpointurl", s3.endpoint_url),
            ("access_key_id", s3.access_key),
            ("secret_access_key", s3.secret_key),
        ):
            run_command([dvc, "remote", "modify", "--local", name, key, value], repo)  # credentials never committed
    files = {f"data/yields/part-{i}.csv": f"county,yield\n{i},{170 + i}.5\n".encode() for i in range(6)}
    for rel, data in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(data)
    run_command([dvc, "add", "-q", "data/yields"], repo)
    run_command([dvc, "push", "-q"], repo)
    run_command([dvc, "push", "-q", "-r", "backup"], repo)
    run_command(["git", "add", "-A"], repo)
    run_command(["git", "commit", "-qm", "yields"], repo)
    lost = [hashlib.md5(files[f"data/yields/part-{i}.csv"]).hexdigest() for i in (1, 4)]
    for h in lost:
        client.delete_object(Bucket=DVC_BUCKET, Key=f"{prefix}files/md5/{h[:2]}/{h[2:]}")
    (repo / ".dvc" / "cache" / "files" / "md5" / lost[1][:2] / lost[1][2:]).unlink()  # only the backup has it
    targets = [
        {"name": "yields", "kind": "dvc", "repo": str(repo), "rev": "main", "fallback_remotes": [backup]},
        {"name": "pipeline", "kind": "git_dvc", "repo": str(repo), "rev": "main"},
    ]
    return {"repo": repo, "remote": remote, "backup": backup, "targets": targets}


def write_reconcile_config(path: Path, targets: list[dict[str, Any]]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {"report_uri": f"s3://{PROD_BUCKET}/_greenlight/reconcile/", "targets": targets}, sort_keys=False
        )
    )
    return path


def reconcile_step(s3, client) -> int:
    """A DVC repo whose remote lost two objects (:func:`build_reconcile_repo`), then
    ``python -m greenlight reconcile --repair``: one comes back from the local cache, one from the
    backup remote."""
    say("7. reconciliation: a DVC repo whose remote lost two objects; greenlight finds and repairs them")
    work = devstack.LOCAL / "demo" / "reconcile"
    built = build_reconcile_repo(s3, client, work)
    config = write_reconcile_config(work / "reconcile.yaml", built["targets"])
    env = {**os.environ, **s3.env()}
    for label, extra in (("check", []), ("repair", ["--repair"])):
        proc = subprocess.run(
            [sys.executable, "-m", "greenlight", "reconcile", "--config", str(config), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        say(
            f"   {label}: exit {proc.returncode}; checked={summary.get('checked')} missing={summary.get('missing')} "
            f"repaired={summary.get('repaired')} unrecoverable={summary.get('unrecoverable')} report={summary.get('report')}"
        )
    return 0 if proc.returncode == 0 and summary.get("repaired") == 2 else 1


def cmd_run(args: argparse.Namespace) -> int:
    say("greenlight demo: SeaweedFS S3 + Airflow (SQLite + API server) on 127.0.0.1, state under .local/")
    s3 = devstack.start_s3("demo")
    api_server = None
    try:
        client = make_client(endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key=s3.secret_key)
        as_of = dt.date.today()
        counts = seed(client, as_of)
        say(
            f"1. seeded s3://{QA_BUCKET}/ for as_of={as_of}: {counts['uploaded']} uploaded, "
            f"{counts['unchanged']} unchanged, {counts['deleted']} removed; QA signed off; "
            f"QA run finished in MLflow ({mlflow_uri()})"
        )
        env = demo_env(s3)
        devstack.airflow(env, "db", "migrate")
        # The halt path pauses consumer DAGs through the REST API, as in a deployment.
        api_server = devstack.ApiServer(env, log_path=devstack.LOCAL / "demo" / "api-server.log").start()
        env["AIRFLOW_CONN_AIRFLOW_API"] = api_server.connection()
        api = AirflowApi(api_server.url, "admin", api_server.password)

        say("2. promoting QA -> prod with the artefact_promotion DAG (contract gates, then copy)")
        if not run_dag(env, "artefact_promotion", {"dry_run": False}, devstack.LOCAL / "demo" / "promotion.log"):
            return 1
        index = latest_run_index(client)
        if index is None:
            say("no run manifest found")
            return 1
        print_run(index)
        api.set_paused(CONSUMER, False)  # the prod consumer is live
        say(f"   prod consumer {CONSUMER}: running (not paused)")

        say("3. QA delivers a CSV + parquet forecast with a renamed column (forecast_yield -> yield_forecast)")
        seed(client, as_of, variant="renamed_column")
        before = prod_versions(client)
        ok = run_dag(env, "artefact_promotion", {}, devstack.LOCAL / "demo" / "halt.log", expect_failure=True)
        halt = json.loads(api.get_variable("greenlight_promotion_halt") or "{}")
        after = prod_versions(client)
        if ok or not halt.get("halted"):
            say("   expected the contract gate to halt this run, but it did not")
            return 1
        say("   halted by the contract gates; reasons:")
        for reason in halt["reasons"][:6]:
            say(f"   - {reason}")
        say(
            f"   paused consumer DAGs: {', '.join(halt['paused_by_greenlight']) or 'none'} (halt record: {halt['manifest']})"
        )
        say(
            f"   prod unchanged: {len(after)} objects, same version ids before and after: {after == before}; "
            f"{CONSUMER} paused: {api.get_dag(CONSUMER)['is_paused']}"
        )
        if after != before:
            return 1

        say("4. QA fixes the delivery; rerun with resume_consumers=true")
        seed(client, as_of)
        if not run_dag(env, "artefact_promotion", {"resume_consumers": True}, devstack.LOCAL / "demo" / "resume.log"):
            return 1
        say(f"   {CONSUMER} paused: {api.get_dag(CONSUMER)['is_paused']} (resumed by greenlight)")

        show_rollback(client, index)
        if features_step() != 0:
            return 1
        if reconcile_step(s3, client) != 0:
            return 1
        say("8. prod -> staging refresh: two PostgreSQL servers one migration apart, an image bucket pair")
        code, _ = run_refresh_demo(devstack.LOCAL / "demo", s3.env(), client, say=say)
        if code != 0:
            return 1
        return datasets_step(env, client, api, step=9)
    finally:
        if api_server is not None:
            api_server.stop()
        s3.stop()


def shown_path(path) -> str:
    """``path`` relative to the project folder when it is inside it (as the README's commands run)."""
    try:
        return str(Path(path).relative_to(devstack.ROOT))
    except ValueError:
        return str(path)


def cmd_airflow(args: argparse.Namespace) -> int:
    """Start everything each DAG needs (:mod:`greenlight.dev.airflowstack`) and ``airflow standalone``."""
    say("greenlight local Airflow: S3, PostgreSQL, Redis, MLflow store, a DVC repo and airflow standalone on 127.0.0.1")
    stack = None
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        stack = airflowstack.start(
            devstack.LOCAL / "demo", airflow_home=devstack.LOCAL / "airflow", port=args.port, progress=say
        )
        for line in stack.describe():
            say(line)
        say(f"S3 credentials: {devstack.LOCAL / 'credentials.env'}")
        say(
            f"The CLI against this stack (another shell, project folder): set -a; . {shown_path(stack.cli_env_file)}; set +a"
        )
        say("Every greenlight DAG runs here: the scheduler starts the latest interval of each scheduled one.")
        say("Ctrl-C stops everything.")
        while stack.standalone.proc and stack.standalone.proc.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        say("\nstopping ...")
        return 0
    finally:
        if stack is not None:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m greenlight.dev.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="seed QA and run the promotion DAG (default)")
    af = sub.add_parser("airflow", help="local Airflow with the web UI")
    af.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = {"airflow": cmd_airflow}.get(args.command, cmd_run)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
