"""Config-file models: a strict pydantic base, and validation errors reported by key path.

- :class:`StrictModel` is the base of every config-file model: unknown keys are errors
  (``extra="forbid"``), nothing is coerced, frozen once validated.
- :func:`validate` runs a model over a parsed document (:func:`greenlight.yamlfile.read_yaml`)
  and turns every validation error into one :class:`~greenlight.errors.ConfigError` (exit 2) that
  names the key path (``prefixes[1].max_delete_fraction``), with a did-you-mean hint for unknown keys.

The models themselves live next to the config they describe; the plain objects the engine uses are
built from the validated document.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from greenlight.errors import ConfigError

Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Base of every config-file model: unknown keys are errors, no type coercion (``"1"`` is not
    a number, ``1`` is not ``true``), frozen once validated."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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
    if template is None and kind == "model_type":  # a section that should be a mapping
        return f"{_where(loc, file, label)}: expected a mapping, got {value!r}"
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
        if typing.get_origin(tp) is dict and isinstance(part, str):  # a key of a free-form mapping
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
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


__all__ = ["StrictModel", "describe", "validate"]
