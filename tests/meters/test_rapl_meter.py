"""The direct RAPL reader on a fake powercap tree (real RAPL cannot exist in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulegrid.meters import rapl
from joulegrid.meters.base import MeterUnavailable


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 262143328850) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)  # inside the package: not counted
    zone(root, "intel-rapl:0:1", "dram", 2_000_000)
    zone(root, "intel-rapl:1", "package-1", 3_000_000)
    zone(root, "intel-rapl:2", "psys", 9_000_000)  # whole platform: not counted
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)  # second view of package 0: not counted
    (root / "intel-rapl").mkdir()  # the control-type folder itself
    return root


def set_uj(root: Path, name: str, v: int) -> None:
    (root / name / "energy_uj").write_text(f"{v}\n")


def test_discover_packages_and_dram_only(tree):
    keys = sorted(d.key for d in rapl.discover(tree))
    assert keys == ["cpu:intel-rapl:0", "cpu:intel-rapl:1", "dram:intel-rapl:0:1"]


def test_window_energy_is_counter_difference_summed_per_component(tree):
    m = rapl.RaplMeter(interval_s=60, root=tree)  # long poll: reads happen at start/lap/stop only
    assert m.components() == ("cpu", "dram")
    m.start()
    set_uj(tree, "intel-rapl:0", 1_000_000 + 5_000_000)  # +5 J
    set_uj(tree, "intel-rapl:1", 3_000_000 + 2_500_000)  # +2.5 J
    set_uj(tree, "intel-rapl:0:1", 2_000_000 + 1_000_000)  # +1 J
    set_uj(tree, "intel-rapl:2", 99_000_000)  # psys moves a lot: ignored
    readings = {r.component: r for r in m.stop()}
    assert readings["cpu"].energy_j == pytest.approx(7.5)
    assert readings["dram"].energy_j == pytest.approx(1.0)
    for r in readings.values():
        assert r.method == "rapl" and r.meter == "rapl" and not r.estimated
        assert r.samples == 2 and r.interval_s == 60


def test_wrap_around_uses_max_energy_range(tree):
    max_uj = 262143328850
    set_uj(tree, "intel-rapl:0", max_uj - 1_000_000)  # 1 J before the wrap
    m = rapl.RaplMeter(interval_s=60, root=tree)
    m.start()
    set_uj(tree, "intel-rapl:0", max_uj - 200_000)  # +0.8 J
    assert m.lap()["cpu"] == pytest.approx(0.8)
    set_uj(tree, "intel-rapl:0", 300_000)  # wrapped: +0.2 J to the max, +0.3 J after 0
    assert m.lap()["cpu"] == pytest.approx(1.3)
    set_uj(tree, "intel-rapl:0", 1_300_000)  # +1 J
    r = {x.component: x for x in m.stop()}["cpu"]
    assert r.energy_j == pytest.approx(2.3)
    assert r.samples == 4  # start, two laps, stop


def test_poll_thread_counts_reads(tree):
    """The poll thread reads the counters on its own between start and stop: every read it makes is
    counted in samples, and the energy is the sum of what the counter advanced between reads (each read
    here advances package 0 by 1 J, so n reads = n - 1 J)."""
    import threading

    m = rapl.RaplMeter(interval_s=0.01, root=tree)
    real = m._read
    reads, enough = [], threading.Event()

    def counting_read():
        n = len(reads)
        set_uj(tree, "intel-rapl:0", 1_000_000 + n * 1_000_000)  # the counter as it stands at read n
        reads.append(n)
        if len(reads) >= 5:
            enough.set()
        return real()

    m._read = counting_read
    m.start()  # read 1; the poller makes the next ones, with no lap from here
    # a deadline, not a duration: fails (instead of hanging) if the poller never reads
    assert enough.wait(timeout=60), f"the poll thread made {len(reads) - 1} read(s) in 60 s"
    r = {x.component: x for x in m.stop()}["cpu"]  # stop() reads once more
    assert r.samples == len(reads) >= 6 and r.interval_s == 0.01
    assert r.energy_j == pytest.approx(len(reads) - 1)


def test_absent_without_powercap(tmp_path):
    with pytest.raises(MeterUnavailable, match="no RAPL package domain"):
        rapl.RaplMeter(root=tmp_path / "nothing")


def test_root_only_counter_says_how_to_fix(tree, monkeypatch):
    real = rapl._read_text

    def deny(p: Path) -> str:
        if p.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(rapl, "_read_text", deny)
    with pytest.raises(MeterUnavailable, match="root only.*Fix"):
        rapl.RaplMeter(root=tree)
