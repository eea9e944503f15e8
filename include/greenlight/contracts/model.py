"""The contract model: what a contract file may say, how it is loaded, and the :class:`Contract` it becomes.

A contract file is validated by pydantic v2 models (``extra="forbid"``, strict types) — one per
``kind``, chosen by the ``kind`` key — and every validation error is reported as a
:class:`~greenlight.errors.ConfigError` (exit 2) naming the file and the key path at fault, e.g.
``contract include/contracts/x.yaml: freshness.max_age_days: must be a number > 0, got 0``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from greenlight.contracts.values import dtype_name, utc_now
from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR

CONTRACTS_DIR = INCLUDE_DIR / "contracts"
CONTRACTS_ENV = "GREENLIGHT_CONTRACTS_DIR"

LOGICAL_TYPES = ("string", "int", "float", "date", "datetime", "bool")
UNKNOWN = "unknown"  # a CSV column whose sampled values are all empty

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# ----------------------------------------------------------------------------- the loaded contract


@dataclass(frozen=True)
class Freshness:
    column: str
    max_age_days: float


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    dims: tuple[str, ...]


@dataclass(frozen=True)
class Contract:
    """A validated contract file. ``columns``/``variables``/``coordinates`` keep the file's order."""

    name: str
    version: int
    kind: str  # "table" | "zarr"
    path: str = ""
    description: str = ""
    format: str | None = None  # "csv" | "parquet"
    select: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    non_null: tuple[str, ...] = ()
    freshness: Freshness | None = None
    allow_extra: bool = False
    variables: Mapping[str, ArraySpec] = field(default_factory=dict)
    coordinates: Mapping[str, str] = field(default_factory=dict)

    @property
    def needs_sample(self) -> bool:
        """True when the contract checks data values (non-null keys, freshness), not only the schema."""
        return self.kind == "table" and bool(self.non_null or self.freshness)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "kind": self.kind}
        if self.kind == "table":
            out.update(format=self.format, select=self.select, columns=dict(self.columns), non_null=list(self.non_null))
            if self.freshness:
                out["freshness"] = {"column": self.freshness.column, "max_age_days": self.freshness.max_age_days}
        else:
            out["variables"] = {n: {"dtype": s.dtype, "dims": list(s.dims)} for n, s in self.variables.items()}
            out["coordinates"] = dict(self.coordinates)
        out["allow_extra"] = self.allow_extra
        return out


def roles(kind: str) -> tuple[str, ...]:
    """The schema elements a kind has: a table's columns; a zarr store's variables and coordinates."""
    return ("column",) if kind == "table" else ("variable", "coordinate")


def specs(schema_or_contract: Any, role: str) -> dict[str, tuple[str, tuple | None]]:
    """name -> (dtype, dims or None) for columns / variables / coordinates, from a schema or contract."""
    if isinstance(schema_or_contract, Contract):
        c = schema_or_contract
        if role == "column":
            return {n: (t, None) for n, t in c.columns.items()}
        if role == "variable":
            return {n: (s.dtype, tuple(s.dims)) for n, s in c.variables.items()}
        return {n: (t, None) for n, t in c.coordinates.items()}
    s = schema_or_contract
    if role == "column":
        return {n: (t, None) for n, t in s.get("columns", {}).items()}
    key = "variables" if role == "variable" else "coordinates"
    out = {}
    for n, spec in s.get(key, {}).items():
        dims = spec.get("dims")
        out[n] = (spec.get("dtype"), tuple(dims) if dims is not None and role == "variable" else None)
    return out


def freshness_cutoff(contract: Contract, now: dt.datetime | None = None) -> dt.datetime | None:
    """The oldest acceptable newest value of the freshness column (UTC), or None without freshness."""
    if contract.freshness is None:
        return None
    return utc_now(now) - dt.timedelta(days=contract.freshness.max_age_days)


# ------------------------------------------------------------------------------ the file's schema


