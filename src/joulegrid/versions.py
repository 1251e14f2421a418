"""Code versions as an axis: the base and head versions of the repository holding a bring-your-own workload.

docs/compare.md. The config's ``versions: {base: <git ref or path>, head: <git ref or path>}`` names two
versions of the repository (``versions.repo``) that holds the grid's workload classes. Each is resolved once
(``resolve``: a git ref to its commit; a path to its work tree's HEAD, refused when the tree has uncommitted
changes unless ``versions.allow_dirty``) and checked out (``checkout``: ``git archive`` of the commit, or a
copy of a dirty tree's files) under ``<resources_dir>/versions/<id>/``, where ``id`` is the commit, or
``<commit>-dirty-<content hash>`` / ``tree-<content hash>`` for a tree measured as it is. A cell's quadruple
job (joulegrid.quadruple) runs every run of a version in its own process with that checkout first on the
import path (``Version.environment``): two versions of one module cannot be imported into one process.

The rows say which version each run measured: ``code_version`` (base / head), ``code_commit``, ``code_dirty``
(``Version.columns``). The pair of versions and the campaign number are part of the cells' identity
(joulegrid.spec.identity), so each comparison has its own run files; without ``versions:`` nothing changes.

Pure Python (git through subprocess, tarfile): no torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .base import ConfigError, resolve_path

log = logging.getLogger(__name__)

BASE, HEAD = "base", "head"
LABELS = (BASE, HEAD)
LETTER = {BASE: "A", HEAD: "B"}
VERSIONS_DIR = "versions"  # under resources_dir
# One job measures one quadruple: a warm-up run (discarded) and four measured runs in ABBA or BAAB order.
ORDERS = ("ABBA", "BAAB")
RUNS_PER_JOB = 5


@dataclass(frozen=True)
class Version:
    """One resolved code version: what the config named, the commit, whether it is a tree with uncommitted
    changes, and where its checkout is (``root``; ``import_root`` is put first on the import path)."""

    label: str  # base | head
    ref: str  # the config's git ref or path
    commit: str | None  # 40 hex; None for a folder outside git
    dirty: bool
    id: str  # the checkout's folder name under <resources_dir>/versions/
    root: str  # the checkout (absolute)
    import_root: str  # root / versions.import_path (absolute)
    source: str = ""  # what the checkout is made from: the repository (a commit) or the folder (copied as it is)

    def columns(self) -> dict[str, Any]:
        """The row's code columns."""
        return {"code_version": self.label, "code_commit": self.commit, "code_dirty": self.dirty}

    def environment(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose Python imports this version first (PYTHONPATH starts with its import root)."""
        env = dict(os.environ if env is None else env)
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = self.import_root + (os.pathsep + rest if rest else "")
        # `python -m` / `-c` put the working directory first on the import path, and a job's working directory is
        # usually the repository itself (its head version as it is): PYTHONSAFEPATH keeps it off (Python >= 3.11)
        env["PYTHONSAFEPATH"] = "1"
        return env

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Version:
        return cls(**d)


def order(quadruple: int) -> str:
    """ABBA for even quadruple indices, BAAB for odd ones (alternating across jobs)."""
    return ORDERS[quadruple % 2]


def slots(quadruple: int) -> list[str]:
    """The labels of a quadruple job's runs, in the order they run: the warm-up (the first letter's version,
    discarded) and the four measured runs."""
    letters = order(quadruple)
    by_letter = {v: k for k, v in LETTER.items()}
    return [by_letter[letters[0]], *(by_letter[c] for c in letters)]


# ------------------------------------------------------------------ git
def _git(repo: str | os.PathLike, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=check, env={**os.environ, "LC_ALL": "C"}
    )


def _top(path: Path) -> Path | None:
    """The work tree holding path, None when path is not inside a git work tree."""
    p = _git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else None


def _changes(top: Path) -> list[str]:
    """Uncommitted changes of a work tree: modified, staged, deleted and untracked (not ignored) files."""
    out = _git(top, "status", "--porcelain", "--untracked-files=all").stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def _files(top: Path) -> list[str]:
    """The files of a work tree as they are: tracked (not deleted) and untracked ones not ignored."""
    out = _git(top, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    return sorted({f for f in out.split("\0") if f and (top / f).is_file()})


def _tree_files(root: Path) -> list[str]:
    """Every file of a folder outside git (no .git, caches or bytecode)."""
    skip = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    out = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for n in names:
            if not n.endswith((".pyc", ".pyo")):
                out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def _content_hash(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0")
        h.update(hashlib.sha256((root / f).read_bytes()).digest())
    return h.hexdigest()[:12]


def _key(label: str) -> str:
    return f"versions.{label}"


def _resolve_one(
    label: str, ref: str, repo: Path, base_dir: Path, allow_dirty: bool
) -> tuple[str | None, bool, Path, str]:
    """(commit, dirty, source, id) of one version: a git ref of repo, or a path (a work tree, or a folder).
    source: the repository to archive the commit from, or the folder whose files are copied."""
    key = _key(label)
    candidate = resolve_path(ref, base_dir)
    as_path = candidate if candidate.is_dir() else None  # an existing folder is a path, anything else a git ref
    if as_path is None:  # a git ref of the repository
        p = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if p.returncode != 0 or not p.stdout.strip():
            raise ConfigError(
                f"config key {key}: {ref!r} is not a commit, branch or tag of the repository {repo} "
                f"(git rev-parse: {(p.stderr or p.stdout).strip() or 'unknown revision'}). Fix: give a ref that "
                "`git rev-parse` knows there (fetch the branch first in CI), or a path to a checkout"
            )
        commit = p.stdout.strip()
        return commit, False, repo, commit
    top = _top(as_path)
    if top is None:
        if not allow_dirty:
            raise ConfigError(
                f"config key {key}: {ref!r} is not in a git work tree, so its version has no name. Fix: commit it to "
                "a repository and give the commit, or set versions.allow_dirty: true to measure the folder as it is "
                "(rows then say code_dirty: true, code_commit null)"
            )
        return None, True, as_path, f"tree-{_content_hash(as_path, _tree_files(as_path))}"
    head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD", check=False).stdout.strip() or None
    changes = _changes(top)
    if not changes and head:
        return head, False, top, head
    if not allow_dirty:
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise ConfigError(
            f"config key {key}: the work tree {top} has uncommitted changes ({shown}), so the commit does not say "
            "what would be measured. Fix: commit (or stash) them, or set versions.allow_dirty: true to measure the "
            "tree as it is (rows then say code_dirty: true)"
        )
    return head, True, top, f"{head or 'nohead'}-dirty-{_content_hash(top, _files(top))}"


def _settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """versions: of a validated config when it names both versions, None when it names neither."""
    v = config.get("versions") or {}
    given = [label for label in LABELS if v.get(label)]
    if not given:
        return None
    if len(given) == 1:
        missing = BASE if given == [HEAD] else HEAD
        raise ConfigError(
            f"config key versions.{missing}: versions.{given[0]} is set but versions.{missing} is not. Fix: give "
            f"both (a git ref or a path each), or neither"
        )
    return v


def enabled(config: dict[str, Any]) -> bool:
    """Whether the config compares code versions (versions.base and versions.head set)."""
    return _settings(config) is not None


_CACHE: dict[tuple, dict[str, Version]] = {}


def resolve(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, Version] | None:
    """{label: Version} of a validated config with ``versions:``, None without. Resolved once per process and
    settings (git refs are read when the config is read: `joulegrid compare` passes commits to its Snakemake,
    so that a branch moving during a campaign cannot change what a job measures)."""
    v = _settings(config)
    if v is None:
        return None
    base = Path(base_dir)
    repo = resolve_path(v["repo"], base)
    key = (str(repo.resolve()), v[BASE], v[HEAD], bool(v["allow_dirty"]), v["import_path"], config["resources_dir"])
    if key in _CACHE:
        return _CACHE[key]
    if shutil.which("git") is None:
        raise ConfigError("config key versions: git is not installed here. Fix: install git, or remove versions:")
    top = _top(repo) if repo.is_dir() else None
    if top is None:
        raise ConfigError(
            f"config key versions.repo: {v['repo']!r} ({repo}) is not a git repository. Fix: give the path of the "
            "repository that holds the workload classes (the default '.' is the working directory)"
        )
    out: dict[str, Version] = {}
    vdir = resolve_path(config["resources_dir"], base).resolve() / VERSIONS_DIR
    for label in LABELS:
        commit, dirty, source, vid = _resolve_one(label, str(v[label]), top, base, bool(v["allow_dirty"]))
        root = vdir / vid
        imp = str((root / v["import_path"]).resolve())
        out[label] = Version(label, str(v[label]), commit, dirty, vid, str(root), imp, str(source))
    _CACHE[key] = out
    return out


def identity(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, Any] | None:
    """What the versions add to a cell's identity (spec.identity): both versions' ids and the campaign."""
    vs = resolve(config, base_dir)
    if vs is None:
        return None
    return {BASE: vs[BASE].id, HEAD: vs[HEAD].id, "campaign": int(config["versions"]["campaign"])}


# ------------------------------------------------------------------ checkouts
def checkout(version: Version) -> Path:
    """The version's checkout under <resources_dir>/versions/<id>/, made once (atomically: a temporary folder
    renamed into place) and never changed after: a commit by ``git archive`` of versions.repo, a tree with
    uncommitted changes by a copy of its files as they are."""
    root = Path(version.root)
    if root.is_dir():
        return root
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        src = Path(version.source)
        if not version.dirty:  # a commit: git archive of the repository
            proc = subprocess.Popen(
                ["git", "-C", str(src), "archive", "--format=tar", version.commit], stdout=subprocess.PIPE
            )
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
            if proc.wait() != 0:
                raise ConfigError(f"config key {_key(version.label)}: git archive of {version.commit} in {src} failed")
        else:  # a tree as it is: its files (tracked and untracked, not ignored)
            top = _top(src)
            files = _files(top) if top is not None else _tree_files(src)
            origin = top if top is not None else src
            for f in files:
                dest = tmp / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin / f, dest)
        try:
            os.rename(tmp, root)
        except OSError:  # another process made it meanwhile: theirs is the same version
            if not root.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("checked out %s (%s) into %s", version.label, version.ref, root)
    return root


def prepare(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, Version] | None:
    """Resolve and check out the config's versions, check what they may measure, and put the base version's
    import root first on this process's import path (the config's workload classes are read from it: their
    defaults and exclusions; a job imports each version in its own process). None without versions."""
    vs = resolve(config, base_dir)
    if vs is None:
        return None
    wl = config.get("workloads") or {}
    for i, name in enumerate(config["grid"]["workloads"]):
        if not (wl.get(name) or {}).get("class"):
            raise ConfigError(
                f"config key grid.workloads[{i}]: {name!r} is not a workload of your own (no workloads.{name}.class), "
                "but versions: compares versions of the repository that holds the workload classes. Fix: list only "
                "workloads whose class is in versions.repo, or remove versions:"
            )
    for v in vs.values():
        checkout(v)
        if not Path(v.import_root).is_dir():
            raise ConfigError(
                f"config key versions.import_path: {config['versions']['import_path']!r} is not a folder of the "
                f"{v.label} version ({v.import_root}). Fix: give the folder, relative to the repository's root, that "
                "holds your package (e.g. src)"
            )
    root = vs[BASE].import_root
    if root not in sys.path:
        sys.path.insert(0, root)
    return vs


def from_snapshot(snap: dict[str, Any]) -> dict[str, Version] | None:
    """The versions a grid snapshot holds (spec.SpecBuilder.snapshot), None for a grid without versions."""
    v = snap.get("versions")
    return {k: Version.from_dict(d) for k, d in v.items()} if v else None


def module_problem(version: Version, class_path: str) -> str | None:
    """Why a run of ``version`` would not import the workload class from its checkout (another copy of the
    module earlier on the import path, an installed package), else None. Asked in a process with the
    version's environment, without importing the module itself."""
    module = class_path.partition(":")[0]
    code = (
        "import importlib.util, sys\n"
        f"s = importlib.util.find_spec({module!r})\n"
        "print(s.origin if s is not None and s.origin else '')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=version.environment(), timeout=120
    )
    origin = p.stdout.strip()
    if p.returncode != 0 or not origin:
        return (
            f"module {module!r} of the {version.label} version cannot be found in its checkout {version.root} "
            f"({(p.stderr.strip().splitlines() or ['not found'])[-1]}). Fix: set versions.import_path to the folder "
            "that holds the package"
        )
    if not os.path.realpath(origin).startswith(os.path.realpath(version.root) + os.sep):
        return (
            f"module {module!r} for the {version.label} version is imported from {origin}, not from its checkout "
            f"{version.root} (an installed copy of the package comes first). Fix: uninstall the package from the "
            "environment joulegrid runs in, or import it by another name"
        )
    return None
