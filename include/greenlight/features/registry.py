"""The Feast repo and its deployed registry: load the definitions, diff them, apply them (the deploy step).

Also the feature views' PostgreSQL sources (:func:`source_sql`), which freshness, materialization and
parity query directly.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError
from greenlight.features.errors import RegistryDriftError, backend_errors
from greenlight.features.settings import REGISTRY_SCHEMA, REPO_PATH, FeatureSettings

log = logging.getLogger("greenlight.features")


def ensure_schema(settings: FeatureSettings) -> None:
    """Create the source table, the feature views (SQL) and the registry's schema; idempotent."""
    sql = (settings.repo_path / "schema.sql").read_text()
    with backend_errors("PostgreSQL"), settings.pg.connect(autocommit=True) as conn:
        conn.execute(sql)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{REGISTRY_SCHEMA}"')


def load_definitions(repo_path: Path = REPO_PATH, project: str = "greenlight"):
    """The repo's Feast objects as a ``RepoContents`` (every ``*.py`` in the repo folder, like ``feast``)."""
    # heavy: Feast, imported here (see the package docstring)
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.repo_contents import RepoContents

    contents = RepoContents(
        projects=[Project(name=project)],
        data_sources=[],
        feature_views=[],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[],
        feature_services=[],
        permissions=[],
    )
    for path in sorted(Path(repo_path).glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"greenlight_feature_repo_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for obj in vars(module).values():
            if isinstance(obj, FeatureView) and not any(obj is v for v in contents.feature_views):
                contents.feature_views.append(obj)
                if obj.batch_source is not None and not any(obj.batch_source is s for s in contents.data_sources):
                    contents.data_sources.append(obj.batch_source)
            elif isinstance(obj, DataSource) and not any(obj is s for s in contents.data_sources):
                contents.data_sources.append(obj)
            elif isinstance(obj, Entity) and not any(obj is e for e in contents.entities):
                contents.entities.append(obj)
            elif isinstance(obj, FeatureService) and not any(obj is s for s in contents.feature_services):
                contents.feature_services.append(obj)
    return contents


def feature_store(settings: FeatureSettings):
    """A ``FeatureStore`` on the in-memory config (imports Feast: call inside tasks only)."""
    # heavy: Feast, imported here (see the package docstring)
    from feast import FeatureStore

    with backend_errors("Feast registry (PostgreSQL)"):
        return FeatureStore(repo_path=str(settings.repo_path), config=settings.repo_config())


def registry_diff(settings: FeatureSettings, store=None) -> list[str]:
    """What ``apply`` would change in the deployed registry (empty = registry matches the repo)."""
    # heavy: Feast, imported here (see the package docstring)
    from feast.diff.property_diff import TransitionType

    store = store or feature_store(settings)
    repo = load_definitions(settings.repo_path, settings.project)
    with backend_errors("Feast registry (PostgreSQL)"):
        diff, _infra, _ = store.plan(repo)
    changes = []
    for d in diff.feast_object_diffs:
        if d.transition_type == TransitionType.UNCHANGED or d.name == "__dummy":
            continue
        props = [p for p in d.feast_object_property_diffs if not _only_meta_differs(p)]
        if d.transition_type == TransitionType.UPDATE and not props:
            continue
        line = f"{d.transition_type.name.lower()} {d.feast_object_type.value} {d.name}"
        for p in props:
            line += f"\n    {p.property_name}: {_short(p.val_existing)} -> {_short(p.val_declared)}"
        changes.append(line)
    return changes


def _only_meta_differs(prop) -> bool:
    """Feast's own bookkeeping is not a definition change: ``store.materialize`` re-saves each view and
    stamps ``meta`` timestamps on its embedded data source, which ``feast plan`` then reports as an
    update. Compare such properties with ``meta`` cleared."""
    if prop.property_name == "meta":
        return True
    old, new = prop.val_existing, prop.val_declared
    if not (hasattr(old, "DESCRIPTOR") and hasattr(new, "DESCRIPTOR")) or "meta" not in old.DESCRIPTOR.fields_by_name:
        return False
    old, new = type(old).FromString(old.SerializeToString()), type(new).FromString(new.SerializeToString())
    old.ClearField("meta")
    new.ClearField("meta")
    return old == new


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_registry(settings: FeatureSettings, store=None) -> list[str]:
    """Fail with the diff unless the deployed registry equals the repo; return the feature view names."""
    store = store or feature_store(settings)
    changes = registry_diff(settings, store)
    if changes:
        raise RegistryDriftError(changes)
    with backend_errors("Feast registry (PostgreSQL)"):
        return sorted(v.name for v in store.list_feature_views() if v.online)


def apply_definitions(settings: FeatureSettings) -> list[str]:
    """The deploy step (``feast apply``): create the SQL objects, register the repo; returns the changes."""
    # heavy: Feast, imported here (see the package docstring)
    from feast.repo_operations import apply_total_with_repo_instance

    ensure_schema(settings)
    store = feature_store(settings)
    changes = registry_diff(settings, store)
    repo = load_definitions(settings.repo_path, settings.project)
    with backend_errors("Feast apply"):
        apply_total_with_repo_instance(store, settings.project, store.registry, repo, skip_source_validation=False)
    log.info("feast apply: %d change(s)%s", len(changes), "".join("\n  " + c for c in changes))
    return changes


def get_view(store, name: str):
    # heavy: Feast, imported here (see the package docstring)
    from feast.errors import FeatureViewNotFoundException

    try:
        with backend_errors("Feast registry (PostgreSQL)"):
            return store.get_feature_view(name)
    except FeatureViewNotFoundException as exc:
        raise ConfigError(f"unknown feature view {name!r}: {exc}") from exc


def source_sql(view) -> tuple[str, str]:
    """(FROM expression, timestamp column) of a feature view's PostgreSQL source."""
    source = view.batch_source
    return source.get_table_query_string_with_alias("src"), source.timestamp_field
