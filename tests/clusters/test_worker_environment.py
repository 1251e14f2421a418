"""Jobs on workers that are not the submit host, on the local test clusters.

- The CERN-like execute node of the HTCondor test pool (start-condor.sh): jobs start in their
  scratch directory with file transfer and do not see their submit directory.
- profiles/lxplus on it: every row, log and hotspot file reaches the submit directory's results/,
  and the report is built; the same run assuming a shared working directory fails at once, saying so.
- profiles/blackett on it, from a "submit node" whose venv the workers cannot see: the jobs run in
  the venv packed by `joulegrid pack-env`.
- A venv that only the submit host sees (profiles/htcondor, profiles/slurm): the jobs fail at once
  with joulegrid's message naming the missing path, the worker and the fix.
- The GPU example of profiles/slurm (the plugin's gres resource) submitted to the local cluster.

"Only the submit host sees it" is real here: the submitting Snakemake runs in a private mount
namespace in which the venv is bind-mounted at a path that is an empty directory for everyone else
(the schedulers' daemons and their jobs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from joulegrid import executors as E

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest as C
from test_schedulers import CONDOR_FAST, SLURM_FAST, _cluster_state, _condor_config

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
CHECKOUT = ("Snakefile", "workflow", "src", "config", "profiles", "slurm", "htcondor", "lxplus", "blackett")


def _need(cluster: str) -> None:
    up, why = _cluster_state(cluster)
    if not up:
        pytest.skip(why)


def _need_cern_like() -> None:
    _need("condor")
    if "@cern@" not in _condor("condor_status", "-af", "Name"):
        pytest.skip(
            "the HTCondor test pool has no CERN-like execute node (see the start log: start-condor.sh "
            "adds it where nested user namespaces are allowed)"
        )


def _condor_bin() -> Path:
    return Path(_condor_config()).parents[1] / "bin"


def _condor(*args: str, cwd: Path | None = None) -> str:
    env = C.subprocess_env({"CONDOR_CONFIG": _condor_config()})
    proc = subprocess.run(
        [str(_condor_bin() / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )
    return proc.stdout + proc.stderr


def _checkout(tmp_path: Path, grid: dict) -> Path:
    """A joulegrid checkout (what a user clones) with a grid config in it: runs without a shared
    filesystem must start in the checkout (the jobs take the workflow from it)."""
    co = tmp_path / "joulegrid"
    co.mkdir()
    for name in CHECKOUT:
        src = REPO / name
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, co / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, co / name, follow_symlinks=False)
    (co / "grid.yaml").write_text(yaml.safe_dump(C.deep_merge(C.TINY, grid)))
    return co


def _env(python_bin: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose venv's bin is python_bin: nothing of the test's venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOULEGRID_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        [str(python_bin), *(p for p in env.get("PATH", "").split(os.pathsep) if p != str(C.BIN))]
    )
    env.update(extra)
    return env


def _submit_host_only(tmp_path: Path) -> tuple[list[str], Path]:
    """(command prefix, venv path): the prefix runs a command in a private mount namespace where the
    test's venv is at <tmp>/login-venv; outside it that path is an empty directory."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode
    ):
        pytest.skip("needs `unshare --mount` (root) to give the submit host a venv the workers cannot see")
    mnt = tmp_path / "login-venv"
    mnt.mkdir()
    prefix = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" "$1" && shift && exec "$@"',
        str(VENV),
        str(mnt),
    ]
    return prefix, mnt


