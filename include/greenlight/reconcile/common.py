"""Pieces every reconciliation check shares: reading git at a ref, the result of one target,
and fast listings of many S3 prefixes at once.

Nothing here imports DVC, MLflow or Airflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from greenlight.errors import ConfigError, GreenlightError
from greenlight.redact import redact_text
from greenlight.storage.s3 import list_pages

log = logging.getLogger("greenlight.reconcile.run")

#: Entry statuses. ``recoverable``: a repair route exists but was not taken (repair off / dry run).
REPAIRED, RECOVERABLE, UNRECOVERABLE, FAILED = "repaired", "recoverable", "unrecoverable", "failed"

#: How many entries a result keeps inline (XCom, summaries); the full list goes to the report files.
INLINE_ENTRIES = 500


class ReconcileError(GreenlightError):
    """Something was found that greenlight cannot repair: a human has to act (exit 1, never retried)."""

    # Triage class "unrecoverable": a human has to restore or re-create the objects (routed to the
    # paging channel by GREENLIGHT_NOTIFY_ROUTES like contract and permission failures).
    kind = "unrecoverable"

    def __init__(self, problems: list[str], report: str | None = None):
        self.problems = problems
        self.report = report
        shown = "; ".join(problems[:20])
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        where = f" — full report: {report}" if report else ""
        super().__init__(f"reconciliation found {len(problems)} problem(s): {shown}{more}{where}")


@dataclass
class TargetResult:
    """What one target's check (and repair) found. ``entries`` are the missing things, each a dict
    with at least ``what`` (the object or stage), ``status`` and ``action``."""

    target: str
    kind: str
    checked: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    repair_manifest: str | None = None
    duration_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e["status"] == status)

    def counts(self) -> dict[str, int]:
        missing = len(self.entries)
        repaired = self.count(REPAIRED)
        unrecoverable = self.count(UNRECOVERABLE)
        return {
            "checked": self.checked,
            "missing": missing,
            "repaired": repaired,
            "unrecoverable": unrecoverable,
            "outstanding": missing - repaired - unrecoverable,
            "orphans": len(self.orphans),
        }

    def as_dict(self, *, inline: int | None = None) -> dict[str, Any]:
        """JSON-ready; with ``inline`` only that many entries and orphans are kept (``truncated``)."""
        entries, orphans = self.entries, self.orphans
        truncated = False
        if inline is not None and (len(entries) > inline or len(orphans) > inline):
            entries, orphans, truncated = entries[:inline], orphans[:inline], True
        return {
            "target": self.target,
            "kind": self.kind,
            **self.counts(),
            "entries": entries,
            "orphan_entries": orphans,
            "notes": self.notes,
            "details": self.details,
            "repair_manifest": self.repair_manifest,
            "duration_s": round(self.duration_s, 3),
            "truncated": truncated,
        }


# --------------------------------------------------------------------------------------------- git
class GitTree:
    """Read files of one commit of a git repository without touching its working tree.

    ``repo`` is a local checkout (or bare repo) or a URL; a URL is cloned bare, blobs on demand
    (``--filter=blob:none``), into a temporary folder removed by :meth:`close`.
    """

    def __init__(self, repo: str, rev: str):
        self._tmp: str | None = None
        if "://" in repo or ("@" in repo and ":" in repo and not os.path.exists(repo)):
            self._tmp = tempfile.mkdtemp(prefix="greenlight-git-")
            self._run("clone", "--quiet", "--bare", "--filter=blob:none", "--no-tags", repo, self._tmp, cwd=None)
            self.git_dir = self._tmp
        else:
            self.git_dir = repo
        self.repo = redact_text(repo)  # for messages: a token in the URL never reaches one
        try:
            self.sha = self._run("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").decode().strip()
        except GreenlightError as exc:
            self.close()
            raise ConfigError(f"git revision {rev!r} not found in {self.repo}: {exc}") from exc
        self.rev = rev
        self.files: dict[str, tuple[str, str]] = {}  # path -> (mode, blob sha)
        out = self._run("ls-tree", "-r", "-z", "--full-tree", self.sha)
        for line in out.split(b"\0"):
            if not line:
                continue
            meta, _, path = line.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            if kind == "blob":
                self.files[path.decode("utf-8", "surrogateescape")] = (mode, sha)
        self._cache: dict[str, bytes] = {}

    def _run(self, *args: str, cwd: str | None = "", stdin: bytes | None = None) -> bytes:
        cmd = ["git"] + (["-C", self.git_dir] if cwd == "" else []) + list(args)
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False, timeout=600)
        except FileNotFoundError as exc:
            raise ConfigError("git is not installed (needed to read the repository at a ref)") from exc
        if proc.returncode != 0:
            stderr = redact_text(proc.stderr.decode(errors="replace").strip())
            raise GreenlightError(f"git {' '.join(args[:2])} failed: {stderr}")
        return proc.stdout

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> GitTree:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exists(self, path: str) -> bool:
        return path in self.files

    def is_dir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self.files)

    def under(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def read(self, path: str) -> bytes:
        if path not in self._cache:
            self.read_many([path])
        return self._cache[path]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Blobs of many paths with one ``git cat-file --batch``."""
        wanted = [p for p in dict.fromkeys(paths) if p not in self._cache]
        missing = [p for p in wanted if p not in self.files]
        if missing:
            raise KeyError(missing[0])
        if wanted:
            data = self._run("cat-file", "--batch", stdin="".join(self.files[p][1] + "\n" for p in wanted).encode())
            pos = 0
            for path in wanted:
                nl = data.index(b"\n", pos)
                header = data[pos:nl].split()
                size = int(header[2])
                self._cache[path] = data[nl + 1 : nl + 1 + size]
                pos = nl + 1 + size + 1
        return {p: self._cache[p] for p in paths}


# ------------------------------------------------------------------------------------------ S3 lists
def list_keys(lister, bucket: str, prefixes: Iterable[str], pool: ThreadPoolExecutor) -> set[str]:
    """Every key under each of ``prefixes`` (all pages), the prefixes listed in parallel.

    ``lister`` is anything with botocore's ``list_objects_v2`` signature (a botocore client or
    :class:`greenlight.storage.fast.FastS3`).
    """

    def one(prefix: str) -> list[str]:
        return [o["Key"] for page in list_pages(lister, bucket, prefix) for o in page.get("Contents", ())]

    out: set[str] = set()
    for chunk in pool.map(one, list(prefixes)):
        out.update(chunk)
    return out


def upload_file(client, path: str, bucket: str, key: str) -> None:
    """PUT a local file (single request up to 5 GiB; multipart above, through boto3's transfer)."""
    size = os.path.getsize(path)
    if size <= 5 * 1024**3:
        with open(path, "rb") as fh:
            client.put_object(Bucket=bucket, Key=key, Body=fh)
        return
    from boto3.s3.transfer import S3Transfer  # only for objects over 5 GiB

    S3Transfer(client).upload_file(path, bucket, key)
