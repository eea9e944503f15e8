"""Server-side copy of one object from QA to prod, keeping its ETag where the server allows.

Owns how a single object is copied: one ``CopyObject`` up to 5 GiB, ``UploadPartCopy`` with the
source's own part layout above that or for multipart sources (so the multipart ETag can be
reproduced), every request conditional on the planned ETag (``CopySourceIfMatch``). Which of the
two reproduces a multipart ETag on this server is learnt once per :class:`ObjectCopier`. Also what
a failed copy means: :func:`is_unreachable` (the endpoint refused connections: stop copying) and
:func:`decisive_error` (the copy error a failed batch is raised from, so triage can classify it).
Deciding *what* to copy, recording it in the manifest and counting results is the engine's
(:mod:`greenlight.promotion.engine`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from greenlight.promotion.config import PrefixConfig
from greenlight.storage.s3 import ObjectInfo, is_multipart_etag, normalize_etag
from greenlight.triage import classify

log = logging.getLogger("greenlight.promotion.copier")

MAX_SINGLE_COPY = 5 * 1024**3  # CopyObject limit
DEFAULT_PART_SIZE = 512 * 1024**2
COPY_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Expires")

#: (destination ETag, destination VersionId, source VersionId) of one copy
CopyOutcome = tuple[str, str | None, str | None]


class EndpointUnreachableError(ConnectionError):
    """A copy skipped because the S3 endpoint already refused connections in this prefix."""


UNREACHABLE_ERRORS = {
    "ConnectionRefusedError",
    "NewConnectionError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectTimeout",
}


def is_unreachable(exc: BaseException | None) -> bool:
    """True when the endpoint could not be connected to at all (refused / connect timeout)."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in UNREACHABLE_ERRORS:
            return True
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException) and type(reason).__name__ in UNREACHABLE_ERRORS:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def decisive_error(errors: list[BaseException]) -> BaseException | None:
    """The error a failed batch of copies is raised from: the first one a retry cannot fix
    (permission, missing source, bad config), else the first one."""
    for exc in errors:
        if not classify(exc).retryable:
            return exc
    return errors[0] if errors else None


class ObjectCopier:
    """Copies single objects server-side with ``data`` (the lean client for CopyObject) and
    ``client`` (boto3, for the multipart calls); ``guard(bucket)`` runs before every write and
    raises to refuse it."""

    def __init__(self, client, data, guard: Callable[[str], None]):
        self.client = client
        self.data = data
        self.guard = guard
        self.multipart_mode: str | None = None  # learnt: which copy keeps multipart ETags

    def copy(self, p: PrefixConfig, src: ObjectInfo) -> CopyOutcome:
        """Copy one object server-side; returns (dest etag, dest version, source version)."""
        src_key = p.source.join(src.rel)
        dst_key = p.destination.join(src.rel)
        self.guard(p.destination.bucket)
        log.info(
            "copy: s3://%s/%s -> s3://%s/%s (%d B)", p.source.bucket, src_key, p.destination.bucket, dst_key, src.size
        )
        if not is_multipart_etag(src.etag) and src.size <= MAX_SINGLE_COPY:
            return self.copy_single(p, src_key, dst_key, src.etag)
        modes = ["part_copy"] if src.size > MAX_SINGLE_COPY else ["part_copy", "copy_object"]
        if self.multipart_mode in modes:
            modes.remove(self.multipart_mode)
            modes.insert(0, self.multipart_mode)
        outcome = None
        for mode in modes:
            if mode == "copy_object":
                outcome = self.copy_single(p, src_key, dst_key, src.etag)
            else:
                outcome = self.copy_parts(p, src_key, dst_key, src)
            if normalize_etag(outcome[0]) == normalize_etag(src.etag):
                self.multipart_mode = mode
                return outcome
        log.warning("could not reproduce multipart ETag of %s on %s; verification will report it", src_key, dst_key)
        return outcome

    def copy_single(self, p: PrefixConfig, src_key: str, dst_key: str, etag: str) -> CopyOutcome:
        """One CopyObject, only if the source still has the planned ETag (``CopySourceIfMatch``)."""
        response = self.data.copy_object(
            Bucket=p.destination.bucket,
            Key=dst_key,
            CopySource={"Bucket": p.source.bucket, "Key": src_key},
            CopySourceIfMatch=f'"{etag}"',
            MetadataDirective="COPY",
        )
        return (
            normalize_etag(response.get("CopyObjectResult", {}).get("ETag")),
            response.get("VersionId"),
            response.get("CopySourceVersionId"),
        )

    def copy_parts(self, p: PrefixConfig, src_key: str, dst_key: str, src: ObjectInfo) -> CopyOutcome:
        """Multipart server-side copy, reusing the source's part layout so the ETag can match."""
        head = self.client.head_object(Bucket=p.source.bucket, Key=src_key, IfMatch=f'"{src.etag}"')
        ranges = self.part_ranges(p, src_key, src)
        extra = {k: head[k] for k in COPY_HEADERS if head.get(k)}
        upload = self.client.create_multipart_upload(
            Bucket=p.destination.bucket, Key=dst_key, Metadata=head.get("Metadata", {}), **extra
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            source_version = head.get("VersionId")
            copy_source = {"Bucket": p.source.bucket, "Key": src_key}
            if source_version:
                copy_source["VersionId"] = source_version
            for number, (first, last) in enumerate(ranges, start=1):
                part = self.client.upload_part_copy(
                    Bucket=p.destination.bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last}",
                    CopySourceIfMatch=f'"{src.etag}"',
                )
                parts.append({"ETag": part["CopyPartResult"]["ETag"], "PartNumber": number})
            done = self.client.complete_multipart_upload(
                Bucket=p.destination.bucket, Key=dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=p.destination.bucket, Key=dst_key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.warning("could not abort multipart upload %s for %s", upload_id, dst_key)
            raise
        return normalize_etag(done.get("ETag")), done.get("VersionId"), source_version

    def part_ranges(self, p: PrefixConfig, src_key: str, src: ObjectInfo) -> list[tuple[int, int]]:
        """Byte ranges of the parts to copy: the source's own layout when it was a multipart upload."""
        if src.size == 0:
            return [(0, 0)]
        part_size = DEFAULT_PART_SIZE
        if is_multipart_etag(src.etag):
            first = self.client.head_object(Bucket=p.source.bucket, Key=src_key, PartNumber=1)
            count = int(first.get("PartsCount") or 1)
            part_size = int(first["ContentLength"]) or DEFAULT_PART_SIZE
            ranges = [(o, min(o + part_size, src.size) - 1) for o in range(0, src.size, part_size)]
            if len(ranges) == count:
                return ranges
            # Parts of uneven size: ask for each one.
            ranges, offset = [], 0
            for number in range(1, count + 1):
                size = int(
                    self.client.head_object(Bucket=p.source.bucket, Key=src_key, PartNumber=number)["ContentLength"]
                )
                ranges.append((offset, offset + size - 1))
                offset += size
            return ranges
        return [(o, min(o + part_size, src.size) - 1) for o in range(0, src.size, part_size)]
