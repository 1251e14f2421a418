"""A user sees no warning that is not theirs (issue 14): a run with the default meters (codecarbon
included), training and inference, int8 (torchao), started without CONDOR_CONFIG: Snakemake's output
and every job log hold joulegrid's and Snakemake's own lines only. The filters of joulegrid.quiet
are checked one by one below, and that they keep what a user must act on."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import BIN, REPO, TINY, deep_merge, subprocess_env

from joulegrid import quiet

# what the third parties print when they are noisy (issue 14's list)
NOISE = re.compile(
    r"CONDOR_CONFIG|libamd_smi|amdsmi|\[codecarbon|_C_mxfp8|_C_cutlass|_pytree|register_constant|triton|"
    r"USDT|profiler_start|ActivityProfiler",
    re.I,
)


def env_without_condor_config() -> dict:
    env = subprocess_env()
    env.pop("CONDOR_CONFIG", None)
    env.pop("CODECARBON_LOG_LEVEL", None)
    env.pop("KINETO_LOG_LEVEL", None)
    return env


@pytest.mark.slow
@pytest.mark.parallel
def test_default_run_logs_carry_no_third_party_warning(tmp_path):
    assert quiet.pth_path().is_file(), "make setup installs the start-up filter (python -m joulegrid.quiet --install)"
    cfg = deep_merge(TINY, {"grid": {"precisions": ["fp32", "int8"]}, "measure": {"meters": ["auto"]}})
    for key in ("meters", "hotspots"):  # the defaults: every meter that works here (codecarbon too), profiling repeat 0
        cfg["measure"].pop(key, None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = env_without_condor_config()
    proc = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "c.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert not NOISE.search(out), [line for line in out.splitlines() if NOISE.search(line)]
    assert not re.search(r"(?i)warn", out), [line for line in out.splitlines() if re.search(r"(?i)warn", line)]
    logs = sorted((tmp_path / "results/logs").rglob("*.log"))
    assert len(logs) >= 5  # prepare_dataset, train_reference, 3 cells, aggregate, report
    for log in logs:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        foreign = [ln for ln in lines if not ln.startswith("joulegrid")]
        assert not foreign, f"{log.relative_to(tmp_path)}: {foreign}"
    int8 = next(p for p in logs if "/int8/" in str(p))
    assert "ok" in int8.read_text()


def test_meters_command_prints_no_third_party_noise():
    proc = subprocess.run(
        [sys.executable, "-m", "joulegrid", "meters"],
        capture_output=True,
        text=True,
        env=env_without_condor_config(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert not NOISE.search(out), out
    assert "codecarbon" in out and "estimate" in out  # its own report of the meters is there


def test_bare_snakemake_does_not_warn_about_condor_config(tmp_path):
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n"],
        capture_output=True,
        text=True,
        env=env_without_condor_config(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONDOR_CONFIG" not in proc.stdout + proc.stderr


def test_htcondor_run_without_a_pool_configuration_is_told():
    """The hidden warning still matters when a run submits to HTCondor: joulegrid says so then."""
    env = dict(os.environ)
    try:
        os.environ["CONDOR_CONFIG"] = "/dev/null"  # what htcondor2 sets when it finds no configuration
        assert "no HTCondor configuration" in quiet.condor_config_problem("htcondor")
        assert quiet.condor_config_problem("slurm") is None and quiet.condor_config_problem(None) is None
        os.environ["CONDOR_CONFIG"] = "/etc/condor/condor_config"
        assert quiet.condor_config_problem("htcondor") is None
    finally:
        os.environ.clear()
        os.environ.update(env)


def test_torchao_filter_hides_only_libraries_that_cannot_load_here():
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    other = "310" if py != "310" else "311"
    base = "/x/site-packages/torchao/"
    assert quiet._torchao_unloadable(
        f"Failed to load {base}_C_mxfp8.cpython-{other}-x86_64-linux-gnu.so: Could not load"
    )
    own = f"Failed to load {base}_C.cpython-{py}-x86_64-linux-gnu.so: undefined symbol"
    assert quiet._torchao_unloadable(own) == (not quiet._torch_has_cuda())  # a CUDA build keeps it: the user must act
    assert not quiet._torchao_unloadable("Failed to load /elsewhere/libfoo.so: x")
    assert not quiet._torchao_unloadable("Skipping import of cpp extensions due to incompatible torch version")


def test_install_filters_exactly_the_noise(monkeypatch):
    """In a fresh interpreter: torch's pytree deprecation about torchao's Enum is dropped, another
    pytree warning is kept; codecarbon's level is error unless the user chose one; amdsmi is
    marked absent on a host without an AMD GPU driver."""
    code = (
        "import logging, os, sys\nfrom joulegrid import quiet\nquiet.install()\nh = "
        "logging.StreamHandler(sys.stdout); log = logging.getLogger('torch.utils._pytree'); "
        "log.addHandler(h)\nlog.warning(\"<enum 'KernelPreference'> is an Enum subclass and is now natively "
        "supported by torch.compile as an "
        'opaque value type. Calling register_constant() on Enum subclasses is deprecated and will be an error")\n'
        "log.warning('another pytree warning')\n"
        "print('level', os.environ['CODECARBON_LOG_LEVEL'])\n"
        "print('amdsmi', 'amdsmi' in sys.modules and sys.modules['amdsmi'] is None)\n"
    )
    env = env_without_condor_config()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "another pytree warning" in out and "Enum subclass" not in out
    assert "level error" in out
    assert f"amdsmi {not os.path.exists('/dev/kfd')}" in out
    env["CODECARBON_LOG_LEVEL"] = "info"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "level info" in out
