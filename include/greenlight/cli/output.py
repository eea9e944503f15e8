"""What every subcommand prints: the last stdout line is one JSON summary (the machine-readable result)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from greenlight.redact import redact


def emit(summary: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(redact(summary), default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def default_run_id() -> str:
    """``cli__<UTC time>``: the run id of a manual run unless ``--run-id`` is given."""
    return "cli__" + datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