def _snakemake(cmd_prefix: list[str], python: Path, cwd: Path, args: list[str], env: dict, timeout: int = 900):
    cmd = [*cmd_prefix, str(python), "-m", "snakemake", *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def _rows(results: Path, site: str, n: int):
    import polars as pl

    files = sorted((results / "runs" / site).rglob("*.parquet"))
    assert len(files) == n, files
    return pl.read_parquet(files).sort("cell_id")


# ------------------------------------------------------------------ the CERN-like execute node
@pytest.mark.htcondor
def test_cern_like_node_starts_jobs_in_scratch_without_their_submit_directory(tmp_path):
    _need_cern_like()
    (tmp_path / "visible.txt").write_text("from the submit directory\n")
    job = tmp_path / "job.sh"
    job.write_text(
        f"#!/bin/sh\npwd\ncat {tmp_path}/visible.txt || echo NOT-VISIBLE\n"
        f"touch {tmp_path}/written-by-job 2>/dev/null || echo NOT-WRITABLE\n"
    )
    job.chmod(0o755)
    for name, extra in (("cern", '+WantOS = "el9"\n'), ("plain", "")):
        (tmp_path / f"{name}.sub").write_text(
            f"executable = job.sh\noutput = {name}.out\nerror = {name}.err\nlog = {name}.log\n{extra}queue\n"
        )
        out = _condor("condor_submit", "-terse", f"{name}.sub", cwd=tmp_path)
        assert re.match(r"\d+\.0 - \d+\.0", out.strip()), out
    deadline = time.time() + 300
    while time.time() < deadline and not all(
        (tmp_path / f"{n}.log").is_file() and "Job terminated" in (tmp_path / f"{n}.log").read_text()
        for n in ("cern", "plain")
    ):
        time.sleep(1)
    cern = (tmp_path / "cern.out").read_text().splitlines()
    plain = (tmp_path / "plain.out").read_text().splitlines()
    # a job that asks for CERN's worker OS: scratch directory, the submit directory is not there
    assert cern[0] != str(tmp_path) and "/execute-cern/" in cern[0], cern
    assert cern[1:] == ["NOT-VISIBLE", "NOT-WRITABLE"], cern
    # any other job: the shared filesystem, as before
    assert plain == [str(tmp_path), "from the submit directory"], plain
    assert (tmp_path / "written-by-job").is_file()


# ------------------------------------------------------------------ profiles/lxplus
LX_GRID = {
    "grid": {"phases": ["train", "infer"], "devices": ["cpu", "cuda"]},
    "measure": {"hotspots": "first_repeat"},
    "job": {"mem_mb": 1000, "runtime_min": 10},
}


@pytest.mark.slow
@pytest.mark.htcondor
@pytest.mark.parallel
def test_lxplus_profile_on_the_cern_like_pool_delivers_every_row_and_a_report(tmp_path):
    _need_cern_like()
    co = _checkout(tmp_path, LX_GRID)
    env = _env(C.BIN, CONDOR_CONFIG=_condor_config())
    # the README's command in the checkout (plus the tests' fast polling)
    proc, _ = _snakemake(
        [], C.BIN / "python", co, ["--profile", "lxplus", "--configfile", "grid.yaml", *CONDOR_FAST], env
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    df = _rows(co / "results", "lxplus", 4)
    assert df["scheduler"].to_list() == ["htcondor"] * 4 and df["job_id"].null_count() == 0
    ok = df.filter(df["device"] == "cpu")
    assert ok["status"].to_list() == ["ok", "ok"], ok.select("cell_id", "error_message").to_dicts()
    cuda = df.filter(df["device"] == "cuda")  # the pool's GPU does not exist: scheduled, then skipped
    assert cuda["status"].to_list() == ["skipped"] * 2 and cuda["alloc_gpus"].to_list() == [1, 1]
    # what the jobs wrote besides their rows came back too: logs, hotspots
    file_ids = [f"{c}-{h}" for c, h in zip(df["cell_id"], df["config_hash"], strict=True)]  # <cell id>-<config hash>
    for f in file_ids:
        assert (co / "results" / "logs" / "runs" / f"{f}.log").is_file(), f
    assert sorted(
        p.relative_to(co / "results" / "hotspots").as_posix() for p in (co / "results" / "hotspots").rglob("*.parquet")
    ) == sorted([f"{c}-{h}.parquet" for c, h in zip(ok["cell_id"], ok["config_hash"], strict=True)])
    assert (co / "results" / "report" / "index.html").is_file() and (co / "results" / "summary.parquet").is_file()
    # the jobs really ran on the CERN-like node, in scratch with file transfer, as lxplus jobs ask
    for jid in df["job_id"]:
        ad = _condor(
            "condor_history", jid, "-af", "LastRemoteHost", "ShouldTransferFiles", "WantOS", "JobFlavour"
        ).split()
        assert "@cern@" in ad[0] and ad[1:] == ["YES", "el9", "espresso"], (jid, ad)


@pytest.mark.slow
@pytest.mark.htcondor
def test_lxplus_assuming_a_shared_working_directory_fails_at_once_and_says_why(tmp_path):
    """profiles/lxplus as it was (the default shared-fs-usage): on a CERN-like worker the job would
    write its rows into its scratch directory, which is deleted; the job wrapper refuses instead."""
    _need_cern_like()
    co = _checkout(tmp_path, {"grid": {"phases": ["train"]}})
    shared = [
        "--shared-fs-usage",
        "input-output",
        "persistence",
        "software-deployment",
        "sources",
        "source-cache",
        "storage-local-copies",
    ]
    env = _env(C.BIN, CONDOR_CONFIG=_condor_config())
    proc, secs = _snakemake(
        [],
        C.BIN / "python",
        co,
        ["--profile", "lxplus", "--configfile", "grid.yaml", *shared, *CONDOR_FAST, "--retries", "0"],
        env,
        timeout=600,
    )
    assert proc.returncode != 0
    err = proc.stderr
    assert E.ENV_CHECK_MARK in err, err[-4000:]
    assert (
        f"the working directory {co} of " in err
        and "is not visible on this worker" in err
        and "shared-fs-usage: none" in err
    )
    assert not (co / "results" / "runs").exists()


# ------------------------------------------------------------------ profiles/blackett: the venv travels with the jobs
@pytest.mark.slow
@pytest.mark.htcondor
@pytest.mark.parallel
def test_blackett_profile_runs_jobs_in_the_packed_venv(tmp_path):
    _need_cern_like()
    ns, venv = _submit_host_only(tmp_path)
    co = _checkout(
        tmp_path,
        {
            "grid": {"phases": ["train"]},
            "measure": {"hotspots": "first_repeat"},
            "job": {"mem_mb": 1000, "runtime_min": 10},
        },
    )
    env = _env(venv / "bin", CONDOR_CONFIG=_condor_config())
    # the docs' two commands on the "submit node"; pack-env leaves out what this grid's jobs do not need
    # (docs/sites.md: `--exclude GLOB`): the test tools (the report tests' browser, jedi) and torch's C++ headers
    # (only torch.compile reads them). They are 15,000 of the test venv's 35,000 files: each is packed, unpacked
    # and deleted again by every job, which on this disk takes minutes
    pack = subprocess.run(
        [
            *ns,
            str(venv / "bin" / "python"),
            "-m",
            "joulegrid",
            "pack-env",
            *("--exclude", "lib/python*/site-packages/playwright*"),
            *("--exclude", "lib/python*/site-packages/jedi*"),
            *("--exclude", "lib/python*/site-packages/torch/include"),
        ],
        cwd=co,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pack.returncode == 0 and (co / "joulegrid-env.tar.gz").is_file(), pack.stderr
    assert f"packed the venv {venv}" in pack.stderr
    proc, _ = _snakemake(
        ns, venv / "bin" / "python", co, ["--profile", "blackett", "--configfile", "grid.yaml", *CONDOR_FAST], env
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    df = _rows(co / "results", "blackett", 1)
    r = df.row(0, named=True)
    assert (r["scheduler"], r["status"]) == ("htcondor", "ok"), r["error_message"]
    assert (co / "results" / "logs" / "runs" / f"{r['cell_id']}-{r['config_hash']}.log").is_file()
    assert (co / "results" / "hotspots" / f"{r['cell_id']}-{r['config_hash']}.parquet").is_file()
    assert (co / "results" / "report" / "index.html").is_file()
    # the workers never saw the submit node's venv: it is an empty directory outside the namespace
    assert list(venv.iterdir()) == []
    ad = _condor("condor_history", r["job_id"], "-af", "LastRemoteHost", "TransferInput").split()
    assert "@cern@" in ad[0] and "joulegrid-env.tar.gz" in ad[1], ad


def test_pack_env_refuses_an_interpreter_outside_a_venv(tmp_path):
    from joulegrid import packenv

    with pytest.raises(
        packenv.PackError, match=r"is not a venv \(no pyvenv.cfg\).*Fix: run it with your venv's python"
    ):
        packenv.pack(tmp_path / "env.tar.gz", prefix=tmp_path)
    venv = tmp_path / "v"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "lib" / "x" / "__pycache__").mkdir(parents=True)
    (venv / "lib" / "x" / "__pycache__" / "m.pyc").write_bytes(b"0")
    (venv / "lib" / "x" / "m.py").write_text("x = 1\n")
    (venv / "lib" / "big").mkdir()
    (venv / "lib" / "big" / "f").write_text("big")
    packed = packenv.pack(tmp_path / "env.tar.gz", prefix=venv, exclude=("lib/big",))
    import tarfile

    with tarfile.open(packed.path) as tar:
        names = sorted(tar.getnames())
        assert tar.getmember("bin/python").issym() and tar.getmember("bin/python").linkname == "/usr/bin/python3"
    assert names == ["bin", "bin/python", "lib", "lib/x", "lib/x/m.py", "pyvenv.cfg"]
    assert (packed.files, packed.base_python) == (2, "/usr/bin")
    with pytest.raises(packenv.PackError, match="inside the venv"):
        packenv.pack(venv / "env.tar.gz", prefix=venv)


# ------------------------------------------------------------------ a venv only the submit host sees
@pytest.mark.htcondor
def test_htcondor_job_without_the_venv_fails_at_once_naming_it(tmp_path):
    _need("condor")
    ns, venv = _submit_host_only(tmp_path)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(C.TINY))
    env = _env(venv / "bin", CONDOR_CONFIG=_condor_config())
    args = [
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--profile",
        str(REPO / "profiles" / "htcondor"),
        "--configfile",
        str(tmp_path / "grid.yaml"),
        *CONDOR_FAST,
        "--retries",
        "0",
    ]
    proc, secs = _snakemake(ns, venv / "bin" / "python", tmp_path, args, env, timeout=600)
    assert proc.returncode != 0
    err = proc.stderr
    assert f"the Python environment {venv}/bin/python does not exist on this worker" in err, err[-4000:]
    assert (
        "Fix: put the environment that runs snakemake" in err
        and "(from the job's error file .snakemake/htcondor/" in err
    )
    # failed, not held: HTCondor ran the wrapper, which exited with the check's status
    jid = re.search(r"HTCondor Cluster ID (\d+)", err).group(1)
    assert _condor("condor_history", jid, "-af", "ExitCode", "JobStatus").split() == [str(E.ENV_CHECK_EXIT), "4"]


@pytest.mark.slurm
def test_slurm_job_without_the_venv_fails_at_once_naming_it(tmp_path):
    _need("slurm")
    ns, venv = _submit_host_only(tmp_path)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(C.TINY))
    env = _env(venv / "bin", CONDOR_CONFIG="/dev/null")
    args = [
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--configfile",
        str(tmp_path / "grid.yaml"),
        *SLURM_FAST,
        "--retries",
        "0",
    ]
    proc, _ = _snakemake(ns, venv / "bin" / "python", tmp_path, args, env, timeout=600)
    assert proc.returncode != 0
    err = proc.stderr
    assert f"the Python environment {venv}/bin/python does not exist on this worker" in err, err[-4000:]
    assert "(from the job's error file .snakemake/slurm_logs/" in err
    jid = re.search(r"SLURM jobid (\d+)", err).group(1)
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", jid, "-o", "State,ExitCode"], capture_output=True, text=True, timeout=30
    ).stdout
    assert out.strip() == f"FAILED|{E.ENV_CHECK_EXIT}:0", out


