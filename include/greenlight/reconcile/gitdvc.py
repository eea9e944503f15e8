"""git ↔ DVC: is ``dvc.lock`` at a git ref consistent with ``dvc.yaml`` and the files it names?

Runbook "Git ↔ DVC Sync Recovery", steps 1-2 (``git status`` / ``dvc status``), done on the
committed state of a ref instead of a working tree. A stage is reported stale when, at the ref:

- it is in ``dvc.yaml`` but not in ``dvc.lock`` (never run, or the lock was not committed), or
  the other way round;
- its ``cmd`` differs between the two files;
- a dep, out, metric or plot is in one file and not the other;
- a param it declares is missing from the lock, or its value in the lock differs from the params
  file at the ref;
- a dep's md5 in the lock differs from the dep as committed: a git-tracked file (md5 of the blob),
  a git-tracked directory (DVC's ``.dir`` hash, computed the way DVC does) or another stage's /
  ``.dvc`` file's output (the md5 recorded there).

And an output that git also tracks is reported (DVC outputs belong in ``.gitignore``).
Repair is a human decision (``dvc repro <stage>`` and a commit): greenlight never runs a pipeline.
Stages generated with ``foreach``/``matrix`` are listed as not checked.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from typing import Any

from greenlight.reconcile.common import UNRECOVERABLE, GitTree, TargetResult
from greenlight.reconcile.dvc import content_md5, dvc_outputs, norm_path, out_flags, parse_yaml


def dir_md5(tree: GitTree, path: str, legacy: bool) -> str:
    """DVC's hash of a directory: md5 of the sorted JSON list of {md5, relpath}, plus ``.dir``."""
    files = tree.under(path)
    blobs = tree.read_many(files)
    base = path.rstrip("/") + "/"
    entries = sorted(
        ({"md5": content_md5(data=blobs[f], legacy=legacy), "relpath": f[len(base) :]} for f in files),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _lookup(doc: Any, dotted: str) -> tuple[bool, Any]:
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _cmd(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value] if len(value) != 1 else str(value[0])
    return None if value is None else str(value)


def check_git_dvc(target) -> TargetResult:
    """Check one ``kind: git_dvc`` target; see the module docstring."""
    started = time.monotonic()
    result = TargetResult(target.name, "git_dvc")
    with GitTree(target.repo, target.rev) as tree:
        outputs, _, _ = dvc_outputs(tree)
        produced = {o.path: o for o in outputs}
        yamls = sorted(p for p in tree.files if posixpath.basename(p) == "dvc.yaml")
        not_checked: list[str] = []
        for yaml_path in yamls:
            base = posixpath.dirname(yaml_path)
            lock_path = posixpath.join(base, "dvc.lock")
            spec = parse_yaml(tree.read(yaml_path), yaml_path)
            lock = parse_yaml(tree.read(lock_path), lock_path) if tree.exists(lock_path) else {}
            locked = lock.get("stages") or {}
            params_cache: dict[str, Any] = {}
            for name, stage in (spec.get("stages") or {}).items():
                if not isinstance(stage, dict):
                    continue
                if "foreach" in stage or "matrix" in stage:
                    not_checked.append(f"{yaml_path}:{name} (foreach/matrix)")
                    continue
                result.checked += 1
                reasons = _stage_reasons(tree, base, name, stage, locked.get(name), produced, params_cache)
                if reasons:
                    result.entries.append(_entry(lock_path, name, reasons))
            templated = {
                n
                for n, s in (spec.get("stages") or {}).items()
                if isinstance(s, dict) and ("foreach" in s or "matrix" in s)
            }
            for name in locked:
                if name not in (spec.get("stages") or {}) and str(name).split("@", 1)[0] not in templated:
                    result.checked += 1
                    result.entries.append(
                        _entry(lock_path, name, [f"stage {name!r} is in {lock_path} but not in {yaml_path}"])
                    )
        # DVC outputs must not also be committed to git.
        for out in outputs:
            if tree.exists(out.path) or (out.is_dir and tree.is_dir(out.path)):
                result.entries.append(
                    {
                        "what": out.path,
                        "stage": out.tracked_by,
                        "file": out.tracked_by.split(":", 1)[0],
                        "reasons": [f"{out.path} is tracked by both git and DVC ({out.tracked_by})"],
                        "status": UNRECOVERABLE,
                        "action": f"`git rm -r --cached {out.path}`, add it to .gitignore and commit",
                    }
                )
        result.notes = [f"not checked: {n}" for n in not_checked]
        result.details = {"repo": target.repo, "rev": target.rev, "commit": tree.sha, "dvc_yaml": yamls}
    result.duration_s = time.monotonic() - started
    return result


def _entry(lock_path: str, stage: str, reasons: list[str]) -> dict[str, Any]:
    return {
        "what": f"{lock_path}:{stage}",
        "stage": stage,
        "file": lock_path,
        "reasons": reasons,
        "status": UNRECOVERABLE,
        "action": f"run `dvc repro {stage}` (or `dvc commit {stage}` if the outputs are right), commit dvc.lock, "
        "then `dvc push`",
    }


def _stage_reasons(tree, base, name, stage, locked, produced, params_cache) -> list[str]:
    if not isinstance(locked, dict):
        return [f"stage {name!r} is in dvc.yaml but not in dvc.lock (never run or lock not committed)"]
    reasons: list[str] = []
    wdir = norm_path(base, str(stage["wdir"])) if stage.get("wdir") else base
    if _cmd(stage.get("cmd")) != _cmd(locked.get("cmd")):
        reasons.append(f"cmd changed: dvc.yaml {stage.get('cmd')!r}, dvc.lock {locked.get('cmd')!r}")

    want_deps = {norm_path(wdir, str(d)) for d in stage.get("deps") or ()}
    lock_deps = {norm_path(wdir, str(d["path"])): d for d in locked.get("deps") or () if isinstance(d, dict)}
    for path in sorted(want_deps - set(lock_deps)):
        reasons.append(f"dep {path} is in dvc.yaml but not in dvc.lock")
    for path in sorted(set(lock_deps) - want_deps):
        reasons.append(f"dep {path} is in dvc.lock but not in dvc.yaml")

    want_outs = set()
    for section in ("outs", "metrics", "plots"):
        for item in stage.get(section) or ():
            path, _ = out_flags(item)
            if path is not None:
                want_outs.add(norm_path(wdir, path))
    lock_outs = {norm_path(wdir, str(o["path"])) for o in locked.get("outs") or () if isinstance(o, dict)}
    for path in sorted(want_outs - lock_outs):
        reasons.append(f"out {path} is in dvc.yaml but not in dvc.lock")
    for path in sorted(lock_outs - want_outs):
        reasons.append(f"out {path} is in dvc.lock but not in dvc.yaml")

    reasons += _param_reasons(tree, wdir, stage.get("params") or (), locked.get("params") or {}, params_cache)

    for path, dep in sorted(lock_deps.items()):
        if path not in want_deps or not dep.get("md5"):
            continue
        legacy = dep.get("hash") != "md5"
        now, how = None, ""
        if tree.exists(path):
            now, how = content_md5(data=tree.read(path), legacy=legacy), "as committed"
        elif path in produced:
            now, how = produced[path].md5, f"recorded by {produced[path].tracked_by}"
        elif tree.is_dir(path):
            now, how = dir_md5(tree, path, legacy), "as committed"
        if now is not None and now != dep["md5"]:
            reasons.append(f"dep {path} changed: dvc.lock has md5 {dep['md5']}, {how} it is {now}")
    return reasons


def _param_reasons(tree, wdir, declared, locked, cache) -> list[str]:
    reasons: list[str] = []
    wanted: dict[str, list[str]] = {}
    for item in declared:
        if isinstance(item, str):
            wanted.setdefault("params.yaml", []).append(item)
        elif isinstance(item, dict):
            for file, keys in item.items():
                wanted.setdefault(str(file), []).extend(str(k) for k in keys or ())
    for file, keys in wanted.items():
        path = norm_path(wdir, file)
        if path not in cache:
            cache[path] = None
            if tree.exists(path):
                raw = tree.read(path)
                cache[path] = json.loads(raw) if path.endswith(".json") else parse_yaml(raw, path)
        values = cache[path]
        lock_values = locked.get(file) or {}
        for key in keys:
            if key not in lock_values:
                reasons.append(f"param {file}:{key} is in dvc.yaml but not in dvc.lock")
                continue
            if values is None:
                continue  # the params file is not in git at the ref: not computable
            found, value = _lookup(values, key)
            if not found:
                reasons.append(f"param {file}:{key} is in dvc.lock but not in {path}")
            elif value != lock_values[key]:
                reasons.append(f"param {file}:{key} changed: dvc.lock {lock_values[key]!r}, {path} {value!r}")
    return reasons
