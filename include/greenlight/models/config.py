"""``include/config/models.yaml`` (or ``$GREENLIGHT_MODELS_CONFIG``): which registered models are
promoted, under which alias, the output contract their smoke score must meet, and where the
``current/models/<name>.json`` pointers live.

```yaml
pointer_uri: s3://prod-bucket/_greenlight/      # current/models/<name>.json goes under it
models:
  yield-forecaster:
    alias: champion                              # default
    output: {prediction: float}                  # column -> logical type (string int float bool)
    consumers: [commodity_hindcast_prod]         # DAGs whose task manifests record the version used
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError
from greenlight.yamlfile import check_keys, read_yaml

CONFIG_ENV = "GREENLIGHT_MODELS_CONFIG"
DEFAULT_ALIAS = "champion"
TYPES = ("string", "int", "float", "bool")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    alias: str = DEFAULT_ALIAS
    output: dict[str, str] = field(default_factory=dict)
    consumers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelsConfig:
    pointer_uri: str
    models: dict[str, ModelConfig]

    def model(self, name: str) -> ModelConfig:
        if name not in self.models:
            raise ConfigError(f"model {name!r} is not configured in models.yaml (configured: {sorted(self.models)})")
        return self.models[name]


def default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "config" / "models.yaml"


def parse(raw: Any, *, path: str = "<models.yaml>") -> ModelsConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with pointer_uri and models")
    check_keys(raw, {"pointer_uri", "models"}, path)
    pointer_uri = raw.get("pointer_uri")
    if not isinstance(pointer_uri, str) or not pointer_uri:
        raise ConfigError(f"{path}: pointer_uri is required (s3://bucket/prefix/ or a local folder)")
    models = {}
    for name, spec in (raw.get("models") or {}).items():
        where = f"{path}: models.{name}"
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping")
        check_keys(spec, {"alias", "output", "consumers"}, where)
        output = spec.get("output") or {}
        bad = {c: t for c, t in output.items() if t not in TYPES}
        if bad:
            raise ConfigError(f"{where}.output: unknown type(s) {bad}; use {list(TYPES)}")
        models[str(name)] = ModelConfig(
            name=str(name),
            alias=str(spec.get("alias") or DEFAULT_ALIAS),
            output={str(c): str(t) for c, t in output.items()},
            consumers=tuple(spec.get("consumers") or ()),
        )
    return ModelsConfig(pointer_uri=pointer_uri, models=models)


def load(path: str | os.PathLike | None = None) -> ModelsConfig:
    chosen = Path(path or os.environ.get(CONFIG_ENV) or default_path())
    return parse(read_yaml(chosen, "models config"), path=str(chosen))
