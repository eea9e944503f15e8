"""The ``make demo`` refresh step (``run_refresh_demo``) on its own embedded servers and the test S3."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from helpers import rel_listing

from greenlight.dev.refresh_demo import PROD_IMAGES, STAGING_IMAGES, run_refresh_demo


def test_refresh_demo_syncs_every_table_migrates_and_is_healthy(s3env, s3):
    # Not tmp_path: the PostgreSQL data dirs are owned by the server user and must outlive any
    # cleanup of pytest's own temp folders by a concurrent pytest session.
    workdir = Path(tempfile.mkdtemp(prefix="greenlight-refresh-demo-"))
    said: list[str] = []
    try:
        code, summary = run_refresh_demo(workdir, s3env.env(), s3, say=said.append)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    assert code == 0, "\n".join(said)
    statuses = {t["table"]: t["status"] for t in summary["tables"]}
    assert statuses == {
        "public.admin_config": "synced",  # numeric -> jsonb
        "public.alembic_version": "skipped",  # staging keeps its own version
        "public.authors": "synced",
        "public.book_images": "synced",
        "public.books": "synced",
        "public.eval_runbook_jobs": "skipped",  # only in staging
        "public.eval_runbooks": "synced",  # text[] -> jsonb
        "public.users": "synced",
    }
    assert summary["migrations"]["version_after"] == "c3_author_tier"
    assert summary["versions"]["relation"] == "staging ahead of prod (expected)"
    assert summary["health"]["sql"][0]["ok"] is True
    assert rel_listing(s3, STAGING_IMAGES, "images/") == rel_listing(s3, PROD_IMAGES, "images/")
    assert any("public.books" in line and "153" in line for line in said)
