"""``python -m greenlight.features …``: the same as ``greenlight features …`` (kept for existing runbooks)."""

import sys

from greenlight.cli import main

raise SystemExit(main(["features", *sys.argv[1:]]))
