"""Model-head promotion: check a candidate, smoke-score it, move the registered model's alias and
the ``current/models/<name>.json`` pointer together, roll both back (operations runbook,
"Promoting model heads"). See :mod:`greenlight.models.promotion`."""
