"""Config files: read YAML strictly (UTF-8, no duplicate keys), errors naming the file.

The config files (``promotion.yaml``, ``reconcile.yaml``, ``staging_refresh.yaml``, ...) are read by
:func:`read_yaml`, which refuses a missing, unreadable or non-UTF-8 file, bad YAML and duplicate
keys (PyYAML would silently keep the last one). Their shape is then checked by the strict pydantic
models of :mod:`greenlight.configmodel`. This module does not import pydantic: a CLI run whose
``promotion.yaml`` is in the validated-document cache (:mod:`greenlight.doccache`) never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from greenlight.errors import ConfigError


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


__all__ = ["read_yaml"]