# ------------------------------------------------------------------ the GPU example of profiles/slurm
def _slurm_gpu_example() -> dict:
    """The commented set-resources example of profiles/slurm, as YAML."""
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    block = text[text.index("# set-resources:") :]
    return yaml.safe_load("\n".join(line[2:] for line in block.splitlines() if line.startswith("# ")))


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_gpu_example_submits_gres_to_the_local_cluster(tmp_path):
    _need("slurm")
    example = _slurm_gpu_example()
    assert example == {"set-resources": {"measure": {"slurm_partition": "gpu", "gres": "gpu:1", "gpu": 0}}}
    # the local cluster has one partition, debug, and one (fake) GPU as gres
    example["set-resources"]["measure"]["slurm_partition"] = "debug"
    prof = tmp_path / "profile"
    prof.mkdir()
    conf = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    (prof / "config.yaml").write_text(yaml.safe_dump({**conf, **example}))
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(C.deep_merge(C.TINY, {"grid": {"phases": ["train"], "devices": ["cuda"]}})))
    C.snakemake(tmp_path, "--profile", str(prof), *SLURM_FAST, configfile=cfg, timeout=900)
    r = _rows(tmp_path / "results", "slurm", 1).row(0, named=True)
    assert r["alloc_gpus"] == 1 and r["status"] == "skipped", r  # the GPU was allocated (it does not exist)
    job = subprocess.run(
        ["scontrol", "show", "job", "-o", r["job_id"]], capture_output=True, text=True, timeout=30
    ).stdout
    assert "TresPerNode=gres:gpu:1" in job and "TresPerJob" not in job, job  # --gres=gpu:1, and no --gpus
    # what the example replaced: --gres through slurm_extra, refused by the plugin before submitting
    again = tmp_path / "old-example"
    shutil.copytree(tmp_path / "resources", again / "resources")  # prepared data: only the cell is submitted
    old = C.snakemake(
        again,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        *SLURM_FAST,
        "--retries",
        "0",
        "--set-resources",
        "measure:slurm_extra='--gres=gpu:1'",
        configfile=cfg,
        timeout=600,
        check=False,
    )
    out = old.stdout + old.stderr
    assert (
        old.returncode != 0
        and "The --generic-resources-(GRES) option is not allowed in the 'slurm_extra' parameter" in out
    )
