"""Two S3 connections behind one client: for staging credentials that cannot read prod.

The promotion engine copies server-side (CopyObject / UploadPartCopy), which needs one identity
that can read the source and write the destination. When prod and staging are separate accounts
(``source_aws_conn`` in the config), :class:`SplitClient` gives the engine the same client surface
but routes every call by bucket — reads of prod buckets to the prod connection, everything else to
the staging one — and turns the two server-side copy calls into a streamed GET → PUT (or GET range →
UploadPart), spooled through a temp file so memory stays bounded (``SPOOL_BYTES`` per copy in
flight). The engine's planner, guards, delete rule and verification are unchanged: this is the
transport only.

A single-part object keeps its ETag (the MD5 of its bytes). A multipart object is re-uploaded with
the source's part layout (the engine asks for it), which reproduces the ETag on AWS S3.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

SPOOL_BYTES = 8 * 1024 * 1024  # in memory per copy; larger objects spill to a temp file
CHUNK = 1024 * 1024


class SplitClient:
    """A botocore-like S3 client: prod buckets through ``source``, everything else through ``target``."""

    def __init__(self, source, target, source_buckets: set[str]):
        self.source = source
        self.target = target
        self.source_buckets = set(source_buckets)

    def _for(self, bucket: str):
        return self.source if bucket in self.source_buckets else self.target

    # ------------------------------------------------------------------ routed as they are
    def head_bucket(self, *, Bucket, **kw):  # noqa: N803 - botocore's parameter names
        return self._for(Bucket).head_bucket(Bucket=Bucket, **kw)

    def get_bucket_versioning(self, *, Bucket, **kw):  # noqa: N803
        return self._for(Bucket).get_bucket_versioning(Bucket=Bucket, **kw)

    def list_objects_v2(self, *, Bucket, **kw):  # noqa: N803
        return self._for(Bucket).list_objects_v2(Bucket=Bucket, **kw)

    def head_object(self, *, Bucket, **kw):  # noqa: N803
        return self._for(Bucket).head_object(Bucket=Bucket, **kw)

    def get_object(self, *, Bucket, **kw):  # noqa: N803
        return self._for(Bucket).get_object(Bucket=Bucket, **kw)

    def put_object(self, *, Bucket, **kw):  # noqa: N803
        return self.target.put_object(Bucket=Bucket, **kw)

    def delete_objects(self, *, Bucket, **kw):  # noqa: N803
        return self.target.delete_objects(Bucket=Bucket, **kw)

    def create_multipart_upload(self, *, Bucket, **kw):  # noqa: N803
        return self.target.create_multipart_upload(Bucket=Bucket, **kw)

    def complete_multipart_upload(self, *, Bucket, **kw):  # noqa: N803
        return self.target.complete_multipart_upload(Bucket=Bucket, **kw)

    def abort_multipart_upload(self, *, Bucket, **kw):  # noqa: N803
        return self.target.abort_multipart_upload(Bucket=Bucket, **kw)

    # ------------------------------------------------------------------ server-side copies, streamed
    def _read(self, copy_source: dict[str, Any], if_match: str | None, byte_range: str | None = None):
        kwargs: dict[str, Any] = {"Bucket": copy_source["Bucket"], "Key": copy_source["Key"]}
        if copy_source.get("VersionId"):
            kwargs["VersionId"] = copy_source["VersionId"]
        if if_match:
            kwargs["IfMatch"] = if_match
        if byte_range:
            kwargs["Range"] = byte_range
        response = self.source.get_object(**kwargs)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned to the caller
        body = response["Body"]
        try:
            shutil.copyfileobj(body, spool, CHUNK)
        finally:
            body.close()
        size = spool.tell()
        spool.seek(0)
        return response, spool, size

    def copy_object(self, *, Bucket, Key, CopySource, CopySourceIfMatch=None, MetadataDirective="COPY", **_):  # noqa: N803
        response, spool, size = self._read(CopySource, CopySourceIfMatch)
        extra = {
            k: response[k]
            for k in ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
            if response.get(k)
        }
        with spool:
            put = self.target.put_object(
                Bucket=Bucket, Key=Key, Body=spool, ContentLength=size, Metadata=response.get("Metadata", {}), **extra
            )
        return {
            "CopyObjectResult": {"ETag": put.get("ETag")},
            "VersionId": put.get("VersionId"),
            "CopySourceVersionId": response.get("VersionId"),
        }

    def upload_part_copy(
        self, *, Bucket, Key, UploadId, PartNumber, CopySource, CopySourceRange, CopySourceIfMatch=None, **_
    ):  # noqa: N803
        _, spool, size = self._read(CopySource, CopySourceIfMatch, CopySourceRange)
        with spool:
            part = self.target.upload_part(
                Bucket=Bucket, Key=Key, UploadId=UploadId, PartNumber=PartNumber, Body=spool, ContentLength=size
            )
        return {"CopyPartResult": {"ETag": part.get("ETag")}}
