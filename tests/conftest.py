"""Shared fixtures: paths, a tiny grid config, and a helper that runs the real Snakemake."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

# the parallel and serial phases (tests/phases.py): pytest finds their hooks here, in the conftest
from phases import (  # noqa: F401
    FORKED_CPU,
    built_here,
    pytest_addoption,
    pytest_cmdline_main,
    pytest_collection_modifyitems,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
    pytest_sessionstart,
    pytest_terminal_summary,
    pytest_xdist_make_scheduler,
)

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
BIN = Path(sys.executable).parent


def subprocess_env(extra: dict | None = None) -> dict:
    """Environment for subprocesses: this venv first on PATH, no HTCondor config noise."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CONDOR_CONFIG", "/dev/null")
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


# The outlier rule's thresholds off (docs/measurement.md, "Outliers by rule"): its criteria read the host's load
# (steal, other processes on the job's CPUs, CPU frequency), which on a shared CI machine would exclude and
# re-measure windows at random. Tests of other things must not depend on that; the rule has its own tests
# (tests/runner/test_outliers.py), with fake /proc and /sys trees.
NO_OUTLIER_RULE = {"outlier_max_steal": 1, "outlier_max_contention": 1, "outlier_min_cpu_freq": 0}

TINY = {
    "grid": {
        "workloads": ["baler_ae"],
        "phases": ["train", "infer"],
        "devices": ["cpu"],
        "precisions": ["fp32"],
        "batch_sizes": [256],
        "repeats": 1,
    },
    "workloads": {"baler_ae": {"rows": 3000, "epochs": 1}},
    # fast: no idle baseline, one inference pass, no profiling (tests/runner/ covers those windows)
    "measure": {
        "threads": 1,
        "warmup_batches": 1,
        "idle_baseline_s": 0,
        "min_window_s": 0,
        "hotspots": "never",
        **NO_OUTLIER_RULE,
    },
}


def html_tables(page: str, start: str, end: str | None = None) -> list[list[dict[str, str]]]:
    """The tables of a report page between the texts start and end (default: the page's end), each as
    a list of {column: cell text}."""
    i = page.index(start)
    part = page[i : page.index(end, i)] if end is not None else page[i:]
    out = []

    def text(cell: str) -> str:  # a cell's text: its tags (a header's <wbr>, a link) dropped
        return html.unescape(re.sub(r"<[^>]+>", "", cell))

    for t in re.findall(r"<table>(.*?)</table>", part, re.S):
        head = [text(h) for h in re.findall(r"<th>(.*?)</th>", t)]
        rows = [
            [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", t.split("</thead>")[1])
        ]
        out.append([dict(zip(head, r, strict=False)) for r in rows])
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def write_config(tmp_path):
    """write_config(overrides) -> path of a config file for a tiny grid (merged over TINY)."""

    def _write(overrides: dict | None = None, name: str = "config.yaml") -> Path:
        cfg = deep_merge(TINY, overrides or {})
        p = tmp_path / name
        p.write_text(yaml.safe_dump(cfg))
        return p

    return _write


def snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    timeout: int = 900,
    env: dict | None = None,
    check: bool = True,
    cwd: Path | None = None,
):
    """Run the real Snakemake on joulegrid's Snakefile in workdir (started in cwd); returns CompletedProcess."""
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir)]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    full_env = subprocess_env(env)
    server = _fork_server(full_env)
    if server is not None:
        proc = server.run(cmd, cwd=cwd, timeout=timeout, env=full_env)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


class ForkServer:
    """tests/reliability/snakemake_forks.py for this test process: `snakemake` without its ~1.7 s of CPU for
    importing snakemake.cli at each command. Each command is still a process of its own (forked from one that
    imported snakemake.cli with the same environment) running snakemake.cli.main(argv), as the script does."""

    def __init__(self, env: dict):
        self.env = env
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "reliability/snakemake_forks.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, cmd: list[str], cwd: Path | None, timeout: float | None, env: dict) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="joulegrid-sm-") as tmp:
            out, err = Path(tmp, "out"), Path(tmp, "err")
            req = {"op": "run", "argv": cmd[1:], "cwd": str(cwd or os.getcwd()), "log": str(out), "err": str(err),
                   "timeout": timeout, "env": env}  # fmt: skip
            with self.lock:
                self.proc.stdin.write(json.dumps(req) + "\n")
                self.proc.stdin.flush()
                reply = json.loads(self.proc.stdout.readline())
            FORKED_CPU[0] += reply.get("cpu_s", 0.0)  # the per-test timings (phases.py) count it
            stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(cmd, reply["rc"], stdout, stderr)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


_SERVERS: list[ForkServer] = []  # this process's, the last one in use


def _import_env(env: dict) -> dict:
    """What an import may read: the environment less pytest's name of the running test."""
    return {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}


def _fork_server(env: dict) -> ForkServer | None:
    """This process's fork server when env is the suite's default environment (a server started with it; the
    command then gets env itself); None for any other (JOULEGRID_TEST_FORKS=0: every `snakemake` a process of
    its own)."""
    if os.environ.get("JOULEGRID_TEST_FORKS", "1") == "0" or _import_env(env) != _import_env(subprocess_env()):
        return None
    if not (_SERVERS and _SERVERS[-1].alive() and _SERVERS[-1].env == _import_env(env)):
        if _SERVERS:
            _SERVERS.pop().close()
        _SERVERS.append(ForkServer(_import_env(env)))
    return _SERVERS[-1]


@atexit.register
def _close_servers() -> None:
    for server in _SERVERS:
        server.close()


@pytest.fixture
def run_snakemake():
    return snakemake


def shared_run(tmp_path_factory, name: str, cfg: dict, *args: str) -> Path:
    """A working directory in which `snakemake --cores 2 [args]` ran the config cfg, once per session: the first
    test (of any xdist worker) that asks builds it under a lock, the others reuse it. Read it, or change a copy
    (shutil.copytree(run, dest, symlinks=True) keeps Snakemake's metadata and the files' times)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, shared by its workers
    key = hashlib.sha1(yaml.safe_dump([cfg, list(args)]).encode()).hexdigest()[:10]
    work = root / f"shared-{name}-{key}"
    done = root / f"shared-{name}-{key}.done"
    with open(root / f"shared-{name}-{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)  # what a failed build left
            work.mkdir()
            built_here(work)  # the measured-row check looks at it
            (work / "config.yaml").write_text(yaml.safe_dump(cfg))
            snakemake(work, "--cores", "2", *args, configfile=work / "config.yaml")
            done.touch()
    return work


def cell_file(
    workdir: Path,
    cell_id: str,
    configfile: Path | None = None,
    config_args: list[str] | None = None,
    kind: str = "runs",
    ext: str = ".parquet",
) -> Path:
    """A cell's file as the pipeline names it (<results>/<kind>/<cell id>-<config hash><ext>) for the
    config that `snakemake [--configfile F] [--config ...]` gives (joulegrid.config.load)."""
    from joulegrid import config as C
    from joulegrid import spec as SP

    cfg, sites = C.load([configfile] if configfile else None, config_args, base_dir=REPO)
    h = SP.SpecBuilder(cfg, sites).config_hash(cell_id.split("/")[1])
    return Path(workdir) / cfg["results"] / kind / f"{cell_id}-{h}{ext}"
