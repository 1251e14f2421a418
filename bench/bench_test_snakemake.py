"""What the test suite's fork server saves per Snakemake command (tests/README.md, "Starting Snakemake").

conftest.snakemake runs each command as a child forked from a process that imported snakemake.cli once
(tests/reliability/snakemake_forks.py) instead of a fresh `snakemake` process. Side by side, ROUNDS rounds
(order alternating): `snakemake -n` of the tests' tiny grid (conftest.TINY) in a fresh folder, once as the
`snakemake` script and once through the fork server. CPU: the plain process's CPU time (from its rusage) and
the forked child's (from the server's wait4); wall: the caller's clock around each command.

    python bench/bench_test_snakemake.py [ROUNDS]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchlib import BIN, REPO, env, host, report_medians, report_round, timed

sys.path.insert(0, str(REPO / "tests"))
from conftest import TINY  # the tests' tiny grid

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6


def argv(work: Path) -> list[str]:
    return ["-s", str(REPO / "Snakefile"), "--directory", str(work), "--configfile", str(work / "c.yaml"), "-n"]


def main() -> None:
    print(f"host: {host()}")
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests/reliability/snakemake_forks.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:

        def fresh(name: str) -> Path:
            work = Path(tempfile.mkdtemp(prefix=name, dir=tmp))
            (work / "c.yaml").write_text(yaml.safe_dump(TINY))
            return work

        def plain() -> tuple[float, float]:
            work = fresh("plain")
            return timed([str(BIN / "snakemake"), *argv(work)], work / "log", cwd=work)

        def forked() -> tuple[float, float]:
            work = fresh("fork")
            req = {"op": "run", "argv": argv(work), "cwd": str(work), "log": str(work / "log"), "timeout": 600,
                   "env": env()}  # fmt: skip
            t0 = time.perf_counter()
            server.stdin.write(json.dumps(req) + "\n")
            server.stdin.flush()
            reply = json.loads(server.stdout.readline())
            if reply["rc"] != 0:
                raise SystemExit(f"forked snakemake failed ({reply['rc']}):\n{(work / 'log').read_text()[-3000:]}")
            return time.perf_counter() - t0, reply["cpu_s"]

        plain(), forked()  # warm the file cache and the server's first fork
        for i in range(ROUNDS):
            sides = [("plain", plain), ("forked", forked)]
            res = {name: run() for name, run in (sides if i % 2 == 0 else sides[::-1])}
            ratios.append(report_round(i, "plain", "forked", res))
    server.stdin.close()
    server.wait()
    report_medians("forked/plain", ratios, "goal: below 1, the import's share of a dry run saved")


if __name__ == "__main__":
    main()
