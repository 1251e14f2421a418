"""Run Snakemake's own command line many times without paying its start-up each time.

A `snakemake` process spends ~1.7 s of CPU importing snakemake.cli (every executor plugin) before it
reads a Snakefile. This helper imports it once, then forks one child per command: the child is a
fresh process as far as the workflow goes (its own session, working directory, sys.argv, stdout and
stderr) and runs ``snakemake.cli.main(argv)``, exactly what the `snakemake` script runs. The
convergence test (test_converge.py) runs ~100 Snakemake commands, and conftest.snakemake runs the
suite's other ones through a server of each test process (it starts one only for the environment it
was started with; any other environment gets a plain `snakemake` process).

Protocol, one JSON object per line on stdin, one answer per line on stdout:
  {"op": "start", "argv": [...], "cwd": DIR, "log": FILE}  ->  {"pid": PID}   (runs in the background)
  {"op": "wait", "pid": PID}                                ->  {"rc": EXIT CODE, "cpu_s": CPU SECONDS}
  {"op": "run", "argv": [...], "cwd": DIR, "log": FILE, "err": FILE, "timeout": S, "env": {...}}
      -> {"rc": EXIT CODE, "cpu_s": CPU SECONDS, "timed_out": BOOL}   (stderr to "err"; killed after S seconds)
The child is a session leader: os.killpg(PID, SIGKILL) kills Snakemake and every job it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time


def _child(req: dict) -> None:
    os.setsid()
    os.chdir(req["cwd"])
    if "env" in req:  # the caller's environment (the server's, give or take what no import reads)
        os.environ.clear()
        os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # not the parent's request pipe
    os.close(null)
    for fds, path in (((1, 2), req["log"]), ((2,), req.get("err"))):
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            for target in fds:
                os.dup2(fd, target)
            os.close(fd)
    sys.argv = ["snakemake", *req["argv"]]
    code = 0
    try:
        import snakemake.cli

        snakemake.cli.main(req["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the forked child reports any failure of Snakemake to its parent
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _wait(pid: int, timeout: float | None) -> dict:
    """Wait for the child; after timeout seconds kill its session (Snakemake and its jobs), as subprocess.run's
    timeout kills the process."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG if deadline else 0)
        if done:
            return {
                "rc": os.waitstatus_to_exitcode(status),
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "timed_out": False,
            }
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return {
                "rc": os.waitstatus_to_exitcode(status),
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "timed_out": True,
            }
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def main() -> None:
    import snakemake.cli  # noqa: F401  (the import the children share)

    answer = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "start":
            pid = os.fork()
            if pid == 0:
                _child(req)
            reply = {"pid": pid}
        elif req["op"] == "wait":
            _, status, usage = os.wait4(req["pid"], 0)
            reply = {"rc": os.waitstatus_to_exitcode(status), "cpu_s": usage.ru_utime + usage.ru_stime}
        elif req["op"] == "run":
            pid = os.fork()
            if pid == 0:
                _child(req)
            reply = _wait(pid, req.get("timeout"))
        else:
            reply = {"error": f"unknown op {req['op']!r}"}
        answer.write(json.dumps(reply) + "\n")
        answer.flush()


if __name__ == "__main__":
    main()