def _problem(message: str, key: str = "") -> PydanticCustomError:
    """A validation error worded for the user; ``key`` is relative to where the validator runs."""
    return PydanticCustomError("greenlight", "{message}", {"message": message, "key": key})


def _suggest(value: Any, choices) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _logical_type(value: str) -> str:
    if value not in LOGICAL_TYPES:
        raise _problem(f"unknown type {value!r}{_suggest(value, LOGICAL_TYPES)}; use one of {', '.join(LOGICAL_TYPES)}")
    return value


def _numpy_dtype(value: str) -> str:
    normalised = dtype_name(value) if value else None
    if normalised is None:
        raise _problem(f"{value!r} is not a numpy dtype (e.g. float32, float64, int64, bool)")
    return normalised


def _dim_names(value: list[str]) -> list[str]:
    if not value:
        raise _problem(f"must be a non-empty list of dimension names, got {value!r}")
    return value


Name = Annotated[str, Field(min_length=1)]
LogicalType = Annotated[str, AfterValidator(_logical_type)]
NumpyDType = Annotated[str, AfterValidator(_numpy_dtype)]


class _Strict(BaseModel):
    # defer_build: the validators are built on the first contract loaded, not when DAG parsing imports
    # this package (promotion.config resolves contract paths at parse time but never validates one).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class FreshnessDoc(_Strict):
    column: str
    max_age_days: float = Field(gt=0, allow_inf_nan=False)


class ArrayDoc(_Strict):
    dtype: NumpyDType
    dims: Annotated[list[Name], AfterValidator(_dim_names)]


class _CommonDoc(_Strict):
    name: str
    version: int = Field(ge=1)
    description: str = ""
    allow_extra: bool = False

    @field_validator("name")
    @classmethod
    def _simple_name(cls, name: str, info: ValidationInfo) -> str:
        if not _NAME_RE.match(name):
            raise _problem(f"must be a simple name (letters, digits, _ . -), got {name!r}")
        expected = (info.context or {}).get("expected_name")
        if expected is not None and name != expected:
            raise _problem(f"{name!r} does not match the file name {expected!r}.yaml")
        return name


class TableDoc(_CommonDoc):
    """``kind: table``: one CSV or parquet file, the newest match of ``select`` under the prefix."""

    kind: Literal["table"]
    format: Literal["csv", "parquet"]
    select: str
    columns: dict[Name, LogicalType] = Field(min_length=1)
    non_null: list[str] = []
    freshness: FreshnessDoc | None = None

    @field_validator("select")
    @classmethod
    def _relative_glob(cls, select: str) -> str:
        if not select.strip():
            raise _problem("is required: a glob relative to the prefix, e.g. '*.csv'")
        if select.startswith("/") or ".." in select.split("/"):
            raise _problem(f"{select!r} must be relative to the prefix (no leading '/' or '..')")
        return select.strip()

    @model_validator(mode="after")
    def _known_columns(self) -> TableDoc:
        for col in self.non_null:
            if col not in self.columns:
                raise _problem(f"{col!r} is not one of the contract's columns{_suggest(col, self.columns)}", "non_null")
        if self.freshness is not None:
            col = self.freshness.column
            if col not in self.columns:
                raise _problem(f"{col!r} is not one of the contract's columns", "freshness.column")
            if self.columns[col] not in ("date", "datetime"):
                raise _problem(
                    f"{col!r} must be a date or datetime column, it is {self.columns[col]}", "freshness.column"
                )
        return self


class ZarrDoc(_CommonDoc):
    """``kind: zarr``: a Zarr v2/v3 store's arrays, read from its metadata documents only."""

    kind: Literal["zarr"]
    variables: dict[Name, ArrayDoc] = {}
    coordinates: dict[Name, NumpyDType] = {}

    @model_validator(mode="after")
    def _some_arrays(self) -> ZarrDoc:
        if not self.variables and not self.coordinates:
            raise _problem("a zarr contract needs variables and/or coordinates", "variables")
        for coord in self.coordinates:
            if coord in self.variables:
                raise _problem("is also listed under variables", f"coordinates.{coord}")
        return self


