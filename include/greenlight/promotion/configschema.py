"""The shape of ``promotion.yaml``: strict pydantic models, the one judge of every key and value.

:func:`normalize` validates a parsed document and returns it as plain data: only the keys the
file sets, each value as validated (strings stripped where the model strips them, a prefix given
as a bare ``s3://`` URI as ``{"source": uri}``). :mod:`greenlight.promotion.config` builds the
engine's objects from that and checks what needs several keys at once. The normalized document is
what the validated-document cache (:mod:`greenlight.doccache`) keeps, so a CLI run whose file has
not changed skips importing this module and pydantic; this file's source is part of the cache key,
so any edit here invalidates every cached document.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from greenlight.configmodel import StrictModel, validate

_DAG_ID = r"^[A-Za-z0-9_.-]{1,250}$"
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _relative_key(value: str | None) -> str | None:
    if value is not None and (not value.strip() or value.startswith("/") or ".." in value.split("/")):
        raise ValueError(f"expected a key relative to the prefix (e.g. _QA_SIGNED_OFF), got {value!r}")
    return value


class SettingsModel(StrictModel):
    """``defaults:`` and the per-prefix overrides. A key left out inherits: only the keys a mapping
    sets reach the normalized document. The defaults here must equal ``PrefixSettings``'s (a test
    checks); the engine's objects take theirs from ``PrefixSettings``."""

    allow_empty: bool = False
    allow_unversioned: bool = False
    max_delete_fraction: Annotated[float, Field(ge=0, le=1)] = 0.10
    max_delete_count: Annotated[int, Field(ge=0)] = 1000
    stale_after_hours: Annotated[float, Field(gt=0)] | None = 24.0
    mlflow_experiments: list[NonEmpty] = []
    signoff_marker: Annotated[str | None, AfterValidator(_relative_key)] = None
    consumers: list[Annotated[str, StringConstraints(pattern=_DAG_ID)]] = []
    shard_objects: Annotated[int, Field(ge=1)] = 250_000


class PrefixModel(SettingsModel):
    """One ``prefixes:`` entry: an ``s3://`` URI, or a mapping with ``source`` and overrides."""

    source: str
    destination: str | None = None
    name: str | None = None
    contract: Any = None

    @model_validator(mode="before")
    @classmethod
    def _uri_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"source": data}
        if not isinstance(data, dict):
            raise ValueError(f"expected an s3:// URI or a mapping with 'source', got {data!r}")
        return data


class RuleModel(StrictModel):
    source_bucket_prefix: str = "qa-"
    destination_bucket_prefix: str = "prod-"


class PromotionFile(StrictModel):
    """The whole ``promotion.yaml``."""

    prefixes: Annotated[list[PrefixModel], Field(min_length=1)]
    defaults: SettingsModel | None = None
    destination_rule: RuleModel | None = None
    manifest_uri: str | None = None
    workers: Annotated[int, Field(ge=1, le=512)] = 64


# How a wrong value of each key is reported ({where}: the key path, {value}: what was found).
MESSAGES = {
    "": "{file}: expected a mapping with a 'prefixes' list at the top level",
    "prefixes": "{file}: 'prefixes' must be a non-empty list of s3:// URIs, got {value!r}",
    "defaults": "{file}: 'defaults' must be a mapping of per-prefix settings, got {value!r}",
    "destination_rule": "{file}: 'destination_rule' must be a mapping, got {value!r}",
    "workers": "{file}: 'workers' must be a whole number from 1 to 512, got {value!r}",
    "manifest_uri": "manifest_uri: expected an s3:// URI string, got {value!r}",
    "source_bucket_prefix": "{where}: expected a bucket name prefix such as 'qa-', got {value!r}",
    "destination_bucket_prefix": "{where}: expected a bucket name prefix such as 'prod-', got {value!r}",
    "source": "{where}: expected an s3:// URI string, got {value!r}",
    "destination": "{where}: expected an s3:// URI string, got {value!r}",
    "name": "{where}: expected a string, got {value!r}",
    "allow_empty": "{where}: expected true or false, got {value!r}",
    "allow_unversioned": "{where}: expected true or false, got {value!r}",
    "max_delete_fraction": "{where}: expected a number between 0 and 1, got {value!r}",
    "max_delete_count": "{where}: expected a whole number >= 0, got {value!r}",
    "stale_after_hours": "{where}: expected a positive number of hours or null, got {value!r}",
    "mlflow_experiments": "{where}: expected a list of MLflow experiment names, got {value!r}",
    "consumers": "{where}: expected a list of Airflow dag ids, got {value!r}",
    "signoff_marker": "{where}: expected a key relative to the prefix (e.g. _QA_SIGNED_OFF), got {value!r}",
}


def normalize(raw: Any, *, file: str) -> dict[str, Any]:
    """Validate a parsed ``promotion.yaml`` (a :class:`~greenlight.errors.ConfigError` naming every
    key at fault) and return it as plain data: the keys it sets, with their validated values."""
    return validate(PromotionFile, raw, file=file, messages=MESSAGES).model_dump(exclude_unset=True)
