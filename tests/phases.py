"""How the suite is split into a parallel and a serial phase (tests/README.md, "How the suite runs").

tests/run-tests.sh (what `make test` and CI run) calls pytest twice:

1. ``--phase parallel -n N --dist loadgroup``: every test that checks no measurement, on N pytest-xdist
   workers. Tests that share a module-scoped fixture (a results tree) stay on one worker, the tests of one
   cluster queue on one worker (groups ``slurm``, ``htcondor``: pytest_xdist_make_scheduler), and a test
   marked ``slurm``/``htcondor`` holds that cluster's lock while it runs, so the scheduler's slots are its own.
2. ``--phase serial``: the tests that check measurements (time, energy, CPU load of this host), one
   after the other with nothing else of the suite running: their figures are those of their own work.

Which phase a test belongs to:
- ``@pytest.mark.measure``: serial. Every test whose checks read what this host measured (a window's
  duration, a fit to the CPU load, a job's share of the node, energy against a fake node's rates).
- tests under tests/meters/ and tests/runner/ (SERIAL_DIRS), and tests in a module that uses the fake node
  (tests/meters/fake_node.py: counters that follow real CPU load): serial unless marked ``parallel``.
- ``@pytest.mark.parallel``: runs measuring jobs (real Snakemake or cluster cells) but checks only what
  holds beside other work (rows, files, statuses, identities such as "the node's joules in one bucket").
- anything else: parallel.

The check that keeps a measurement out of the parallel phase: a parallel test that is not marked
``parallel`` and whose run wrote a measured row (status ok, energy_j set; not a tests/synth.py fixture) in
a directory it created fails, naming the rows and the two marks to choose from. Measurements that leave
no row behind (meters used in-process) are the reason tests/meters/ and tests/runner/ are serial by
default; elsewhere they need the ``measure`` mark.

Plain ``pytest`` (no ``-n``) runs every test in one process, as before; ``pytest -n N`` without
``--phase`` runs the parallel phase only and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SERIAL_DIRS = ("meters", "runner")  # the energy tests: serial unless a test is marked parallel
CLUSTERS = ("slurm", "htcondor")  # marks = locks; acquired in this order
SYNTHETIC_METHOD = "synthetic-test-fixture"  # tests/synth.py rows say so
LOCK_DIR = Path(tempfile.gettempdir())
GROUPS_FILE = "joulegrid-xdist-groups.json"


def pytest_addoption(parser):
    parser.addoption(
        "--phase",
        choices=("all", "parallel", "serial"),
        default=None,
        help="joulegrid: run the tests of one phase (tests/phases.py): parallel = those that check no "
        "measurement (with -n N), serial = those that do, one at a time; all (default without -n) = every test",
    )


def _workers(config) -> int:
    """xdist's -n (auto/logical count as 1 until xdist resolves them); 0 without xdist."""
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) else int(n in ("auto", "logical"))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if config.getoption("--phase") == "serial" and _workers(config):
        raise pytest.UsageError("--phase serial runs one test at a time, with nothing beside it: leave out -n")
    # pytest -n N: keep module fixtures and cluster tests together (xdist's own default is --dist load: see
    # pytest_xdist_make_scheduler), and hand out the groups in the order collected (longest waits first)
    if _workers(config):
        if getattr(config.option, "dist", "no") == "no":
            config.option.dist = "loadgroup"
        config.option.loadscopereorder = False


def phase(config) -> str:
    chosen = config.getoption("--phase")
    if chosen:
        return chosen
    return "parallel" if _workers(config) or os.environ.get("PYTEST_XDIST_WORKER") else "all"


def is_serial(item) -> bool:
    """True for a test of the serial phase (the module docstring's rules)."""
    if item.get_closest_marker("measure"):
        return True
    if item.get_closest_marker("parallel"):
        return False
    if "FakeNode" in vars(getattr(item, "module", None) or object):  # tests/meters/fake_node.py: counters of real load
        return True
    try:
        rel = item.path.resolve().relative_to(TESTS)
    except ValueError:
        return False
    return len(rel.parts) > 1 and rel.parts[0] in SERIAL_DIRS


def _clusters(item) -> list[str]:
    return [c for c in CLUSTERS if item.get_closest_marker(c)]


def _file(item) -> str:
    return item.nodeid.split("::")[0]


