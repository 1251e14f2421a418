"""The hardware table (``config/hardware.yaml``, config key ``report.hardware_file``): two kinds of
facts about the machines jobs run on, in one file.

- **Embodied carbon, per site** (top-level keys = site names of config/sites.yaml):
  ``<site>: {cpu_node: {embodied_kg_co2e, lifetime_years, source}, gpu_node: {...}}``, read by the
  report's SCI (docs/metrics.md). Written by hand.
- **CPU power calibrations, per CPU model** (the reserved top-level key ``cpu_calibrations``):
  ``cpu_calibrations: {"<CPU model string of /proc/cpuinfo>": {package: {...}, dram: {...}, ...}}``,
  written by ``joulegrid calibrate`` (docs/measurement.md, "Calibrating a CPU model") and used by
  the estimate meter on hosts of that CPU model without readable counters
  (``meters/calibration.py``).

The file is checked against ``workflow/schemas/hardware.schema.yaml`` (the sites' entries; each
calibration by ``check_calibration``) with the schema machinery of joulegrid.base (``schema_problem``).

``write_calibration`` rewrites the ``cpu_calibrations`` section only: every other line of the file
(the sites' entries, comments, their order) stays byte for byte, and the result is checked by parsing
it before it atomically replaces the file. Pure Python (yaml), no torch.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .base import REPO_ROOT, ConfigError, resolve_path, schema_problem

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "hardware.schema.yaml"
CALIBRATIONS = "cpu_calibrations"  # the reserved top-level key; a site cannot be called that
DEFAULT_FILE = "config/hardware.yaml"

# A calibration entry: the keys a model needs are checked; informational keys are known by name so
# that a typo (idle_W) is an error, not a silently ignored value.
_ENTRY_KEYS = {
    "package",
    "dram",
    "host",
    "calibrated_at",
    "joulegrid_version",
    "logical_cpus",
    "threads_per_core",
    "sockets",
    "mem_total_gb",
    "holdout_rmse_w",
    "holdout_max_rel_err",
    "ladder",
    "steps",
    "notes",
    "previous",
    "source",
}
_DOMAIN_KEYS = {
    "idle_w",
    "idle_w_se",
    "w_per_busy_cpu",
    "w_per_busy_cpu_se",
    "w_per_gb",
    "w_per_gb_fit",
    "w_per_gb_se",
    "idle_used_gb",
    "holdout_rmse_w",
    "holdout_max_rel_err",
    "rmse_w",
}


class HardwareError(ConfigError):
    """The hardware table cannot be read or written (names the file, the key and the fix)."""


@dataclass
class HardwareTable:
    path: Path
    sites: dict[str, Any] = field(default_factory=dict)  # site -> {cpu_node: ..., gpu_node: ...}
    calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)  # CPU model -> calibration entry


def resolve(path: str | os.PathLike | None = None, base_dir: str | os.PathLike = ".") -> Path:
    """The table's path: a config path resolved as base.resolve_path does (default config/hardware.yaml)."""
    return resolve_path(path or DEFAULT_FILE, Path(base_dir))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_calibration(model: str, entry: Any, where: str) -> dict[str, Any]:
    """One calibration entry, checked (HardwareError names the key and the fix)."""
    at = f"{where}: {CALIBRATIONS}[{model!r}]"
    if not isinstance(model, str) or not model.strip():
        raise HardwareError(
            f"{where}: {CALIBRATIONS} keys are CPU model strings (as /proc/cpuinfo 'model name'), got {model!r}"
        )
    if not isinstance(entry, dict):
        raise HardwareError(
            f"{at}: expected a mapping with package: {{idle_w, w_per_busy_cpu, ...}}, got {entry!r}. "
            "Fix: write it with `joulegrid calibrate`, or follow docs/configuration.md"
        )
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise HardwareError(f"{at}: unknown key(s) {sorted(unknown)}. Fix: use {', '.join(sorted(_ENTRY_KEYS))}")
    if "package" not in entry:
        raise HardwareError(
            f"{at}: no package: block (the CPU package model). Fix: run `joulegrid calibrate` on a host of this CPU "
            "model"
        )
    for dom in ("package", "dram"):
        d = entry.get(dom)
        if d is None and dom == "dram":
            continue
        if not isinstance(d, dict):
            raise HardwareError(f"{at}.{dom}: expected a mapping of idle_w, w_per_busy_cpu, ... got {d!r}")
        unknown = set(d) - _DOMAIN_KEYS
        if unknown:
            raise HardwareError(
                f"{at}.{dom}: unknown key(s) {sorted(unknown)}. Fix: use {', '.join(sorted(_DOMAIN_KEYS))}"
            )
        for k in ("idle_w", "w_per_busy_cpu"):
            if not _number(d.get(k)) or d[k] < 0:
                raise HardwareError(f"{at}.{dom}.{k}: {d.get(k)!r} is not a usable power. Fix: a number of watts >= 0")
        for k, v in d.items():
            if v is not None and not _number(v):
                raise HardwareError(f"{at}.{dom}.{k}: {v!r} is not a number. Fix: a number, or null")
        if d.get("w_per_gb") is not None and d.get("idle_used_gb") is None:
            raise HardwareError(f"{at}.{dom}: w_per_gb needs idle_used_gb (the used memory its idle_w was measured at)")
    for k in ("holdout_rmse_w", "holdout_max_rel_err", "mem_total_gb"):
        if entry.get(k) is not None and (not _number(entry[k]) or entry[k] < 0):
            raise HardwareError(f"{at}.{k}: {entry[k]!r} is not a number >= 0")
    for k in ("logical_cpus", "sockets", "threads_per_core"):
        if entry.get(k) is not None and (not isinstance(entry[k], int) or isinstance(entry[k], bool) or entry[k] < 1):
            raise HardwareError(f"{at}.{k}: {entry[k]!r} is not a whole number >= 1")
    if entry.get("previous") is not None and not isinstance(entry["previous"], list):
        raise HardwareError(f"{at}.previous: expected a list of earlier calibrations")
    return entry


