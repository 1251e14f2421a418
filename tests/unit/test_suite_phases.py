"""The suite's split (tests/phases.py, tests/README.md): which phase a test runs in, and the check that fails
a parallel-phase test that measured without saying so. Each case runs pytest on a small test file of its
own, with the suite's phase hooks and nothing else. Last, conftest.snakemake's fork server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = """
from phases import (
    pytest_addoption, pytest_cmdline_main, pytest_collection_modifyitems, pytest_runtest_logreport,
    pytest_runtest_makereport, pytest_runtest_protocol, pytest_sessionstart, pytest_terminal_summary,
)
"""
INI = "[pytest]\nmarkers =\n    measure: m\n    parallel: p\n    slurm: s\n    htcondor: h\n"
CASES = """
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def row(where, method="rapl", started=None, status="ok", energy=1.0):
    where.mkdir(parents=True, exist_ok=True)
    t = pa.table({"status": [status], "energy_j": [energy], "started_at": [started or datetime.now(UTC)],
                  "energy_method": [method]})
    pq.write_table(t, where / "r0-0123456789abcdef.parquet")


def test_measures_unmarked(tmp_path):
    row(tmp_path / "results/runs/local/w/train/cpu/fp32/bs256")


@pytest.mark.parallel
def test_measures_marked_parallel(tmp_path):
    row(tmp_path / "results/runs/local/w/train/cpu/fp32/bs256")


def test_synthetic_row(tmp_path):
    row(tmp_path / "results/runs/local", method="synthetic-test-fixture")


def test_row_measured_before_the_test(tmp_path):
    row(tmp_path / "results/runs/local", started=datetime(2026, 1, 1, tzinfo=UTC))


def test_failed_row(tmp_path):
    row(tmp_path / "results/runs/local", status="failed", energy=None)


def test_parquet_outside_runs(tmp_path):
    row(tmp_path / "results/elsewhere")


@pytest.mark.measure
def test_checks_a_measurement(tmp_path):
    row(tmp_path / "results/runs/local")
"""


def run_phase(tmp_path: Path, *args: str, xdist: bool = False) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"}
    plugins = [] if xdist else ["-p", "no:xdist"]
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugins, "-rA", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def outcomes(out: str) -> dict[str, str]:
    """{test name: PASSED / FAILED / ERROR} from -rA's short summary."""
    got = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" test_cases.py::")
        if word in ("PASSED", "FAILED", "ERROR") and rest:
            name = rest.split()[0]
            got[name] = "ERROR" if "ERROR" in (got.get(name), word) else word
    return got


def test_parallel_phase_fails_an_unmarked_test_that_measured(tmp_path):
    proc = run_phase(tmp_path, "--phase", "parallel")
    got = outcomes(proc.stdout)
    # a measured row (status ok, energy, written during the test) in the test's own folder: not allowed unmarked
    assert got.pop("test_measures_unmarked") == "ERROR", proc.stdout[-3000:]
    assert "test_measures_unmarked ran in the parallel phase and measured" in proc.stdout
    assert "@pytest.mark.measure" in proc.stdout and "@pytest.mark.parallel" in proc.stdout
    # marked parallel, synthetic, measured earlier (a copied tree), failed, not a run file: no complaint
    assert got == {
        "test_measures_marked_parallel": "PASSED",
        "test_synthetic_row": "PASSED",
        "test_row_measured_before_the_test": "PASSED",
        "test_failed_row": "PASSED",
        "test_parquet_outside_runs": "PASSED",
    }, proc.stdout[-3000:]
    assert "1 deselected" in proc.stdout  # the measure-marked test is the serial phase's
    assert "joulegrid phase parallel: 6 tests (5 passed, 0 skipped, 1 failed)" in proc.stdout


def test_serial_phase_runs_the_measuring_tests_only_and_refuses_workers(tmp_path):
    proc = run_phase(tmp_path, "--phase", "serial")
    assert outcomes(proc.stdout) == {"test_checks_a_measurement": "PASSED"}, proc.stdout[-3000:]
    assert "6 deselected" in proc.stdout and proc.returncode == 0
    refused = run_phase(tmp_path, "--phase", "serial", "-n", "2", xdist=True)
    assert refused.returncode != 0 and "--phase serial runs one test at a time" in refused.stderr


def test_plain_pytest_runs_every_test_and_checks_nothing(tmp_path):
    proc = run_phase(tmp_path)
    got = outcomes(proc.stdout)
    assert len(got) == 7 and set(got.values()) == {"PASSED"}, proc.stdout[-3000:]


def test_snakemake_through_the_fork_server_is_the_script(tmp_path, monkeypatch):
    """conftest.snakemake forks each command from the test process's server (tests/README.md, "Starting
    Snakemake"): the command's own process (a child of the server), the caller's environment, the script's
    output and exit code, and a timeout that kills the command with its jobs."""
    import conftest

    (tmp_path / "Snakefile").write_text(
        'rule who:\n    output: "who.txt"\n'
        '    shell: "echo $(ps -o ppid= -p $PPID) $PYTEST_CURRENT_TEST > {output}"\n\n'
        'rule slow:\n    output: "slow.txt"\n    shell: "sleep 987; touch {output}"\n'
    )
    args = ("-s", str(tmp_path / "Snakefile"), "--cores", "1")
    conftest.snakemake(tmp_path, *args, "who.txt")
    server = conftest._SERVERS[-1]
    parent, current = (tmp_path / "who.txt").read_text().split(maxsplit=1)
    assert int(parent) == server.proc.pid  # Snakemake was the server's child, its job Snakemake's
    assert current.strip() == os.environ["PYTEST_CURRENT_TEST"]  # the caller's environment, not the server's

    monkeypatch.setenv("JOULEGRID_TEST_FORKS", "0")
    plain = conftest.snakemake(tmp_path, "--version")
    monkeypatch.delenv("JOULEGRID_TEST_FORKS")
    forked = conftest.snakemake(tmp_path, "--version")
    assert forked.stdout == plain.stdout and forked.stdout.strip() and conftest._SERVERS[-1] is server

    failed = conftest.snakemake(tmp_path, *args, "nothing.txt", check=False)  # no rule makes it
    assert failed.returncode == 1 and "nothing.txt" in failed.stdout + failed.stderr

    with pytest.raises(subprocess.TimeoutExpired):
        conftest.snakemake(tmp_path, *args, "slow.txt", timeout=8)
    assert subprocess.run(["pgrep", "-f", "sleep 987"], capture_output=True).returncode == 1  # its job went too
