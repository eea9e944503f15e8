"""The CLI and the DAG run one promotion sequence (``greenlight.promotion.run``).

The same QA state is seeded into two areas: ``greenlight promote`` promotes one, ``artefact_promotion``
(``dag.test()``) the other. Their prefix manifests, gate records, run indexes and summaries must
agree field by field, once everything that names the area, the run or the time is set aside. A dry
run of each then writes nothing at all, in both paths (the same meaning of ``dry_run``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest
from dagrun import run_dag
from helpers import write_config

from greenlight.dev import demo_data
from greenlight.storage.manifests import safe_name

pytestmark = pytest.mark.usefixtures("airflow_db")

PREFIXES = {
    "corn_stress": (demo_data.CORN_STRESS_STORE, "corn_stress_zarr"),
    "deliveries_csv": (demo_data.DELIVERY_CSV_PREFIX, "deliveries_csv"),
}
SUMMARY_FIELDS = ("prefixes", "copied", "deleted", "unchanged", "objects_seen", "bytes_copied", "failed", "verified")
VOLATILE = {"run_id", "version_id", "last_modified"}  # and every "*_at" time stamp and "*_s" duration


def _config(tmp_path, qa: str, prod: str, area: str):
    return write_config(
        tmp_path / f"promotion-{area.strip('/')}.yaml",
        {
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
            "prefixes": [
                {"name": name, "source": f"s3://{qa}/{area}{rel}", "contract": contract}
                for name, (rel, contract) in PREFIXES.items()
            ],
        },
    )


def _seed(s3, qa: str, area: str) -> None:
    today = dt.date.today()
    wanted = {
        k: v
        for k, v in demo_data.build_qa_artefacts(today).items()
        if any(k.startswith(r) for r, _ in PREFIXES.values())
    }
    demo_data.seed_bucket(s3, qa, wanted, prefix=area)


def _names(area: str, run_id: str) -> list[tuple[str, str]]:
    """What differs by construction between the two runs, as it appears in keys and documents."""
    return [(run_id, "<run>"), (safe_name(run_id), "<run>"), (area.rstrip("/"), "<area>")]


def _normal(value, names: list[tuple[str, str]]):
    """The document with the area, the run id and volatile fields taken out."""
    if isinstance(value, dict):
        return {
            _normal(k, names): _normal(v, names)
            for k, v in value.items()
            if k not in VOLATILE and not k.endswith(("_at", "_s"))
        }
    if isinstance(value, list):
        return [_normal(v, names) for v in value]
    if isinstance(value, str):
        for needle, replacement in names:
            value = value.replace(needle, replacement)
        # A file name that is not plain text carries a hash of the whole name (which names the area).
        return re.sub(r"~[0-9a-f]{10}\b", "~<hash>", value)
    return value


def _docs(s3, prod: str, area: str) -> dict[str, dict]:
    """Every manifest the run wrote under ``_greenlight/<area>``, keyed by path after the run folder."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=prod, Prefix=f"_greenlight/{area}"):
        for obj in page.get("Contents", ()):
            rel = obj["Key"][len(f"_greenlight/{area}") :]
            parts = rel.split("/")
            if parts[0] == "leases":
                continue  # who held which prod prefix when: coordination state, not a record of the run
            if parts[0] == "promotions":
                rel = "/".join(["promotions", "<run>", *parts[2:]])
            doc = json.loads(s3.get_object(Bucket=prod, Key=obj["Key"])["Body"].read())
            if isinstance(doc.get("destination"), str):
                # File names encode the prod prefix (which names the area): key by the prefix instead.
                rel = f"{rel.rsplit('/', 1)[0]}/<{doc['destination'].replace(area, '<area>')}>"
            out[rel] = doc
    return out


def _cli(s3env, config, run_id: str, *extra: str) -> dict:
    env = {**os.environ, **s3env.env()}
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", "promote", "--config", str(config), "--run-id", run_id, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_and_dag_write_the_same_manifests_gates_and_summary(s3env, s3, buckets, tmp_path, monkeypatch):
    qa, prod = buckets
    stamp = f"{dt.datetime.now(dt.UTC):%H%M%S%f}"
    cli_area, dag_area = f"seq-cli-{stamp}/", f"seq-dag-{stamp}/"
    for area in (cli_area, dag_area):
        _seed(s3, qa, area)

    # Dry runs first: both paths plan and gate, and neither writes a manifest or gate record.
    cli_dry = _cli(s3env, _config(tmp_path, qa, prod, cli_area), "cli-dry", "--dry-run")
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(_config(tmp_path, qa, prod, dag_area)))
    state, tis, xcoms, _ = run_dag("artefact_promotion", {"dry_run": True})
    assert state == "success", tis
    assert _docs(s3, prod, cli_area) == {} and _docs(s3, prod, dag_area) == {}
    dag_dry = xcoms["summary"]
    dag_dry = json.loads(dag_dry) if isinstance(dag_dry, str) else dag_dry
    assert {k: cli_dry[k] for k in SUMMARY_FIELDS} == {k: dag_dry[k] for k in SUMMARY_FIELDS}
    assert cli_dry["objects_seen"] > 0 and cli_dry["dry_run"] is dag_dry["dry_run"] is True

    # The real runs.
    cli_run = "cli__sequence"
    cli_summary = _cli(s3env, _config(tmp_path, qa, prod, cli_area), cli_run)
    state, tis, xcoms, dag_run = run_dag("artefact_promotion", {"dry_run": False})
    assert state == "success", tis
    dag_summary = xcoms["summary"]
    dag_summary = json.loads(dag_summary) if isinstance(dag_summary, str) else dag_summary

    assert {k: cli_summary[k] for k in SUMMARY_FIELDS} == {k: dag_summary[k] for k in SUMMARY_FIELDS}
    assert cli_summary["verified"] == len(PREFIXES) and cli_summary["copied"] > 0

    cli_docs = _normal(_docs(s3, prod, cli_area), _names(cli_area, cli_run))
    dag_docs = _normal(_docs(s3, prod, dag_area), _names(dag_area, dag_run))
    gate_files = [k for k in cli_docs if "/gates/" in k]
    assert len(gate_files) == len(PREFIXES), sorted(cli_docs)
    assert sorted(cli_docs) == sorted(dag_docs)
    differing = {}
    for rel in sorted(cli_docs):
        cli_doc, dag_doc = cli_docs[rel], dag_docs[rel]
        if "/gates/" in rel:
            # The DAG validates through the GX provider's operator, the CLI with GX directly: the
            # same suite and the same verdict per expectation, only the runner's name differs.
            for doc in (cli_doc, dag_doc):
                (doc.get("gx") or {}).pop("operator", None)
        if cli_doc != dag_doc:
            keys = sorted(set(cli_doc) | set(dag_doc))
            differing[rel] = {k: (cli_doc.get(k), dag_doc.get(k)) for k in keys if cli_doc.get(k) != dag_doc.get(k)}
    assert differing == {}