_DOCS: dict[str, type[_CommonDoc]] = {"table": TableDoc, "zarr": ZarrDoc}
_ALL_KEYS = tuple(dict.fromkeys(k for doc in _DOCS.values() for k in doc.model_fields))
_COMMON_KEYS = ("name", "version", "kind", "description")

#: What a key must hold, for type errors ("must be ..., got ...") and missing keys ("is required: ...").
#: ``*`` stands for a column, variable or coordinate name.
_EXPECTED = {
    ("name",): "a simple name (letters, digits, _ . -)",
    ("version",): "an integer >= 1",
    ("description",): "a string",
    ("allow_extra",): "true or false",
    ("format",): "'csv' or 'parquet'",
    ("select",): "a glob relative to the prefix, e.g. '*.csv'",
    ("columns",): "a non-empty mapping of name: type",
    ("columns", "*"): f"one of {', '.join(LOGICAL_TYPES)}",
    ("non_null",): "a list of column names",
    ("non_null", "*"): "a list of column names",
    ("freshness",): "a mapping {column: ..., max_age_days: ...}",
    ("freshness", "max_age_days"): "a number > 0",
    ("variables",): "a mapping of name: {dtype: ..., dims: [...]}",
    ("variables", "*"): "a mapping {dtype: ..., dims: [...]}",
    ("variables", "*", "dtype"): "a numpy dtype name such as float32",
    ("variables", "*", "dims"): "a non-empty list of dimension names",
    ("variables", "*", "dims", "*"): "a non-empty list of dimension names",
    ("coordinates",): "a mapping of name: numpy dtype",
    ("coordinates", "*"): "a numpy dtype name such as float32",
}


@functools.cache
def _adapter() -> TypeAdapter:
    """The validator of a contract document: TableDoc or ZarrDoc, chosen by ``kind``."""
    return TypeAdapter(Annotated[TableDoc | ZarrDoc, Field(discriminator="kind")])


