"""Manifests: JSON records written to a local folder or an S3 prefix, atomically.

A promotion manifest is written *before* the first change to a destination (status
``pending``: the pre-promotion version of every key about to be overwritten or deleted) and again
when the prefix is done. A rerun of the same run merges into it and keeps the first recorded
"before" of each key, so a rollback always returns to the state before the first attempt.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from greenlight.errors import ManifestError, ManifestNotFoundError
from greenlight.storage.s3 import S3Uri, error_code, parse_s3_uri

_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_name(text: str) -> str:
    """A path segment made from a run id or prefix: keeps it readable, drops '/', ':' and '+'."""
    cleaned = _SAFE.sub("_", text).strip("_")
    return cleaned or "_"


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
        return str(self.local / relpath)

    def write(self, relpath: str, doc: dict[str, Any]) -> str:
        """Write ``doc`` atomically: one PUT on S3, temp file + rename locally."""
        body = json.dumps(doc, indent=2, sort_keys=True, default=str).encode()
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
        target = self.local / relpath
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
        return str(target)

    def read(self, relpath: str) -> dict[str, Any] | None:
        """The document at ``relpath``, or None when there is none."""
        if self.s3 is not None:
            try:
                body = self.client.get_object(Bucket=self.s3.bucket, Key=self.s3.prefix + relpath)["Body"].read()
            except Exception as exc:
                if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise ManifestError(f"could not read manifest {self.uri(relpath)}: {exc}") from exc
        else:
            path = self.local / relpath
            if not path.exists():
                return None
            body = path.read_bytes()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ManifestError(f"manifest {self.uri(relpath)} is not valid JSON: {exc}") from exc


def read_manifest_uri(uri: str, client=None) -> dict[str, Any]:
    """Read one manifest given its full location (``s3://bucket/key.json`` or a local path)."""
    if uri.startswith("s3://"):
        loc = parse_s3_uri(uri, what="manifest", directory=False)
        parent, _, name = loc.prefix.rpartition("/")
        store = ManifestStore(S3Uri(loc.bucket, parent + "/" if parent else ""), client)
    else:
        path = Path(uri)
        store, name = ManifestStore(path.parent), path.name
    doc = store.read(name)
    if doc is None:
        raise ManifestNotFoundError(f"manifest {uri} does not exist")
    return doc
