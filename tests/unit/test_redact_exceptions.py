"""Tracebacks logged after a task fails show no credential: ``scrub_exception`` redacts the whole
``__cause__``/``__context__`` chain in place and says when it cannot."""

from __future__ import annotations

import traceback

from greenlight.redact import scrub_exception

SECRET = "PLANTED-pw-0123456789"


def chained() -> BaseException:
    try:
        try:
            raise ConnectionError(f"cannot reach http://svc:{SECRET}@127.0.0.1:9/api")
        except ConnectionError as inner:
            raise RuntimeError(f"lookup failed for postgresql://app:{SECRET}@db/x") from inner
    except RuntimeError as middle:
        try:
            raise ValueError("while cleaning up")
        except ValueError as outer:
            return outer if outer.__context__ is middle else middle


def test_the_whole_chain_is_redacted_in_place_and_the_traceback_is_clean():
    exc = chained()
    assert SECRET in "".join(traceback.format_exception(exc))  # the planted secret is really there

    assert scrub_exception(exc) is True

    text = "".join(traceback.format_exception(exc))
    assert SECRET not in text
    assert "http://svc:***@127.0.0.1:9/api" in text and "postgresql://app:***@db/x" in text
    assert "while cleaning up" in text  # messages without secrets are left as they were


class FixedText(Exception):
    def __str__(self) -> str:
        return f"token in https://user:{SECRET}@host"


def test_an_exception_whose_text_ignores_its_args_is_reported_as_not_scrubbed():
    exc = FixedText("x")
    assert scrub_exception(exc) is False  # the caller must raise a redacted stand-in instead


class DeniedFixedText(PermissionError):
    def __str__(self) -> str:
        return f"denied for https://user:{SECRET}@host"


def test_a_task_raises_a_redacted_stand_in_when_a_message_cannot_be_rewritten():
    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    from greenlight.dagsupport.runtime import RedactedError, triaged
    from greenlight.triage import classify

    @triaged
    def flaky():
        raise FixedText("x")

    @triaged
    def denied():
        raise DeniedFixedText("x")

    with pytest.raises(RedactedError) as retried:
        flaky()
    assert classify(retried.value).retryable  # Airflow still retries it, as it would the original
    with pytest.raises(AirflowFailException) as failed:
        denied()
    assert classify(failed.value).kind == "permission"  # still failed at once, as a permission error
    for raised in (retried.value, failed.value):
        text = "".join(traceback.format_exception(raised))
        assert SECRET not in text and "user:***@host" in text
