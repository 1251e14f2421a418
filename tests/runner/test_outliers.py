"""The outlier rule's inputs and verdicts (joulegrid.diagnostics, docs/measurement.md "Outliers by rule"):
the CPU frequency from fake cpufreq / cpuinfo trees, steal and the neighbours' contention from a window's
usage, the fixed rule on each criterion. Pure logic; the runner's excluded rows: test_runner_windows.py."""

from __future__ import annotations

import pytest

from joulegrid import diagnostics as D
from joulegrid.meters.tracker import Usage


def usage(dt=10.0, busy=0.0, job=0.0, steal=0.0, total=None, n=4):
    return Usage(dt, total if total is not None else n * dt, busy, steal, job, 0.0, n)


def test_contention_is_the_share_of_the_jobs_cpus_others_ran_on():
    # 4 CPUs, a 2-thread job using 20 CPU-s in 10 s; others 30 CPU-s: 20 of it fits on the 2 CPUs the job
    # does not need, 10 CPU-s ran on the job's 2 CPUs x 10 s = 50 %
    u = usage(busy=50.0, job=20.0)
    assert D.contention(u, reserved_cpus=4, threads=2) == pytest.approx((30.0 - 2 * 10.0) / (2 * 10.0))
    assert D.contention(usage(busy=35.0, job=20.0), 4, 2) == 0.0  # the others fit beside the job
    assert D.contention(u, reserved_cpus=1, threads=2) == pytest.approx(min((30.0 - 3 * 10.0) / 10.0, 1.0))
    assert D.contention(usage(busy=0, job=0, dt=0), 4, 2) is None
    assert D.steal(usage(steal=4.0, total=40.0)) == pytest.approx(0.1)
    assert D.steal(None) is None


def test_cpu_frequency_from_cpufreq_else_cpuinfo(tmp_path):
    sysd = tmp_path / "sys"
    for cpu, (cur, base) in enumerate([(2_000_000, 2_500_000), (2_400_000, 2_500_000)]):
        d = sysd / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{cur}\n")
        (d / "base_frequency").write_text(f"{base}\n")
    assert D.cpu_freq_mhz([0, 1], sys_root=str(sysd)) == (pytest.approx(2200.0), "cpufreq")
    assert D.cpu_base_mhz([0, 1], sys_root=str(sysd)) == pytest.approx(2500.0)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\ncpu MHz\t\t: 1800.5\n\nprocessor\t: 1\ncpu MHz\t\t: 2200.5\n")
    empty = tmp_path / "nosys"
    assert D.cpu_freq_mhz([0, 1], sys_root=str(empty), proc_root=str(proc)) == (pytest.approx(2000.5), "cpuinfo")
    assert D.cpu_freq_mhz([0, 7], sys_root=str(empty), proc_root=str(proc)) == (None, None)  # cpu 7 unknown
    assert D.cpu_base_mhz([0], sys_root=str(empty)) is None


def test_the_rule_excludes_on_each_criterion_and_says_why():
    rule = D.OutlierRule(max_steal=0.1, max_contention=0.5, min_cpu_freq=0.9)
    assert rule.judge(D.Diagnostics()) is None  # nothing readable: nothing to exclude for
    calm = D.Diagnostics(2400, 2400, "cpufreq", 2500, 0.01, 0.1, 0x4)  # power cap: by design, kept
    assert rule.judge(calm) is None
    assert "steal 20.0%" in rule.judge(D.Diagnostics(steal_fraction=0.2))
    assert "outlier_max_contention" in rule.judge(D.Diagnostics(neighbour_contention=0.6))
    assert rule.judge(D.Diagnostics(neighbour_contention=0.5)) is None  # the bound itself is kept
    slow = D.Diagnostics(cpu_freq_end_mhz=2000, cpu_base_freq_mhz=2500)
    assert "2000 MHz" in rule.judge(slow) and rule.judge(D.Diagnostics(cpu_freq_end_mhz=2000)) is None
    assert "hw_thermal_slowdown" in rule.judge(D.Diagnostics(gpu_reasons=0x40 | 0x4))
    both = rule.judge(D.Diagnostics(steal_fraction=0.3, neighbour_contention=0.9))
    assert "steal" in both and "contention" in both
    # thresholds at their "never" values keep everything
    off = D.OutlierRule(max_steal=1, max_contention=1, min_cpu_freq=0)
    assert off.judge(D.Diagnostics(1000, 1000, "cpufreq", 2500, 0.9, 1.0)) is None
    assert D.reason_names(0x4 | 0x40 | 0x1000) == "sw_power_cap,hw_thermal_slowdown,0x1000"
    assert D.reason_names(0) == "" and D.reason_names(None) is None
