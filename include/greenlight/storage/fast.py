"""A lean S3 data path for the engine's hot calls: CopyObject, HeadObject, ListObjectsV2.

botocore spends ~5 ms of CPU per request here (user-agent building, endpoint rules, event
hooks, generic parsing), more than the S3 server spends serving a small CopyObject; on a
promotion of thousands of small objects that CPU, not the network, sets the pace. This module
signs requests with AWS Signature V4 itself and sends them over keep-alive ``http.client``
connections (:class:`ConnectionPool`; urllib3 and ssl cost ~70 ms of CPU to import, a third of a
no-op CLI run's start-up), reusing the botocore client's endpoint, region and credentials (so
roles, profiles and refreshable credentials keep working). Errors are raised as botocore ``ClientError`` with
the same ``Error.Code`` botocore would give, and transient failures (connection errors, 5xx,
SlowDown/throttling) are retried with exponential backoff and full jitter.

It also carries the small JSON records (manifests, leases, the run index: GetObject and
PutObject, conditional with ``IfMatch`` / ``IfNoneMatch``), so a promotion that needs no multipart
copy never builds a botocore client. Multipart copies and bucket administration stay on botocore.
Set ``GREENLIGHT_S3_FAST=0`` to send everything through botocore.

Why not ``botocore.auth.S3SigV4Auth``: it gives the same signature (tests/unit/test_fast_signing.py
checks it byte for byte for every request kind sent here) but is generic: an ``AWSRequest``, email
``Message`` headers, URL re-parsing and a fresh signing key per request cost ~10x the CPU of
``_signed`` below (measured 2026-12-02: 1.7-2.4 ms vs 0.15-0.21 ms per request on a loaded 2-core
machine), which is the cost this module exists to remove.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import io
import logging
import os
import random
import select
import threading
import time
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from greenlight.storage.s3 import parse_list_v2, parse_list_v2_infos

log = logging.getLogger("greenlight.storage.fast")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRY_STATUS = {500, 502, 503, 504}
RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}


def _enabled() -> bool:
    return os.environ.get("GREENLIGHT_S3_FAST", "1").lower() not in ("0", "false", "no", "off")


def quote_s3(value: str, safe: str = "") -> str:
    return quote(value, safe=safe + "~")


class StaticCredentials:
    """Access key, secret and optional session token, with botocore's credentials interface
    (``get_frozen_credentials()``): what botocore's chain resolves from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, without importing botocore's session."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None):
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token or None

    def get_frozen_credentials(self) -> StaticCredentials:
        return self


def environment_credentials(environ=None) -> StaticCredentials | None:
    """The credentials botocore's default chain takes from the environment, when it would take them
    from there and they are static; None otherwise (then botocore's own chain decides).

    The chain tries the environment first, and uses it whenever ``AWS_ACCESS_KEY_ID`` is set (a
    profile named by ``AWS_PROFILE`` does not override it). Left to botocore: a missing secret
    (botocore's own error), and ``AWS_CREDENTIAL_EXPIRATION`` (refreshable credentials)."""
    env = os.environ if environ is None else environ
    access_key = env.get("AWS_ACCESS_KEY_ID", "")
    secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key or env.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None
    return StaticCredentials(access_key, secret_key, token)


