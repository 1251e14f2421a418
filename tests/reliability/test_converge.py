"""One run converges (issue 28; docs/reliability.md, guarantee 10): after what a user does to a results
tree, a single `snakemake` brings the summary and the report up to date, and a `snakemake -n` after it
plans nothing.

Randomized, seeded and bounded: SEQUENCES sequences of 1 to MAX_ACTIONS real user actions (copy
another site's runs with or without keeping their times, re-prepare or touch the dataset, `cp -r` of
the whole project (every file newer, in the copy's order), `joulegrid import`, change a report
setting, the seed or the grid's targets (repeats), delete the report, the summary or results/.stamps/,
kill -9 during a run then --unlock, `joulegrid remeasure`), each sequence on a copy of one
module-scoped results tree (the tiny grid measured with SEED1, then with SEED0: the current
configuration), then one `snakemake`. A third seed or more repeats measure new cells; the other
actions measure only what they remove. Checked after it:

- the summary holds exactly the current configuration's run files (every site), one row each, and
  summary.other-configs.parquet the rest; every cell of the current grid has its run file;
- the report's counts (runs, cells, other configurations) equal the summary's, with the current η;
- no measured row was deleted or overwritten: every run file seen during the sequence is still
  there, byte for byte, or moved to results/archive/;
- `snakemake -n` plans nothing.

The one documented exception (docs/reliability.md): a run whose Snakemake forced a job before rule
measure's ancient() edge (here: --rerun-incomplete after a kill -9 in the instant between such a
job's output and its record) ends with one line naming the next command; the test accepts it only
after a kill, runs that command once, and checks the same.

The dataset has 12,000 rows (1.2 MB): Snakemake compares files up to 1 MB by checksum before their
times (--max-checksum-file-size), which would hide what a newer dataset does to the DAG.

A failing sequence is printed with its seed and actions. Replay it, or any seeds:
    JOULEGRID_CONVERGE_SEEDS=2807,2830 python -m pytest -q -s tests/reliability/test_converge.py -k randomized
(-s prints each sequence with its time and its Snakemake CPU time.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BIN, REPO, SNAKEFILE, TINY, deep_merge, subprocess_env

from joulegrid import config as C
from joulegrid import grid as G
from joulegrid import spec as SP
from joulegrid.snakefile import next_command

SEQUENCES = 18  # ~13 s of CPU each (most re-render the report): ~2.2 min of a 2-core machine
MAX_ACTIONS = 5
MASTER_SEED = 2800  # sequence i has seed MASTER_SEED + i
WORKERS = 2  # sequences run two at a time (each in its own tree)
ROWS = 12_000  # > 1 MB of dataset: see the module's docstring
SEED0, SEED1, SEED2 = 1, 7, 11  # the prepared tree's seed, an earlier configuration's (measured), a new one
BASE = deep_merge(TINY, {"seed": SEED0, "workloads": {"baler_ae": {"rows": ROWS}}, "measure": {"meters": ["estimate"]}})
DATASET = f"resources/datasets/jets/n{ROWS}.npz"
SITE_COPY, SITE_IMPORT = "othersite", "impsite"
NEXT_LINE = re.compile(r"joulegrid: Snakemake ran (.*) and did not check .* Next: (snakemake.*)$", re.M)
# the trees measure real cells (estimate meter); the checks are of files, summaries and plans: true beside other work
pytestmark = pytest.mark.parallel
UPSTREAM = {"prepare_dataset", "train_reference", "cell_inputs"}  # the jobs before rule measure's ancient() edge


# ------------------------------------------------------------------ Snakemake, started cheaply
class Snakemake:
    """`snakemake -s SNAKEFILE --directory W --configfile W/config.yaml --cores 2 ARGS` through one fork
    server (snakemake_forks.py): every command a fresh process that did not pay the import."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("snakemake_forks.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        self.lock = threading.Lock()
        self.cpu_s = 0.0  # CPU time of the commands it ran, their jobs included

    def _ask(self, req: dict) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())

    @staticmethod
    def argv(work: Path, *args: str) -> list[str]:
        return [
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(work),
            "--configfile",
            str(work / "config.yaml"),
            "--cores",
            "2",
            *args,
        ]

    def start(self, work: Path, *args: str, log: Path, argv: list[str] | None = None) -> int:
        argv = self.argv(work, *args) if argv is None else argv
        return self._ask({"op": "start", "argv": argv, "cwd": str(work), "log": str(log)})["pid"]

    def done(self, pid: int) -> bool:
        """Whether the command has exited (a zombie until wait: its process state is Z)."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
        except (FileNotFoundError, IndexError):
            return True

    def wait(self, pid: int) -> int:
        reply = self._ask({"op": "wait", "pid": pid})
        self.cpu_s += reply["cpu_s"]
        return reply["rc"]

    def run(self, work: Path, *args: str, log: Path, argv: list[str] | None = None) -> tuple[int, str]:
        rc = self.wait(self.start(work, *args, log=log, argv=argv))
        return rc, log.read_text(errors="replace")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ------------------------------------------------------------------ the prepared trees
def _as_site(src_runs: Path, dst_runs: Path, site: str) -> None:
    """The run files of src_runs/local as another site's: site and cell_id rewritten, a run_id of their
    own (derived from the path, so that every copy of the tree is the same), the source's times kept."""
    for f in map(Path, G.run_files(src_runs / "local")):
        t = pq.read_table(f)
        rel = f.relative_to(src_runs / "local")
        for name, value in (("site", site), ("run_id", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{site}/{rel}")))):
            t = t.set_column(
                t.column_names.index(name),
                t.schema.field(name),
                pa.array([value] * t.num_rows, t.schema.field(name).type),
            )
        cid = pc.replace_substring_regex(
            t.column("cell_id"), pattern=r"^[^/]+/", replacement=f"{site}/", max_replacements=1
        )
        t = t.set_column(t.column_names.index("cell_id"), t.schema.field("cell_id"), cid)
        out = dst_runs / site / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, out)
        out.chmod(0o444)
        shutil.copystat(f, out)


def _run_trees(*works: Path, target: str = "all") -> None:
    """Real `snakemake` runs of several trees at once (the prepared trees; 2 cores: one measurement each)."""
    procs = []
    for w in works:
        cmd = [str(BIN / "snakemake"), *Snakemake.argv(w), target]
        procs.append(
            (
                w,
                subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env()
                ),
            )
        )
    for w, p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, f"{w}:\n{out[-4000:]}"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tree every sequence starts from: the tiny grid measured with SEED1, then with SEED0 (the current
    configuration; SEED1's runs are another configuration's), and the other sites' runs (both configurations)."""
    root = tmp_path_factory.mktemp("converge")
    work, earlier = root / "base", root / "earlier"
    for w, seed in ((work, SEED0), (earlier, SEED1)):
        w.mkdir()
        (w / "config.yaml").write_text(yaml.safe_dump({**BASE, "seed": seed}))
    _run_trees(work, earlier, target="cells")  # measured side by side, merged as if measured here in turn
    for sub in ("runs", "models", ".grid"):
        shutil.copytree(earlier / "results" / sub, work / "results" / sub, dirs_exist_ok=True)
    _run_trees(work)
    assert (work / DATASET).stat().st_size > 1_000_000
    runs = work / "results" / "runs"
    assert len(G.run_files(runs)) == 4
    _as_site(runs, root / "pool" / "copy", SITE_COPY)
    _as_site(runs, root / "pool" / "imp" / "results" / "runs", SITE_IMPORT)
    shutil.rmtree(work / ".snakemake" / "log", ignore_errors=True)
    return {
        "work": work,
        "copy": root / "pool" / "copy" / SITE_COPY,
        "import": root / "pool" / "imp" / "results",
        "root": root,
    }


