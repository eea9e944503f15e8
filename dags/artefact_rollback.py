"""
### artefact_rollback — put prod back exactly as it was before a promotion

Automates the runbook's rollback section ("restore via list-object-versions and copy-object per
object/version"), using the promotion manifest instead of a hand search through versions.

| task | what it does |
|---|---|
| `plan` | reads the manifest (a run index `…/promotions/<run>/index.json` or one prefix manifest); lists what will be restored or deleted; **refuses, changing nothing**, if the manifest is not under the configured `manifest_uri` or names a key outside the configured prod prefixes, if a recorded version no longer exists (e.g. expired by a lifecycle rule) unless `allow_partial`, or if a key changed after the promotion (a later promotion or a hand edit; the run that changed it is named) unless `force` |
| `restore` | holds the lease of each prod prefix (a promotion of the same prefix cannot run meanwhile), copies each recorded VersionId back over its key, deletes keys that did not exist before, leaves untouched keys and keys the promotion never wrote alone, verifies object by object and writes a rollback manifest (which can itself be rolled back; a retry merges into it) |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params** — `manifest` (required), `only` (prefixes, QA or prod URI), `dry_run` (plan only),
`allow_partial`, `force`, `lease_wait` (seconds to wait for another writer of the same prefix),
`resume_consumers`. Clearing and rerunning is safe: keys already at their recorded state are skipped.
Prod consumers paused by a contract halt (see `artefact_promotion`) stay paused unless
`resume_consumers` is set: then `resume_consumers` unpauses them (only those) after the rollback
verified.
The same rollback runs from a terminal: `python -m greenlight rollback --manifest URI [--dry-run]`.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from greenlight.dagsupport.defaults import add_run_check, manual_dag


def steps():
    """The task bodies (engine, contracts, YAML parsing): imported when a task runs, never at parse
    time, where they would add ~0.2 s per parse of this file (measured with ``python -X importtime``)."""
    from greenlight.dagsupport import promotion

    return promotion


def rollback_steps():
    """The rollback task bodies, imported when a task runs (as :func:`steps`)."""
    from greenlight.dagsupport import rollback

    return rollback


@manual_dag(
    "artefact_rollback",
    __doc__,
    tags=["rollback"],
    retries=2,
    params={
        "manifest": Param(
            type="string",
            pattern="^s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/.+\\.json$",
            description="Promotion run index (…/promotions/<run>/index.json) or a prefix manifest.",
        ),
        "only": Param([], type="array", items={"type": "string"}, description="Roll back only these prefixes."),
        "dry_run": Param(False, type="boolean", description="Only log what would be restored or deleted."),
        "allow_partial": Param(False, type="boolean", description="Restore what can be restored if versions are gone."),
        "force": Param(
            False,
            type="boolean",
            description="Also restore keys changed after the promotion (a later promotion or a hand edit): "
            "undoes that later work.",
        ),
        "lease_wait": Param(
            0,
            type="integer",
            minimum=0,
            maximum=21600,
            description="Seconds to wait for another writer (a promotion or rollback of the same prod prefix) "
            "to finish; 0 = fail at once naming it.",
        ),
        "resume_consumers": Param(
            False,
            type="boolean",
            description="After the rollback is verified, unpause the consumer DAGs a contract halt paused.",
        ),
    },
)
def artefact_rollback():
    @task
    def plan(params=None) -> dict:
        """Runbook §6 rollback: read the manifest, list what would be restored or deleted; refuse if a recorded version is gone.

        Retry category: A — read-only; clear in place. A refusal (expired version) says "do not retry".
        """
        return rollback_steps().rollback_plan(
            params["manifest"], params["only"], params["allow_partial"], force=params["force"]
        )

    @task
    def restore(planned: dict, params=None, run_id=None) -> dict:
        """Runbook §6 rollback: copy each recorded version back, delete what the promotion created, verify, restore the `current` pointers.

        Retry category: B — moves prod and its pointers back; trigger a new rollback run (keys already restored are skipped).
        """
        if params["dry_run"]:
            return planned
        return rollback_steps().rollback_apply(
            params["manifest"],
            params["only"],
            params["allow_partial"],
            run_id=run_id,
            force=params["force"],
            wait=params["lease_wait"],
        )

    @task
    def resume_consumers(params=None, run_id=None) -> dict:
        """After the rollback verified: with `resume_consumers`, unpause the DAGs a contract halt paused.

        Retry category: A — idempotent; clear in place.
        """
        return steps().resume_consumers(run_id=run_id, enabled=params["resume_consumers"], dry_run=params["dry_run"])

    restore(plan()) >> resume_consumers()


add_run_check(artefact_rollback())
