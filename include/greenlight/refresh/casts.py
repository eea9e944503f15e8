"""The cast table: how a prod column is read so that it fits the staging column of the same name.

Staging is often migrated ahead of prod, so a column can have another type on each side (the
runbook's ``admin_config.value``: ``numeric`` in prod, ``jsonb`` in staging). The cast is applied
on the **source side**, inside the ``COPY (SELECT …) TO STDOUT`` query, so what arrives at staging
already has the staging type and ``COPY … FROM STDIN`` needs no conversion.

Only conversions that cannot lose or invent data are listed. Anything else is "no safe cast" and
fails that table with the column and both types named — never a silent truncation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from greenlight.errors import GreenlightError

INTS = ("smallint", "integer", "bigint")
FLOATS = ("real", "double precision")
TEXTS = ("text", "character varying", "character")
TIMES = ("timestamp without time zone", "timestamp with time zone")

#: Scalar types that ``to_jsonb`` turns into a JSON number, string or boolean without loss.
JSONB_SCALARS = (
    *INTS,
    "numeric",
    *FLOATS,
    "boolean",
    *TEXTS,
    "uuid",
    "date",
    *TIMES,
)


class NoSafeCastError(GreenlightError):
    """A source column cannot be converted to the target column's type without risk (exit 1)."""

    kind = "cast"

    def __init__(self, table: str, column: str, source_type: str, target_type: str, why: str = ""):
        self.table = table
        self.column = column
        self.source_type = source_type
        self.target_type = target_type
        extra = f" ({why})" if why else ""
        super().__init__(
            f"{table}.{column}: no safe cast from {source_type} (prod) to {target_type} (staging){extra}; "
            "migrate one side, or skip the table"
        )


@dataclass(frozen=True)
class ColumnType:
    """A column type as ``format_type()`` prints it, split into base name, modifiers and array-ness."""

    text: str  # e.g. 'character varying(50)[]'

    @property
    def is_array(self) -> bool:
        return self.text.endswith("[]")

    @property
    def element(self) -> ColumnType:
        return ColumnType(self.text[:-2]) if self.is_array else self

    @property
    def base(self) -> str:
        """The type without modifiers: 'character varying(50)' -> 'character varying'."""
        t = self.element.text
        # 'timestamp(3) without time zone' keeps its words; drop only the parenthesised modifier.
        return re.sub(r"\(\s*[\d,\s]+\)", "", t).strip()

    @property
    def modifiers(self) -> tuple[int, ...]:
        m = re.search(r"\(\s*([\d,\s]+)\)", self.element.text)
        return tuple(int(x) for x in m.group(1).split(",")) if m else ()


def _wider_or_equal(src: ColumnType, dst: ColumnType) -> tuple[bool, str]:
    """Same base type, different modifiers: is every source value representable in the target?"""
    base = src.base
    s, d = src.modifiers, dst.modifiers
    if not d:
        return True, ""  # unconstrained target (varchar, numeric, timestamp) holds anything
    if not s:
        return False, f"the target limits {base} to {dst.text} and the source does not"
    if base in ("character varying", "character", "bit varying", "bit"):
        return (d[0] >= s[0], "" if d[0] >= s[0] else "values could be truncated")
    if base == "numeric":
        sp, ss = s[0], (s[1] if len(s) > 1 else 0)
        dp, ds = d[0], (d[1] if len(d) > 1 else 0)
        ok = ds >= ss and (dp - ds) >= (sp - ss)
        return ok, "" if ok else "digits could be lost or overflow"
    if base in TIMES or base in ("time without time zone", "time with time zone", "interval"):
        ok = d[0] >= s[0]
        return ok, "" if ok else "fractional seconds would be rounded"
    return False, "different type modifiers"


def cast_expression(
    column: str, source: str, target: str, *, table: str = "?", quoted: str | None = None
) -> tuple[str, str]:
    """The source-side SQL expression that reads ``column`` as the target type, and its rule name.

    ``quoted`` is the already-quoted column identifier (defaults to a double-quoted ``column``).
    Raises :class:`NoSafeCastError` naming the table, column and both types.
    """
    col = quoted or '"' + column.replace('"', '""') + '"'
    src, dst = ColumnType(source), ColumnType(target)
    if src.text == dst.text:
        return col, "same"
    if dst.base == "jsonb" and not dst.is_array:
        if src.base == "json" and not src.is_array:
            return f"{col}::jsonb", "json->jsonb"
        if src.is_array and src.base in JSONB_SCALARS:
            return f"to_jsonb({col})", "array->jsonb"
        if src.base in JSONB_SCALARS:
            return f"to_jsonb({col})", "scalar->jsonb"
        raise NoSafeCastError(table, column, source, target, "to_jsonb is only used for scalars and their arrays")
    if dst.base == "json" and not dst.is_array and src.base == "jsonb" and not src.is_array:
        return f"{col}::json", "jsonb->json"
    if src.is_array != dst.is_array:
        raise NoSafeCastError(table, column, source, target, "array and non-array")
    suffix = "[]" if dst.is_array else ""
    sb, db = src.base, dst.base
    if sb == db:
        ok, why = _wider_or_equal(src, dst)
        if ok:
            return f"{col}::{dst.text}", "widen"
        raise NoSafeCastError(table, column, source, target, why)
    if sb in INTS and db in INTS and INTS.index(db) > INTS.index(sb):
        return f"{col}::{db}{suffix}", "widen int"
    if sb in INTS and db == "numeric":
        ok = not dst.modifiers or (dst.modifiers[0] - (dst.modifiers[1] if len(dst.modifiers) > 1 else 0)) >= 19
        if ok:
            return f"{col}::{dst.text}", "int->numeric"
        raise NoSafeCastError(table, column, source, target, "the numeric precision may be too small")
    if (sb, db) in (("smallint", "real"), ("smallint", "double precision"), ("integer", "double precision")):
        return f"{col}::{dst.text}", "int->float"
    if sb == "real" and db == "double precision":
        return f"{col}::{dst.text}", "widen float"
    if sb in TEXTS and db in TEXTS:
        if db == "text" or (db == "character varying" and not dst.modifiers):
            return f"{col}::{dst.text}", "text"
        raise NoSafeCastError(table, column, source, target, "values could be truncated")
    if db == "text" and not dst.is_array:
        # Every type has a text form; reading it as text loses nothing.
        return f"{col}::text", "to text"
    if sb == "date" and db in TIMES and db == "timestamp without time zone":
        return f"{col}::{dst.text}", "date->timestamp"
    if sb == "json" and db == "jsonb":
        return f"{col}::{dst.text}", "json->jsonb"
    raise NoSafeCastError(table, column, source, target)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: Masking rules for ``mask:`` in the config, applied in the source SELECT (raw values never leave prod).
#: Each takes the quoted column and its target type; NULL stays NULL.
MASKS = {
    "hash": "md5({col}::text)",
    "email": "CASE WHEN {col} IS NULL THEN NULL ELSE 'user-' || left(md5({col}::text), 12) || '@example.invalid' END",
    "null": "NULL",
    "redact": "CASE WHEN {col} IS NULL THEN NULL ELSE 'redacted' END",
}


def mask_expression(rule: str, col: str, target_type: str) -> str:
    """The masked source expression of a column, cast to the staging column's type."""
    return f"({MASKS[rule].format(col=col)})::{target_type}"
