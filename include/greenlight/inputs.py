"""Reading a task's inputs so that a missing one fails as ``missing_input``, naming what is missing.

The runbook's triage flowchart treats "missing input partition / FileNotFound" as its own branch:
check the upstream step's manifest for the same run id, then rerun the upstream step. A task that
reads through these helpers raises :class:`~greenlight.errors.MissingInputError` (never retried;
the hint names the upstream task's manifest) instead of an anonymous ``NoSuchKey`` or an empty
result that only fails three tasks later.

No Airflow imports: the CLI and the DAGs share it.
"""

from __future__ import annotations

from pathlib import Path

from greenlight.errors import MissingInputError
from greenlight.storage.s3 import error_code, list_pages, parse_s3_uri


def require_partition(client, uri: str, *, upstream: str | None = None) -> list[str]:
    """The keys (or file paths) of a non-empty partition; ``MissingInputError`` when it is absent
    or empty. ``uri`` is an ``s3://bucket/prefix/`` or a local folder."""
    if uri.startswith("s3://"):
        loc = parse_s3_uri(uri, what="input partition")
        keys = [obj["Key"] for page in list_pages(client, loc.bucket, loc.prefix) for obj in page.get("Contents", ())]
    else:
        folder = Path(uri)
        if not folder.is_dir():
            raise MissingInputError(uri, "the partition folder does not exist", upstream=upstream)
        keys = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    if not keys:
        raise MissingInputError(uri, "the upstream partition is empty (no objects)", upstream=upstream)
    return keys


def read_input(client, uri: str, *, upstream: str | None = None) -> bytes:
    """The bytes of one input object or file; ``MissingInputError`` (caused by the real
    ``NoSuchKey`` / ``FileNotFoundError``) when it does not exist."""
    if uri.startswith("s3://"):
        loc = parse_s3_uri(uri, what="input object", directory=False)
        try:
            return client.get_object(Bucket=loc.bucket, Key=loc.prefix)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise MissingInputError(uri, "no such key", upstream=upstream) from exc
            raise
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError as exc:
        raise MissingInputError(uri, "no such file", upstream=upstream) from exc