def _module_scoped(item) -> bool:
    """Does the test use a fixture built once per module (or class): then its module stays on one worker."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info else ()
    return any(d[-1].scope in ("module", "class", "package") for d in defs if d)


def _group(item, module_groups: dict) -> str | None:
    if _module_scoped(item):
        return module_groups[_file(item)]
    return next(iter(_clusters(item)), None)


def _ranked_groups(items) -> dict[str, str]:
    """{nodeid: group} for the tests that must share a worker; sorts items so that the longest come first:
    cluster groups, then slow tests and groups, then the rest (each in collection order)."""
    # a module whose tests share a module-scoped fixture is one group: named after the first cluster one of
    # its tests uses (it queues with that cluster's tests), else after the module
    module_groups: dict[str, str] = {}
    for it in items:
        name = _file(it)
        if _clusters(it) and not module_groups.get(name, "").startswith(CLUSTERS):
            module_groups[name] = _clusters(it)[0]
        module_groups.setdefault(name, name)
    groups = {it.nodeid: g for it in items if (g := _group(it, module_groups))}
    slow = {groups.get(it.nodeid) for it in items if it.get_closest_marker("slow")}

    def rank(it) -> int:
        g = groups.get(it.nodeid)
        return 0 if g in CLUSTERS else 1 if (g in slow if g else it.get_closest_marker("slow")) else 2

    items.sort(key=rank)
    return groups


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    ph = phase(config)
    if ph != "all":
        keep = [it for it in items if is_serial(it) == (ph == "serial")]
        dropped = [it for it in items if is_serial(it) != (ph == "serial")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if ph == "parallel" and worker:
        # for the controller's scheduler (pytest_xdist_make_scheduler): every worker collects the same
        groups = _ranked_groups(items)
        out = config._tmp_path_factory.getbasetemp().parent / GROUPS_FILE  # the controller's basetemp
        tmp = out.with_name(f"{GROUPS_FILE}.{worker}")
        tmp.write_text(json.dumps(groups))
        tmp.replace(out)


@pytest.hookimpl(tryfirst=True)  # before xdist's own (firstresult)
def pytest_xdist_make_scheduler(config, log):
    """xdist's LoadScopeScheduling with our groups as its scopes: a group's tests go to one worker, in the
    order collected. (--dist loadgroup would do it through xdist_group marks, but pytest-xdist 3.8 tags them
    onto the node id in a way pytest 9.2 ignores: pytest-xdist issue 1386; the tests then spread out.)"""
    if phase(config) != "parallel" or config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    groups_file = config._tmp_path_factory.getbasetemp() / GROUPS_FILE

    class GroupScheduling(LoadScopeScheduling):
        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # written by the workers before they reported their collection
                self._groups = json.loads(groups_file.read_text()) if groups_file.is_file() else {}
            return self._groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def pytest_report_header(config):
    ph = phase(config)
    if ph == "all":
        return "joulegrid phase: all (every test, one at a time; tests/run-tests.sh runs a parallel and a serial phase)"
    extra = f", {_workers(config)} xdist workers" if ph == "parallel" and _workers(config) else ""
    return f"joulegrid phase: {ph}{extra} (tests/phases.py)"


# ------------------------------------------------------------------ cluster locks
@contextlib.contextmanager
def _locked(names: list[str]):
    """Hold the machine-wide lock of each named cluster (flock: released when the process dies)."""
    with contextlib.ExitStack() as stack:
        for name in names:
            f = stack.enter_context(open(LOCK_DIR / f"joulegrid-tests-{name}.lock", "a+"))
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ------------------------------------------------------------------ the measured-row check
_BUILT: list[Path] = []  # shared folders built by this process outside its basetemp (conftest.shared_run)


def built_here(path: Path) -> None:
    _BUILT.append(Path(path))


def _new_dirs(base: Path, before: set[str]) -> list[Path]:
    try:
        return [base / n for n in os.listdir(base) if n not in before]
    except OSError:
        return []


def measured_rows(dirs: list[Path], since: datetime) -> list[str]:
    """Run files under dirs holding a row measured since `since` (status ok with an energy figure; not a
    synthetic fixture row)."""
    import pyarrow.parquet as pq

    found = []
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if d not in (".snakemake", "__pycache__")]
            if "runs" not in Path(root).parts:
                continue
            for f in files:
                if not f.endswith(".parquet"):
                    continue
                path = os.path.join(root, f)
                try:
                    names = set(pq.read_schema(path).names)
                    if not {"status", "energy_j", "started_at", "energy_method"} <= names:
                        continue
                    t = pq.read_table(path, columns=["status", "energy_j", "started_at", "energy_method"])
                except Exception:  # noqa: BLE001  (not a row file: nothing measured)
                    continue
                for r in t.to_pylist():
                    started = r["started_at"]
                    if started is not None and started.tzinfo is None:
                        started = started.replace(tzinfo=UTC)
                    if (
                        r["status"] == "ok"
                        and r["energy_j"] is not None
                        and r["energy_method"] != SYNTHETIC_METHOD
                        and started is not None
                        and started >= since
                    ):
                        found.append(path)
                        break
    return found


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    config = item.config
    check = phase(config) == "parallel" and not item.get_closest_marker("parallel")
    if check:
        base = config._tmp_path_factory.getbasetemp()
        item._jg_before = (set(os.listdir(base)), datetime.now(UTC).replace(microsecond=0), base)
        _BUILT.clear()
    with _locked(_clusters(item)):
        t0 = _times_start()
        yield
        _times_record(item, t0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "teardown" or not hasattr(item, "_jg_before"):
        return
    before, since, base = item._jg_before
    rows = measured_rows(_new_dirs(base, before) + _BUILT, since)
    if rows and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} ran in the parallel phase and measured: {len(rows)} run file(s) with a measured row, "
            f"e.g. {rows[0]}.\nMark it (tests/README.md, 'How the suite runs'):\n"
            "  @pytest.mark.measure   if it checks a measured value (time, energy, CPU share): it then runs alone;\n"
            "  @pytest.mark.parallel  if it checks only what holds beside other tests (rows, files, statuses)."
        )


# ------------------------------------------------------------------ per-test timings (JOULEGRID_TEST_TIMES)
FORKED_CPU = [0.0]  # CPU seconds of the snakemake commands this process forked (conftest.ForkServer adds to it)


def _cpu_now() -> tuple[float, float, float, float]:
    """(wall clock, this process's CPU, its reaped children's CPU, the forked snakemakes' CPU), in seconds."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time(), me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, FORKED_CPU[0]


def _host_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host since boot (/proc/stat's cpu line): every process, any user."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def _times_start():
    return (_cpu_now(), _host_busy()) if os.environ.get("JOULEGRID_TEST_TIMES") else None


def _times_record(item, start) -> None:
    """One JSON line per test in $JOULEGRID_TEST_TIMES: its setup-to-teardown wall time, the CPU time of the
    test process and of the processes it waited for (snakemake, chromium, pack-env; not the clusters' jobs, which
    their daemons start), the worker, and the host's busy share while it ran (all processes: a measure of load)."""
    if start is None:
        return
    (w0, s0, c0, f0), (b0, t0) = start
    w1, s1, c1, f1 = _cpu_now()
    b1, t1 = _host_busy()
    rec = {
        "test": item.nodeid,
        "phase": phase(item.config),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "-"),
        "start": round(w0, 2),
        "end": round(w1, 2),
        "wall_s": round(w1 - w0, 2),
        "cpu_s": round((s1 - s0) + (c1 - c0) + (f1 - f0), 2),
        "cpu_self_s": round(s1 - s0, 2),
        "cpu_children_s": round(c1 - c0, 2),
        "cpu_forked_s": round(f1 - f0, 2),
        "host_busy": round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else None,
        "slow": bool(item.get_closest_marker("slow")),
        "clusters": _clusters(item),
    }
    with open(os.environ["JOULEGRID_TEST_TIMES"], "a") as f:  # one short line per write: appends do not interleave
        f.write(json.dumps(rec) + "\n")


# ------------------------------------------------------------------ the phase's timing in the log
_T0: list[float] = []
_OUTCOMES: dict[str, str] = {}
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_sessionstart(session):
    _T0.append(time.monotonic())


def pytest_runtest_logreport(report):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    out = "failed" if report.outcome == "failed" else report.outcome
    if report.when == "call" or out != "passed":
        prev = _OUTCOMES.get(report.nodeid, "passed")
        _OUTCOMES[report.nodeid] = max(prev, out, key=_RANK.__getitem__)
    else:
        _OUTCOMES.setdefault(report.nodeid, "passed")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get("PYTEST_XDIST_WORKER") or not _T0:
        return
    ph = phase(config)
    wall = time.monotonic() - _T0[0]
    counts = {k: sum(1 for v in _OUTCOMES.values() if v == k) for k in _RANK}
    workers = _workers(config) if ph == "parallel" else 0
    line = (
        f"joulegrid phase {ph}: {len(_OUTCOMES)} tests ({counts['passed']} passed, {counts['skipped']} skipped, "
        f"{counts['failed']} failed) in {wall:.0f} s" + (f" on {workers} xdist workers" if workers else "")
    )
    terminalreporter.write_sep("=", line)
    out = os.environ.get("JOULEGRID_PHASE_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"phase": ph, "tests": len(_OUTCOMES), **counts, "wall_s": round(wall, 1),
                                "workers": workers}) + "\n")  # fmt: skip
