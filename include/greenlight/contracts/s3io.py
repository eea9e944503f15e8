"""S3 access for the schema readers: listings, (ranged) GETs and HEADs, and the ``select`` glob.

Every S3 failure becomes a :class:`~greenlight.errors.ContractError` naming the bucket and key or
prefix; a missing object can be asked for as None instead (``missing_ok``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from greenlight.contracts.values import location
from greenlight.errors import ContractError
from greenlight.storage.s3 import error_code, list_pages


def prefix_dir(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def s3_errors() -> tuple[type[BaseException], ...]:
    # Local: botocore.exceptions costs ~0.2 s to import, and DAG parsing imports this package.
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def list_objects(client, bucket: str, prefix: str, *, delimiter: str | None = None) -> tuple[list[dict], list[str]]:
    """(objects, sub-prefixes) under ``prefix``, all pages."""
    objects: list[dict] = []
    subdirs: list[str] = []
    try:
        for page in list_pages(client, bucket, prefix, delimiter=delimiter):
            objects.extend(page.get("Contents", ()))
            subdirs.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", ()))
    except s3_errors() as exc:
        raise ContractError(location(bucket, prefix), f"cannot list the prefix: {error_code(exc) or exc}") from exc
    return objects, subdirs


def get_bytes(
    client, bucket: str, key: str, *, byte_range: str | None = None, missing_ok: bool = False
) -> bytes | None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if byte_range:
        kwargs["Range"] = byte_range
    try:
        response = client.get_object(**kwargs)
        return response["Body"].read()
    except s3_errors() as exc:
        if missing_ok and error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise ContractError(location(bucket, key), f"cannot read the object: {error_code(exc) or exc}") from exc


def glob_regex(pattern: str) -> re.Pattern:
    """``*``/``?`` within one path segment, ``**`` across segments, ``[...]`` character classes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def find_object(client, bucket: str, prefix: str, select: str, *, missing_ok: bool = False) -> dict | None:
    """The newest object under ``prefix`` whose relative key matches ``select`` (ties: the last key).

    Returns ``{"key", "size", "etag", "last_modified"}``. A missing/empty prefix or no match raises
    :class:`ContractError` (or returns None with ``missing_ok``).
    """
    prefix = prefix_dir(prefix)
    regex = glob_regex(select)
    objects, subdirs = list_objects(client, bucket, prefix, delimiter=None if "/" in select or "**" in select else "/")
    if not objects and not subdirs:
        if missing_ok:
            return None
        raise ContractError(location(bucket, prefix), "the prefix is missing or empty")
    matches = [o for o in objects if regex.match(o["Key"][len(prefix) :])]
    if not matches:
        if missing_ok:
            return None
        seen = ", ".join(o["Key"][len(prefix) :] for o in objects[:5]) or "only sub-prefixes"
        raise ContractError(location(bucket, prefix), f"no object matches {select!r} (found: {seen})")
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    newest = max(matches, key=lambda o: (o.get("LastModified") or epoch, o["Key"]))
    modified = newest.get("LastModified")
    return {
        "key": newest["Key"],
        "size": int(newest.get("Size", 0)),
        "etag": str(newest.get("ETag", "")).strip('"'),
        "last_modified": modified.isoformat() if hasattr(modified, "isoformat") else modified,
    }


def head_object(client, bucket: str, key: str) -> dict:
    try:
        response = client.head_object(Bucket=bucket, Key=key)
    except s3_errors() as exc:
        raise ContractError(location(bucket, key), f"cannot read the object: {error_code(exc) or exc}") from exc
    modified = response.get("LastModified")
    return {
        "size": int(response.get("ContentLength", 0)),
        "etag": str(response.get("ETag", "")).strip('"'),
        "last_modified": modified.isoformat() if hasattr(modified, "isoformat") else modified,
    }


def get_json(client, bucket: str, key: str, read: list[str], *, missing_ok: bool = True) -> Any:
    body = get_bytes(client, bucket, key, missing_ok=missing_ok)
    if body is None:
        return None
    read.append(key)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(location(bucket, key), f"not valid JSON: {exc}") from exc