@pytest.fixture(scope="module")
def server():
    s = Snakemake()
    yield s
    s.close()


# ------------------------------------------------------------------ what a user does
KINDS = [
    "copy_keep_times",
    "copy_new_times",
    "touch_data",
    "reprepare_data",
    "cp_project",
    "import",
    "report_setting",
    "seed",
    "repeats",
    "delete_report",
    "delete_summary",
    "delete_stamps",
    "kill",
    "remeasure",
]


def draw(seed: int) -> list[tuple[str, object]]:
    """The actions of sequence `seed`: 1 to MAX_ACTIONS (kind, parameter), drawn up front."""
    rng = random.Random(seed)
    out = []
    for _ in range(rng.randint(1, MAX_ACTIONS)):
        kind = rng.choice(KINDS)
        param = {
            "report_setting": lambda: rng.choice([0.25, 0.5, 0.75]),
            "seed": lambda: rng.choice([SEED0, SEED1, SEED2]),
            "repeats": lambda: rng.choice([1, 2]),
            "kill": lambda: round(rng.uniform(0.0, 4.0), 2),
            "remeasure": lambda: rng.choice(["local/*/infer/*", "local/*/train/*", "*/baler_ae/*/*/*/*/r0"]),
        }.get(kind, lambda: None)()
        out.append((kind, param))
    return out


