"""Small helpers shared by the bench/ scripts: host description, timing a subprocess, medians.

Not a test helper and not part of the joulegrid package: benchmarks only.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def host() -> str:
    """'<CPU model>, <n> cores, Python x.y' for the figures in docs/benchmarks.md."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}{load}"


def env() -> dict[str, str]:
    """Subprocess environment: this interpreter's venv first on PATH, this checkout's src/ importable."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("CONDOR_CONFIG", "/dev/null")
    src = str(REPO / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(
    cmd: list[str],
    log: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[float, float]:
    """Run cmd to completion, its stdout+stderr into log (or discarded); (wall s, CPU s of it and its children).

    Exits with the log's tail when the command fails: a benchmark of a failing command means nothing."""
    out = open(log, "w") if log else tempfile.TemporaryFile("w+")
    with out:
        c0, t0 = _children_cpu(), time.perf_counter()
        rc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env={**env(), **(extra_env or {})}
        ).returncode
        wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
        if rc != 0:
            out.seek(0) if not log else None
            tail = (Path(log).read_text() if log else out.read())[-3000:]
            raise SystemExit(f"benchmark command failed ({rc}): {' '.join(map(str, cmd))}\n{tail}")
    return wall, cpu


def alternate(
    round_index: int, sides: list[tuple[str, object]], logdir: str | os.PathLike
) -> dict[str, tuple[float, float]]:
    """One round of side-by-side timing: each (name, cmd) run with timed(), in the given order on even
    rounds and reversed on odd ones (so a drift in the host's load favours neither side); cmd may be a
    callable returning the command. Returns {name: (wall s, CPU s)}."""
    res = {}
    for name, cmd in sides if round_index % 2 == 0 else sides[::-1]:
        res[name] = timed(cmd() if callable(cmd) else cmd, Path(logdir) / f"{name}.log")
    return res


def report_round(
    round_index: int, base: str, other: str, res: dict[str, tuple[float, float]], fmt: str = "5.2f"
) -> tuple[float, float]:
    """Print one round of alternate() as 'base ... | other ... | ratio ...'; returns (wall, CPU) ratio other/base."""
    (bw, bc), (ow, oc) = res[base], res[other]
    print(
        f"  round {round_index + 1}: {base} "
        f"{bw:{fmt}} s wall {bc:{fmt}} s CPU | {other} {ow:{fmt}} s wall {oc:{fmt}} s CPU"
        f" | ratio wall {ow / bw:.2f} CPU {oc / bc:.2f}",
        flush=True,
    )
    return ow / bw, oc / bc


def report_medians(label: str, ratios: list[tuple[float, float]], goal: str) -> None:
    """The benchmark's last lines: median ratio by CPU time, then by wall clock (with the goal)."""
    print(f"median ratio {label} by CPU time: {statistics.median(c for _, c in ratios):.2f}")
    print(f"median ratio {label} by wall clock: {statistics.median(w for w, _ in ratios):.2f} ({goal})")


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    """Median over rounds of b/a for pairs (a, b)."""
    return statistics.median(b / a for a, b in pairs)
