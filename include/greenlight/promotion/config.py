"""Load and validate ``promotion.yaml``.

The minimal valid file is::

    prefixes:
      - s3://qa-<bucket>/<path>/

Everything else has a default. Validation names the key, prefix or value at fault and never
guesses: unknown keys, bad URIs, duplicates and overlapping prefixes are all errors. The file's
shape is :mod:`greenlight.promotion.configschema` (pydantic, imported only when a document is
validated); the engine's objects below are built from its normalized document.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from greenlight import doccache
from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.storage import manifests
from greenlight.storage.s3 import S3Uri, parse_s3_uri
from greenlight.yamlfile import read_yaml

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "promotion.yaml"
CONFIG_ENV = "GREENLIGHT_PROMOTION_CONFIG"
#: Manifests (and leases) of a config without ``manifest_uri``: this prefix of the first destination's bucket.
DEFAULT_MANIFEST_PREFIX = "_greenlight/manifests/"
DEFAULT_WORKERS = 64


@dataclass(frozen=True)
class PrefixSettings:
    """Per-prefix knobs; each can be set in ``defaults:`` or on one prefix."""

    allow_empty: bool = False
    allow_unversioned: bool = False
    max_delete_fraction: float = 0.10
    max_delete_count: int = 1000
    stale_after_hours: float | None = 24.0
    # QA preconditions (checked before anything is promoted):
    mlflow_experiments: tuple[str, ...] = ()  # no run in these QA experiments may be RUNNING
    signoff_marker: str | None = None  # object under the QA prefix, newer than everything else in it
    # Prod consumer DAGs (dag ids) that a failed contract gate pauses through the Airflow REST API:
    consumers: tuple[str, ...] = ()
    # Above this many objects (QA and prod keys together) a prefix is promoted in key-range shards
    # that run in parallel (docs/sharding.md):
    shard_objects: int = 250_000

    def delete_limit(self, dest_objects: int) -> int:
        """How many deletes a plan may make for a destination holding ``dest_objects``.

        The fraction is rounded up, so a non-empty destination may always lose one object; the
        count caps it for big prefixes.
        """
        by_fraction = math.ceil(self.max_delete_fraction * dest_objects)
        return min(self.max_delete_count, by_fraction)


@dataclass(frozen=True)
class PrefixConfig:
    source: S3Uri
    destination: S3Uri
    settings: PrefixSettings
    name: str = ""
    contract: str | None = None  # contract name (include/contracts/<name>.yaml) or a path to one

    @property
    def label(self) -> str:
        return str(self.source)

    @property
    def asset_name(self) -> str:
        """The name of the prod prefix's Airflow Asset. Airflow identifies an Asset by name *and* URI,
        so the producer's events and every consumer's schedule must use this same name."""
        return f"prod:{self.name or self.destination}"


@dataclass(frozen=True)
class DestinationRule:
    """Destination bucket = source bucket with ``source_prefix`` replaced by ``destination_prefix``."""

    source_prefix: str = "qa-"
    destination_prefix: str = "prod-"

    def map_bucket(self, bucket: str) -> str | None:
        if not bucket.startswith(self.source_prefix):
            return None
        return self.destination_prefix + bucket[len(self.source_prefix) :]


@dataclass(frozen=True)
class PromotionConfig:
    prefixes: tuple[PrefixConfig, ...]
    rule: DestinationRule = field(default_factory=DestinationRule)
    manifest_uri: S3Uri | None = None
    workers: int = DEFAULT_WORKERS
    path: str = ""

    def select(self, only: list[str] | None) -> PromotionConfig:
        """Keep the prefixes named in ``only`` (source URI or name); unknown names are an error."""
        if not only:
            return self
        wanted = []
        for item in only:
            match = [p for p in self.prefixes if item in (p.name, str(p.source)) or _same_prefix(item, p.source)]
            if not match:
                known = ", ".join(p.name or str(p.source) for p in self.prefixes)
                raise ConfigError(f"only: {item!r} is not a configured prefix (configured: {known})")
            wanted.extend(m for m in match if m not in wanted)
        return replace(self, prefixes=tuple(wanted))


def _same_prefix(item: str, uri: S3Uri) -> bool:
    try:
        return parse_s3_uri(item) == uri
    except ConfigError:
        return False


# --------------------------------------------------------------------------- from file to objects
#: The modules whose source decides what a valid document is: part of the validated-document cache's key.
SCHEMA_SOURCES = ("greenlight.promotion.configschema", "greenlight.configmodel")
SETTING_KEYS = frozenset(PrefixSettings.__dataclass_fields__)


def validate_document(raw: Any, path: str) -> dict[str, Any]:
    """The schema's verdict on a parsed ``promotion.yaml``: the normalized document (the keys it
    sets, values as validated), or a :class:`ConfigError` naming every key at fault."""
    # Local: the schema imports pydantic, ~0.13 s of CPU per CLI start (python -X importtime,
    # 2026-12-03); a run whose document is in the validated-document cache never needs it.
    from greenlight.promotion.configschema import normalize

    return normalize(raw, file=path)


def apply_settings(base: PrefixSettings, mapping: Mapping[str, Any]) -> PrefixSettings:
    """``base`` with the settings a normalized ``defaults:`` or ``prefixes:`` entry sets (a key
    it leaves out inherits from ``base``)."""
    values: dict[str, Any] = {key: mapping[key] for key in SETTING_KEYS if key in mapping}
    if "mlflow_experiments" in values:
        values["mlflow_experiments"] = tuple(values["mlflow_experiments"])
    if "consumers" in values:
        values["consumers"] = tuple(dict.fromkeys(values["consumers"]))
    return replace(base, **values)


def parse_config(raw: Any, *, path: str = "<config>") -> PromotionConfig:
    """Validate a parsed YAML document and return a :class:`PromotionConfig`.

    The schema (:mod:`greenlight.promotion.configschema`) checks the shape and every value, unless
    the validated-document cache (:mod:`greenlight.doccache`) holds its verdict on this exact
    document and schema; what needs several keys at once (the destination rule, overlapping
    prefixes, where manifests go, that a contract file exists) is checked here on every call, each
    error naming its key. A document is cached only once all of that has passed.
    """
    return doccache.load_validated(
        raw,
        kind="promotion.yaml",
        sources=SCHEMA_SOURCES,
        validate=lambda: validate_document(raw, path),
        build=lambda doc: build_config(doc, path),
    )


def build_config(doc: Mapping[str, Any], path: str) -> PromotionConfig:
    """The :class:`PromotionConfig` of a normalized document (:func:`validate_document`), after the
    checks that need several keys at once."""
    rule_doc = doc.get("destination_rule") or {}
    default_rule = DestinationRule()
    rule = DestinationRule(
        rule_doc.get("source_bucket_prefix", default_rule.source_prefix),
        rule_doc.get("destination_bucket_prefix", default_rule.destination_prefix),
    )
    if not rule.source_prefix or not rule.destination_prefix or rule.source_prefix == rule.destination_prefix:
        raise ConfigError(f"{path}: destination_rule needs two different, non-empty bucket prefixes")
    defaults = apply_settings(PrefixSettings(), doc.get("defaults") or {})

    prefixes: list[PrefixConfig] = []
    for index, entry in enumerate(doc["prefixes"]):
        where = f"prefixes[{index}]"
        source = parse_s3_uri(entry["source"], what=f"{where}.source")
        if not source.prefix:
            raise ConfigError(f"{where}.source: {source} is a whole bucket; name a prefix inside it")
        mapped = rule.map_bucket(source.bucket)
        if mapped is None:
            raise ConfigError(
                f"{where}.source: bucket {source.bucket!r} does not start with {rule.source_prefix!r} "
                "(destination_rule.source_bucket_prefix)"
            )
        if entry.get("destination") is not None:
            destination = parse_s3_uri(entry["destination"], what=f"{where}.destination")
            if destination.bucket != mapped:
                raise ConfigError(
                    f"{where}.destination: {destination} is outside the destination rule: "
                    f"{source.bucket!r} may only be promoted to bucket {mapped!r}"
                )
            if not destination.prefix:
                raise ConfigError(f"{where}.destination: {destination} is a whole bucket; name a prefix")
        else:
            destination = S3Uri(mapped, source.prefix)
        contract = entry.get("contract")
        if contract is not None:
            contract = _contract_ref(contract, f"{where}.contract", base=Path(path).parent)
        settings = apply_settings(defaults, entry)
        prefixes.append(PrefixConfig(source, destination, settings, entry.get("name") or "", contract))

    _check_overlaps(prefixes)
    _check_file_names(prefixes)
    source_buckets = {p.source.bucket for p in prefixes}

    if doc.get("manifest_uri") is not None:
        manifest_uri = parse_s3_uri(doc["manifest_uri"], what="manifest_uri")
    else:
        manifest_uri = S3Uri(prefixes[0].destination.bucket, DEFAULT_MANIFEST_PREFIX)
    if manifest_uri.bucket in source_buckets:
        raise ConfigError(f"manifest_uri: {manifest_uri} is in a source bucket; the engine never writes to a source")
    for p in prefixes:
        if p.destination.contains(manifest_uri) or manifest_uri.contains(p.destination):
            raise ConfigError(
                f"manifest_uri: {manifest_uri} overlaps destination {p.destination}; "
                "a promotion would copy over or delete its own manifests"
            )
    return PromotionConfig(tuple(prefixes), rule, manifest_uri, doc.get("workers", DEFAULT_WORKERS), path)


def _contract_ref(value: Any, where: str, base: Path) -> str:
    """A contract name (a file in the contracts folder) or a path, relative to the config file's
    folder, that names an existing file. The contract itself is parsed by ``preflight``, so a broken
    contract fails before anything is read from QA."""
    # Local: greenlight.contracts (pydantic contract models) adds ~0.4 s to importing this module
    # (measured with -X importtime); rollback and refresh load promotion configs and never need it.
    from greenlight.contracts import available_contracts, contract_path

    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a contract name (e.g. deliveries_csv) or a path, got {value!r}")
    value = value.strip()
    if ("/" in value or os.sep in value) and not os.path.isabs(value) and base.is_dir():
        value = str((base / value).resolve())
    path = contract_path(value)
    if not path.is_file():
        known = ", ".join(available_contracts(path.parent)) or "none"
        raise ConfigError(f"{where}: contract {value!r} not found at {path} (contracts there: {known})")
    return value


def _check_overlaps(prefixes: list[PrefixConfig]) -> None:
    names = [p.name for p in prefixes if p.name]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"prefixes: name {name!r} is used more than once")
    for side in ("source", "destination"):
        seen: list[S3Uri] = []
        for p in prefixes:
            uri: S3Uri = getattr(p, side)
            for other in seen:
                if other == uri:
                    raise ConfigError(f"prefixes: {side} {uri} is listed more than once")
                if other.contains(uri) or uri.contains(other):
                    raise ConfigError(f"prefixes: {side} {uri} overlaps {other}; a key would be promoted twice")
            seen.append(uri)
    sources = {p.source.bucket for p in prefixes}
    for p in prefixes:
        if p.destination.bucket in sources:
            raise ConfigError(f"prefixes: destination {p.destination} is in a source bucket")


def destination_file_name(destination: S3Uri) -> str:
    """The name the manifest, pointer and gate files of a destination prefix are stored under,
    computed by the manifest store's own rule (``greenlight.storage.manifests``)."""
    return manifests.safe_name(f"{destination.bucket}/{destination.prefix}")


def _check_file_names(prefixes: list[PrefixConfig]) -> None:
    """Two destinations whose manifest/pointer/gate files would have the same name would overwrite
    each other's records (and a rollback of one would restore the other): refuse the config."""
    seen: dict[str, PrefixConfig] = {}
    for p in prefixes:
        name = destination_file_name(p.destination)
        other = seen.setdefault(name, p)
        if other is not p:
            raise ConfigError(
                f"prefixes: {other.label} (destination {other.destination}) and {p.label} "
                f"(destination {p.destination}) would share the manifest, pointer and gate files named "
                f"{name!r}; rename one of the destination prefixes"
            )


def load_config(path: str | os.PathLike | None = None) -> PromotionConfig:
    """Read and validate the promotion config (``$GREENLIGHT_PROMOTION_CONFIG`` or the packaged one)."""
    resolved = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(resolved), path=str(resolved))
