"""The redaction rules: credentials out of URLs, query strings, documents, argv and messages; S3 keys,
ssh user names and e-mail addresses stay readable (where they are applied: tests/integration/test_secrets.py)."""

from __future__ import annotations

from secretfixtures import PASSWORD, TOKEN

from greenlight.redact import clean_message, redact, redact_argv, redact_text


def test_redaction_rules():
    assert redact_text(f"https://x-access-token:{TOKEN}@github.com/o/r.git") == (
        "https://x-access-token:***@github.com/o/r.git"
    )
    assert (
        redact_text(f"clone https://{TOKEN}@github.com/o/r.git failed") == "clone https://***@github.com/o/r.git failed"
    )
    assert redact_text(f"postgresql://app:{PASSWORD}@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_text(f"http://h/x?a=1&token={TOKEN}&b=2") == "http://h/x?a=1&token=***&b=2"
    # Not credentials: S3 keys, ssh user names, e-mail addresses stay readable.
    for plain in ("s3://prod-x/a@b/c.csv", "ssh://git@github.com/o/r.git", "ops@example.com", "date=2026-01-01"):
        assert redact_text(plain) == plain
    assert redact({"password": PASSWORD, "repo": f"https://u:{PASSWORD}@h/r", "key": "a/b.csv"}) == {
        "password": "***",
        "repo": "https://u:***@h/r",
        "key": "a/b.csv",
    }
    assert PASSWORD not in redact_argv(["dvc", "remote", "modify", "r", "secret_access_key", PASSWORD])
    assert PASSWORD not in clean_message(ValueError(f"cannot reach http://u:{PASSWORD}@h"))
