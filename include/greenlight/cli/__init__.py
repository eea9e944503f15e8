"""``greenlight`` / ``python -m greenlight``: the runbooks' manual fallback, calling the same library as the DAGs.

Each subcommand is a module of this package with ``add_parser(subparsers)`` and ``run(args) -> int``,
listed in :data:`COMMANDS`. Exit codes: 0 ok, 2 refused or bad input (nothing changed), 1 failure.
The last line on stdout is a JSON summary; per-object actions and progress go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys

from greenlight.cli.output import emit
from greenlight.errors import GreenlightError
from greenlight.redact import RedactingFilter
from greenlight.triage import classify

#: What to do when a command fails for want of credentials or configuration (the CLI's own
#: settings: env vars, not the Airflow connections the DAGs use).
CLI_HINTS = {
    "permission": "the CLI reads S3 credentials from the standard AWS env vars (AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; AWS_ENDPOINT_URL for MinIO/SeaweedFS): check they are set "
    "and allowed (README, 'The CLI')",
}

#: Subcommand name -> its module, in the order ``--help`` lists them. A module is imported only
#: when needed: ``greenlight refresh`` does not pay for the imports of ``promote`` or ``features``.
COMMAND_MODULES = {
    "promote": "promote",
    "rollback": "rollback",
    "reconcile": "reconcile",
    "refresh": "refresh",
    "datasets": "datasets",
    "features": "features",
    "check-run": "checkrun",
    "model": "model",
    "backfill": "backfill",
}


def __getattr__(name: str):
    if name == "COMMANDS":  # every subcommand module (imports them all)
        return tuple(importlib.import_module(f"greenlight.cli.{m}") for m in COMMAND_MODULES.values())
    raise AttributeError(name)


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenlight", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    wanted = [words[0]] if words and words[0] in COMMAND_MODULES else list(COMMAND_MODULES)
    for name in wanted:
        importlib.import_module(f"greenlight.cli.{COMMAND_MODULES[name]}").add_parser(sub)
    return parser


#: Set for the CLI's own process unless the user set it (``PYDANTIC_DISABLE_PLUGINS=`` empty keeps
#: every plugin): pydantic otherwise scans every installed distribution for plugins when the first
#: config model is built (~20 ms of each CLI start, measured 2026-12-03), and the only models a
#: CLI process validates are greenlight's own config and contracts. DAG tasks are not affected.
PYDANTIC_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main(argv: list[str] | None = None, *, whole_process: bool = False) -> int:
    """Run one command; returns its exit code.

    ``whole_process``: this call is the process (the console script, ``python -m greenlight``).
    The cyclic GC is then off while the command's modules load (pydantic, the config models,
    …: ~70,000 objects that live until the process exits, walked again at every collection), and
    what they loaded is frozen (``gc.freeze``) before the GC is turned back on. Measured on the
    refresh bench's CLI run (2026-12-03, ``gc.callbacks``): 100 collections taking ~17.5 ms of
    CPU → 54 taking ~7.6 ms, all on the single-threaded start-up. Not done for an in-process
    call (tests): frozen objects are never collected.
    """
    os.environ.setdefault(*PYDANTIC_PLUGINS)
    if whole_process:
        gc.disable()
    try:
        args = _parser(argv).parse_args(argv)
    finally:
        if whole_process:
            gc.freeze()
            gc.enable()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # secrets never reach the terminal
        handler.addFilter(RedactingFilter())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except GreenlightError as exc:
        logging.getLogger("greenlight").error("%s", exc)
        emit({"error": str(exc), "kind": exc.kind, "exit_code": exc.exit_code})
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI reports every failure as exit 1
        triage = classify(exc)
        error = f"{type(exc).__name__}: {exc}"
        if triage.kind in CLI_HINTS:  # e.g. no S3 credentials in the env: what to set, not a traceback
            logging.getLogger("greenlight").error("%s failed: %s; %s", args.command, error, CLI_HINTS[triage.kind])
            emit({"error": error, "kind": triage.kind, "hint": CLI_HINTS[triage.kind], "exit_code": 1})
            return 1
        logging.getLogger("greenlight").exception("%s failed", args.command)
        emit({"error": error, "kind": triage.kind, "exit_code": 1})
        return 1


def console() -> None:
    """Entry point of the ``greenlight`` console script."""
    sys.exit(main(whole_process=True))
