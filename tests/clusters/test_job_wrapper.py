"""joulegrid's job wrapper (src/joulegrid/job-wrapper.sh), run as a worker would run it, without a scheduler.

Each case gives the wrapper what a worker sees -- an interpreter path, the submit host's
environment, an HTCondor job ad, a scratch directory -- and checks what it does: fail at once
(exit 78) saying which path is missing where and how to fix it, or run the job's Snakemake where
it must run. The "interpreters" are small shell scripts that behave like a broken or foreign
Python (and record how they were called), so every expectation follows from the case itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from joulegrid import executors as E

REPO = Path(__file__).resolve().parents[2]
WRAPPER = E.JOB_WRAPPER
PY = sys.executable
VERSION = "{}.{}".format(*sys.version_info[:2])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOULEGRID_", "_CONDOR_"))}
    env.update(
        JOULEGRID_PYTHON=PY,
        JOULEGRID_PYTHON_VERSION=VERSION,
        JOULEGRID_HOME=str(REPO),
        JOULEGRID_SUBMIT_HOST="login7.example",
        JOULEGRID_SUBMIT_OS="Submit Linux 9",
        JOULEGRID_RESULTS="results",
    )
    env["PYTHONPATH"] = str(REPO / "src")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(WRAPPER), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _fake_python(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _recorder(path: Path, rc: int = 0, extra: str = "") -> Path:
    """A 'python' that passes the wrapper's check and records where and how the job's Snakemake ran."""
    return _fake_python(
        path,
        f"""case "$1" in -c) printf '%s\\n\\n' "{VERSION}"; exit 0 ;; esac
