"""Manifests: JSON records written to a local folder or an S3 prefix, atomically.

A promotion manifest is written *before* the first change to a destination (status
``pending``: the pre-promotion version of every key about to be overwritten or deleted) and again
when the prefix is done. A rerun of the same run merges into it and keeps the first recorded
"before" of each key, so a rollback always returns to the state before the first attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from greenlight.errors import ManifestError, ManifestInvalidError, ManifestNotFoundError
from greenlight.redact import redact_text
from greenlight.storage.s3 import S3Uri, get_if_exists, is_write_conflict, normalize_etag, parse_s3_uri

_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def legacy_safe_name(text: str) -> str:
    """The file names greenlight wrote before names were made collision-free (``a/b/``, ``a_b/``
    and ``a+b/`` all became ``a_b``): readers fall back to them so older pointers and manifests
    are still found."""
    cleaned = _SAFE.sub("_", text).strip("_")
    return cleaned or "_"


def safe_name(text: str) -> str:
    """A path segment made from a run id or prefix: readable, and distinct for distinct texts.

    A text made only of ``A-Za-z0-9._=-`` (and not ``.``/``..``) is used as it is. Any other text
    (``/``, ``:``, ``+``, ...) is cleaned for readability and gets ``~`` and 10 hex digits of its
    SHA-256, so ``a/b/``, ``a_b/`` and ``a+b/`` name three files, and a run id such as ``../x``
    cannot leave its folder.
    """
    cleaned = _SAFE.sub("_", text).strip("_")
    if cleaned == text and cleaned.strip("."):
        return text
    readable = cleaned.strip(".") or "_"
    return f"{readable}~{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ManifestStore:
    """Read and write JSON documents under a root that is a local folder or ``s3://`` URI."""

    def __init__(self, root: str | os.PathLike | S3Uri, client=None):
        self.client = client
        if isinstance(root, S3Uri):
            self.s3: S3Uri | None = root
            self.local: Path | None = None
        elif str(root).startswith("s3://"):
            self.s3 = parse_s3_uri(str(root), what="manifest root")
            self.local = None
        else:
            self.s3 = None
            self.local = Path(root)
        if self.s3 is not None and client is None:
            raise ManifestError("an s3:// manifest root needs an S3 client")

    def uri(self, relpath: str) -> str:
        if self.s3 is not None:
            return f"s3://{self.s3.bucket}/{self.s3.prefix}{relpath}"
        return str(self._local_path(relpath))

    def _local_path(self, relpath: str) -> Path:
        """``relpath`` under the local root; a path that resolves outside it (``..``, an absolute
        path, a symlink leading out) is refused before anything is read or written."""
        root = self.local.resolve()
        target = (root / relpath).resolve()
        if target == root or not target.is_relative_to(root):
            raise ManifestInvalidError(f"{relpath!r} resolves outside the manifest root {root}: refused")
        return target

    @staticmethod
    def _body(doc: dict[str, Any], compact: bool) -> bytes:
        # Secrets never leave: URL credentials and sensitive env values are redacted from every record.
        if compact:  # json's C encoder (indent= falls back to the pure-Python one: ~10x slower)
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)
        else:
            text = json.dumps(doc, indent=2, sort_keys=True, default=str)
        return redact_text(text, json_escaped=True).encode()

    def write(self, relpath: str, doc: dict[str, Any], *, compact: bool = False) -> str:
        """Write ``doc`` atomically: one PUT on S3, temp file + rename locally.

        ``compact``: no indentation, for large machine-read records (a QA snapshot of thousands of
        objects) where pretty-printing would cost more than the PUT."""
        body = self._body(doc, compact)
        if self.s3 is not None:
            try:
                self.client.put_object(
                    Bucket=self.s3.bucket,
                    Key=self.s3.prefix + relpath,
                    Body=body,
                    ContentType="application/json",
                )
            except Exception as exc:
                raise ManifestError(f"could not write manifest {self.uri(relpath)}: {exc}") from exc
            return self.uri(relpath)
        self._write_local(relpath, body)
        return str(self._local_path(relpath))

    def read_tagged(self, relpath: str) -> tuple[dict[str, Any], str] | None:
        """The document at ``relpath`` and its ETag (a digest of the file locally), or None when
        there is none: the version :meth:`write_if` can be made conditional on."""
        if self.s3 is None:
            path = self._local_path(relpath)
            if path.is_dir():
                raise ManifestInvalidError(f"{path} is a folder, not a manifest file")
            if not path.exists():
                return None
            body = path.read_bytes()
            return self._parse(relpath, body), hashlib.sha256(body).hexdigest()
        try:
            response = get_if_exists(self.client, self.s3.bucket, self.s3.prefix + relpath)
            if response is None:
                return None
            body = response["Body"].read()
        except Exception as exc:
            raise ManifestError(f"could not read manifest {self.uri(relpath)}: {exc}") from exc
        return self._parse(relpath, body), normalize_etag(response.get("ETag"))

    def write_if(self, relpath: str, doc: dict[str, Any], *, etag: str | None) -> str | None:
        """Write ``doc`` only if the record is still the version :meth:`read_tagged` returned
        (``etag``; None: only if there is no record yet). Returns the new ETag, or None when
        another writer changed the record first (read it again and merge). On S3 this is one
        conditional PUT (``If-Match`` / ``If-None-Match: *``), race-free on AWS S3 and SeaweedFS."""
        body = self._body(doc, compact=False)
        if self.s3 is not None:
            condition = {"IfMatch": f'"{etag}"'} if etag else {"IfNoneMatch": "*"}
            try:
                response = self.client.put_object(
                    Bucket=self.s3.bucket,
                    Key=self.s3.prefix + relpath,
                    Body=body,
                    ContentType="application/json",
                    **condition,
                )
            except Exception as exc:
                if is_write_conflict(exc):
                    return None
                raise ManifestError(f"could not write manifest {self.uri(relpath)}: {exc}") from exc
            return normalize_etag(response.get("ETag"))
        import fcntl  # local: POSIX only, and only local manifest roots need it

        target = self._local_path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
            if current != etag:
                return None
            self._write_local(relpath, body)
        return hashlib.sha256(body).hexdigest()

    def _write_local(self, relpath: str, body: bytes) -> None:
        target = self._local_path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, relpath: str) -> dict[str, Any] | None:
        """The document at ``relpath``, or None when there is none."""
        tagged = self.read_tagged(relpath)
        return tagged[0] if tagged is not None else None

    def _parse(self, relpath: str, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except ValueError as exc:  # UnicodeDecodeError included
            raise ManifestInvalidError(f"manifest {self.uri(relpath)} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ManifestInvalidError(
                f"manifest {self.uri(relpath)} is a JSON {type(doc).__name__}, not a greenlight manifest (an object)"
            )
        return doc


def read_manifest_uri(uri: str, client=None) -> dict[str, Any]:
    """Read one manifest given its full location (``s3://bucket/key.json`` or a local path)."""
    if not isinstance(uri, str) or not uri.strip():
        raise ManifestInvalidError(f"manifest: expected an s3:// URI or a file path, got {uri!r}")
    if uri.startswith("s3://"):
        loc = parse_s3_uri(uri, what="manifest", directory=False)
        if not loc.prefix or loc.prefix.endswith("/"):
            raise ManifestInvalidError(
                f"manifest {uri} names a bucket or a folder, not a manifest file "
                "(give …/promotions/<run>/index.json or a prefix manifest …/<prefix>.json)"
            )
        parent, _, name = loc.prefix.rpartition("/")
        store = ManifestStore(S3Uri(loc.bucket, parent + "/" if parent else ""), client)
    else:
        path = Path(uri)
        if path.is_dir():
            raise ManifestInvalidError(f"manifest {uri} is a folder, not a manifest file")
        store, name = ManifestStore(path.parent), path.name
    doc = store.read(name)
    if doc is None:
        raise ManifestNotFoundError(f"manifest {uri} does not exist")
    return doc
