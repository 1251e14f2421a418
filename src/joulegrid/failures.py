"""A measurement job that died without writing its row: record it anyway, and keep every attempt.

``joulegrid run-cell`` turns every Python-level failure into a row itself (runner.py). What it
cannot catch is its own death: the OOM killer or a scheduler limit (SIGKILL), a segfault in a
native library, ``os._exit``. The rule measure therefore runs::

    joulegrid run-cell ... || joulegrid record-failure ... --exit-code $?

and record_failure() then

* appends the attempt (exit code / signal, log tail) to the cell's attempt history
  ``<results>/attempts/<cell id>-<config hash>.jsonl`` -- never truncated, so no attempt's error is lost;
* while Snakemake retries remain (``--retries``; the main process exports JOULEGRID_RETRIES):
  exits non-zero, so that Snakemake resubmits the job with attempt+1 (and attempt x memory);
* on the last attempt: writes the cell's result row (status ``oom`` when the kernel's OOM
  killer is known to have struck this job's cgroup, else ``failed``; error_type names the
  signal; error_message holds this and the earlier attempts' errors) and exits 0, so that the
  grid goes on and the report lists the failure.

Exit codes that mean "refused, on purpose" (2: config error, 3: not started, e.g. a required
meter or strict_devices) are passed through without a row, and a result file that already
exists is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import schema
from .io import write_table
from .spec import CellSpec, identity_columns

EXIT_CONFIG_ERROR = 2
EXIT_REFUSED = 3  # the cell was not started on purpose (required meter missing, strict_devices)
PASS_THROUGH = (EXIT_CONFIG_ERROR, EXIT_REFUSED)
logger = logging.getLogger(__name__)
RETRIES_ENV = "JOULEGRID_RETRIES"
LOG_TAIL_CHARS = 1200


def attempts_path(run_file: str | os.PathLike, cell_id: str) -> Path:
    """<results>/attempts/<file id>.jsonl for <results>/runs/<file id>.parquet, else next to the file
    (cell_id: the cell's file id, grid.Cell.file_id: its id and config hash)."""
    p = Path(run_file)
    tail = (Path("runs") / f"{cell_id}.parquet").parts
    if len(p.parts) > len(tail) and p.parts[-len(tail) :] == tail:
        return Path(*p.parts[: -len(tail)]) / "attempts" / f"{cell_id}.jsonl"
    return p.with_name(p.name + ".attempts.jsonl")


def read_attempts(path: str | os.PathLike) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by a crash while appending: skip it, keep the rest
            continue
    return out


def append_attempt(path: str | os.PathLike, entry: dict[str, Any]) -> None:
    """Append one JSON line (O_APPEND: earlier lines are never rewritten)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def describe_exit(code: int) -> tuple[str, str]:
    """(error_type, text) of a shell exit status: 128+N = killed by signal N."""
    if code > 128 and code - 128 < 65:
        sig = code - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        why = {
            "SIGKILL": "usually the out-of-memory killer or a scheduler limit (memory, runtime); "
            "Snakemake retries it with attempt x memory and runtime",
            "SIGSEGV": "a crash in native code (torch, a driver)",
            "SIGABRT": "an abort in native code (torch, a driver)",
            "SIGTERM": "stopped by the scheduler (time limit, preemption) or by a user",
        }.get(name, "")
        return name, f"the job process was killed by {name} (exit status {code})" + (f": {why}" if why else "")
    return f"exit{code}", f"the job process exited with status {code} without writing its result row"


def cgroup_oom_kills(proc_root: str = "/proc/self", sys_root: str = "/sys/fs/cgroup") -> int | None:
    """oom_kill count of this process's cgroup (v2 memory.events), None if unknown. Under Slurm or
    HTCondor the cgroup is the job's own, so > 0 means the kernel's OOM killer hit this job."""
    try:
        lines = Path(proc_root, "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":  # cgroup v2
            ev = Path(sys_root + parts[2].rstrip("/"), "memory.events")
            try:
                for e in ev.read_text().splitlines():
                    k, _, v = e.partition(" ")
                    if k == "oom_kill":
                        return int(v)
            except (OSError, ValueError):
                return None
    return None


def _log_tail(log: str | None) -> str:
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_CHARS))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def earlier_errors(entries: list[dict[str, Any]], before: int) -> str:
    """'attempt 1: SIGKILL: ...' lines of the attempts before ``before`` (for the final row)."""
    lines = [
        f"attempt {e.get('attempt')}: {e.get('error_type')}: {e.get('error', '')}"
        for e in entries
        if (e.get("attempt") or 0) < before
    ]
    return "\n".join(lines)


def record_failure(
    spec: CellSpec, out: str, exit_code: int, attempt: int = 1, retries: int = 0, log: str | None = None
) -> int:
    """Handle a run-cell that ended with ``exit_code`` != 0; returns the exit code for the job."""
    if exit_code in PASS_THROUGH:
        return exit_code
    cell = spec.cell
    hist = attempts_path(out, cell.file_id)
    etype, text = describe_exit(exit_code)
    kills = cgroup_oom_kills() if etype == "SIGKILL" else None
    status = schema.STATUS_OOM if kills else schema.STATUS_FAILED
    if kills:
        text += f"; the job's cgroup counts {kills} OOM kill(s) (memory.events)"
    last = attempt > retries
    tail = _log_tail(log)
    append_attempt(
        hist,
        {
            "attempt": attempt,
            "at": datetime.now(UTC).isoformat(),
            "host": socket.gethostname(),
            "exit_code": exit_code,
            "status": status,
            "error_type": etype,
            "error": text,
            "log_tail": tail,
            "retried": not last,
        },
    )
    if Path(out).exists():  # the row was written before the process died: keep it, never overwrite
        logger.info("%s: %s, after its result row was written; the row is kept", cell.id, text)
        return 0
    if not last:
        left = retries - attempt + 1
        logger.info(
            "%s: attempt %d: %s; recorded in %s; %d retr%s left",
            cell.id,
            attempt,
            text,
            hist,
            left,
            "y" if left == 1 else "ies",
        )
        return exit_code if 0 < exit_code < 256 else 1
    earlier = earlier_errors(read_attempts(hist), attempt)
    msg = text + (f"\nearlier attempts:\n{earlier}" if earlier else "") + (f"\nlog tail:\n{tail}" if tail else "")
    row = {
        **schema.empty_row(),
        **identity_columns(spec, attempt),
        "hostname": socket.gethostname(),
        "finished_at": datetime.now(UTC),
        "status": status,
        "error_type": etype,
        "error_message": msg[:2000],
    }

    write_table(schema.to_table([row]), out)
    logger.info("%s: %s (%s) on the last attempt (%d); recorded in %s", cell.id, status, etype, attempt, out)
    return 0