pwd > "$RECORD"; printf '%s\\n' "$@" >> "$RECORD"
{extra}
exit {rc}
""",
    )


def _assert_fails(proc: subprocess.CompletedProcess, *expected: str) -> str:
    err = proc.stderr
    assert proc.returncode == E.ENV_CHECK_EXIT, (proc.returncode, err, proc.stdout)
    assert err.startswith(E.ENV_CHECK_MARK), err
    assert f"worker {socket.gethostname()} (" in err and "submitted from login7.example (Submit Linux 9)" in err, err
    assert 'docs/sites.md, "What a job needs on the worker"' in err
    for text in expected:
        assert text in err, (text, err)
    return err


# ------------------------------------------------------------------ the check (Slurm runs it before each job)
def test_check_passes_for_this_environment(tmp_path):
    proc = _run(["--check", PY], _env(tmp_path), tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_missing_environment_names_the_path_and_the_fixes(tmp_path):
    missing = "/nonexistent/login-node-disk/.venv/bin/python"
    err = _assert_fails(
        _run(["--check", missing], _env(tmp_path), tmp_path),
        f"the Python environment {missing} does not exist on this worker (it runs snakemake on login7.example)",
    )
    assert "Fix:" in err and "shared" in err and "LCG view on CVMFS" in err and "pack-env" in err
    # --sdm conda does not replace it (issue 29): the job's Snakemake runs the submit host's interpreter
    assert "every job's Snakemake runs with it, also with --sdm conda" in err


def test_venv_whose_base_python_is_missing(tmp_path):
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to("/nonexistent/pyenv/3.11/bin/python3")
    _assert_fails(
        _run(["--check", str(venv_python)], _env(tmp_path), tmp_path),
        f"{venv_python} is here, but the interpreter it links to (/nonexistent/pyenv/3.11/bin/python3) is not",
    )


def test_interpreter_of_another_os_that_does_not_run(tmp_path):
    glibc = "python3: /lib64/libc.so.6: version `GLIBC_2.38' not found (required by python3)"
    py = _fake_python(tmp_path / "bin" / "python", f"cat >&2 <<'MSG'\n{glibc}\nMSG\nexit 1\n")
    err = _assert_fails(
        _run(["--check", str(py)], _env(tmp_path), tmp_path),
        f"{py} exists on this worker but does not run here: {glibc}",
        "MY.WantOS",
    )
    assert "different OS or C library" in err


def test_interpreter_link_resolving_to_another_python(tmp_path):
    py = _fake_python(tmp_path / "bin" / "python", "printf '3.9\\n\\n'\n")
    _assert_fails(
        _run(["--check", str(py)], _env(tmp_path), tmp_path),
        f"{py} is Python 3.9 on this worker but Python {VERSION} on login7.example",
    )


def test_modules_missing_on_the_worker(tmp_path):
    py = _fake_python(tmp_path / "bin" / "python", f"printf '{VERSION}\\nsnakemake joulegrid\\n'\n")
    _assert_fails(
        _run(["--check", str(py)], _env(tmp_path), tmp_path),
        f"{py} runs on this worker but does not find the module(s) snakemake joulegrid here",
    )


def test_checkout_missing_on_the_worker(tmp_path):
    env = _env(tmp_path, JOULEGRID_HOME="/nonexistent/afs/joulegrid")
    _assert_fails(_run(["--check", PY], env, tmp_path), "the joulegrid checkout /nonexistent/afs/joulegrid")


# ------------------------------------------------------------------ as an HTCondor job, shared filesystem
def _job_ad(path: Path, **attrs: str) -> Path:
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in attrs.items()) + "ClusterId = 7\n")
    return path


def test_shared_fs_job_runs_snakemake_in_its_submit_directory(tmp_path):
    scratch, submit = tmp_path / "scratch", tmp_path / "submit"
    scratch.mkdir(), (submit / ".snakemake").mkdir(parents=True)  # Snakemake's folder in its working directory
    py, record = _recorder(tmp_path / "venv" / "bin" / "python"), tmp_path / "record"
    # the pool transferred files, so the job starts in scratch; OrigIwd is where it was submitted
    ad = _job_ad(scratch / ".job.ad", Iwd=str(scratch), OrigIwd=str(submit))
    env = _env(tmp_path, _CONDOR_JOB_AD=str(ad), RECORD=str(record))
    proc = _run(
        [str(py), "-m", "snakemake", "--snakefile", "/x/Snakefile", "--target-jobs", "measure:a=1"], env, scratch
    )
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == [
        str(submit),
        "-m",
        "snakemake",
        "--snakefile",
        "/x/Snakefile",
        "--target-jobs",
        "measure:a=1",
    ]


@pytest.mark.parametrize("submit", ["/afs/cern.ch/work/u/user/joulegrid", "empty"])
def test_shared_fs_job_whose_submit_directory_is_not_visible(tmp_path, submit):
    if submit == "empty":  # the path exists on the worker, but not the submit host's directory (no .snakemake/)
        submit = str(tmp_path / "empty")
        os.mkdir(submit)
    py = _recorder(tmp_path / "venv" / "bin" / "python")
    ad = _job_ad(tmp_path / ".job.ad", Iwd=str(tmp_path), OrigIwd=submit)
    proc = _run([str(py), "-m", "snakemake", "--snakefile", "S"], _env(tmp_path, _CONDOR_JOB_AD=str(ad)), tmp_path)
    _assert_fails(proc, f"the working directory {submit} of login7.example is not visible", "shared-fs-usage: none")


# ------------------------------------------------------------------ as an HTCondor job, no shared filesystem
def _scratch(tmp_path: Path) -> Path:
    """A job's scratch directory after HTCondor's input transfer: the workflow and two inputs."""
    s = tmp_path / "scratch"
    (s / "workflow" / "rules").mkdir(parents=True)
    (s / "workflow" / "rules" / "common.smk").write_text("# rules\n")
    (s / "src" / "joulegrid").mkdir(parents=True)
    (s / "results" / "models").mkdir(parents=True)
    (s / "results" / "models" / "ref.pt").write_text("model")  # an input
    (s / "results" / "attempts").mkdir()
    (s / "results" / "attempts" / "cell.jsonl").write_text('{"attempt": 1}\n')  # an earlier attempt
    old = 1_600_000_000
    for f in (s / "results").rglob("*"):
        os.utime(f, (old, old))  # transferred before the job started
    return s


# what the job's Snakemake does: a row, its log, and the next attempt appended
JOB_WRITES = """mkdir -p results/runs results/logs
echo row > results/runs/r0.parquet; echo log > results/logs/r0.log
echo '{"attempt": 2}' >> results/attempts/cell.jsonl
"""


def test_no_shared_fs_job_sends_back_only_what_it_wrote(tmp_path):
    s = _scratch(tmp_path)
    py, record = _recorder(tmp_path / "venv" / "bin" / "python", extra=JOB_WRITES), tmp_path / "record"
    ad = _job_ad(s / ".job.ad", Iwd=str(s), OrigIwd="/submit/dir", TransferOutput="results,results/runs/r0.parquet")
    env = _env(
        tmp_path,
        _CONDOR_JOB_AD=str(ad),
        RECORD=str(record),
        JOULEGRID_PYTHON=str(py),
        JOULEGRID_HOME="/submit/checkout/not/here",
    )
    proc = _run(["--snakefile", "Snakefile", "--shared-fs-usage", "none", "--target-jobs", "measure:a=1"], env, s)
    assert proc.returncode == 0, proc.stderr
    # ran in scratch with the transferred workflow, with the args Snakemake gave (python -m snakemake ... )
    assert record.read_text().splitlines() == [
        str(s),
        "-m",
        "snakemake",
        "--snakefile",
        "Snakefile",
        "--shared-fs-usage",
        "none",
        "--target-jobs",
        "measure:a=1",
    ]
    left = sorted(str(p.relative_to(s)) for p in (s / "results").rglob("*") if p.is_file())
    # the unchanged input is gone (not sent back over the submit host's copy); new and changed files stay
    assert left == ["results/attempts/cell.jsonl", "results/logs/r0.log", "results/runs/r0.parquet"]
    assert (s / "results" / "attempts" / "cell.jsonl").read_text() == '{"attempt": 1}\n{"attempt": 2}\n'


def test_no_shared_fs_job_that_failed_leaves_empty_outputs_for_the_transfer(tmp_path):
    s = _scratch(tmp_path)
    py = _recorder(tmp_path / "venv" / "bin" / "python", rc=3)
    ad = _job_ad(s / ".job.ad", Iwd=str(s), TransferOutput="results, results/runs/x/r0.parquet, resources/d.npz")
    env = _env(tmp_path, _CONDOR_JOB_AD=str(ad), RECORD=str(tmp_path / "record"), JOULEGRID_PYTHON=str(py))
    proc = _run(["--snakefile", "Snakefile", "--shared-fs-usage", "none"], env, s)
    assert proc.returncode == 3  # the job's failure, for Snakemake to retry
    for out in ("results/runs/x/r0.parquet", "resources/d.npz"):  # else HTCondor holds the job
        assert (s / out).is_file() and (s / out).stat().st_size == 0, out
        assert f"{out} left empty for the output transfer" in proc.stderr


def test_no_shared_fs_job_without_the_workflow(tmp_path):
    py = _recorder(tmp_path / "venv" / "bin" / "python")
    proc = _run(
        ["--snakefile", "Snakefile", "--shared-fs-usage", "none"], _env(tmp_path, JOULEGRID_PYTHON=str(py)), tmp_path
    )
    _assert_fails(proc, "the workflow (Snakefile, workflow/, src/, config/ of the joulegrid checkout) did not arrive")


def test_packed_environment_is_unpacked_and_used(tmp_path):
    s = _scratch(tmp_path)
    record = tmp_path / "record"
    venv = tmp_path / "packed"
    _recorder(venv / "bin" / "python")
    (venv / "pyvenv.cfg").write_text(f"home = {Path(PY).resolve().parent}\n")
    with tarfile.open(s / "env.tar.gz", "w:gz") as tar:
        for child in venv.iterdir():
            tar.add(child, arcname=child.name)
    ad = _job_ad(s / ".job.ad", Iwd=str(s), TransferOutput="results")
    # the submit node's venv is not on this worker: only the packed one can run the job
    env = _env(
        tmp_path,
        _CONDOR_JOB_AD=str(ad),
        RECORD=str(record),
        JOULEGRID_ENV_TARBALL="env.tar.gz",
        JOULEGRID_PYTHON="/nonexistent/submit-node/.venv/bin/python",
    )
    proc = _run(["--snakefile", "Snakefile", "--shared-fs-usage", "none"], env, s)
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines()[0] == str(s)
    assert (s / ".joulegrid-env" / "bin" / "python").is_file() and not (s / "env.tar.gz").exists()


def test_packed_environment_whose_base_python_is_missing(tmp_path):
    s = _scratch(tmp_path)
    venv = tmp_path / "packed"
    _recorder(venv / "bin" / "python")
    (venv / "pyvenv.cfg").write_text("home = /cvmfs/sft.cern.ch/lcg/views/LCG_107/x86_64-el9-gcc13-opt/bin\n")
    with tarfile.open(s / "env.tar.gz", "w:gz") as tar:
        tar.add(venv / "bin", arcname="bin")
        tar.add(venv / "pyvenv.cfg", arcname="pyvenv.cfg")
    env = _env(tmp_path, JOULEGRID_ENV_TARBALL="env.tar.gz")
    proc = _run(["--snakefile", "Snakefile", "--shared-fs-usage", "none"], env, s)
    _assert_fails(
        proc, "the packed venv needs its base Python in /cvmfs/sft.cern.ch/lcg/views/LCG_107/x86_64-el9-gcc13-opt/bin"
    )


# ------------------------------------------------------------------ Slurm: the same check as --precommand
@pytest.mark.parametrize("python,ok", [(PY, True), ("/nonexistent/.venv/bin/python", False)])
def test_slurm_precommand_runs_the_check_before_the_job(tmp_path, python, ok):
    pre = E.slurm_precommand(str(REPO))
    assert "$" not in pre and '"' not in pre  # the plugin wraps the job in sbatch --wrap="..." through a shell
    # what the Slurm job runs: PRECOMMAND && PYTHON -m snakemake ...; here with the submit host's interpreter
    # replaced by `python`, as on a node where it is missing
    env = _env(tmp_path, JOULEGRID_PYTHON=python)
    script = pre.replace(f"--check {PY}", f"--check {python}") + " && echo job-started"
    proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0 and proc.stdout.strip() == "job-started", proc.stderr
    else:
        _assert_fails(proc, f"the Python environment {python} does not exist on this worker")
        assert "job-started" not in proc.stdout


def test_slurm_precommand_without_the_checkout_on_the_node(tmp_path):
    pre = E.slurm_precommand("/nonexistent/home/u/joulegrid").replace(
        str(WRAPPER), "/nonexistent/home/u/joulegrid/w.sh"
    )
    proc = subprocess.run(["sh", "-c", pre + " && echo job-started"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == E.ENV_CHECK_EXIT and "job-started" not in proc.stdout
    assert "the joulegrid checkout /nonexistent/home/u/joulegrid" in proc.stderr and socket.gethostname() in proc.stderr


def test_slurm_precommand_keeps_the_users_precommand():
    assert E.slurm_precommand(str(REPO), "module load cuda").endswith(" && module load cuda")
