"""Config files: read YAML strictly, validate it with a pydantic model, report errors by key path.

Both config files (``promotion.yaml``, ``reconcile.yaml``) go through here:

- :func:`read_yaml` reads a file as UTF-8 YAML and refuses a missing, unreadable or non-UTF-8
  file, bad YAML and duplicate keys (PyYAML would silently keep the last one);
- :func:`validate` runs a pydantic v2 model over the parsed document and turns every validation
  error into one :class:`~greenlight.errors.ConfigError` (exit 2) that names the key path
  (``prefixes[1].max_delete_fraction``), with a did-you-mean hint for unknown keys.

The models themselves live next to the config they describe and forbid unknown keys
(``extra="forbid"``); the plain objects the engine uses are built from the validated model.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from greenlight.errors import ConfigError

Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Base of every config-file model: unknown keys are errors, no type coercion (``"1"`` is not
    a number, ``1`` is not ``true``), frozen once validated."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ------------------------------------------------------------------------------------------ YAML
class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser: ~10x faster
    """A SafeLoader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: the constructor below reports it
            continue
        if duplicate:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, what: str = "config file") -> Any:
    """Parse a YAML config file; a missing, unreadable or non-UTF-8 file, bad YAML or a duplicate
    key is a :class:`ConfigError` naming the file (and the line of a duplicate key)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{what} {path} is a directory, not a file") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


# ---------------------------------------------------------------------------------- validation
M = typing.TypeVar("M", bound=BaseModel)


def validate(
    model: type[M],
    raw: Any,
    *,
    file: str,
    messages: Mapping[str, str] = {},  # noqa: B006 - read only
    label: Callable[[Loc], str | None] | None = None,
) -> M:
    """Validate ``raw`` with ``model``; any error becomes a :class:`ConfigError` naming the key path.

    ``messages`` words the error of a field (keyed by its name, ``name[]`` for an item of a list
    field, ``""`` for the document itself, ``missing:name`` for a hint after "missing key") as
    a template with ``{where}`` (the key path), ``{file}`` and ``{value}`` (the value found).
    Errors a validator raises with ``ValueError`` keep their own text. ``label`` may rename a
    prefix of the path (``targets[0]`` -> ``targets[0] (datasets)``).
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = list(dict.fromkeys(describe(model, e, file, messages, label) for e in exc.errors()))
        raise ConfigError("; ".join(problems)) from None


def describe(
    model: type[BaseModel],
    error: Mapping[str, Any],
    file: str,
    messages: Mapping[str, str],
    label: Callable[[Loc], str | None] | None = None,
) -> str:
    """One pydantic error as a sentence that starts with the key path at fault."""
    loc, _ = _walk(model, tuple(error["loc"]))
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        _, parent = _walk(model, tuple(error["loc"])[:-1])
        allowed = sorted(_fields(parent))
        key = loc[-1]
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_where(loc[:-1], file, label)}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        key = loc[-1]
        extra = messages.get(f"missing:{key}", "")
        return f"{_where(loc[:-1], file, label)}: missing required key {key!r}{extra}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
        if kind == "union_tag_not_found" or not isinstance(value, Mapping):
            if not isinstance(value, Mapping):
                template = _template(messages, loc) or "{where}: expected a mapping, got {value!r}"
                return template.format(where=_where(loc, file, label), file=file, value=value)
            return f"{_where(loc, file, label)}: missing required key {tag!r}"
        expected = str(error["ctx"]["expected_tags"]).replace("'", "")
        return f"{_where(loc, file, label)}.{tag}: {value.get(tag)!r} is not one of {expected}"
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return f"{_where(loc, file, label)}: {error['ctx']['error']}"
    template = _template(messages, loc)
    if template is None:
        return f"{_where(loc, file, label)}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {value!r}"
    return template.format(where=_where(loc, file, label), file=file, value=value)


def _template(messages: Mapping[str, str], loc: Loc) -> str | None:
    """The message of the innermost field of a path: ``prefixes[0].consumers[2]`` uses
    ``consumers[]`` if given (an item of the list), else ``consumers``."""
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if loc and isinstance(loc[-1], int) and f"{field}[]" in messages:
        return messages[f"{field}[]"]
    return messages.get(field)


def _where(loc: Loc, file: str, label: Callable[[Loc], str | None] | None) -> str:
    if not loc:
        return file
    text = ""
    for i, part in enumerate(loc):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        renamed = label(loc[: i + 1]) if label else None
        if renamed:
            text = renamed
    return text


def _fields(tp: Any) -> set[str]:
    return set(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else set()


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``X | None`` -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, Any]:
    """Follow a pydantic error location through the model's annotations: returns the location
    without the discriminator tags pydantic inserts for tagged unions, and the type found there."""
    clean: list[str | int] = []
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = _unwrap(args[0]) if args else Any
            clean.append(part)
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tagged = [m for m in typing.get_args(_unwrap(tp)) if _tag_of(m) == part]
            if tagged:  # a discriminator tag: not a key of the document
                tp = tagged[0]
                continue
        fields = tp.model_fields if isinstance(tp, type) and issubclass(tp, BaseModel) else {}
        tp = fields[part].annotation if part in fields else Any
        clean.append(part)
    return tuple(clean), _unwrap(tp)


def _tag_of(tp: Any) -> str | None:
    """The ``Literal`` value of a tagged-union member's ``kind`` field."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or "kind" not in tp.model_fields:
        return None
    args = typing.get_args(tp.model_fields["kind"].annotation)
    return str(args[0]) if len(args) == 1 else None


__all__ = ["StrictModel", "describe", "read_yaml", "validate"]


def check_keys(doc: Any, allowed: set[str], where: str) -> None:
    """For the small hand-checked configs: ``doc`` is a mapping whose keys are all in ``allowed``;
    otherwise a :class:`ConfigError` naming ``where`` and the key (with the closest allowed name)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(doc).__name__}")
    for key in sorted(set(doc) - set(allowed), key=str):
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}")
