"""The refresh's two failure types share one base: a caller catches RefreshError for either and
reads where it failed and why; both keep exit code 1 and their triage kinds."""

from __future__ import annotations

import pytest

from greenlight.errors import GreenlightError, RefreshError
from greenlight.refresh.checks import RefreshFailedError
from greenlight.refresh.tables import TableCopyError


@pytest.mark.parametrize(
    ("exc", "attr", "kind"),
    [
        (RefreshFailedError("health", "GET /health answered 503"), "step", "failure"),
        (TableCopyError("public.books", "source returned 0 rows"), "table", "table"),
    ],
)
def test_refresh_failures_share_a_base(exc, attr, kind):
    with pytest.raises(RefreshError) as caught:
        raise exc
    err = caught.value
    assert isinstance(err, GreenlightError)
    assert getattr(err, attr) == err.where
    assert str(err) == f"{err.where}: {err.reason}"
    assert (err.exit_code, err.kind, err.retryable) == (1, kind, False)
