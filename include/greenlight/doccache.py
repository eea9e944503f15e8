"""A cache of validated config documents, like Python's ``.pyc`` files.

Importing pydantic costs a CLI start ~0.13 s of CPU (``python -X importtime``, measured
2026-12-03), more than a third of a ``greenlight promote`` that has 50 objects to copy. The
config file rarely changes between runs, so the outcome of validating it is kept: the validator's
own output (the normalized document) for one exact input document, under a key that is a sha256 of

- the document as canonical JSON (sorted keys; ``1``, ``1.0``, ``true`` and ``"1"`` stay distinct),
- the source bytes of the modules that validate it (the schema and the validation code) and
  pydantic's version file, so an edited schema or another pydantic misses,
- greenlight's version.

The schema stays the one judge: a hit returns exactly what the validator returned for the same
input and the same code. A document the validator refuses is never stored (the caller stores a
document only once everything else about it is accepted too), so every run reports its errors
afresh. Only documents made of JSON types are cached (mappings with string keys, lists, strings,
numbers, booleans, null); anything else YAML can produce (a date, a set, a recursive anchor) is
validated every time.

The cache is used only while pydantic is not imported yet in the process: in Airflow processes
(which import pydantic anyway) and in anything else that has already paid for it, validation runs
directly and nothing is read or written.

Where: ``$GREENLIGHT_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/greenlight/config`` (created
with mode 0700); ``GREENLIGHT_CONFIG_CACHE=0`` turns it off. One small JSON file per key, written
atomically (a temporary file, then ``os.replace``). A missing, unreadable, corrupt or foreign-owned
entry is a miss; a failure to write is ignored (the run goes on, validated).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import greenlight

CACHE_DIR_ENV = "GREENLIGHT_CACHE_DIR"
SWITCH_ENV = "GREENLIGHT_CONFIG_CACHE"
VALIDATOR = "pydantic"
#: Deeper than any config file; a recursive YAML anchor (``&a [*a]``) goes past it and is not cached.
MAX_DEPTH = 64


def enabled() -> bool:
    """False when ``GREENLIGHT_CONFIG_CACHE`` says off (``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def validator_loaded() -> bool:
    """True when pydantic is already imported in this process: then validating costs little and
    the cache is not used."""
    return VALIDATOR in sys.modules


def cache_dir() -> Path | None:
    """``$GREENLIGHT_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/greenlight/config``; None when
    there is no home directory to put it in."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    if not os.path.isabs(base):  # no home directory (``~`` not expanded) or a relative XDG path
        return None
    return Path(base) / "greenlight" / "config"


@functools.cache
def fingerprint(sources: tuple[str, ...]) -> str | None:
    """sha256 over the source bytes of the modules ``sources`` (found without importing them),
    pydantic's version file and greenlight's version; None if a module's source cannot be read
    (then nothing is cached: an entry could not be tied to the code that validated it)."""
    digest = hashlib.sha256(f"greenlight {greenlight.__version__}\n".encode())
    try:
        for name in sources:
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                return None
            digest.update(f"\n{name}\n".encode())
            digest.update(Path(spec.origin).read_bytes())
        validator = importlib.util.find_spec(VALIDATOR)
        if validator is not None and validator.origin:
            version_file = Path(validator.origin).with_name("version.py")
            digest.update(b"\n" + VALIDATOR.encode() + b"\n")
            digest.update(version_file.read_bytes() if version_file.is_file() else b"?")
    except (ImportError, OSError, ValueError):
        return None
    return digest.hexdigest()


def is_plain(value: Any, depth: int = 0) -> bool:
    """True for JSON data: dicts with string keys, lists, strings, ints, floats, booleans, None."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return True
    if kind is list:
        return all(is_plain(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(k) is str and is_plain(v, depth + 1) for k, v in value.items())
    return False


def canonical(value: Any) -> str:
    """``value`` (plain data) as canonical JSON: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Slot:
    """Where the validated form of one document is, or would be, cached.

    ``load()`` returns the cached normalized document or None; ``store(doc)`` keeps one. A slot
    with no path (cache off, pydantic already imported, no fingerprint, a document that is not
    plain data) loads nothing and stores nothing.
    """

    def __init__(self, path: Path | None = None, key: str = "") -> None:
        self.path = path
        self.key = key

    def load(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            with self.path.open("rb") as handle:
                if hasattr(os, "getuid") and os.fstat(handle.fileno()).st_uid != os.getuid():
                    return None  # written by someone else: not trusted as this user's validation
                entry = json.load(handle)
        except (OSError, ValueError):  # missing, unreadable, not JSON / not UTF-8: a miss
            return None
        if not isinstance(entry, dict) or entry.get("key") != self.key or not isinstance(entry.get("doc"), dict):
            return None
        return entry["doc"]

    def store(self, doc: dict[str, Any]) -> None:
        """Keep ``doc`` for the next run; best effort (any write failure is ignored)."""
        if self.path is None:
            return
        try:
            data = json.dumps({"key": self.key, "doc": doc}, ensure_ascii=False).encode()
        except (TypeError, ValueError):  # not JSON data after all: validate next time too
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def load_validated(raw: Any, *, kind: str, sources: Sequence[str], validate: Callable[[], Any], build: Callable):
    """``build(doc)`` of the normalized document: from the cache when it holds this document's
    verdict, else ``validate()``'s; stored only after ``build`` (the cross-key checks) accepted it."""
    cached = slot(raw, kind=kind, sources=sources)
    doc = cached.load()
    if doc is None:
        doc = validate()
    built = build(doc)
    cached.store(doc)
    return built


def slot(raw: Any, *, kind: str, sources: Sequence[str]) -> Slot:
    """The cache slot of the parsed document ``raw`` of a ``kind`` of file validated by the modules
    ``sources`` (their source is part of the key)."""
    if not enabled() or validator_loaded():
        return Slot()
    directory = cache_dir()
    code = fingerprint(tuple(sources))
    if directory is None or code is None or not is_plain(raw):
        return Slot()
    try:
        key = hashlib.sha256(f"{kind}\n{code}\n{canonical(raw)}".encode()).hexdigest()
    except (TypeError, ValueError):  # e.g. a lone surrogate from a YAML escape: not UTF-8 encodable
        return Slot()
    return Slot(directory / f"{key}.json", key)
