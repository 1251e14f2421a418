#!/usr/bin/env python3
"""Where a command's CPU time goes, by kind of process: every process on the host is sampled (its utime +
stime in /proc) while COMMAND runs, and the totals are printed per kind (a joulegrid subcommand such as
`jg:run-cell` or `jg:report`, `snakemake`, the tests' Snakemake fork server, the xdist workers, the clusters'
daemons, tar, gzip, kernel threads, ...), with how many processes of each kind ran. For the test suite
(tests/README.md, "Where the time goes"), e.g.

    python bench/cpu_by_process.py --out /tmp/cpu.json -- tests/run-tests.sh

Not a benchmark (nothing side by side) and not a test: a measuring aid. Processes that start and end between
two samples (--period, default 0.25 s) are missed, and a process's last --period of CPU may be; the totals are
therefore a little below the host's. Processes already running when it starts count from then on.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
DAEMONS = ("condor", "slurm", "munge", "mariadb", "mysqld")
TOOLS = ("tar", "gzip", "pigz", "git", "bash", "sh", "unshare", "cp", "rm", "rsync")


def kind(argv: list[str], comm: str) -> str:
    """The kind of a process, from its command line (argv) and its kernel name (comm)."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "joulegrid":
            return "jg:" + (argv[i + 1] if i + 1 < len(argv) else "?")
        if arg == "-m" and argv[i + 1 : i + 2] == ["joulegrid"]:
            return "jg:" + (argv[i + 2] if i + 2 < len(argv) else "?")
    line = " ".join(argv)
    if "snakemake_forks" in line:
        return "snakemake (forked by the tests' fork server)"
    if "bin/snakemake" in line or "-m snakemake" in line:
        return "snakemake"
    if "exec(eval(sys.stdin" in line:
        return "pytest (xdist worker)"
    if "pytest" in line:
        return "pytest"
    if comm.startswith(DAEMONS):
        return "daemon:" + comm
    if "chrom" in comm:
        return "chromium"
    if comm in TOOLS:
        return comm
    if comm.startswith("python"):
        return "python " + (argv[1] if len(argv) > 1 else "")[:40]
    return comm


def _read(pid: str) -> tuple[str, float, str] | None:
    """(start time, CPU seconds, comm) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    r = stat.rfind(")")
    fields = stat[r + 2 :].split()
    return fields[19], (int(fields[11]) + int(fields[12])) / TICK, stat[stat.find("(") + 1 : r]


def _argv(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class Sampler(threading.Thread):
    def __init__(self, period: float) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.stop = threading.Event()
        self.first: dict[tuple[str, str], float] = {}  # CPU at the first sample, for processes already running
        self.last: dict[tuple[str, str], float] = {}
        self.kinds: dict[tuple[str, str], str] = {}

    def run(self) -> None:
        initial = True
        me = str(os.getpid())
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                got = _read(pid)
                if got is None:
                    continue
                start, cpu, comm = got
                key = (pid, start)
                if key not in self.kinds:
                    argv = _argv(pid)
                    self.kinds[key] = kind(argv, comm) if argv else f"kernel:{comm}"
                    if initial:
                        self.first[key] = cpu
                self.last[key] = cpu
            initial = False
            self.stop.wait(self.period)

    def totals(self) -> tuple[collections.Counter, collections.Counter]:
        cpu, count = collections.Counter(), collections.Counter()
        for key, c in self.last.items():
            cpu[self.kinds[key]] += c - self.first.get(key, 0.0)
            count[self.kinds[key]] += 1
        return cpu, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--period", type=float, default=0.25, help="seconds between samples")
    ap.add_argument("--out", help="also write the totals to this JSON file")
    ap.add_argument("--top", type=int, default=30, help="kinds to print")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("give the command to run after --")
    sampler = Sampler(a.period)
    sampler.start()
    t0 = time.monotonic()
    rc = subprocess.call(cmd)
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    cpu, count = sampler.totals()
    total = sum(cpu.values()) or 1e-9
    print(f"\ncpu_by_process: {' '.join(cmd)} took {wall:.0f} s (exit {rc}); sampled CPU {total:.0f} s "
          f"({total / wall:.2f} cores on average, {os.cpu_count()} on the host)")  # fmt: skip
    print(f"  {'CPU s':>8} {'share':>6} {'processes':>9}  kind")
    for k, c in cpu.most_common(a.top):
        print(f"  {c:8.1f} {c / total:6.1%} {count[k]:9d}  {k}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"command": cmd, "wall_s": wall, "rc": rc, "cpu_s": dict(cpu), "processes": dict(count)}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
