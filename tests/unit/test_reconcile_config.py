"""reconcile.yaml validation: the pydantic models name the key path at fault (exit 2)."""

from __future__ import annotations

import pytest

from greenlight.errors import ConfigError
from greenlight.reconcile.config import load_config, parse_config


def _doc(*targets, **top):
    return {"report_uri": "s3://reports-x/r/", "targets": list(targets), **top}


DVC = {"name": "d", "kind": "dvc", "repo": "/srv/repo"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "expected a mapping with 'targets' and 'report_uri' at the top level"),
        ({"targets": [DVC]}, "missing required key 'report_uri'"),
        (_doc(), "'targets' must be a non-empty list"),
        (_doc("d"), "targets[0]: expected a mapping with 'name' and 'kind', got 'd'"),
        (_doc({**DVC, "kind": "svn"}), "targets[0] (d).kind: 'svn' is not one of dvc, git_dvc, mlflow"),
        (_doc({"name": "d", "repo": "/r"}), "targets[0] (d): missing required key 'kind'"),
        (_doc({**DVC, "name": "no spaces"}), "targets[0].name: 'no spaces' must be 1-100 letters"),
        (_doc({"name": "d", "kind": "dvc"}), "targets[0] (d): missing required key 'repo' (a local git checkout"),
        (_doc({**DVC, "rev": "--upload-pack=x"}), "targets[0] (d).rev: '--upload-pack=x' is not a git revision"),
        (_doc({**DVC, "remote": "s3://a-b/c/", "remote_name": "r"}), "give either 'remote' (a URI) or 'remote_name'"),
        (
            _doc({**DVC, "fallback_remotes": "s3://a-b/"}),
            "targets[0] (d).fallback_remotes: expected a list of s3:// URIs",
        ),
        (
            _doc(DVC, {**DVC, "name": "e", "fallback_remotes": ["s3://ok-b/", "http://x/"]}),
            "targets[1] (e).fallback_remotes[1]",
        ),
        (
            _doc({"name": "g", "kind": "git_dvc", "repo": "/r", "cache_dir": "/c"}),
            "targets[0] (g): unknown key 'cache_dir'",
        ),
        (
            _doc({"name": "m", "kind": "mlflow", "registered_models": "some"}),
            "targets[0] (m).registered_models: expected",
        ),
        (
            _doc({"name": "m", "kind": "mlflow", "experiments": ["a", 3]}),
            "targets[0] (m).experiments[1]: expected a list",
        ),
        (_doc(DVC, workers=0), "'workers' must be a whole number from 1 to 256"),
        (_doc(DVC, DVC), "targets[1].name: 'd' is used twice"),
        ({"report_uri": 5, "targets": [DVC]}, "report_uri: expected an s3:// URI or a local folder, got 5"),
    ],
)
def test_invalid_reconcile_configs_are_named(doc, message):
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_valid_targets_keep_their_values(tmp_path):
    config = parse_config(
        _doc(
            {**DVC, "remote": "s3://dvc-b/x", "fallback_remotes": ["s3://backup-b/x"], "cache_dir": "cache"},
            {"name": "m", "kind": "mlflow", "registered_models": [" a", "a", "b"], "restore_dir": "/restore"},
            {"name": "g", "kind": "git_dvc", "repo": "git@host:org/repo.git", "rev": "main"},
        ),
        path=str(tmp_path / "reconcile.yaml"),
    )
    dvc, mlflow, gitdvc = config.targets
    assert (str(dvc.remote), [str(f) for f in dvc.fallback_remotes]) == ("s3://dvc-b/x/", ["s3://backup-b/x/"])
    assert dvc.cache_dir == str(tmp_path / "cache")  # relative to the config file
    assert (mlflow.registered_models, mlflow.experiments, mlflow.restore_dir) == (("a", "b"), (), "/restore")
    assert (gitdvc.repo, gitdvc.rev) == ("git@host:org/repo.git", "main")
    assert config.report_uri == "s3://reports-x/r/" and config.workers == 32


def test_duplicate_keys_and_non_utf8_files_are_refused(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("report_uri: /tmp/r\ntargets: []\ntargets: []\n")
    with pytest.raises(ConfigError, match="duplicate key 'targets' at line 3"):
        load_config(dup)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("report_uri: /tmp/r\ntargets: [{name: d, kind: dvc, repo: /caf\u00e9}]\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(latin)
    assert "reconcile config" in str(err.value) and str(latin) in str(err.value) and "not UTF-8" in str(err.value)