def _copy_site(src: Path, dst: Path, keep_times: bool) -> None:
    """Like rsync -a (keep_times: identical files left alone) or cp -r over an earlier copy (new times):
    each file replaced by a rename, never written in place (run files are read-only)."""
    for f in src.rglob("*.parquet"):
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if keep_times and out.exists() and out.stat().st_mtime_ns == f.stat().st_mtime_ns:
            continue
        tmp = out.with_name(f".{out.name}.copy")
        (shutil.copy2 if keep_times else shutil.copy)(f, tmp)
        os.replace(tmp, out)


def _kill_tree(pid: int) -> None:
    """kill -9 of Snakemake and every job it started (a lost node), as test_resume does."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in procs:  # anything that left the session
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _text(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def jg(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "joulegrid"), *args], cwd=work, capture_output=True, text=True, env=subprocess_env(), timeout=300
    )


class Sequence:
    def __init__(self, seed: int, base: dict, server: Snakemake):
        self.seed, self.base, self.sm = seed, base, server
        self.actions = draw(seed)
        self.work = base["root"] / f"seq{seed}"
        self.cfg = copy.deepcopy(BASE)
        self.seen: dict[str, str] = {}  # run file (relative to results) -> sha256: every one seen
        self.killed = False
        self.notes: list[str] = []
        self.logs = 0
        self.timing = "failed"

    def log(self, name: str) -> Path:
        self.logs += 1
        return self.work / f"smk-{self.logs:02d}-{name}.log"

    def describe(self) -> str:
        return f"seed={self.seed} actions={self.actions}"

    # -------------------------------------------------------------- state
    @property
    def results(self) -> Path:
        return self.work / "results"

    def note_runs(self) -> None:
        for f in map(Path, G.run_files(self.results / "runs")):
            self.seen.setdefault(f.relative_to(self.results).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest())

    def write_config(self) -> None:
        (self.work / "config.yaml").write_text(yaml.safe_dump(self.cfg))

    # -------------------------------------------------------------- actions
    def apply(self, kind: str, param) -> None:
        r = self.results
        if kind in ("copy_keep_times", "copy_new_times"):
            _copy_site(self.base["copy"], r / "runs" / SITE_COPY, keep_times=kind == "copy_keep_times")
        elif kind == "touch_data":
            os.utime(self.work / DATASET)
        elif kind == "reprepare_data":
            p = jg(self.work, "prepare-data", "--dataset", "jets", "--rows", str(ROWS), "--out", DATASET)
            assert p.returncode == 0, p.stderr
        elif kind == "cp_project":  # cp -r of the whole project: every file (.snakemake/ too) with a new time
            moved = self.work.with_name(f"{self.work.name}-cp")
            shutil.copytree(self.work, moved, symlinks=True, copy_function=shutil.copy)
            shutil.rmtree(self.work)
            moved.rename(self.work)
        elif kind == "import":
            p = jg(self.work, "import", str(self.base["import"]))
            assert p.returncode == 0, p.stderr
        elif kind == "report_setting":
            self.cfg.setdefault("report", {})["eta"] = param
            self.write_config()
        elif kind == "seed":
            self.cfg["seed"] = param
            self.write_config()
        elif kind == "repeats":
            self.cfg["grid"]["repeats"] = param
            self.write_config()
        elif kind == "delete_report":
            shutil.rmtree(r / "report", ignore_errors=True)
        elif kind == "delete_summary":
            (r / "summary.parquet").unlink(missing_ok=True)
        elif kind == "delete_stamps":
            shutil.rmtree(r / ".stamps", ignore_errors=True)
        elif kind == "kill":
            log = self.log("killed")
            pid = self.sm.start(self.work, log=log)
            # once a job runs (or the run ended: nothing to do), param seconds later: a kill during a job
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not re.search(r"^(local)?rule ", _text(log), re.M):
                if self.sm.done(pid):
                    break
                time.sleep(0.1)
            time.sleep(param)
            _kill_tree(pid)
            self.sm.wait(pid)
            self.killed = True
            self.note_runs()
            rc, out = self.sm.run(self.work, "--unlock", log=self.log("unlock"))
            assert rc == 0, out[-3000:]
        elif kind == "remeasure":
            p = jg(self.work, "remeasure", param)
            if "exists already" in p.stderr:  # two archives in one second: the message says wait
                time.sleep(1.1)
                p = jg(self.work, "remeasure", param)
            assert p.returncode == 0 or "matches" in p.stderr, p.stderr
        else:
            raise AssertionError(kind)
        self.note_runs()

    # -------------------------------------------------------------- the run and the checks
    def run(self) -> None:
        t0, cpu0 = time.monotonic(), self.sm.cpu_s
        shutil.copytree(self.base["work"], self.work, symlinks=True)
        self.note_runs()
        for kind, param in self.actions:
            self.apply(kind, param)
        rc, out = self.sm.run(self.work, log=self.log("run"))
        assert rc == 0, f"snakemake failed:\n{out[-4000:]}"
        self.note_runs()
        m = NEXT_LINE.search(out)
        if m:
            # the documented exception only: Snakemake forced a job before the ancient() edge after a kill
            ran = {s.split(" ")[0] for s in m.group(1).split(", ")}
            assert self.killed and ran <= UPSTREAM and "(forced)" in m.group(1), f"unexpected: {m.group(0)}"
            assert m.group(2) == next_command(["snakemake", *self.sm.argv(self.work)]), m.group(2)
            self.notes.append(f"seed {self.seed}: {m.group(0)}")
            rc, out = self.sm.run(self.work, log=self.log("next"))
            assert rc == 0 and not NEXT_LINE.search(out), out[-4000:]
            self.note_runs()
        self.check()
        rc, out = self.sm.run(self.work, "-n", log=self.log("dry"))
        assert rc == 0 and "Nothing to be done" in out, f"a second run would do more:\n{out[-4000:]}"
        shutil.rmtree(self.work)
        self.timing = f"{time.monotonic() - t0:5.1f} s, Snakemake CPU {self.sm.cpu_s - cpu0:5.1f} s"

    def check(self) -> None:
        import polars as pl

        r = self.results
        cfg, sites = C.load([self.work / "config.yaml"], base_dir=REPO)
        spec = SP.SpecBuilder(cfg, sites)
        current = spec.config_hash("baler_ae")
        # every cell of the current grid is measured
        missing = [p for p in G.expand(cfg, spec.hashes()).paths(str(r)) if not Path(p).is_file()]
        assert not missing, f"cells of the grid not measured: {missing}"
        # the summary: exactly the current configuration's run files; the other configurations' file: the rest
        files = [Path(f) for f in G.run_files(r / "runs")]
        ids = {f: pq.read_table(f, columns=["run_id"]).column("run_id")[0].as_py() for f in files}
        want = sorted(ids[f] for f in files if f.stem.endswith(f"-{current}"))
        rest = sorted(ids[f] for f in files if not f.stem.endswith(f"-{current}"))
        summary = pl.read_parquet(r / "summary.parquet")
        other = pl.read_parquet(r / "summary.other-configs.parquet")
        assert sorted(summary["run_id"]) == want, "the summary is not the current configuration's run files"
        assert sorted(other["run_id"]) == rest, "summary.other-configs.parquet is not the other run files"
        # the report: its counts are the summary's, with the current report setting
        page = (r / "report" / "index.html").read_text()
        cells = {
            (f.parent.relative_to(r / "runs").as_posix(), current) for f in files if f.stem.endswith(f"-{current}")
        }
        eta = cfg["report"]["eta"]
        assert f"{len(want)} run(s) · {len(cells)} cell(s) · η = {eta:g}" in page, "the report's counts or η are stale"
        if rest:
            assert f"Other configurations ({len(rest)} run(s))" in page
        else:
            assert "id='other-configs'" not in page
        # nothing measured was lost: every run file seen is in place, or archived, byte for byte
        archived = {hashlib.sha256(f.read_bytes()).hexdigest() for f in (r / "archive").rglob("*.parquet")}
        for rel, digest in self.seen.items():
            p = r / rel
            here = p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == digest
            assert here or digest in archived, f"{rel} was deleted or overwritten"


def test_next_command_drops_the_forcing_options():
    argv = [
        "/v/bin/snakemake",
        "-R",
        "cell_inputs",
        "prepare_dataset",
        "--cores",
        "2",
        "-f",
        "--configfile",
        "c.yaml",
        "--forcerun=train_reference",
        "-F",
        "--forceall",
        "--force",
        "--forcerun",
        "all",
    ]
    assert next_command(argv) == "snakemake --cores 2 --configfile c.yaml"
    assert next_command(["snakemake", "--config", "seed=7 x", "-n"]) == "snakemake --config 'seed=7 x' -n"


def _tree(base: dict, tmp_path: Path) -> Path:
    work = tmp_path / "w"
    shutil.copytree(base["work"], work, symlinks=True)
    _copy_site(base["copy"], work / "results" / "runs" / SITE_COPY, keep_times=True)  # old times, as rsync -a
    return work


def _sites_in_summary(work: Path) -> list[str]:
    import polars as pl

    return sorted(set(pl.read_parquet(work / "results" / "summary.parquet")["site"]))


@pytest.mark.slow
def test_newer_dataset_and_copied_site_merge_in_one_run(base, server, tmp_path):
    """Issue 28's reproduction: another site's runs copied in, the dataset newer (re-prepared, cp -r of the
    project), one run: the summary and report hold both sites (before the fix: only cell_inputs ran)."""
    work = _tree(base, tmp_path)
    os.utime(work / DATASET)
    rc, out = server.run(work, log=tmp_path / "run.log")
    assert rc == 0 and "rule aggregate" in out and "rule measure" not in out and "rule cell_inputs" not in out, out
    assert _sites_in_summary(work) == ["local", SITE_COPY]
    rc, out = server.run(work, "-n", log=tmp_path / "dry.log")
    assert rc == 0 and "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_forced_job_before_measure_names_the_next_command(base, server, tmp_path):
    """The documented exception: Snakemake forced a job before rule measure's ancient() edge (here -R cell_inputs)
    and did not check the jobs after it; the run says so in one line naming the next command, which finishes."""
    work = _tree(base, tmp_path)
    rc, out = server.run(work, "-R", "cell_inputs", log=tmp_path / "forced.log")
    lines = list(NEXT_LINE.finditer(out))
    assert rc == 0 and len(lines) == 1 and lines[0].group(1) == "cell_inputs (forced)", out[-3000:]
    assert _sites_in_summary(work) == ["local"]  # Snakemake's walk stopped at measure's ancient() input
    nxt = shlex.split(lines[0].group(2))
    assert nxt[0] == "snakemake" and "-R" not in nxt and "cell_inputs" not in nxt
    rc, out = server.run(work, argv=nxt[1:], log=tmp_path / "next.log")  # the named command, as it is
    assert rc == 0 and not NEXT_LINE.search(out), out[-3000:]
    assert _sites_in_summary(work) == ["local", SITE_COPY]
    rc, out = server.run(work, "-n", log=tmp_path / "dry.log")
    assert rc == 0 and "Nothing to be done" in out, out[-3000:]


def _seeds() -> list[int]:
    env = os.environ.get("JOULEGRID_CONVERGE_SEEDS")
    if env:
        return [int(s) for s in env.split(",")]
    return [MASTER_SEED + i for i in range(SEQUENCES)]


@pytest.mark.slow
def test_randomized_user_actions_converge_in_one_run(base):
    seeds = _seeds()
    servers: list[Snakemake] = []
    local = threading.local()
    failures, notes = [], []

    def one(seed: int) -> int:
        if not hasattr(local, "server"):  # one fork server per worker thread
            local.server = Snakemake()
            servers.append(local.server)
        seq = Sequence(seed, base, local.server)
        try:
            seq.run()
        except Exception as e:  # noqa: BLE001  (every failure is reported with its seed)
            failures.append(f"{seq.describe()}: {type(e).__name__}: {e}\n  (its tree: {seq.work})")
        notes.extend(seq.notes)
        print(f"  {seq.timing}  {seq.describe()}", flush=True)
        return len(seq.actions)

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            total = sum(pool.map(one, seeds))
    finally:
        for s in servers:
            s.close()
    print(f"\nconvergence: {len(seeds)} sequences, {total} actions; documented extra runs: {len(notes)}")
    for n in notes:
        print("  " + n)
    assert not failures, (
        "sequences that did not converge in one run (replay: JOULEGRID_CONVERGE_SEEDS=<seed>):\n" + "\n".join(failures)
    )