class FastS3:
    """Signed S3 requests over a urllib3 pool, for a path-style endpoint."""

    def __init__(self, endpoint_url: str, region: str, credentials, *, max_pool: int = 64, max_attempts: int = 5):
        parts = urlsplit(endpoint_url)
        self.scheme = parts.scheme
        self.host = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.max_attempts = max_attempts
        self.http = ConnectionPool(self.scheme, self.host, max_idle=max_pool)
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_client(cls, client, *, max_pool: int = 64) -> FastS3 | None:
        """A FastS3 sharing a botocore client's endpoint, region and credentials, or None when the
        client is not path-style or has no credentials (then botocore does everything)."""
        if not _enabled():
            return None
        try:
            # botocore clients expose no public accessor for the (refreshable) credentials they sign
            # with; the request signer's is the only way to share them, guarded by AttributeError.
            credentials = client._request_signer._credentials
            endpoint = client.meta.endpoint_url
            region = client.meta.region_name or "us-east-1"
            style = (client.meta.config.s3 or {}).get("addressing_style")
        except AttributeError:
            return None
        if credentials is None or not endpoint:
            return None
        if style != "path" and "amazonaws.com" in endpoint:
            return None
        return cls(endpoint, region, credentials, max_pool=max_pool)

    @classmethod
    def from_environment(
        cls, *, endpoint_url: str | None = None, region: str | None = None, max_pool: int = 64
    ) -> FastS3 | None:
        """A FastS3 from the standard AWS env vars / config chain, without building a botocore
        client (which costs ~0.3 s of model loading that a no-op promotion does not need).

        Static keys in the environment are read directly (:func:`environment_credentials`);
        anything else (profiles, SSO, roles) goes through botocore's session (~0.13 s of CPU to
        import and resolve, measured 2026-12-03)."""
        if not _enabled():
            return None
        region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            return None  # AWS proper: let botocore pick virtual-hosted endpoints
        credentials = environment_credentials()
        if credentials is None:
            import botocore.session  # local: only when the environment has no static keys

            credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            return None
        return cls(endpoint, region, credentials, max_pool=max_pool)

    # ------------------------------------------------------------------ signing
    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        with self._lock:
            key = self._keys.get((secret, datestamp))
            if key is None:
                k = hmac.new(("AWS4" + secret).encode(), datestamp.encode(), hashlib.sha256).digest()
                for part in (self.region, "s3", "aws4_request"):
                    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
                self._keys = {(secret, datestamp): k}
                key = k
            return key

    def _signed(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes = b""):
        frozen = self.credentials.get_frozen_credentials()
        now = dt.datetime.now(dt.UTC)
        amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = amzdate[:8]
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        all_headers = {k.lower(): str(v).strip() for k, v in headers.items()}
        all_headers["host"] = self.host
        all_headers["x-amz-date"] = amzdate
        all_headers["x-amz-content-sha256"] = payload_hash
        if frozen.token:
            all_headers["x-amz-security-token"] = frozen.token
        canonical_query = "&".join(f"{quote_s3(k)}={quote_s3(v)}" for k, v in sorted(query.items()))
        signed = sorted(all_headers)
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{h}:{all_headers[h]}\n" for h in signed),
                ";".join(signed),
                payload_hash,
            ]
        )
        scope = f"{datestamp}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amzdate}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(
            self._signing_key(frozen.secret_key, datestamp), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
        )
        url = f"{self.scheme}://{self.host}{path}" + (f"?{canonical_query}" if canonical_query else "")
        return url, all_headers

    # ------------------------------------------------------------------ transport
    def _request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str | None,
        *,
        query=None,
        headers=None,
        body=b"",
        missing_ok: bool = False,
    ):
        path = f"{self.base_path}/{quote_s3(bucket)}" + (f"/{quote_s3(key, safe='/')}" if key is not None else "")
        if key is None and not query:
            path += "/"
        attempt = 0
        while True:
            attempt += 1
            url, signed_headers = self._signed(method, path, query or {}, headers or {}, body)
            try:
                resp = self.http.request(method, url, signed_headers, body)
            except (http.client.HTTPException, OSError) as exc:
                if attempt >= self.max_attempts:
                    if isinstance(exc, OSError):
                        raise
                    # A malformed or cut-short response: a transport failure, like a reset.
                    raise ConnectionError(f"{operation}: {type(exc).__name__}: {exc}") from exc
                self._backoff(attempt, operation, f"{type(exc).__name__}: {exc}")
                continue
            data = resp.data
            error = None
            if resp.status >= 300:
                error = _parse_error(data, resp.status)
            elif operation == "CopyObject" and b"<Error>" in data[:512]:
                error = _parse_error(data, 500)  # S3 can report a failed copy inside a 200
            if error is None:
                return resp, data
            code = error["Code"]
            if missing_ok and resp.status == 404 and code in ("NoSuchKey", "404"):
                return resp, None
            if (resp.status in RETRY_STATUS or code in RETRY_CODES) and attempt < self.max_attempts:
                self._backoff(attempt, operation, code)
                continue
            from botocore.exceptions import ClientError  # local: ~25 ms to import, errors only

            meta = {
                "HTTPStatusCode": resp.status,
                "HTTPHeaders": dict(resp.headers),
                "RequestId": resp.headers.get("x-amz-request-id", ""),
            }
            raise ClientError({"Error": error, "ResponseMetadata": meta}, operation)

    @staticmethod
    def _backoff(attempt: int, operation: str, why: str) -> None:
        delay = random.uniform(0, min(20.0, 0.2 * 2**attempt))
        log.warning("%s: transient error (%s), retry %d in %.2fs", operation, why, attempt, delay)
        time.sleep(delay)

    # ------------------------------------------------------------------ operations
    def copy_object(self, *, Bucket, Key, CopySource, CopySourceIfMatch=None, MetadataDirective="COPY", **_):
        source = f"{CopySource['Bucket']}/{CopySource['Key']}"
        headers = {"x-amz-copy-source": "/" + quote_s3(source, safe="/"), "x-amz-metadata-directive": MetadataDirective}
        if CopySource.get("VersionId"):
            headers["x-amz-copy-source"] += f"?versionId={quote_s3(CopySource['VersionId'])}"
        if CopySourceIfMatch:
            headers["x-amz-copy-source-if-match"] = CopySourceIfMatch
        resp, data = self._request("CopyObject", "PUT", Bucket, Key, headers=headers)
        # local: ElementTree (~10-25 ms to import) loads only when a response is parsed
        from xml.etree import ElementTree

        result: dict[str, Any] = {}
        for node in ElementTree.fromstring(data):
            result[node.tag.rsplit("}", 1)[-1]] = node.text or ""
        return {
            "CopyObjectResult": {"ETag": result.get("ETag", ""), "LastModified": result.get("LastModified")},
            "VersionId": resp.headers.get("x-amz-version-id"),
            "CopySourceVersionId": resp.headers.get("x-amz-copy-source-version-id"),
        }

    def head_bucket(self, *, Bucket, **_):
        self._request("HeadBucket", "HEAD", Bucket, None)
        return {}

    def get_bucket_versioning(self, *, Bucket, **_):
        # local: ElementTree (~10-25 ms to import) loads only when a response is parsed
        from xml.etree import ElementTree

        _resp, data = self._request("GetBucketVersioning", "GET", Bucket, None, query={"versioning": ""})
        out = {}
        for node in ElementTree.fromstring(data):
            out[node.tag.rsplit("}", 1)[-1]] = node.text or ""
        return out

    def put_object(self, *, Bucket, Key, Body, ContentType="application/octet-stream", IfMatch=None, IfNoneMatch=None):
        """PutObject of a small body; ``IfMatch`` / ``IfNoneMatch`` make it conditional (412
        ``PreconditionFailed`` when the object's ETag differs / the object exists). No other
        argument is accepted: a condition or setting must never be dropped silently."""
        data = Body if isinstance(Body, bytes) else Body.encode()
        headers = {
            "content-type": ContentType,
            "content-md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        }
        if IfMatch:
            headers["if-match"] = IfMatch
        if IfNoneMatch:
            headers["if-none-match"] = IfNoneMatch
        resp, _data = self._request("PutObject", "PUT", Bucket, Key, headers=headers, body=data)
        return {"ETag": resp.headers.get("ETag", ""), "VersionId": resp.headers.get("x-amz-version-id")}

    def get_object(self, *, Bucket, Key, VersionId=None):
        """GetObject of a small object (read whole), with its ETag: what a conditional rewrite needs."""
        # missing_ok=False: a missing key raises NoSuchKey, as botocore does
        return self.get_object_if_exists(Bucket=Bucket, Key=Key, VersionId=VersionId, missing_ok=False)

    def get_object_if_exists(self, *, Bucket, Key, VersionId=None, missing_ok: bool = True):
        """:meth:`get_object`, or None when the key does not exist, without raising: records that
        may not exist yet (a run's manifest, a lease, a pointer) are read on every run, and an
        exception would import botocore's (~25 ms of CPU)."""
        query = {"versionId": VersionId} if VersionId else None
        resp, data = self._request("GetObject", "GET", Bucket, Key, query=query, missing_ok=missing_ok)
        if data is None:
            return None
        return {
            "Body": io.BytesIO(data),
            "ETag": resp.headers.get("ETag", ""),
            "VersionId": resp.headers.get("x-amz-version-id"),
            "ContentType": resp.headers.get("Content-Type"),
        }

    def delete_objects(self, *, Bucket, Delete, **_):
        # local: ElementTree (~10-25 ms to import) loads only when a response is parsed
        from xml.etree import ElementTree
        from xml.sax.saxutils import escape

        items = "".join(
            "<Object><Key>{}</Key>{}</Object>".format(
                escape(o["Key"]), f"<VersionId>{escape(o['VersionId'])}</VersionId>" if o.get("VersionId") else ""
            )
            for o in Delete["Objects"]
        )
        quiet = "<Quiet>true</Quiet>" if Delete.get("Quiet") else ""
        body = f'<?xml version="1.0" encoding="UTF-8"?><Delete>{quiet}{items}</Delete>'.encode()
        headers = {
            "content-type": "application/xml",
            "content-md5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        }
        _resp, data = self._request(
            "DeleteObjects", "POST", Bucket, None, query={"delete": ""}, headers=headers, body=body
        )
        out: dict[str, list[dict[str, Any]]] = {"Deleted": [], "Errors": []}
        for node in ElementTree.fromstring(data):
            tag = node.tag.rsplit("}", 1)[-1]
            fields = {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in node}
            if "DeleteMarker" in fields:
                fields["DeleteMarker"] = fields["DeleteMarker"].lower() == "true"
            (out["Deleted"] if tag == "Deleted" else out["Errors"]).append(fields)
        return out

    def head_object(self, *, Bucket, Key, VersionId=None, **_):
        query = {"versionId": VersionId} if VersionId else None
        resp, _data = self._request("HeadObject", "HEAD", Bucket, Key, query=query)
        headers = resp.headers
        return {
            "ETag": headers.get("ETag", ""),
            "ContentLength": int(headers.get("Content-Length", "0")),
            "VersionId": headers.get("x-amz-version-id"),
            "ContentType": headers.get("Content-Type"),
        }

    def list_objects_v2(
        self, *, Bucket, Prefix="", Delimiter=None, MaxKeys=1000, ContinuationToken=None, StartAfter=None
    ):
        query = {"list-type": "2", "prefix": Prefix, "max-keys": str(MaxKeys), "encoding-type": "url"}
        if Delimiter:
            query["delimiter"] = Delimiter
        if ContinuationToken:
            query["continuation-token"] = ContinuationToken
        if StartAfter:
            query["start-after"] = StartAfter
        _resp, data = self._request("ListObjectsV2", "GET", Bucket, None, query=query)
        page = parse_list_v2(data)
        if page.get("EncodingType") == "url":
            for name in ("Prefix", "Delimiter", "StartAfter"):
                if name in page:
                    page[name] = unquote_plus(page[name])
            for item in page.get("Contents", ()):
                item["Key"] = unquote_plus(item["Key"])
            for item in page.get("CommonPrefixes", ()):
                item["Prefix"] = unquote_plus(item["Prefix"])
        return page

    def list_info_pages(self, bucket: str, prefix: str, base: str, *, delimiter: str | None = None):
        """Every ListObjectsV2 page under ``prefix`` parsed straight to (objects as ObjectInfo
        relative to ``base``, common prefixes): see :func:`greenlight.storage.s3.info_pages`."""
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000", "encoding-type": "url"}
        if delimiter:
            query["delimiter"] = delimiter
        while True:
            _resp, data = self._request("ListObjectsV2", "GET", bucket, None, query=query)
            infos, prefixes, token = parse_list_v2_infos(data, base)
            yield infos, prefixes
            if token is None:
                return
            query["continuation-token"] = token


class Response:
    """Status, headers (case-insensitive ``get``) and the whole body of one HTTP response."""

    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers, data: bytes):
        self.status = status
        self.headers = headers
        self.data = data


class ConnectionPool:
    """Keep-alive ``http.client`` connections to one endpoint, one per request in flight.

    A request takes an idle connection (or opens one: connect timeout 5 s, then 60 s per read),
    reads the whole response and gives the connection back unless the server closes it. An idle
    connection the server has closed meanwhile is noticed before reuse (readable at EOF) and
    dropped, so it does not cost a retry. At most ``max_idle`` connections are kept."""

    def __init__(self, scheme: str, netloc: str, *, max_idle: int = 64, connect_timeout=5.0, read_timeout=60.0):
        if scheme not in ("http", "https"):
            raise ValueError(f"S3 endpoint scheme must be http or https, got {scheme!r}")
        self.scheme = scheme
        self.netloc = netloc
        self.origin = f"{scheme}://{netloc}"
        parts = urlsplit(self.origin)
        self.hostname = parts.hostname
        self.port = parts.port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list = []
        self._lock = threading.Lock()
        self._context = None
        if scheme == "https":
            import ssl  # local: only https endpoints pay for it

            import certifi  # local: only https endpoints need the CA bundle

            self._context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or certifi.where())

    def _connect(self):
        if self._context is not None:
            conn = http.client.HTTPSConnection(
                self.hostname, self.port, timeout=self.connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self.hostname, self.port, timeout=self.connect_timeout)
        conn.connect()
        conn.sock.settimeout(self.read_timeout)
        return conn

    @staticmethod
    def _dropped(conn) -> bool:
        """True when the server closed this idle connection (its socket reads as ready: EOF)."""
        if conn.sock is None:
            return True
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))

    def _take(self):
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if not self._dropped(conn):
                return conn
            conn.close()

    def _give_back(self, conn) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> Response:
        """Send one request (``url`` on this endpoint; ``headers`` carry ``host``) and read the answer."""
        if not url.startswith(self.origin):
            raise ValueError(f"{url} is not on endpoint {self.origin}")
        conn = self._take()
        try:
            conn.request(method, url[len(self.origin) :] or "/", body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Response(resp.status, resp.headers, data)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _parse_error(data: bytes, status: int) -> dict[str, str]:
    # local: ElementTree (~10-25 ms to import) loads only when a response is parsed
    from xml.etree import ElementTree

    code, message = str(status), ""
    if data:
        try:
            root = ElementTree.fromstring(data)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
        except ElementTree.ParseError:
            message = data[:200].decode(errors="replace")
    return {"Code": code, "Message": message}