def _expected(path: tuple) -> str | None:
    for pattern, text in _EXPECTED.items():
        if len(pattern) == len(path) and all(p in ("*", part) for p, part in zip(pattern, path, strict=True)):
            return text
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while typing.get_origin(annotation) in (Annotated, typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _model_at(model: Any, path: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` (for listing its allowed keys)."""
    for part in path:
        model = _unwrap(model)
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return None
    model = _unwrap(model)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _explain(error: dict) -> tuple[str, str]:
    """(key path, message) for one pydantic error, worded like the rest of greenlight's config errors."""
    kind, path = None, tuple(error["loc"])
    if path and path[0] in _DOCS:
        kind, path = path[0], path[1:]
    kind_of, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    dotted = ".".join(map(str, path))
    if kind_of == "union_tag_invalid":
        return "kind", f"must be 'table' or 'zarr', got {ctx.get('tag')!r}"
    if kind_of == "union_tag_not_found":
        return "kind", "is required"
    if "[key]" in path:  # a mapping key that is not a string (YAML turned it into a bool or number)
        where = ".".join(map(str, path[: path.index("[key]") - 1]))
        return (
            where,
            f"names must be strings: quote {value!r} in the YAML" if value != "" else "names must not be empty",
        )
    if kind_of == "greenlight":
        return ".".join(p for p in (dotted, ctx.get("key")) if p), ctx["message"]
    if kind_of == "extra_forbidden":
        parent = _DOCS[kind] if not path[:-1] else _model_at(_DOCS[kind], path[:-1])
        if path[:-1]:
            allowed = ", ".join(parent.model_fields) if parent else "?"
            return dotted, f"unknown key (allowed: {allowed})"
        key = str(path[-1])
        if key in _ALL_KEYS:
            allowed = ", ".join(k for k in _DOCS[kind].model_fields if k not in _COMMON_KEYS)
            return dotted, f"is not allowed for kind: {kind} (allowed: {allowed})"
        return dotted, f"unknown key{_suggest(key, _ALL_KEYS)}; allowed keys: {', '.join(_ALL_KEYS)}"
    expected = _expected(path)
    if kind_of == "missing":
        return dotted, f"is required: {expected}" if expected else "is required"
    if expected:
        return dotted, f"must be {expected}, got {value!r}"
    return dotted, f"{error['msg']}, got {value!r}"


# ---------------------------------------------------------------------------------------- loading


def contract_path(path_or_name: str | os.PathLike, *, contracts_dir: str | os.PathLike | None = None) -> Path:
    """A path as given, or ``<contracts dir>/<name>.yaml`` for a bare name (or a bare file name).

    The contracts dir is ``contracts_dir``, else ``$GREENLIGHT_CONTRACTS_DIR``, else ``include/contracts``.
    """
    text = os.fspath(path_or_name)
    base = Path(contracts_dir or os.environ.get(CONTRACTS_ENV) or CONTRACTS_DIR)
    if isinstance(path_or_name, os.PathLike) or "/" in text or os.sep in text:
        return Path(text)
    if text.endswith((".yaml", ".yml")):
        return Path(text) if Path(text).exists() else base / text
    return base / f"{text}.yaml"


def available_contracts(contracts_dir: str | os.PathLike | None = None) -> list[str]:
    base = Path(contracts_dir or os.environ.get(CONTRACTS_ENV) or CONTRACTS_DIR)
    return sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []


def load_contract(path_or_name: str | os.PathLike, *, contracts_dir: str | os.PathLike | None = None) -> Contract:
    """Load and validate one contract file; :class:`ConfigError` names the file and the key at fault."""
    path = contract_path(path_or_name, contracts_dir=contracts_dir)
    if not path.is_file():
        known = available_contracts(path.parent)
        hint = f" (contracts in {path.parent}: {', '.join(known)})" if known else ""
        raise ConfigError(f"contract {os.fspath(path_or_name)!r}: file {path} not found{hint}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"contract {path}: cannot read it as YAML: {exc}") from exc
    return parse_contract(doc, source=str(path), expected_name=path.stem)


def parse_contract(doc: Any, *, source: str = "<contract>", expected_name: str | None = None) -> Contract:
    """Validate a parsed contract document (see :mod:`greenlight.contracts` for the format).

    Raises :class:`ConfigError` ``contract <source>: <key path>: <what is wrong>``; when several keys
    are wrong, the first is named that way and the others are listed after it.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"contract {source}: expected a mapping of keys at the top level, got {type(doc).__name__}")
    try:
        parsed = _adapter().validate_python(doc, context={"expected_name": expected_name})
    except ValidationError as exc:
        # Unknown keys first, then missing ones, then wrong values (the order a reader fixes them in).
        rank = {"extra_forbidden": 0, "missing": 1}
        problems = [_explain(e) for e in sorted(exc.errors(), key=lambda e: rank.get(e["type"], 2))]
        (key, message), rest = problems[0], problems[1:]
        more = f" (also: {'; '.join(f'{k}: {m}' for k, m in rest)})" if rest else ""
        raise ConfigError(f"contract {source}: {key}: {message}{more}") from None
    common = {
        "name": parsed.name,
        "version": parsed.version,
        "kind": parsed.kind,
        "path": source,
        "description": parsed.description,
        "allow_extra": parsed.allow_extra,
    }
    if isinstance(parsed, TableDoc):
        fresh = parsed.freshness
        return Contract(
            **common,
            format=parsed.format,
            select=parsed.select,
            columns=dict(parsed.columns),
            non_null=tuple(parsed.non_null),
            freshness=Freshness(fresh.column, float(fresh.max_age_days)) if fresh else None,
        )
    variables = {n: ArraySpec(a.dtype, tuple(a.dims)) for n, a in parsed.variables.items()}
    return Contract(**common, variables=variables, coordinates=dict(parsed.coordinates))
