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
from typing import Any, Literal

from pydantic import Field

from greenlight.configmodel import StrictModel, validate
from greenlight.errors import ConfigError
from greenlight.yamlfile import read_yaml

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


# ------------------------------------------------------------------------------ the file's shape
class _ModelEntry(StrictModel):
    alias: str = Field(default=DEFAULT_ALIAS, min_length=1)
    output: dict[str, Literal["string", "int", "float", "bool"]] = {}
    consumers: list[str] = []


class _ModelsFile(StrictModel):
    pointer_uri: str = Field(min_length=1)
    models: dict[str, _ModelEntry | None] = {}


MESSAGES = {
    "": "{file}: expected a mapping with pointer_uri and models, got {value!r}",
    "pointer_uri": "{where}: expected s3://bucket/prefix/ or a local folder, got {value!r}",
    "missing:pointer_uri": " (s3://bucket/prefix/ or a local folder where current/models/<name>.json goes)",
    "models": "{where}: expected a mapping of model name -> settings, got {value!r}",
    "output": "{where}: expected a mapping of column -> type (one of " + ", ".join(TYPES) + "), got {value!r}",
    "consumers": "{where}: expected a list of DAG ids, got {value!r}",
    "consumers[]": "{where}: expected a DAG id (a string), got {value!r}",
    "alias": "{where}: expected a non-empty alias name, got {value!r}",
}


def default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "config" / "models.yaml"


def parse(raw: Any, *, path: str = "<models.yaml>") -> ModelsConfig:
    """Validate a parsed models.yaml; any problem is one :class:`ConfigError` naming the key path
    (``models.yield-forecaster.output.prediction``) and the file (exit 2 on the CLI)."""
    doc = validate(_ModelsFile, raw, file=path, messages=MESSAGES, label=lambda loc: _label(path, loc))
    models = {
        str(name): ModelConfig(
            name=str(name),
            alias=(entry.alias if entry else DEFAULT_ALIAS),
            output=dict(entry.output) if entry else {},
            consumers=tuple(entry.consumers) if entry else (),
        )
        for name, entry in doc.models.items()
    }
    return ModelsConfig(pointer_uri=doc.pointer_uri, models=models)


def _label(path: str, loc: tuple) -> str | None:
    """Paths start with the file name: ``models.yaml: models.x.output``."""
    return f"{path}: {loc[0]}" if len(loc) == 1 else None


def load(path: str | os.PathLike | None = None) -> ModelsConfig:
    chosen = Path(path or os.environ.get(CONFIG_ENV) or default_path())
    return parse(read_yaml(chosen, "models config"), path=str(chosen))
