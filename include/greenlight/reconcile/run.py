"""Reconciliation of DVC ↔ S3, MLflow ↔ S3 and git ↔ DVC, with repair: the runbook's
"Sync Recovery" sections as one check that the DAG ``artefact_reconciliation`` and
``python -m greenlight reconcile`` share.

Per target (``include/config/reconcile.yaml``):

- ``kind: dvc`` — :mod:`greenlight.reconcile.dvc`: every object the repo at a ref needs is in the
  remote; repair from the local cache, else a fallback remote.
- ``kind: mlflow`` — :mod:`greenlight.reconcile.mlflow`: model versions, logged models and run
  artifacts are in the artifact store; orphans; repair from a local directory.
- ``kind: git_dvc`` — :mod:`greenlight.reconcile.gitdvc`: ``dvc.lock`` agrees with ``dvc.yaml`` and
  the committed files; a human repairs (``dvc repro``).

Each target's full result, its repair manifest and the run's report (JSON and a Markdown table) are
written under ``report_uri/<run_id>/``. Counts: ``missing`` = found missing (or, for git_dvc,
stale); ``repaired``; ``unrecoverable`` = no configured source can repair it, a human must act;
``outstanding`` = missing, repairable, not repaired (repair off, dry run or a failed repair);
``orphans`` = present but referenced by nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

from greenlight.reconcile.common import INLINE_ENTRIES, RECOVERABLE, UNRECOVERABLE, ReconcileError, TargetResult
from greenlight.reconcile.config import ReconcileConfig, Target
from greenlight.reconcile.dvc import DvcCheck
from greenlight.reconcile.gitdvc import check_git_dvc
from greenlight.reconcile.mlflow import MlflowCheck
from greenlight.redact import redact_text
from greenlight.storage.manifests import ManifestStore, safe_name, utcnow

log = logging.getLogger("greenlight.reconcile.run")

COUNT_KEYS = ("checked", "missing", "repaired", "unrecoverable", "outstanding", "orphans")

__all__ = [
    "ReconcileError",
    "build_report",
    "check_target",
    "problems",
    "reconcile",
    "report_store",
    "write_report",
]


def report_store(config: ReconcileConfig, client) -> ManifestStore:
    return ManifestStore(config.report_uri, client)


def check_target(
    config: ReconcileConfig,
    target: Target,
    client,
    *,
    run_id: str,
    repair: bool,
    dry_run: bool,
    tracking_uri: str | None = None,
    lister=None,
    store: ManifestStore | None = None,
) -> TargetResult:
    """Check (and with ``repair`` fix) one target; writes its full result and repair manifest."""
    store = store or report_store(config, client)
    log.info("reconcile %s (%s): repair=%s dry_run=%s", target.name, target.kind, repair, dry_run)
    if target.kind == "dvc":
        check = DvcCheck(target, client, lister=lister, workers=config.workers)
        if repair and not dry_run:
            _pending_manifest(store, run_id, target)
        result = check.run(repair=repair, dry_run=dry_run)
    elif target.kind == "mlflow":
        if repair and not dry_run:
            _pending_manifest(store, run_id, target)
        result = MlflowCheck(target, client, tracking_uri=tracking_uri, state_store=store, workers=config.workers).run(
            repair=repair, dry_run=dry_run
        )
    else:
        result = check_git_dvc(target)
    base = f"{safe_name(run_id)}"
    if target.kind != "git_dvc" and (repair or dry_run):
        result.repair_manifest = store.write(
            f"{base}/repairs/{target.name}.json",
            {
                "run_id": run_id,
                "target": target.name,
                "status": "dry_run" if dry_run else "complete",
                "written": utcnow(),
                "repairs": [
                    {k: e.get(k) for k in ("what", "status", "route", "source", "action", "path", "md5", "size")}
                    for e in result.entries
                ],
            },
        )
    doc = result.as_dict()
    doc["config"] = target.as_dict()
    result.details["result_uri"] = store.write(f"{base}/targets/{target.name}.json", doc)
    for line in target_lines(result):
        (log.warning if line.startswith(("MISSING", "UNRECOVERABLE")) else log.info)("%s", line)
    return result


def _pending_manifest(store: ManifestStore, run_id: str, target: Target) -> None:
    """Before the first change: a record that repairs of this target started (status pending)."""
    store.write(
        f"{safe_name(run_id)}/repairs/{target.name}.json",
        {"run_id": run_id, "target": target.name, "status": "pending", "written": utcnow(), "repairs": []},
    )


def target_lines(result: TargetResult) -> list[str]:
    """One log line per finding (what an operator greps for)."""
    lines = []
    for e in result.entries:
        where = e.get("path") or e.get("stage") or ""
        by = e.get("tracked_by") or e.get("needed_by") or e.get("file") or ""
        if isinstance(by, list):
            by = ", ".join(by)
        label = "UNRECOVERABLE" if e["status"] == UNRECOVERABLE else e["status"].upper()
        if e["status"] == RECOVERABLE:
            label = "MISSING"
        reasons = "; ".join(e.get("reasons") or [])
        lines.append(f"{label} {result.target}: {e['what']} [{where}] ({by}) {reasons} -> {e['action']}".strip())
    for o in result.orphans:
        lines.append(f"ORPHAN {result.target}: {o['what']} ({o['objects']} objects): {o['reason']}")
    counts = result.counts()
    lines.append(f"reconciled {result.target}: " + " ".join(f"{k}={counts[k]}" for k in COUNT_KEYS))
    return lines


def problems(targets: list[dict[str, Any]], *, include_outstanding: bool) -> list[str]:
    """Human-readable list of what failed the run: unrecoverable (and outstanding) entries."""
    out = []
    for t in targets:
        for e in t.get("entries", ()):
            bad = e["status"] == UNRECOVERABLE or (include_outstanding and e["status"] not in ("repaired",))
            if not bad:
                continue
            detail = e.get("path") or "; ".join(e.get("reasons") or [])
            out.append(f"{t['target']}: {e['status']} {e['what']}" + (f" ({detail})" if detail else ""))
        hidden = t.get("unrecoverable", 0) - sum(1 for e in t.get("entries", ()) if e["status"] == UNRECOVERABLE)
        if hidden > 0:
            out.append(f"{t['target']}: +{hidden} more unrecoverable (see its result file)")
    return out


def build_report(
    targets: list[dict[str, Any]], *, run_id: str, repair: bool, dry_run: bool, started: str | None = None
) -> dict[str, Any]:
    totals = {k: sum(int(t.get(k, 0)) for t in targets) for k in COUNT_KEYS}
    return {
        "run_id": run_id,
        "started": started,
        "finished": utcnow(),
        "repair": repair,
        "dry_run": dry_run,
        "totals": totals,
        "targets": targets,
    }


def markdown(report: dict[str, Any], *, max_rows: int = 50) -> str:
    """The report as a Markdown table plus the findings of each target."""
    mode = "dry run" if report["dry_run"] else ("check + repair" if report["repair"] else "check only")
    lines = [
        f"# Reconciliation {report['run_id']} ({mode})",
        "",
        "| target | kind | checked | missing | repaired | unrecoverable | orphans |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for t in report["targets"]:
        lines.append(
            f"| {t['target']} | {t['kind']} | {t['checked']} | {t['missing']} | {t['repaired']} | "
            f"{t['unrecoverable']} | {t['orphans']} |"
        )
    tot = report["totals"]
    lines.append(
        f"| **total** | | {tot['checked']} | {tot['missing']} | {tot['repaired']} | {tot['unrecoverable']} | "
        f"{tot['orphans']} |"
    )
    for t in report["targets"]:
        if not t.get("entries") and not t.get("orphan_entries") and not t.get("notes"):
            continue
        lines += ["", f"## {t['target']}", ""]
        if t.get("entries"):
            lines += ["| status | what | path / stage | needed by | action |", "|---|---|---|---|---|"]
            for e in t["entries"][:max_rows]:
                by = e.get("tracked_by") or e.get("needed_by") or e.get("file") or ""
                by = ", ".join(by) if isinstance(by, list) else by
                where = e.get("path") or "; ".join(e.get("reasons") or [])
                lines.append(f"| {e['status']} | `{e['what']}` | {_cell(where)} | {_cell(by)} | {_cell(e['action'])} |")
            if len(t["entries"]) > max_rows or t.get("truncated"):
                lines.append(f"| … | {t['missing'] - min(len(t['entries']), max_rows)} more in the result file | | | |")
        if t.get("orphan_entries"):
            lines += ["", "| orphan | objects | bytes | reason |", "|---|---:|---:|---|"]
            for o in t["orphan_entries"][:max_rows]:
                lines.append(f"| `{o['what']}` | {o['objects']} | {o['bytes']} | {_cell(o['reason'])} |")
        for note in t.get("notes", [])[:max_rows]:
            lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_report(store: ManifestStore, report: dict[str, Any]) -> dict[str, str]:
    """Write ``report.json`` and ``report.md`` next to the run's target results and repair manifests."""
    base = safe_name(report["run_id"])

    text = redact_text(markdown(report))
    uris = {"report": store.uri(f"{base}/report.json"), "report_md": store.uri(f"{base}/report.md")}
    report = {**report, **uris}
    store.write(f"{base}/report.json", report)
    _write_text(store, f"{base}/report.md", text)
    return {**uris, "markdown": text}


