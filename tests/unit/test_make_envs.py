"""`make` builds a CPU-only or a CUDA environment (issue 29; docs/sites.md, "CPU-only or CUDA
environments"). The Makefile's pip commands (make -n, nothing installed) and the constraint files'
meaning, resolved offline against a local wheel directory where this machine has one (no download)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LOCAL_WHEELS = Path("/opt/wheels")  # the build machines' local copy of the torch 2.13.0+cpu wheel


def pip_lines(tmp_path, *args) -> list[str]:
    out = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}", *args], cwd=REPO, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [ln for ln in out.stdout.splitlines() if "pip install" in ln and "--upgrade pip" not in ln]


def test_make_setup_torch_builds(tmp_path):
    (default,) = pip_lines(tmp_path)
    assert default.endswith("pip install --quiet -c requirements/constraints.txt  -e '.[test]'")  # unchanged
    (cpu,) = pip_lines(tmp_path, "TORCH=cpu")
    assert "-c requirements/torch-cpu.txt --extra-index-url https://download.pytorch.org/whl/cpu" in cpu
    (cpu_mirror,) = pip_lines(tmp_path, "TORCH=cpu", "TORCH_CPU_INDEX=file:///srv/wheels/cpu", "EXTRAS=")
    assert "--extra-index-url file:///srv/wheels/cpu -e '.'" in cpu_mirror
    (cuda,) = pip_lines(tmp_path, "TORCH=cuda")
    assert "-c requirements/torch-cuda.txt -e '.[test]'" in cuda and "download.pytorch.org" not in cuda
    bad = subprocess.run(["make", "-n", "setup", "TORCH=gpu"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "TORCH=gpu: use TORCH=cpu, TORCH=cuda or leave TORCH unset" in bad.stderr


def test_torch_constraints_pin_the_same_release():
    pinned = re.search(r"^torch==(\S+)$", (REPO / "requirements/constraints.txt").read_text(), re.M).group(1)
    cpu = re.search(r"^torch==(\S+)$", (REPO / "requirements/torch-cpu.txt").read_text(), re.M).group(1)
    cuda = re.search(r"^torch(\S+)$", (REPO / "requirements/torch-cuda.txt").read_text(), re.M).group(1)
    assert cpu == f"{pinned}+cpu" and cuda == f"!={pinned}+cpu"


@pytest.mark.skipif(not any(LOCAL_WHEELS.glob("torch-*+cpu-*.whl")), reason="no local torch +cpu wheel here")
def test_cpu_constraint_takes_the_cpu_wheel_and_cuda_constraint_never_does(tmp_path):
    """Offline (--no-index, the local wheel directory only): the CPU constraints resolve to the +cpu
    wheel; the CUDA constraints refuse it (so on a host with the public index pip takes PyPI's CUDA build)."""

    def resolve(*constraints):
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--isolated",
               "--no-index", "--find-links", str(LOCAL_WHEELS), "-c", "requirements/constraints.txt",
               *(a for c in constraints for a in ("-c", c)), "torch"]  # fmt: skip
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)

    cpu = resolve("requirements/torch-cpu.txt")
    assert cpu.returncode == 0 and re.search(r"Would install torch-\S+\+cpu", cpu.stdout), cpu.stdout + cpu.stderr
    cuda = resolve("requirements/torch-cuda.txt")
    assert cuda.returncode != 0 and "Would install" not in cuda.stdout  # the only wheel here is +cpu: refused
