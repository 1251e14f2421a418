"""Code versions (joulegrid.versions): refs resolved to commits, checkouts, dirty trees refused, ABBA/BAAB."""

from __future__ import annotations

import subprocess

import pytest

from joulegrid import versions
from joulegrid.base import ConfigError


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "pkg").mkdir(parents=True)
    git(r, "init", "-q")
    git(r, "config", "user.email", "t@t")
    git(r, "config", "user.name", "t")
    (r / "pkg" / "m.py").write_text("X = 1\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "A")
    (r / "pkg" / "m.py").write_text("X = 2\n")
    git(r, "commit", "-qam", "B")
    return r


def cfg(tmp_path, base, head, **v):
    return {
        "versions": {"base": base, "head": head, "repo": "repo", "import_path": ".", "allow_dirty": False, **v},
        "resources_dir": str(tmp_path / "resources"),
    }


def test_refs_resolve_to_commits_and_check_out_each_version(tmp_path, repo):
    versions._CACHE.clear()
    vs = versions.resolve(cfg(tmp_path, "HEAD~1", "HEAD"), tmp_path)
    a, b = git(repo, "rev-parse", "HEAD~1"), git(repo, "rev-parse", "HEAD")
    assert (vs["base"].commit, vs["head"].commit) == (a, b) and not vs["base"].dirty
    for v, x in ((vs["base"], "1"), (vs["head"], "2")):
        root = versions.checkout(v)
        assert root == tmp_path / "resources" / "versions" / v.commit
        assert (root / "pkg" / "m.py").read_text() == f"X = {x}\n"
        assert v.columns() == {"code_version": v.label, "code_commit": v.commit, "code_dirty": False}


def test_a_dirty_tree_is_refused_unless_allowed(tmp_path, repo):
    versions._CACHE.clear()
    (repo / "pkg" / "m.py").write_text("X = 3\n")
    with pytest.raises(ConfigError, match=r"versions.head.*uncommitted changes \(pkg/m.py\).*allow_dirty"):
        versions.resolve(cfg(tmp_path, "HEAD", "repo"), tmp_path)
    vs = versions.resolve(cfg(tmp_path, "HEAD", "repo", allow_dirty=True), tmp_path)
    head = vs["head"]
    assert head.dirty and head.commit == git(repo, "rev-parse", "HEAD") and "-dirty-" in head.id
    assert (versions.checkout(head) / "pkg" / "m.py").read_text() == "X = 3\n"


def test_bad_refs_and_half_a_pair_name_the_key(tmp_path, repo):
    versions._CACHE.clear()
    with pytest.raises(ConfigError, match=r"versions.head: 'nope' is not a commit"):
        versions.resolve(cfg(tmp_path, "HEAD", "nope"), tmp_path)
    with pytest.raises(ConfigError, match=r"versions.head: versions.base is set but versions.head is not"):
        versions.resolve(cfg(tmp_path, "HEAD", None), tmp_path)


def test_quadruples_alternate_abba_and_baab_after_one_warm_up():
    assert versions.slots(0) == ["base", "base", "head", "head", "base"]
    assert versions.slots(1) == ["head", "head", "base", "base", "head"]
    assert len(versions.slots(2)) == versions.RUNS_PER_JOB