def _plain(v: Any) -> Any:
    """YAML's dates and times (an unquoted calibrated_at) as ISO text: the jobs' settings are JSON."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return v


def parse(data: Any, where: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(site entries, calibrations) of a loaded table, checked."""
    if data is None:
        return {}, {}
    problem = schema_problem(data, SCHEMA_PATH, where)  # the sites' entries and the layout
    if problem:
        raise HardwareError(problem)
    cals = data.get(CALIBRATIONS) or {}
    for model, entry in cals.items():
        check_calibration(model, entry, where)
    sites = {k: v for k, v in data.items() if k != CALIBRATIONS}
    return sites, {m: _plain(e) for m, e in cals.items()}


def read(path: str | os.PathLike) -> HardwareTable:
    """The table at path (empty if the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return HardwareTable(p)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise HardwareError(f"{p} is not valid YAML: {e}") from None
    sites, cals = parse(data, str(p))
    return HardwareTable(p, sites, cals)


def for_jobs(calibrations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a job needs of the calibrations (the model, its error, where it came from): without the
    ladder's steps and earlier calibrations, so that a job's settings stay small."""
    return {
        m: {k: v for k, v in e.items() if k not in ("steps", "previous", "ladder", "notes")}
        for m, e in calibrations.items()
    }


def config_calibrations(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, dict[str, Any]]:
    """The calibrations of the table a validated config names (report.hardware_file), for the jobs."""
    hw = (config.get("report") or {}).get("hardware_file") or DEFAULT_FILE
    return for_jobs(read(resolve(hw, base_dir)).calibrations)


# ------------------------------------------------------------------ writing the calibrations section
_TOP_KEY = re.compile(r"^[^\s#-]")  # a line at column 0 that is neither a comment nor a list item