def _write_text(store: ManifestStore, relpath: str, text: str) -> None:
    body = redact_text(text).encode()
    if store.s3 is not None:
        store.client.put_object(
            Bucket=store.s3.bucket, Key=store.s3.prefix + relpath, Body=body, ContentType="text/markdown"
        )
        return
    target = store._local_path(relpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    os.replace(tmp, target)


def reconcile(
    config: ReconcileConfig,
    client,
    *,
    run_id: str,
    repair: bool = False,
    dry_run: bool = False,
    tracking_uri: str | None = None,
    lister=None,
) -> dict[str, Any]:
    """Check every configured target, repair when asked, write the report; returns the summary
    (counts, where the report is, the Markdown table, the problem list)."""
    started = utcnow()
    clock = time.monotonic()
    store = report_store(config, client)
    rows = []
    for target in config.targets:
        result = check_target(
            config,
            target,
            client,
            run_id=run_id,
            repair=repair,
            dry_run=dry_run,
            tracking_uri=tracking_uri,
            lister=lister,
            store=store,
        )
        rows.append(result.as_dict(inline=INLINE_ENTRIES))
    report = build_report(rows, run_id=run_id, repair=repair, dry_run=dry_run, started=started)
    written = write_report(store, report)
    totals = report["totals"]
    return {
        **totals,
        "run_id": run_id,
        "repair": repair,
        "dry_run": dry_run,
        "report": written["report"],
        "report_md": written["report_md"],
        "markdown": written["markdown"],
        "targets": {r["target"]: {k: r[k] for k in COUNT_KEYS} for r in rows},
        "problems": problems(rows, include_outstanding=True),
        "duration_s": round(time.monotonic() - clock, 3),
    }
