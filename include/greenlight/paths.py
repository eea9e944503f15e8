"""Where greenlight's packaged files live: ``include/`` (configs, contracts, Feast repo) and the project root.

Resolved from this file, so they hold for an editable install, ``PYTHONPATH=include`` and the
Airflow image alike.
"""

from __future__ import annotations

from pathlib import Path

#: ``include/``: the folder holding the ``greenlight`` package, ``config/``, ``contracts/``, ``feature_repo/``.
INCLUDE_DIR = Path(__file__).resolve().parents[1]
#: The project root (``dags/``, ``plugins/``, ``Makefile``); only meaningful in a checkout.
PROJECT_ROOT = INCLUDE_DIR.parent
