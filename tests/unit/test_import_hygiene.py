"""Import hygiene in include/greenlight (the product brief's rule, issue P6 point 2).

- Imports sit at the top of the module. A function-local import is allowed only with a comment saying
  why (a measured import cost such as GX, Feast, MLflow, pandas, boto3, or an import cycle), on the
  same line or on the comment line(s) directly above it in the same block; a comment also covers the
  imports that follow it with nothing but blank lines in between (isort's sections).
- No private name (``_x``) is imported from another greenlight module.

Module-level ``if TYPE_CHECKING:`` blocks and ``try: import x / except ImportError`` guards are
module-level imports and are not checked.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "greenlight"

# Comments that say nothing about why the import is local.
_TOOL_PRAGMAS = ("noqa", "type:", "pragma", "pylint:", "fmt:")

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _comments(source: str) -> dict[int, str]:
    """Line number -> comment text (without '#'), read with tokenize so '#' inside strings is ignored."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def _is_reason(comment: str | None) -> bool:
    return bool(comment) and not comment.lower().startswith(_TOOL_PRAGMAS)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _local_imports(tree: ast.AST):
    """Yield (import node, the statement list it sits in) for each import inside a function or class."""

    def walk(node: ast.AST, in_scope: bool):
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            skip = field == "body" and isinstance(node, ast.If) and _is_type_checking(node.test)
            for child in block:
                if isinstance(child, ast.Import | ast.ImportFrom):
                    if in_scope and not skip:
                        yield child, block
                elif isinstance(child, ast.AST):
                    yield from walk(child, in_scope or isinstance(child, _SCOPES))

    yield from walk(tree, False)


def uncommented_local_imports(source: str) -> list[int]:
    """Line numbers of function-local imports that carry no comment saying why."""
    tree = ast.parse(source)
    comments = _comments(source)
    lines = source.splitlines()
    bad = []
    for node, block in _local_imports(tree):
        if any(_is_reason(comments.get(n)) for n in range(node.lineno, node.end_lineno + 1)):
            continue
        # Walk up over the imports right before this one in the same block, then require a comment line.
        index = block.index(node)
        first = node
        while index > 0:
            prev = block[index - 1]
            between = lines[prev.end_lineno : first.lineno - 1]
            if not isinstance(prev, ast.Import | ast.ImportFrom) or any(line.strip() for line in between):
                break
            if any(_is_reason(comments.get(n)) for n in range(prev.lineno, prev.end_lineno + 1)):
                break  # the previous import's own comment covers only itself
            first, index = prev, index - 1
        above = first.lineno - 1
        line_above = lines[above - 1] if above >= 1 else ""
        own_line_comment = line_above.strip().startswith("#")
        same_indent = len(line_above) - len(line_above.lstrip()) == first.col_offset
        if not (own_line_comment and same_indent and _is_reason(comments.get(above))):
            bad.append(node.lineno)
    return bad


def private_greenlight_imports(source: str) -> list[tuple[int, str]]:
    """(line, name) for each ``_name`` imported from another greenlight module (absolute or relative)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        internal = node.level > 0 or (node.module or "").split(".")[0] == "greenlight"
        if not internal:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                bad.append((node.lineno, alias.name))
    return bad


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50, f"expected the greenlight package under {PACKAGE}"
    for path in files:
        yield path.relative_to(PACKAGE).as_posix(), path.read_text()


def test_local_imports_say_why():
    offenders = []
    for rel, source in _sources():
        offenders += [f"include/greenlight/{rel}:{line}" for line in uncommented_local_imports(source)]
    assert not offenders, (
        "function-local imports without a comment saying why (move them to the top of the module, or keep "
        "them local with a comment giving the measured import cost or the import cycle):\n" + "\n".join(offenders)
    )


def test_no_private_names_imported_across_greenlight_modules():
    offenders = []
    for rel, source in _sources():
        offenders += [
            f"include/greenlight/{rel}:{line} imports {name}" for line, name in private_greenlight_imports(source)
        ]
    assert not offenders, "private names imported from another module (make them public):\n" + "\n".join(offenders)


SYNTHETIC = """\
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pandas import DataFrame

try:
    import yaml
except ImportError:
    yaml = None


def bare():
    import json
    return json


def commented_above():
    x = 1
    # local: pandas costs ~0.4 s to import; only this report needs it
    import pandas
    import pyarrow
    return pandas, pyarrow, x


def same_line():
    from mlflow import MlflowClient  # local: mlflow costs ~1.5 s to import
    return MlflowClient


def pragma_only():
    import boto3  # noqa: F401


def isort_sections_share_the_comment():
    # local: feast costs ~5 s to import
    import feast

    from greenlight.features import materialize
    return feast, materialize


def code_breaks_the_cover():
    # local: feast costs ~5 s to import
    import feast
    store = feast.FeatureStore()
    import great_expectations
    return store, great_expectations


def comment_outside_the_block():
    # local: dvc is slow
    if True:
        import dvc
    return dvc


class Holder:
    def method(self):
        from greenlight.storage import s3
        return s3
"""


def test_walker_finds_local_imports_in_a_known_source():
    """The checks above can fail: on a synthetic module they flag exactly the uncommented local imports."""
    assert uncommented_local_imports(SYNTHETIC) == [14, 32, 47, 54, 60]
    assert private_greenlight_imports(
        "from greenlight.storage.s3 import _info, list_pages\nfrom .x import _y\nfrom os import _exit\n"
    ) == [(1, "_info"), (2, "_y")]
