"""The fast path's SigV4 signature is byte-for-byte the one botocore's own S3 signer computes.

``greenlight.storage.fast`` signs its hot requests itself because ``botocore.auth.S3SigV4Auth`` costs
about ten times the CPU per request (figures in its module docstring); this test holds the two to the
same result for every kind of request the fast path sends. Only the clock is fixed (both signers read
it), nothing else is replaced.
"""

from __future__ import annotations

import datetime as dt
import types

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from greenlight.storage import fast
from greenlight.storage.fast import FastS3

NOW = dt.datetime(2026, 11, 30, 23, 59, 58, tzinfo=dt.UTC)


@pytest.fixture
def frozen_clock(monkeypatch):
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    monkeypatch.setattr(
        fast, "dt", types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda tz=None: NOW), UTC=dt.UTC)
    )


def _botocore_authorization(credentials, region, method, url, headers, body) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers={k: v for k, v in headers.items()}, data=body or None)
    S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


CASES = [
    ("PUT", "prod-x", "features.zarr/prices/c/0/1", {}, {"x-amz-copy-source": "/qa-x/features.zarr/prices/c/0/1"}, b""),
    (
        "PUT",
        "prod-x",
        "a b/ü+=&?.csv",
        {},
        {"x-amz-copy-source": "/qa-x/a%20b/%C3%BC%2B", "x-amz-copy-source-if-match": '"abc"'},
        b"",
    ),
    ("HEAD", "prod-x", "k", {"versionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"}, {}, b""),
    (
        "GET",
        "qa-x",
        None,
        {
            "list-type": "2",
            "prefix": "a b/ü",
            "max-keys": "1000",
            "encoding-type": "url",
            "continuation-token": "1/x==",
        },
        {},
        b"",
    ),
    ("GET", "qa-x", None, {"versioning": ""}, {}, b""),
    (
        "POST",
        "prod-x",
        None,
        {"delete": ""},
        {"content-type": "application/xml", "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
        b"<Delete/>",
    ),
    ("PUT", "prod-x", "_greenlight/m.json", {}, {"content-type": "application/json"}, b'{"a": 1}'),
]


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH+session/token=="])
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "https://s3.internal.example:9000/base"])
@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers", "body"), CASES)
def test_hand_written_signature_equals_botocores(
    frozen_clock, endpoint, token, method, bucket, key, query, headers, body
):
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = FastS3(endpoint, "eu-central-1", credentials)
    path = f"{client.base_path}/{fast.quote_s3(bucket)}" + (
        f"/{fast.quote_s3(key, safe='/')}" if key is not None else ""
    )
    if key is None and not query:
        path += "/"

    url, ours = client._signed(method, path, query, headers, body)
    theirs = _botocore_authorization(credentials, "eu-central-1", method, url, headers, body)

    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"] == "20261130T235958Z"
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token") == token
