"""DVC ↔ S3 remote: does the remote hold every object the repository at a git ref needs?

Runbook "DVC → MinIO Sync Recovery", steps 1-4, without a local cache and without trusting DVC's
shortcut: ``dvc status -c`` and ``dvc data status --not-in-remote`` assume a directory's files are
in the remote when its ``.dir`` manifest is, so a deleted file inside a tracked directory goes
unnoticed (see docs/reconciliation.md). Here:

1. every ``.dvc`` file and ``dvc.lock`` at the ref is read with ``git ls-tree`` / ``git cat-file``
   (never the working tree, which may be on another branch or dirty);
2. directory outputs are expanded from their ``.dir`` manifests (local cache, else the remote,
   else a fallback remote);
3. the expected keys (``files/md5/<2 hex>/<rest>``; ``<2 hex>/<rest>`` for DVC 2 outputs) are
   diffed against ONE listing of the remote, its 256 two-hex prefixes listed in parallel;
4. each missing object is pushed from the local cache (md5 checked first), else copied server-side
   from a fallback remote, else reported unrecoverable with the path and the git-tracked file
   that needs it.

Repairs only ever write keys that are absent, and the keys are content addresses: a repair can
never overwrite or delete data. Every md5 read from a ``.dvc`` file, ``dvc.lock`` or ``.dir``
manifest is checked to be 32 hex digits (``.dir`` only where DVC puts it) before a cache path or
key is built from it, so a crafted value (``../../x``) can neither read a file outside the cache nor
name a key outside the remote. Hashes are computed with ``dvc-data`` (DVC's own hashing, including
DVC 2's ``md5-dos2unix`` for legacy outputs).
"""

from __future__ import annotations

import configparser
import io
import json
import logging
import posixpath
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from greenlight.errors import ConfigError
from greenlight.reconcile.common import (
    FAILED,
    RECOVERABLE,
    REPAIRED,
    UNRECOVERABLE,
    GitTree,
    TargetResult,
    list_keys,
    upload_file,
)
from greenlight.storage.s3 import S3Uri, error_code, object_state, parse_s3_uri

log = logging.getLogger("greenlight.reconcile.dvc")

HEX = "0123456789abcdef"
PREFIXES = [a + b for a in HEX for b in HEX]
_MD5 = re.compile(r"[0-9a-f]{32}")
_DIR_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")


def valid_md5(value: object, *, directory: bool = True) -> bool:
    """32 lowercase hex digits, plus ``.dir`` for a directory output when ``directory``."""
    return isinstance(value, str) and (_DIR_MD5 if directory else _MD5).fullmatch(value) is not None


def content_md5(path: str | None = None, data: bytes | None = None, *, legacy: bool = False) -> str:
    """DVC's hash of a file (or of ``data``), computed by dvc-data: ``md5`` for DVC 3 outputs,
    ``md5-dos2unix`` (CRLF -> LF in text files) for DVC 2 (legacy) outputs."""
    # dvc-data pulls in fsspec/dvc-objects (~0.5 s on an idle machine): imported only when a cache
    # copy or a .dir manifest is actually hashed, never on the check's listing-only path.
    from dvc_data.hashfile.hash import file_md5, fobj_md5

    name = "md5-dos2unix" if legacy else "md5"
    if data is not None:
        return fobj_md5(io.BytesIO(data), name=name)
    return file_md5(path, name=name)


@dataclass
class Output:
    """One cached output named by a ``.dvc`` file or a ``dvc.lock`` stage."""

    path: str  # repo-relative workspace path
    md5: str  # ends with ".dir" for a directory
    tracked_by: str  # "data/images.dvc" or "dvc.lock:train"
    legacy: bool = False  # DVC 2 output (no ``hash: md5``): stored at the remote root
    size: int | None = None
    nfiles: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


@dataclass
class Needed:
    """One remote object the ref needs, with every workspace path that needs it."""

    rel: str  # key relative to the remote prefix
    md5: str
    legacy: bool
    paths: list[str] = field(default_factory=list)
    tracked_by: list[str] = field(default_factory=list)
    size: int | None = None


