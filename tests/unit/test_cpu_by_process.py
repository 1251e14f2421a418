"""bench/cpu_by_process.py (tests/README.md, "Where the time goes"): the kinds it names, and a process's CPU
time against what the process itself counted."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from conftest import REPO, subprocess_env

sys.path.insert(0, str(REPO / "bench"))
import cpu_by_process as CBP


def test_kinds_from_command_lines():
    venv = "/x/.venv/bin"
    assert CBP.kind([f"{venv}/python", f"{venv}/joulegrid", "run-cell", "--grid", "g"], "joulegrid") == "jg:run-cell"
    assert CBP.kind([f"{venv}/python", "-m", "joulegrid", "report", "--out", "r"], "python") == "jg:report"
    assert CBP.kind([f"{venv}/python", f"{venv}/snakemake", "-s", "Snakefile"], "snakemake") == "snakemake"
    assert CBP.kind([f"{venv}/python", "tests/reliability/snakemake_forks.py"], "python").startswith("snakemake (")
    assert CBP.kind([f"{venv}/python", "-u", "-c", "import sys;exec(eval(sys.stdin.readline()))"], "python") == (
        "pytest (xdist worker)"
    )
    assert CBP.kind(["/usr/sbin/condor_startd", "-f"], "condor_startd") == "daemon:condor_startd"
    assert CBP.kind(["tar", "-xzf", "env.tar.gz"], "tar") == "tar"


def test_a_busy_process_cpu_is_what_it_counted_itself(tmp_path):
    """A child that spins until its own CPU clock (time.process_time) passed 1.5 s, and prints it: the sampled
    CPU of its kind is that figure, less at most one sampling period (its last one may be missed). The child is a
    script of a name of its own, so that it is the only process of its kind on the host (other tests run beside)."""
    out = tmp_path / "cpu.json"
    script = tmp_path / f"spin_{uuid.uuid4().hex[:8]}.py"
    script.write_text(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass\nprint(time.process_time())\n"
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/cpu_by_process.py"), "--period", "0.1", "--out", str(out), "--",
         sys.executable, script.name],
        capture_output=True, text=True, env=subprocess_env(), timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    counted = float(proc.stdout.splitlines()[0])  # the child's own CPU seconds (its start-up included)
    got = json.loads(out.read_text())
    kind = f"python {script.name}"
    assert got["rc"] == 0 and got["processes"][kind] == 1, got["processes"]
    assert counted - 0.15 <= got["cpu_s"][kind] <= counted + 0.02, (counted, got["cpu_s"][kind])
    assert "CPU s" in proc.stdout and kind in proc.stdout
