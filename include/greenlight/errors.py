"""Exception classes shared by the library, the CLI and the DAGs.

Each class carries the exit code the CLI uses for it and a triage kind, so a task can decide
whether retrying could help: refusals, bad config and contract violations never get better on retry.
"""

from __future__ import annotations


class GreenlightError(Exception):
    """Base class. ``exit_code`` 1 = failure; ``retryable`` says whether a retry could help."""

    exit_code = 1
    kind = "unknown"
    retryable = False


class ConfigError(GreenlightError):
    """The configuration or the parameters are invalid (bad input: exit 2)."""

    exit_code = 2
    kind = "config"


class PrefixError(GreenlightError):
    """An error about one configured prefix; ``template`` words the message."""

    template = "{prefix}: {reason}"

    def __init__(self, prefix: str, reason: str):
        self.prefix = prefix
        self.reason = reason
        super().__init__(self.template.format(prefix=prefix, reason=reason))


class RefusedError(PrefixError):
    """A safety rule refused the plan before anything changed (exit 2)."""

    exit_code = 2
    kind = "refused"
    template = "refused {prefix}: {reason}"


class PreconditionError(PrefixError):
    """A QA precondition is not met (a QA run still RUNNING, no sign-off): nothing was changed (exit 2)."""

    exit_code = 2
    kind = "precondition"
    template = "precondition failed for {prefix}: {reason}"


class QAChangedError(PrefixError):
    """A QA object changed after the plan the gates validated: that prefix is not promoted past it
    (exit 2, never retried; clear and rerun the whole run to plan and gate the new snapshot)."""

    exit_code = 2
    kind = "precondition"
    template = "{prefix}: QA changed after validation: {reason}"


class StalePrefixError(PrefixError):
    """Nothing to copy or delete and the destination was not modified recently (exit 1)."""

    kind = "stale"
    template = "stale prefix {prefix}: {reason}"


class SyncFailedError(GreenlightError):
    """Some copies or deletes failed; no delete ran if any copy failed (exit 1).

    ``result`` (when set) is the prefix's partial result, naming its manifest."""

    kind = "failure"
    retryable = True
    result = None


class VerificationError(GreenlightError):
    """After a promotion the destination does not equal the source (exit 1)."""

    kind = "verification"

    def __init__(self, prefix: str, problems: list[str]):
        self.prefix = prefix
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"verification failed for {prefix}: {shown}{more}")


class ManifestError(GreenlightError):
    """A manifest could not be read or written."""

    kind = "manifest"
    retryable = True


class ManifestInvalidError(ManifestError):
    """The manifest named is not one greenlight can use: a folder, not JSON, not a JSON object,
    missing a field, outside greenlight's manifest root (bad input: exit 2, never retried)."""

    exit_code = 2
    retryable = False


class ManifestNotFoundError(ManifestError):
    """The manifest named by the user does not exist (bad input: exit 2)."""

    exit_code = 2
    retryable = False


class ContractError(GreenlightError):
    """An artefact's schema could not be read to check it against its contract: the prefix is
    missing or empty, no object matches, or the file is unreadable (exit 2, never retried)."""

    exit_code = 2
    kind = "contract"

    def __init__(self, location: str, reason: str):
        self.location = location
        self.reason = reason
        super().__init__(f"contract check failed for {location}: {reason}")


class MissingInputError(GreenlightError):
    """An input the task reads does not exist: a missing key or file, or an empty upstream
    partition. Retrying cannot create it; the upstream step must run first (exit 2, not retried).

    ``upstream`` names the task that should have produced it, when the caller knows.
    """

    exit_code = 2
    kind = "missing_input"

    def __init__(self, location: str, reason: str, *, upstream: str | None = None):
        self.location = location
        self.reason = reason
        self.upstream = upstream
        super().__init__(f"missing input {location}: {reason}")


class ServiceError(GreenlightError):
    """A service the task needs refused the connection or could not bind its port (a duplicate
    service, or one that is restarting): retried with a longer backoff (exit 1)."""

    kind = "service"
    retryable = True


class PublishedError(GreenlightError):
    """A publishing step already published different outputs under this run id: it does not run
    twice (category B: trigger a new run). Nothing was changed (exit 2)."""

    exit_code = 2
    kind = "refused"


class RefreshError(GreenlightError):
    """A part of a staging refresh failed: ``where`` names it (a step such as ``migrate`` or
    ``health``, or a table), ``reason`` says why (exit 1). The refresh's own failures share it:
    :class:`greenlight.refresh.checks.RefreshFailedError` (a step) and
    :class:`greenlight.refresh.tables.TableCopyError` (a table; staging kept its old rows)."""

    kind = "failure"

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")