def object_rel(md5: str, legacy: bool = False) -> str:
    """The key of an object relative to the remote (or cache) root. ``md5`` must be 32 hex digits
    (plus ``.dir``): anything else could climb out of the cache or the remote prefix."""
    if not valid_md5(md5):
        raise ConfigError(f"md5 {md5!r} is not 32 hex digits (plus '.dir' for a directory); no path built from it")
    base = "" if legacy else "files/md5/"
    return f"{base}{md5[:2]}/{md5[2:]}"


def parse_yaml(data: bytes, where: str) -> Any:
    try:
        return yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc


def norm_path(base: str, path: str) -> str:
    joined = posixpath.normpath(posixpath.join(base, path)) if base else posixpath.normpath(path)
    return joined.lstrip("./") if joined.startswith("./") else joined


def out_flags(entry: Any) -> tuple[str | None, dict[str, Any]]:
    """``outs:`` items in dvc.yaml are a path or ``{path: {cache: false, ...}}``."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        ((path, flags),) = entry.items()
        return str(path), dict(flags or {})
    return None, {}


def _mapping(doc: Any, where: str) -> dict:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping (a DVC file), got {type(doc).__name__} {doc!r:.80}")
    return doc


def _outs(doc: dict, where: str) -> list[dict]:
    """The ``outs:`` list of a ``.dvc`` file or a lock stage; anything else is a malformed file (a
    mapping here would otherwise be read as a list of its keys and every output silently skipped)."""
    outs = doc.get("outs") or []
    if not isinstance(outs, list):
        raise ConfigError(f"{where}: 'outs' must be a list of outputs, got a {type(outs).__name__}: {outs!r:.120}")
    for i, raw in enumerate(outs):
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"].strip():
            raise ConfigError(f"{where}: outs[{i}] must be a mapping with a 'path', got {raw!r:.120}")
    return outs


def parse_dir_manifest(body: bytes, where: str) -> list[dict[str, Any]]:
    """The entries of a ``.dir`` manifest: a JSON list of ``{"md5": <32 hex>, "relpath": ...}``.
    Anything else is a :class:`ConfigError` naming ``where`` (the file or key it was read from)."""
    try:
        entries = json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"{where}: .dir manifest is not valid JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where}: .dir manifest must be a JSON list of {{md5, relpath}}, got {type(entries).__name__}"
        )
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not valid_md5(entry.get("md5"), directory=False):
            raise ConfigError(f"{where}: .dir entry {i} has no md5 of 32 hex digits: {entry!r:.120}")
        rel = entry.get("relpath")
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise ConfigError(f"{where}: .dir entry {i} has relpath {rel!r}, not a path inside the directory")
    return entries


def dvc_outputs(tree: GitTree, remote_name: str | None = None) -> tuple[list[Output], list[str], list[str]]:
    """Cached outputs at the ref: (outputs, the DVC files read, notes about what was skipped)."""
    dvcfiles = sorted(p for p in tree.files if p.endswith(".dvc") and not p.startswith(".dvc/"))
    locks = sorted(p for p in tree.files if posixpath.basename(p) == "dvc.lock")
    yamls = [posixpath.join(posixpath.dirname(lock), "dvc.yaml") for lock in locks]
    blobs = tree.read_many(dvcfiles + locks + [y for y in yamls if tree.exists(y)])
    outputs: list[Output] = []
    notes: list[str] = []

    def add(raw: dict, base: str, tracked_by: str, flags: dict[str, Any]) -> None:
        if not isinstance(raw, dict) or "path" not in raw:
            return
        path = norm_path(base, str(raw["path"]))
        if flags.get("cache") is False or raw.get("cache") is False:
            return  # not cached: git tracks it (metrics, small plots)
        if flags.get("push") is False or raw.get("push") is False:
            notes.append(f"{path} ({tracked_by}): push: false, not expected in the remote")
            return
        out_remote = raw.get("remote") or flags.get("remote")
        if out_remote and remote_name and out_remote != remote_name:
            notes.append(f"{path} ({tracked_by}): stored in remote {out_remote!r}, not checked here")
            return
        md5 = raw.get("md5")
        if not md5:
            notes.append(f"{path} ({tracked_by}): no md5 recorded (never committed?), skipped")
            return
        if not valid_md5(md5):
            raise ConfigError(
                f"{tracked_by}: output {path!r} has md5 {md5!r}, not 32 hex digits (plus '.dir' for a "
                "directory); refusing to build a cache path or key from it"
            )
        legacy = raw.get("hash") != "md5"
        outputs.append(Output(path, str(md5), tracked_by, legacy, raw.get("size"), raw.get("nfiles")))

    for dvcfile in dvcfiles:
        doc = _mapping(parse_yaml(blobs[dvcfile], dvcfile), dvcfile)
        base = posixpath.dirname(dvcfile)
        if doc.get("wdir"):
            base = norm_path(base, str(doc["wdir"]))
        for raw in _outs(doc, dvcfile):
            add(raw, base, dvcfile, {})
    for lock, stage_yaml in zip(locks, yamls, strict=True):
        doc = _mapping(parse_yaml(blobs[lock], lock), lock)
        spec = parse_yaml(blobs[stage_yaml], stage_yaml) if stage_yaml in blobs else {}
        spec = spec if isinstance(spec, dict) else {}
        stages_spec = spec.get("stages") or {}
        base = posixpath.dirname(lock)
        if "stages" not in doc:  # DVC 1 lock format: top-level stage names
            notes.append(f"{lock}: schema 1.0 lock file read as-is")
        stages = doc.get("stages", doc) if isinstance(doc, dict) else {}
        for stage, body in stages.items():
            if not isinstance(body, dict):
                continue
            stage_spec = stages_spec.get(str(stage).split("@", 1)[0]) or {}
            stage_base = norm_path(base, str(stage_spec["wdir"])) if stage_spec.get("wdir") else base
            flags_by_path: dict[str, dict[str, Any]] = {}
            for section in ("outs", "metrics", "plots"):
                for item in stage_spec.get(section) or ():
                    path, flags = out_flags(item)
                    if path is not None:
                        if section != "outs":
                            flags.setdefault("cache", True)
                        flags_by_path[norm_path(stage_base, path)] = flags
            for raw in _outs(body, f"{lock}: stage {stage!r}"):
                add(raw, stage_base, f"{lock}:{stage}", flags_by_path.get(norm_path(stage_base, str(raw["path"])), {}))
    return outputs, dvcfiles + locks, notes


def remote_from_repo(tree: GitTree, name: str | None) -> tuple[S3Uri, str]:
    """The S3 URL of the named (else the default) remote in ``.dvc/config`` at the ref."""
    if not tree.exists(".dvc/config"):
        raise ConfigError(f"{tree.repo}@{tree.rev}: no .dvc/config; set 'remote' in the target")
    parser = configparser.ConfigParser()
    parser.read_string(tree.read(".dvc/config").decode())
    if name is None:
        name = parser.get("core", "remote", fallback=None)
        if not name:
            raise ConfigError(f"{tree.repo}@{tree.rev}: .dvc/config has no default remote; set 'remote_name'")
    section = f'remote "{name}"'
    if not parser.has_section(section):
        section = f"'remote \"{name}\"'"  # DVC writes the section name quoted
    if not parser.has_section(section) or not parser.get(section, "url", fallback=None):
        raise ConfigError(f"{tree.repo}@{tree.rev}: remote {name!r} is not defined in .dvc/config")
    url = parser.get(section, "url")
    return parse_s3_uri(url, what=f".dvc/config remote {name!r} url"), name


class DvcCheck:
    """Check (and optionally repair) one DVC target. ``lister`` lists (FastS3 or botocore);
    ``client`` (botocore) reads, uploads and copies."""

    def __init__(self, target, client, *, lister=None, workers: int = 32):
        self.target = target
        self.client = client
        self.lister = lister or client
        self.workers = workers
        self.remote: S3Uri | None = target.remote
        cache = target.cache_dir
        if cache is None and "://" not in target.repo and (Path(target.repo) / ".dvc").is_dir():
            cache = str(Path(target.repo) / ".dvc" / "cache")
        self.cache_dir = Path(cache) if cache else None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ check
    def expected(self, outputs: list[Output], pool: ThreadPoolExecutor, listed: set[str] | None = None):
        """(needed objects keyed by remote-relative key, notes, .dir manifests by md5)."""
        notes: list[str] = []
        needed: dict[str, Needed] = {}

        def need(md5: str, legacy: bool, path: str, tracked_by: str, size=None) -> None:
            rel = object_rel(md5, legacy)
            item = needed.get(rel)
            if item is None:
                item = needed[rel] = Needed(rel, md5, legacy, size=size)
            if len(item.paths) < 20:
                item.paths.append(path)
            if tracked_by not in item.tracked_by:
                item.tracked_by.append(tracked_by)

        for out in outputs:
            need(out.md5, out.legacy, out.path, out.tracked_by, out.size)
        dirs = list({(o.md5, o.legacy): o for o in outputs if o.is_dir}.values())
        manifests = pool.map(lambda o: self.read_dir(o.md5, o.legacy, listed), dirs)
        by_md5: dict[str, list[dict[str, Any]] | None] = {}
        for out, (entries, _source) in zip(dirs, manifests, strict=True):
            by_md5[out.md5] = entries
            if entries is None:
                notes.append(
                    f"{out.path} ({out.tracked_by}): .dir manifest {out.md5} is nowhere to be read; its files are unknown"
                )
        for out in outputs:
            for entry in by_md5.get(out.md5) or ():
                need(entry["md5"], out.legacy, f"{out.path}/{entry['relpath']}", out.tracked_by, entry.get("size"))
        return needed, notes, by_md5

    def read_dir(self, md5: str, legacy: bool, listed: set[str] | None) -> tuple[list[dict] | None, str | None]:
        """A ``.dir`` manifest from the cache, else the remote, else a fallback remote."""
        rel = object_rel(md5, legacy)
        if self.cache_dir is not None:
            path = self.cache_dir / rel
            if path.is_file():
                entries = self._dir_entries(path.read_bytes(), md5, legacy, str(path))
                if entries is not None:
                    return entries, str(path)
        sources = [self.remote] if self.remote else []
        if listed is not None and self.remote and self.remote.prefix + rel not in listed:
            sources = []
        for uri in sources + list(self.target.fallback_remotes):
            where = f"s3://{uri.bucket}/{uri.prefix}{rel}"
            try:
                body = self.client.get_object(Bucket=uri.bucket, Key=uri.prefix + rel)["Body"].read()
            except Exception as exc:  # noqa: BLE001 - missing here: try the next source
                if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                    raise
                continue
            entries = self._dir_entries(body, md5, legacy, where)
            if entries is not None:
                return entries, where
        return None, None

    @staticmethod
    def _dir_entries(body: bytes, md5: str, legacy: bool, where: str) -> list[dict] | None:
        """A ``.dir`` copy whose content does not hash to its name is corrupt (None: try the next
        copy); one that does but is not a list of {md5, relpath} is a malformed manifest that the
        repo itself points to: a ConfigError naming it."""
        actual = content_md5(data=body, legacy=legacy)
        if actual != md5.removesuffix(".dir"):
            log.warning("corrupt .dir manifest %s: its content hashes to %s", where, actual)
            return None
        return parse_dir_manifest(body, where)

    def list_remote(self, legacy: bool, pool: ThreadPoolExecutor) -> set[str]:
        """Every key of the remote: one request when it holds under 1,000 objects, else its 256
        two-hex prefixes listed in parallel (each paginated)."""
        base = self.remote.prefix + ("" if legacy else "files/md5/")
        first = self.lister.list_objects_v2(Bucket=self.remote.bucket, Prefix=base, MaxKeys=1000)
        if not first.get("IsTruncated"):
            return {o["Key"] for o in first.get("Contents", ())}
        return list_keys(self.lister, self.remote.bucket, [f"{base}{p}/" for p in PREFIXES], pool)

    _remote_name: str | None = None

    def run(self, *, repair: bool, dry_run: bool, tree: GitTree | None = None) -> TargetResult:
        started = time.monotonic()
        t = self.target
        result = TargetResult(t.name, "dvc")
        own_tree = tree is None
        tree = tree or GitTree(t.repo, t.rev)
        try:
            if self.remote is None:
                self.remote, self._remote_name = remote_from_repo(tree, t.remote_name)
            with ThreadPoolExecutor(self.workers) as pool:
                mark = time.monotonic()
                outputs, files, notes = dvc_outputs(tree, t.remote_name or self._remote_name)
                listed = self.list_remote(False, pool)
                if any(o.legacy for o in outputs):
                    listed |= self.list_remote(True, pool)
                self.timings["list_s"] = time.monotonic() - mark
                mark = time.monotonic()
                needed, dir_notes, _ = self.expected(outputs, pool, listed)
                self.timings["expand_s"] = time.monotonic() - mark
                missing = sorted(
                    (n for rel, n in needed.items() if self.remote.prefix + rel not in listed), key=lambda n: n.rel
                )
                result.checked = len(needed)
                result.notes = notes + dir_notes
                result.details = {
                    "repo": t.repo,
                    "rev": t.rev,
                    "commit": tree.sha,
                    "remote": str(self.remote),
                    "dvc_files": files,
                    "remote_objects_listed": len(listed),
                }
                mark = time.monotonic()
                result.entries = list(pool.map(lambda n: self.resolve(n, repair=repair, dry_run=dry_run), missing))
                self.timings["repair_s"] = time.monotonic() - mark
        finally:
            if own_tree:
                tree.close()
        result.details["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        result.duration_s = time.monotonic() - started
        return result

    # ------------------------------------------------------------------ repair
    def route(self, item: Needed) -> tuple[str | None, str | None, list[str]]:
        """Where a missing object can come from: ("cache", path) / ("fallback", uri) / (None, None)."""
        tried: list[str] = []
        if self.cache_dir is not None:
            path = self.cache_dir / item.rel
            if path.is_file():
                expected = item.md5.removesuffix(".dir")
                if content_md5(str(path), legacy=item.legacy) == expected:
                    return "cache", str(path), tried
                tried.append(f"cache copy {path} is corrupt (md5 differs)")
            else:
                tried.append(f"not in cache {self.cache_dir}")
        for uri in self.target.fallback_remotes:
            head = object_state(self.client, uri.bucket, uri.prefix + item.rel)
            if head is None:
                tried.append(f"not in {uri}")
                continue
            etag = head["etag"]
            if not item.legacy and "-" not in etag and etag != item.md5.removesuffix(".dir"):
                tried.append(f"{uri} copy is corrupt (ETag {etag} is not the md5)")
                continue
            return "fallback", f"s3://{uri.bucket}/{uri.prefix}{item.rel}", tried
        return None, None, tried

    def resolve(self, item: Needed, *, repair: bool, dry_run: bool) -> dict[str, Any]:
        key = self.remote.prefix + item.rel
        entry: dict[str, Any] = {
            "what": f"s3://{self.remote.bucket}/{key}",
            "key": key,
            "md5": item.md5,
            "path": item.paths[0] if item.paths else None,
            "paths": item.paths,
            "tracked_by": item.tracked_by,
            "size": item.size,
        }
        route, source, tried = self.route(item)
        entry["route"], entry["source"] = route, source
        if route is None:
            entry["status"] = UNRECOVERABLE
            entry["action"] = "restore the file from elsewhere and `dvc add`/`dvc commit` + `dvc push` it; " + (
                "; ".join(tried) if tried else "no local cache or fallback remote configured"
            )
            return entry
        if not repair or dry_run:
            entry["status"] = RECOVERABLE
            entry["action"] = f"would {'push from cache' if route == 'cache' else 'copy from fallback'} {source}"
            return entry
        try:
            if route == "cache":
                upload_file(self.client, source, self.remote.bucket, key)
            else:
                src = parse_s3_uri(source, what="fallback object", directory=False)
                self.client.copy_object(
                    Bucket=self.remote.bucket, Key=key, CopySource={"Bucket": src.bucket, "Key": src.prefix}
                )
        except Exception as exc:  # noqa: BLE001 - one failed repair is reported, the others go on
            entry["status"] = FAILED
            entry["action"] = f"repair from {source} failed ({type(exc).__name__}: {exc}); rerun to retry"
            return entry
        entry["status"] = REPAIRED
        entry["action"] = f"{'pushed from cache' if route == 'cache' else 'copied from fallback'} {source}"
        return entry


def check_dvc(target, client, *, lister=None, repair: bool = False, dry_run: bool = False, workers: int = 32):
    """Check one ``kind: dvc`` target; see the module docstring."""
    return DvcCheck(target, client, lister=lister, workers=workers).run(repair=repair, dry_run=dry_run)


__all__ = [
    "DvcCheck",
    "Needed",
    "Output",
    "check_dvc",
    "content_md5",
    "dvc_outputs",
    "object_rel",
    "parse_dir_manifest",
    "remote_from_repo",
    "valid_md5",
]