def _section(lines: list[str]) -> tuple[int, int] | None:
    """[start, end) of the cpu_calibrations section: its key line up to the next top-level key, less the
    blank and comment lines just before that key (they belong to it)."""
    start = next((i for i, ln in enumerate(lines) if re.match(rf"^{CALIBRATIONS}\s*:", ln)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
    while (
        end - 1 > start
        and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#"))
        and not lines[end - 1].startswith((" ", "\t"))
    ):
        end -= 1
    return start, end


SECTION_HEADER = (
    "# CPU power calibrations by CPU model (the 'model name' of /proc/cpuinfo), written by `joulegrid calibrate`\n"
    "# on a host with readable RAPL; the estimate meter uses them on hosts of the same CPU model without readable\n"
    '# counters (docs/measurement.md, "Calibrating a CPU model"). Comments inside this section are not kept.\n'
)


def render(calibrations: dict[str, dict[str, Any]]) -> str:
    """The section's text: block style, the ladder's steps one line each."""
    if not calibrations:
        return f"{CALIBRATIONS}: {{}}\n"
    out = [f"{CALIBRATIONS}:\n"]
    for model, entry in calibrations.items():
        rest = {k: v for k, v in entry.items() if k != "steps"}
        body = yaml.safe_dump({model: rest}, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
        out += [f"  {ln}\n" for ln in body.splitlines()]
        if entry.get("steps") is not None:
            out.append("    steps:\n")
            for s in entry["steps"]:
                out.append(
                    "    - " + yaml.safe_dump(s, sort_keys=False, default_flow_style=True, width=10000).strip() + "\n"
                )
    return "".join(out)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time (two calibrations finishing together on a shared checkout)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_calibration(path: str | os.PathLike, cpu_model: str, entry: dict[str, Any], replace: bool = False) -> Path:
    """Save `entry` as the calibration of `cpu_model` in the table at `path` (created if missing).

    An existing calibration of the same CPU model is replaced only with `replace`, and then kept in the
    new entry's ``previous`` list (nothing measured is lost). Nothing outside the cpu_calibrations
    section changes: the new text is parsed and compared with the old before it atomically replaces
    the file (keeping its permissions and, when run as root, its owner)."""
    from .io import atomic_path

    p = Path(path)
    with _locked(p.parent):
        old_text = p.read_text() if p.is_file() else ""
        try:
            old_data = yaml.safe_load(old_text) if old_text else None
        except yaml.YAMLError as e:
            raise HardwareError(
                f"{p} is not valid YAML ({e}): nothing written. Fix: repair the file, then calibrate again"
            ) from None
        _, cals = parse(old_data, str(p))
        entry = copy.deepcopy(entry)
        if cpu_model in cals:
            if not replace:
                when = cals[cpu_model].get("calibrated_at", "?")
                raise HardwareError(
                    f"{p} already has a calibration of {cpu_model!r} (from {when}, host "
                    f"{cals[cpu_model].get('host', '?')}): nothing written. Fix: pass --replace to make the new one "
                    "current (the old one is kept under 'previous')"
                )
            prev = dict(cals[cpu_model])
            earlier = prev.pop("previous", None) or []
            prev.pop("steps", None)  # the old ladder's steps are not kept, its model and error are
            entry["previous"] = [prev] + list(earlier)
        check_calibration(cpu_model, entry, "the new calibration")
        new_cals = {**cals, cpu_model: entry}
        lines = old_text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        sec = _section(lines)
        if sec is None:
            lines += (["\n"] if lines and lines[-1].strip() else []) + [SECTION_HEADER, render(new_cals)]
        else:
            lines[sec[0] : sec[1]] = [render(new_cals)]
        new_text = "".join(lines)
        # the safety net: everything else must read back exactly as before
        new_data = yaml.safe_load(new_text)
        before = {k: v for k, v in (old_data or {}).items() if k != CALIBRATIONS}
        after = {k: v for k, v in (new_data or {}).items() if k != CALIBRATIONS}
        if before != after or (new_data or {}).get(CALIBRATIONS) != new_cals:
            raise HardwareError(
                f"{p}: rewriting its {CALIBRATIONS} section would change other entries: nothing written. "
                f"Fix: move the {CALIBRATIONS} section to the end of the file, then calibrate again"
            )
        st = p.stat() if p.exists() else None
        with atomic_path(p, suffix=".yaml") as tmp:
            Path(tmp).write_text(new_text)
            if st is not None:
                os.chmod(tmp, st.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.chown(tmp, st.st_uid, st.st_gid)
    return p
