"""`joulegrid calibrate` end to end: a real `joulegrid calibrate` process runs its load ladder (real
processes burning CPUs, holding and streaming memory) against a fake powercap tree whose counters
advance with the REAL /proc/stat load (tests/meters/fake_node.py: P = P0 + k x busy CPUs); the fit
must find the fake's P0 and k. Plus the errors a user meets: no readable RAPL, a calibration that
exists already."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import subprocess_env

from joulegrid import config as CFG
from joulegrid import hardware as H
from joulegrid.meters import calibration as C
from joulegrid.meters import ladder, rapl
from joulegrid.probes import cpu_model
from meters.fake_node import FakeNode

# the fake node's rates (W, W per busy CPU): what the fit must find, within 5 %
P0, K, P0_DRAM, K_DRAM = 40.0, 8.0, 6.0, 1.5
SHIPPED = CFG.REPO_ROOT / "config" / "hardware.yaml"
QUICK = ["--step-s", "4", "--settle-s", "1", "--interval-s", "0.25", "--mem-gb", "0.2"]  # ~30 s in all


CALIBRATE = [sys.executable, "-m", "joulegrid", "calibrate"]


def calibrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CALIBRATE, *args], capture_output=True, text=True, timeout=600, env=subprocess_env())


def calibrate_on_virtual_node(node: FakeNode, *args: str) -> subprocess.CompletedProcess:
    """`joulegrid calibrate` on a virtual node (FakeNode busy="trees"): it reads the node's stat and
    counters, which the fake's writer advances together from this process tree's CPU time alone, so
    the rest of a loaded build host neither loads the node nor skews its counters against its stat."""
    cmd = [*CALIBRATE, "--powercap", str(node.powercap), "--proc", str(node.proc), *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    node.track(p.pid)
    out, err = p.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.mark.slow
def test_calibrate_finds_the_fake_nodes_rates(tmp_path):
    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    hw = tmp_path / "hardware.yaml"
    hw.write_text(SHIPPED.read_text())  # the user's table, with its embodied-carbon entries and comments
    node = FakeNode(tmp_path / "node", P0, K, P0_DRAM, K_DRAM, busy="proc").start()
    try:
        p = calibrate("--powercap", str(node.powercap), "--hardware-file", str(hw), *QUICK)
    finally:
        node.stop()
    assert p.returncode == 0, p.stderr[-4000:]
    e = H.read(hw).calibrations[cpu_model()]
    pkg, dram = e["package"], e["dram"]
    assert pkg["idle_w"] == pytest.approx(P0, rel=0.05), p.stderr
    assert pkg["w_per_busy_cpu"] == pytest.approx(K, rel=0.05), p.stderr
    assert dram["idle_w"] == pytest.approx(P0_DRAM, rel=0.05), p.stderr
    assert dram["w_per_busy_cpu"] == pytest.approx(K_DRAM, rel=0.05), p.stderr
    # the fake is exactly linear: every step is predicted by a fit without it to within a few per cent
    assert 0 <= e["holdout_max_rel_err"] < 0.05 and e["holdout_rmse_w"] >= 0
    for k in ("idle_w_se", "w_per_busy_cpu_se"):
        assert pkg[k] is not None and pkg[k] >= 0
    assert [s["step"] for s in e["steps"]] == ["idle", "busy-1", "busy-2", "resident", "traffic", "idle-end"]
    # the ladder loaded the CPUs: the busiest step ran (close to) every logical CPU of the node
    n = e["logical_cpus"]
    assert max(s["busy_cpus"] for s in e["steps"]) > 0.8 * n
    assert e["ladder"]["busy_levels"] == ladder.busy_levels(n, 6) and e["ladder"]["mem_gb"] == 0.2
    # the rest of the table is untouched, byte for byte
    shipped = SHIPPED.read_text()
    assert hw.read_text().startswith(shipped[: shipped.index("cpu_calibrations: {}")] + "cpu_calibrations:\n")
    assert H.read(hw).sites == H.read(SHIPPED).sites
    assert "W per busy" not in p.stdout and "per busy logical CPU" in p.stderr and "held-out" in p.stderr


@pytest.mark.slow
def test_calibrate_reads_the_roots_it_is_given(tmp_path):
    """--powercap and --proc: a VIRTUAL 2-CPU node whose only load is the calibrate process and its
    workers (the fake writes its own stat from their CPU time), so other processes of this host play
    no part; its meminfo has no MemAvailable, so no per-GB term can be fitted."""
    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    hw = tmp_path / "hardware.yaml"
    node = FakeNode(tmp_path / "node", P0, K, P0_DRAM, K_DRAM, n_cpus=2, busy="trees").start()
    try:
        p = calibrate_on_virtual_node(node, "--hardware-file", str(hw), *QUICK)
    finally:
        node.stop()
    err = p.stderr
    assert p.returncode == 0, err[-3000:]
    e = H.read(hw).calibrations[cpu_model()]
    assert e["package"]["idle_w"] == pytest.approx(P0, rel=0.05) and e["package"]["w_per_busy_cpu"] == pytest.approx(
        K, rel=0.05
    ), err
    assert e["dram"]["idle_w"] == pytest.approx(P0_DRAM, rel=0.05) and e["dram"]["w_per_busy_cpu"] == pytest.approx(
        K_DRAM, rel=0.05
    ), err
    assert e["logical_cpus"] == 2 and e["package"]["w_per_gb_fit"] is None and "not fitted" in err
    assert e["steps"][0]["busy_cpus"] < 0.2  # the virtual node's idle step: only the calibrate process's reads


def test_no_readable_rapl_is_a_clear_error(tmp_path):
    hw = tmp_path / "hardware.yaml"
    empty = tmp_path / "powercap"
    empty.mkdir()
    p = calibrate("--powercap", str(empty), "--hardware-file", str(hw), *QUICK)
    assert p.returncode == 2
    assert "needs readable RAPL" in p.stderr and "no RAPL package domain" in p.stderr and "sudo" in p.stderr
    assert not hw.exists()


def test_root_only_counters_name_the_fix(tmp_path, monkeypatch):
    """Linux >= 5.10 makes energy_uj root-only: the message says so and how to calibrate anyway."""
    node = FakeNode(tmp_path / "node", busy="proc")  # the files only, no writer thread
    real = rapl._read_text

    def denied(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "_read_text", denied)
    with pytest.raises(C.CalibrationError, match="(?s)readable by root only.*sudo -E .venv/bin/joulegrid calibrate"):
        ladder.run(ladder.LadderSettings(step_s=1, settle_s=0, interval_s=0.25, powercap_root=str(node.powercap)))


def test_an_existing_calibration_needs_replace_before_any_ladder(tmp_path):
    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    hw = tmp_path / "hardware.yaml"
    hw.write_text(yaml.safe_dump({H.CALIBRATIONS: {cpu_model(): {"package": {"idle_w": 1.0, "w_per_busy_cpu": 1.0}}}}))
    before = hw.read_text()
    p = calibrate("--powercap", str(tmp_path / "nothing"), "--hardware-file", str(hw), *QUICK)
    assert p.returncode == 2 and "already has a calibration" in p.stderr and "--replace" in p.stderr
    assert "needs readable RAPL" not in p.stderr  # refused before the ladder, not after minutes of it
    assert hw.read_text() == before


@pytest.mark.slow
def test_dry_run_writes_nothing_and_replace_keeps_the_old_one(tmp_path):
    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    hw = tmp_path / "hardware.yaml"
    old = {"host": "old", "calibrated_at": "2026-01-01T00:00:00Z", "package": {"idle_w": 1.0, "w_per_busy_cpu": 1.0}}
    hw.write_text(yaml.safe_dump({H.CALIBRATIONS: {cpu_model(): old}}))
    before = hw.read_text()
    # steps of 1 s, 8 reads
    tiny = [
        "--step-s",
        "1",
        "--settle-s",
        "0",
        "--interval-s",
        "0.125",
        "--mem-gb",
        "0",
        "--levels",
        "1",
    ]
    # what is tested here is what is written, not the fit; but the fit must keep 3 clean intervals a
    # step. A virtual node (its only load: the calibrate tree), read 8 times a step: with 4 reads, the
    # host's other load on a fake following the real /proc/stat, then the fake's publication grain
    # (fake_node.py), left 2 in one step (CI stop 20 and the next; 1 of 20 runs under three CPU
    # burners, a spawn loop and an fsync loop with 4 reads, 0 of 20 with 8)
    node = FakeNode(tmp_path / "node", P0, K, P0_DRAM, K_DRAM, n_cpus=2, busy="trees").start()
    try:
        dry = calibrate_on_virtual_node(node, "--hardware-file", str(hw), "--dry-run", *tiny)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert hw.read_text() == before and "nothing written" in dry.stderr
        printed = yaml.safe_load(dry.stdout)[H.CALIBRATIONS][cpu_model()]  # the entry it would have saved
        levels = ladder.busy_levels(printed["logical_cpus"], 1)  # 1 and all CPUs; --mem-gb 0: no memory steps
        assert [s["step"] for s in printed["steps"]] == ["idle", *(f"busy-{k}" for k in levels), "idle-end"]
        new = calibrate_on_virtual_node(node, "--hardware-file", str(hw), "--replace", *tiny)
        assert new.returncode == 0, new.stderr[-3000:]
    finally:
        node.stop()
    cur = H.read(hw).calibrations[cpu_model()]
    assert cur["host"] != "old" and cur["previous"] == [old]
    assert cur["package"]["idle_w"] == pytest.approx(P0, rel=0.1)  # a 1-s ladder: roughly right, nothing more asked


@pytest.mark.parametrize(
    "args, match",
    [(["--step-s", "0.5", "--interval-s", "0.25"], "fewer than 3 intervals"), (["--levels", "0"], "--levels >= 1")],
)
def test_bad_ladder_settings(tmp_path, args, match):
    p = calibrate("--hardware-file", str(tmp_path / "hw.yaml"), *args)
    assert p.returncode == 2 and match in p.stderr


def test_a_site_entry_naming_the_cpu_model_is_pointed_out(tmp_path):
    from joulegrid.cli import _node_power_notes

    sites = tmp_path / "sites.yaml"
    sites.write_text(
        yaml.safe_dump(
            {
                "a": {"node_power": [{"cpu_model": "EPYC 7742", "cpu_idle_w": 100}]},
                "b": {"node_power": {"cpu_idle_w": 50}},
                "c": {},
            }
        )
    )
    (note,) = _node_power_notes("AMD EPYC 7742 64-Core Processor", sites)
    assert "a.node_power names 'EPYC 7742'" in note and "takes precedence" in note
    # b's entry names no CPU model: the calibration wins
    assert _node_power_notes("Intel(R) Xeon(R) Gold 6248", sites) == []


def test_busy_levels():
    assert ladder.busy_levels(2, 6) == [1, 2]
    assert ladder.busy_levels(128, 6) == [1, 21, 43, 64, 85, 107, 128]
    assert ladder.busy_levels(1, 6) == [1]
