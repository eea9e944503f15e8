"""Load and validate ``promotion.yaml``.

The minimal valid file is::

    prefixes:
      - s3://qa-<bucket>/<path>/

Everything else has a default. Validation names the key, prefix or value at fault and never
guesses: unknown keys, bad URIs, duplicates and overlapping prefixes are all errors.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.storage.s3 import S3Uri, parse_s3_uri

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "promotion.yaml"
CONFIG_ENV = "GREENLIGHT_PROMOTION_CONFIG"


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
    workers: int = 64
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


_TOP_KEYS = {"prefixes", "defaults", "destination_rule", "manifest_uri", "workers"}
_SETTING_KEYS = set(PrefixSettings.__dataclass_fields__)
_PREFIX_KEYS = {"source", "destination", "name", "contract"} | _SETTING_KEYS
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_RULE_KEYS = {"source_bucket_prefix", "destination_bucket_prefix"}


def check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    """Unknown keys are an error naming the key, with the closest allowed one as a hint."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}")


def _settings(raw: dict, base: PrefixSettings, where: str) -> PrefixSettings:
    values: dict[str, Any] = {}
    for key in _SETTING_KEYS & set(raw):
        value = raw[key]
        if key in ("allow_empty", "allow_unversioned"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        elif key == "max_delete_fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{where}.{key}: expected a number between 0 and 1, got {value!r}")
            value = float(value)
        elif key == "max_delete_count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{key}: expected a whole number >= 0, got {value!r}")
        elif key == "mlflow_experiments":
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"{where}.{key}: expected a list of MLflow experiment names, got {value!r}")
            value = tuple(v.strip() for v in value)
        elif key == "consumers":
            if not isinstance(value, list) or not all(isinstance(v, str) and _DAG_ID.match(v) for v in value):
                raise ConfigError(f"{where}.{key}: expected a list of Airflow dag ids, got {value!r}")
            value = tuple(dict.fromkeys(value))
        elif key == "signoff_marker":
            if value is not None and (
                not isinstance(value, str) or not value.strip() or value.startswith("/") or ".." in value.split("/")
            ):
                raise ConfigError(
                    f"{where}.{key}: expected a key relative to the prefix (e.g. _QA_SIGNED_OFF), got {value!r}"
                )
        elif key == "stale_after_hours":
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{where}.{key}: expected a positive number of hours or null, got {value!r}")
            value = None if value is None else float(value)
        values[key] = value
    return replace(base, **values)


def parse_config(raw: Any, *, path: str = "<config>") -> PromotionConfig:
    """Validate a parsed YAML document and return a :class:`PromotionConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'prefixes' list at the top level")
    check_keys(raw, _TOP_KEYS, path)
    if "prefixes" not in raw:
        raise ConfigError(f"{path}: missing required key 'prefixes'")
    entries = raw["prefixes"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'prefixes' must be a non-empty list of s3:// URIs")

    defaults_raw = raw.get("defaults") or {}
    if not isinstance(defaults_raw, dict):
        raise ConfigError(f"{path}: 'defaults' must be a mapping")
    check_keys(defaults_raw, _SETTING_KEYS, f"{path}: defaults")
    defaults = _settings(defaults_raw, PrefixSettings(), "defaults")

    rule_raw = raw.get("destination_rule") or {}
    if not isinstance(rule_raw, dict):
        raise ConfigError(f"{path}: 'destination_rule' must be a mapping")
    check_keys(rule_raw, _RULE_KEYS, f"{path}: destination_rule")
    rule = DestinationRule(
        source_prefix=str(rule_raw.get("source_bucket_prefix", "qa-")),
        destination_prefix=str(rule_raw.get("destination_bucket_prefix", "prod-")),
    )
    if not rule.source_prefix or not rule.destination_prefix or rule.source_prefix == rule.destination_prefix:
        raise ConfigError(f"{path}: destination_rule needs two different, non-empty bucket prefixes")

    workers = raw.get("workers", 64)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 512:
        raise ConfigError(f"{path}: 'workers' must be a whole number from 1 to 512, got {workers!r}")

    prefixes: list[PrefixConfig] = []
    for index, entry in enumerate(entries):
        where = f"prefixes[{index}]"
        if isinstance(entry, str):
            entry = {"source": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an s3:// URI or a mapping with 'source', got {entry!r}")
        check_keys(entry, _PREFIX_KEYS, where)
        if "source" not in entry:
            raise ConfigError(f"{where}: missing required key 'source'")
        source = parse_s3_uri(entry["source"], what=f"{where}.source")
        if not source.prefix:
            raise ConfigError(f"{where}.source: {source} is a whole bucket; name a prefix inside it")
        mapped = rule.map_bucket(source.bucket)
        if mapped is None:
            raise ConfigError(
                f"{where}.source: bucket {source.bucket!r} does not start with {rule.source_prefix!r} "
                "(destination_rule.source_bucket_prefix)"
            )
        if "destination" in entry:
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
        name = entry.get("name") or ""
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name: expected a string, got {name!r}")
        contract = entry.get("contract")
        if contract is not None:
            contract = _contract_ref(contract, f"{where}.contract", base=Path(path).parent)
        prefixes.append(PrefixConfig(source, destination, _settings(entry, defaults, where), name, contract))

    _check_overlaps(prefixes)
    source_buckets = {p.source.bucket for p in prefixes}

    manifest_uri = None
    if raw.get("manifest_uri") is not None:
        manifest_uri = parse_s3_uri(raw["manifest_uri"], what="manifest_uri")
    else:
        manifest_uri = S3Uri(prefixes[0].destination.bucket, "_greenlight/manifests/")
    if manifest_uri.bucket in source_buckets:
        raise ConfigError(f"manifest_uri: {manifest_uri} is in a source bucket; the engine never writes to a source")
    for p in prefixes:
        if p.destination.contains(manifest_uri) or manifest_uri.contains(p.destination):
            raise ConfigError(
                f"manifest_uri: {manifest_uri} overlaps destination {p.destination}; "
                "a promotion would copy over or delete its own manifests"
            )
    return PromotionConfig(tuple(prefixes), rule, manifest_uri, workers, path)


def _contract_ref(value: Any, where: str, base: Path) -> str:
    """A contract name (a file in the contracts folder) or a path, relative to the config file's
    folder, that names an existing file. The contract itself is parsed by ``preflight``, so a broken
    contract fails before anything is read from QA."""
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


def _unique_key_loader():
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser: ~10x faster
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def read_yaml(path: Path, what: str = "config file") -> Any:
    """Parse a YAML config file; a missing or unreadable file, bad YAML or a duplicate key is a
    :class:`ConfigError` naming the file (and the line of a duplicate key)."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | os.PathLike | None = None) -> PromotionConfig:
    """Read and validate the promotion config (``$GREENLIGHT_PROMOTION_CONFIG`` or the packaged one)."""
    resolved = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(resolved), path=str(resolved))
