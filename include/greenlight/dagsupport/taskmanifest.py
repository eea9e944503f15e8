"""Task manifests: one JSON record per task instance of every DAG tagged ``greenlight``.

Written by the listener plugin ``plugins/greenlight_listener.py`` when a task starts running and
again when it succeeds or fails, at::

    <root>/<dag_id>/<run_id>/<task_id>[.<map_index>].json

``root`` is ``$GREENLIGHT_TASK_MANIFEST_ROOT`` (a local folder or an ``s3://`` URI written through
the Airflow connection ``aws_default``), by default ``$AIRFLOW_HOME/greenlight/task_manifests``;
``none`` turns manifests off. Each try overwrites the file with the latest try and appends to its
``tries`` history, so a retry stays visible. The format is described in docs/manifests.md.

Everything here runs inside the task process (the Task SDK runner): it never touches the
metadata database, and it never raises — a manifest that cannot be written is logged, and the
task goes on.

Secrets never reach a manifest: values under sensitive key names (password, secret, token,
credential, authorization, ``*_key`` such as access_key/api_key) are replaced by ``***``; every
value is then passed through Airflow's secrets masker (which knows the passwords and extras of
the connections the task fetched, and every masked Variable) and scrubbed of the values of
sensitive environment variables (e.g. ``AWS_SECRET_ACCESS_KEY``); arbitrary objects (connections,
hooks, clients) are recorded by type name only, never by ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from greenlight.dagsupport.runtime import s3_client
from greenlight.errors import ConfigError

# Redaction lives in greenlight.redact (no Airflow imports); these names stay importable from here.
from greenlight.redact import REDACTED, airflow_redact, clean_message, redact_text, sensitive_key
from greenlight.storage.manifests import ManifestStore, safe_name, utcnow
from greenlight.triage import classify, with_upstream

log = logging.getLogger("greenlight.dagsupport.taskmanifest")

ROOT_ENV = "GREENLIGHT_TASK_MANIFEST_ROOT"
TAG = "greenlight"
SCHEMA = "greenlight.task-manifest/1"

MAX_STR = 2000
MAX_ITEMS = 50
MAX_KEYS = 100
MAX_DEPTH = 8
MAX_JSON = 64 * 1024

_BOOL_FIELDS = ("ok", "passed", "success", "equal", "valid")
_NAME_FIELDS = ("name", "check", "expectation", "expectation_type", "prefix", "table", "id")


# --------------------------------------------------------------------------------------- config
def default_root() -> str:
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home) / "greenlight" / "task_manifests")


#: Values of ``GREENLIGHT_TASK_MANIFEST_ROOT`` that turn task manifests off.
OFF_VALUES = ("none", "off", "false", "0", "disabled")


def manifest_root() -> str | None:
    """The configured root, or None when task manifests are turned off (``none``/``off``/``false``)."""
    value = os.environ.get(ROOT_ENV, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    return value or default_root()


def cli_root(value: str | None, flag: str = "--root") -> str:
    """The root a CLI command reads: ``value`` (its ``flag``), else ``$GREENLIGHT_TASK_MANIFEST_ROOT``,
    else the default; refused (exit 2) when that turns task manifests off."""
    root = value or os.environ.get(ROOT_ENV) or default_root()
    if root.strip().lower() in OFF_VALUES:
        raise ConfigError(f"task manifests are turned off ({ROOT_ENV}={root}): pass {flag}")
    return root


def relpath(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """``<dag_id>/<run_id>/<task_id>[.<map_index>].json`` with every segment made path-safe."""
    name = safe_name(task_id) + (f".{map_index}" if map_index is not None and map_index >= 0 else "")
    return f"{safe_name(dag_id)}/{safe_name(run_id)}/{name}.json"


def manifest_uri(root: str, rel: str) -> str:
    """Where the manifest ``rel`` lives under ``root`` (no client needed: for messages)."""
    if root.startswith("s3://"):
        return root.rstrip("/") + "/" + rel
    return str(Path(root) / rel)


def upstream_manifests(ti: Any, task_ids: list[str] | None = None) -> list[str]:
    """The task manifests of ``ti``'s upstream tasks (or of ``task_ids``) for the same run id.

    A mapped upstream task has one manifest per map index: it is named ``<task>.*.json``.
    Empty when manifests are off or the task has no upstream.
    """
    root = manifest_root()
    task = getattr(ti, "task", None)
    if root is None or task is None:
        return []
    dag = getattr(task, "dag", None)
    ids = sorted(task_ids if task_ids is not None else getattr(task, "upstream_task_ids", None) or ())
    out = []
    for task_id in ids:
        upstream = (getattr(dag, "task_dict", None) or {}).get(task_id)
        rel = relpath(ti.dag_id, ti.run_id, task_id, None)
        if upstream is not None and bool(getattr(upstream, "is_mapped", False)):
            rel = rel[: -len(".json")] + ".*.json"
        out.append(manifest_uri(root, rel))
    return out


def contextual_triage(error: Any, ti: Any = None):
    """:func:`greenlight.triage.classify`, with the upstream manifests of this run in the hint of a
    ``missing_input`` failure (the upstream the error names, else the task's direct upstream)."""
    triage = classify(error)
    if triage.kind != "missing_input" or ti is None:
        return triage
    named = _error_upstream(error)
    try:
        manifests = upstream_manifests(ti, [named] if named else None)
    except Exception:  # noqa: BLE001 - a hint must never break error handling
        manifests = []
    return with_upstream(triage, manifests, getattr(ti, "run_id", None))


def _error_upstream(error: Any) -> str | None:
    seen = 0
    while isinstance(error, BaseException) and seen < 8:
        if getattr(error, "upstream", None):
            return str(error.upstream)
        error = error.__cause__ or error.__context__
        seen += 1
    return None


_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()


def store_for(root: str):
    """A :class:`~greenlight.storage.manifests.ManifestStore` for ``root`` (S3 client from ``aws_default``)."""
    with _stores_lock:
        store = _stores.get(root)
        if store is None:
            client = None
            if root.startswith("s3://"):
                client = s3_client(max_pool=4)
            store = _stores[root] = ManifestStore(root, client)
        return store


# ------------------------------------------------------------------------------ JSON + redaction


def json_safe(value: Any, *, depth: int = 0) -> Any:
    """A JSON-safe, size-bounded copy of ``value`` with sensitive keys redacted.

    Strings are cut at ``MAX_STR`` characters, sequences at ``MAX_ITEMS`` items, mappings at
    ``MAX_KEYS`` keys; anything that is not plain data is recorded as ``<TypeName>`` (its repr
    could carry a secret).
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_STR else value[:MAX_STR] + f"…(+{len(value) - MAX_STR} chars)"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return json_safe(value.value, depth=depth)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if depth >= MAX_DEPTH:
        return f"<{type(value).__name__} nested too deep>"
    if _is_connection(value):
        return "<connection>"
    if isinstance(value, Mapping) or _is_params(value):
        out: dict[str, Any] = {}
        items = list(_mapping_items(value))
        for k, v in items[:MAX_KEYS]:
            key = str(k)
            out[key] = REDACTED if sensitive_key(key) and v not in (None, "") else json_safe(v, depth=depth + 1)
        if len(items) > MAX_KEYS:
            out["…"] = f"+{len(items) - MAX_KEYS} more keys"
        return out
    if isinstance(value, list | tuple | set | frozenset) or _is_sequence(value):
        try:
            total = len(value)
        except Exception:  # noqa: BLE001 - a lazy sequence may fail to count
            total = None
        items = []
        try:
            for i, item in enumerate(value):
                if i >= MAX_ITEMS:
                    break
                items.append(json_safe(item, depth=depth + 1))
        except Exception as exc:  # noqa: BLE001 - a lazy XCom sequence that cannot be read
            items.append(f"<unreadable: {type(exc).__name__}>")
        if total is not None and total > MAX_ITEMS:
            items.append(f"…(+{total - MAX_ITEMS} more items)")
        return items
    if hasattr(value, "__dataclass_fields__"):
        return json_safe({f.name: getattr(value, f.name, None) for f in fields(value)}, depth=depth)
    return f"<{type(value).__name__}>"


def _is_connection(value: Any) -> bool:
    return any(cls.__name__ == "Connection" and cls.__module__.startswith("airflow") for cls in type(value).__mro__)


def _is_params(value: Any) -> bool:
    return type(value).__name__ == "ParamsDict"


def _mapping_items(value: Any):
    if _is_params(value):
        # ParamsDict: iterate names, read resolved values (not Param objects).
        for k in value:
            yield k, value[k]
        return
    yield from value.items()


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def clean(value: Any) -> Any:
    """``json_safe`` + Airflow's masker + scrubbing sensitive env values: what goes into a manifest."""
    safe = airflow_redact(json_safe(value))
    text = json.dumps(safe, default=str)
    scrubbed = redact_text(text, json_escaped=True)  # URL credentials, sensitive env values
    if scrubbed == text:
        return safe
    try:
        return json.loads(scrubbed)
    except ValueError:
        return "<redacted>"


def bounded(value: Any) -> Any:
    """Replace a value whose JSON is over ``MAX_JSON`` bytes by a preview of it."""
    text = json.dumps(value, default=str)
    if len(text) <= MAX_JSON:
        return value
    return {"truncated": True, "json_bytes": len(text), "preview": text[: MAX_JSON // 16]}


# ---------------------------------------------------------------------------------------- checks
def extract_checks(output: Any) -> list[dict[str, Any]] | None:
    """Checks a task reported in its return value, normalised to ``{"name", "ok", ...}``.

    Convention (docs/manifests.md): a task reports checks by returning

    - a dict with a ``"checks"`` key: a list of check dicts, or a mapping ``name -> bool`` /
      ``name -> check dict``; or
    - a non-empty list whose items are all check dicts.

    A check dict has a boolean outcome under one of ``ok``/``passed``/``success``/``equal``/``valid``
    and a name under ``name``/``check``/``expectation``/``prefix``/``table``/``id`` (else its index).
    """
    raw: Any = None
    if isinstance(output, Mapping) and "checks" in output:
        raw = output["checks"]
        if isinstance(raw, Mapping):
            raw = [{"name": str(k), **(dict(v) if isinstance(v, Mapping) else {"ok": bool(v)})} for k, v in raw.items()]
    elif isinstance(output, list) and output and all(_outcome(i) is not None for i in output):
        raw = output
    if not isinstance(raw, list):
        return None
    checks = []
    for i, item in enumerate(raw[:MAX_ITEMS]):
        if not isinstance(item, Mapping):
            checks.append({"name": str(i), "ok": bool(item)})
            continue
        name = next((str(item[f]) for f in _NAME_FIELDS if item.get(f) not in (None, "")), str(i))
        outcome = _outcome(item)
        detail = {k: v for k, v in item.items() if k not in _BOOL_FIELDS and k not in ("name",)}
        checks.append({"name": name, "ok": outcome, **({"detail": detail} if detail else {})})
    return checks


def _outcome(item: Any) -> bool | None:
    if not isinstance(item, Mapping):
        return None
    for field in _BOOL_FIELDS:
        if isinstance(item.get(field), bool):
            return item[field]
    return None


# ------------------------------------------------------------------------------------- recording
_cache: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
_cache_lock = threading.Lock()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _state_name(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


def is_greenlight_task(ti: Any) -> bool:
    """True for a task instance (Task SDK ``RuntimeTaskInstance``) of a DAG tagged ``greenlight``."""
    task = getattr(ti, "task", None)
    dag = getattr(task, "dag", None)
    tags = getattr(dag, "tags", None) or ()
    return TAG in tags


def task_inputs(ti: Any) -> dict[str, Any]:
    """The task's rendered inputs: op_args/op_kwargs (or other template fields) and the run params."""
    task = ti.task
    inputs: dict[str, Any] = {}
    if hasattr(task, "op_kwargs") or hasattr(task, "op_args"):
        inputs["op_args"] = list(getattr(task, "op_args", None) or [])
        inputs["op_kwargs"] = dict(getattr(task, "op_kwargs", None) or {})
    else:
        for field in getattr(task, "template_fields", ()) or ():
            inputs[field] = getattr(task, field, None)
    try:
        params = ti.get_template_context().get("params")
    except Exception:  # noqa: BLE001 - e.g. a param that failed validation: record none
        params = None
    inputs["params"] = params or {}
    return bounded(clean(inputs))


def task_output(ti: Any) -> Any:
    """The task's return value as stored in XCom (``None`` when it returned nothing)."""
    task = ti.task
    if not getattr(task, "do_xcom_push", True):
        return None
    map_index = getattr(ti, "map_index", -1)
    return ti.xcom_pull(task_ids=ti.task_id, map_indexes=map_index if map_index is not None else -1)


def celery_worker() -> str | None:
    """The Celery worker node running this task (``--celery-hostname``, e.g. ``worker1@host``).

    ``hostname`` alone cannot tell two workers on one host apart. Under the CeleryExecutor the
    Task SDK supervisor forks the task process from the worker's pool process while that process
    executes the Celery task, so Celery's current task request (and its node name) is still set in
    the task process. None outside Celery (LocalExecutor, ``dag.test()``).
    """
    celery = sys.modules.get("celery")
    if celery is None:
        return None
    try:
        name = getattr(getattr(celery.current_task, "request", None), "hostname", None)
    except Exception:  # noqa: BLE001 - no current task
        return None
    return name if isinstance(name, str) and name else None


def _logical_date(ti: Any) -> str | None:
    ctx = getattr(ti, "_ti_context_from_server", None)
    dag_run = getattr(ctx, "dag_run", None)
    return _iso(getattr(dag_run, "logical_date", None))


def build(ti: Any, event: str, previous: dict[str, Any] | None, error: Any = None) -> dict[str, Any]:
    """The manifest document after ``event`` (running/success/failed/skipped) of this try."""
    map_index = getattr(ti, "map_index", -1)
    try_number = getattr(ti, "try_number", None)
    state = _state_name(getattr(ti, "state", None)) if event != "running" else "running"
    if event == "failed" and state not in ("failed", "up_for_retry"):
        state = "failed"
    if event in ("success", "skipped"):
        state = event
    start = getattr(ti, "start_date", None)
    end = getattr(ti, "end_date", None) if event != "running" else None
    if event != "running" and end is None:
        end = datetime.now(start.tzinfo) if isinstance(start, datetime) else None
    duration = round((end - start).total_seconds(), 3) if isinstance(start, datetime) and end else None

    doc: dict[str, Any] = dict(previous or {})
    same_try = doc.get("try_number") == try_number
    hostname = getattr(ti, "hostname", None)
    worker = celery_worker()
    doc.update(
        {
            "schema": SCHEMA,
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "logical_date": _logical_date(ti),
            "task_id": ti.task_id,
            "map_index": map_index,
            "rendered_map_index": getattr(ti, "rendered_map_index", None),
            "try_number": try_number,
            "max_tries": getattr(ti, "max_tries", None),
            "state": state,
            "start": _iso(start),
            "end": _iso(end),
            "duration_s": duration,
            "hostname": hostname,
            "worker": worker,
            "updated": utcnow(),
        }
    )
    if event == "running" or not same_try or "inputs" not in doc:
        doc["inputs"] = _safe_call(task_inputs, ti, default={"error": "inputs could not be read"})
    if event == "running" and not same_try:
        doc.update({"outputs": None, "checks": None, "error": None})
    if event == "success":
        output = _safe_call(task_output, ti, default=None)
        doc["outputs"] = bounded(clean(output))
        doc["checks"] = clean(extract_checks(output))
        doc["error"] = None
    elif event in ("failed", "skipped"):
        doc["outputs"] = None
        doc["checks"] = None
        doc["error"] = None
    if event == "failed":
        triage = contextual_triage(error, ti)
        doc["error"] = {
            "kind": triage.kind,
            "retryable": triage.retryable,
            "hint": triage.hint,
            "type": type(error).__name__ if isinstance(error, BaseException) else None,
            "message": clean_message(error),
            "will_retry": state == "up_for_retry",
        }
    tries = [t for t in doc.get("tries") or [] if t.get("try_number") != try_number]
    tries.append(
        {
            "try_number": try_number,
            "state": state,
            "start": _iso(start),
            "end": _iso(end),
            "hostname": hostname,
            "worker": worker,
            "error_kind": (doc.get("error") or {}).get("kind") if event == "failed" else None,
            "error_message": ((doc.get("error") or {}).get("message") or "")[:300] or None
            if event == "failed"
            else None,
        }
    )
    doc["tries"] = sorted(tries, key=lambda t: (t.get("try_number") is None, t.get("try_number") or 0))
    return doc


def _safe_call(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a manifest field that cannot be read is left out
        log.warning("task manifest: %s failed: %s", fn.__name__, type(exc).__name__)
        return default


def record(ti: Any, event: str, error: Any = None) -> str | None:
    """Write the manifest of ``ti`` after ``event``; returns its location, None when skipped.

    Never raises: a manifest must not break the task it describes.
    """
    try:
        if type(ti).__name__ != "RuntimeTaskInstance" or not is_greenlight_task(ti):
            # State changes made through the API server (mark success/failed in the UI) arrive
            # with an ORM TaskInstance: they are not recorded (the task process wrote the last try).
            return None
        root = manifest_root()
        if root is None:
            return None
        store = store_for(root)
        rel = relpath(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
        key = (root, ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
        with _cache_lock:
            previous = _cache.get(key)
        if previous is None or previous.get("try_number") != getattr(ti, "try_number", None):
            previous = store.read(rel) or previous
        doc = build(ti, event, previous, error)
        where = store.write(rel, doc)
        with _cache_lock:
            if event == "running":
                _cache[key] = doc
            else:
                _cache.pop(key, None)
        level = logging.DEBUG if event == "running" else logging.INFO
        log.log(level, "task manifest (%s, try %s): %s", doc["state"], doc["try_number"], where)
        return where
    except Exception as exc:  # noqa: BLE001 - never break the task for its manifest
        log.warning("task manifest not written for %s: %s", getattr(ti, "task_id", "?"), clean_message(exc))
        return None
