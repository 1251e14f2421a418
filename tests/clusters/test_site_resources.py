"""Scheduler probes, per-executor job resources and the site profiles, without running daemons.

The probe inputs below are excerpts of what a real job saw on the test clusters
(`scontrol show job -o` under Slurm 22.05, $_CONDOR_JOB_AD / $_CONDOR_MACHINE_AD under HTCondor 23.9).
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from joulegrid import executors as E
from joulegrid import probes
from joulegrid.sites import SiteError, check_site, env_tarball, job_flavours, load_sites, runtime_limit
from joulegrid.sites import scheduler as site_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conftest as C

REPO = Path(__file__).resolve().parents[2]
PROFILES = ("slurm", "htcondor", "lxplus", "blackett")

SCONTROL = (
    "JobId=17 JobName=x UserId=root(0) JobState=RUNNING Partition=debug SubmitTime=2026-11-23T09:43:56 "
    "StartTime=2026-11-23T09:44:03 NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=2 NumTasks=1 CPUs/Task=2 "
    "TRES=cpu=2,mem=500M,node=1,billing=2,gres/gpu=1 MinMemoryNode=500M TresPerJob=gres:gpu:1"
)
JOB_AD = """ClusterId = 12
ProcId = 0
QDate = 1795427048
JobStartDate = 1795427050
JobCurrentStartDate = 1795427051
RemoteHost = "slot1_1@node7.example"
RequestCpus = 2
RequestMemory = 1000
RequestGPUs = 1
CpusProvisioned = 2
MemoryProvisioned = 1024
GpusProvisioned = 1
JobFlavour = "workday"
"""
MACHINE_AD = 'Cpus = 2\nGPUs = 1\nMachine = "node7.example"\nMemory = 1024\nName = "slot1_1@node7.example"\n'


# ------------------------------------------------------------------ probes
def test_slurm_probe_reads_scontrol_and_env(monkeypatch):
    fields = dict(t.partition("=")[::2] for t in SCONTROL.split())
    monkeypatch.setattr(probes, "_scontrol_job", lambda jid: fields if jid == "17" else {})
    env = {"SLURM_JOB_ID": "17", "SLURMD_NODENAME": "vm", "SLURM_JOB_PARTITION": "debug", "SLURM_CPUS_ON_NODE": "2"}
    row = probes.scheduler(threads=2, env=env)
    submit = datetime.fromisoformat("2026-11-23T09:43:56").astimezone(UTC)
    assert row == {
        "scheduler": "slurm",
        "job_id": "17",
        "node_name": "vm",
        "partition": "debug",
        "submit_time": submit,
        "job_start_time": datetime.fromisoformat("2026-11-23T09:44:03").astimezone(UTC),
        "queue_wait_s": 7.0,
        "alloc_cpus": 2,
        "alloc_mem_mb": 500,
        "alloc_gpus": 1,
    }


def test_slurm_probe_without_scontrol_falls_back_to_env(monkeypatch):
    monkeypatch.setattr(probes, "_scontrol_job", lambda jid: {})
    env = {"SLURM_JOB_ID": "5", "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_NODE": "2048", "SLURM_GPUS_ON_NODE": "2"}
    row = probes.scheduler(env=env)
    assert (row["scheduler"], row["job_id"], row["queue_wait_s"]) == ("slurm", "5", None)
    assert (row["alloc_cpus"], row["alloc_mem_mb"], row["alloc_gpus"]) == (4, 2048, 2)


def test_a_failing_probe_still_names_the_scheduler(monkeypatch):
    def boom(jid):
        raise RuntimeError("scontrol exploded")

    monkeypatch.setattr(probes, "_scontrol_job", boom)
    row = probes.scheduler(env={"SLURM_JOB_ID": "9"})
    assert (row["scheduler"], row["job_id"]) == ("slurm", "9")


@pytest.mark.parametrize(
    "mem,mb", [("500M", 500), ("4G", 4096), ("1.5G", 1536), ("2000", 2000), ("1T", 1048576), ("", None), ("x", None)]
)
def test_slurm_memory_units(mem, mb):
    assert probes._slurm_mem_mb(mem) == mb


def test_htcondor_probe_reads_job_and_machine_ads(tmp_path):
    (tmp_path / ".job.ad").write_text(JOB_AD)
    (tmp_path / ".machine.ad").write_text(MACHINE_AD)
    # inherited through getenv: the HTCondor ad wins
    env = {
        "_CONDOR_JOB_AD": str(tmp_path / ".job.ad"),
        "_CONDOR_MACHINE_AD": str(tmp_path / ".machine.ad"),
        "SLURM_JOB_ID": "99",
    }
    row = probes.scheduler(env=env)
    assert row == {
        "scheduler": "htcondor",
        "job_id": "12.0",
        "node_name": "node7.example",
        "partition": "workday",
        "submit_time": datetime.fromtimestamp(1795427048, UTC),
        "job_start_time": datetime.fromtimestamp(1795427051, UTC),
        "queue_wait_s": 3.0,  # JobCurrentStartDate - QDate
        "alloc_cpus": 2,
        "alloc_mem_mb": 1024,  # provisioned, not the 1000 requested
        "alloc_gpus": 1,
    }


def test_local_probe():
    row = probes.scheduler(threads=3, env={"PATH": "/usr/bin"})
    assert row["scheduler"] == "local" and row["job_id"] is None and row["alloc_cpus"] == 3


@pytest.mark.parametrize(
    "row,consistent,mismatch",
    [
        ({"torch_num_threads": 2, "alloc_cpus": 2, "omp_num_threads": "2", "mkl_num_threads": "2"}, True, None),
        ({"torch_num_threads": 2, "alloc_cpus": 2, "omp_num_threads": None}, True, None),
        (
            {"torch_num_threads": 1, "alloc_cpus": 2, "omp_num_threads": "1"},
            False,
            "torch_num_threads=1, alloc_cpus=2, omp_num_threads=1",
        ),
        (
            {"torch_num_threads": 4, "alloc_cpus": 4, "omp_num_threads": "2"},
            False,
            "torch_num_threads=4, alloc_cpus=4, omp_num_threads=2",
        ),
        ({"torch_num_threads": 4, "alloc_cpus": None}, None, None),
    ],
)
def test_threads_check(row, consistent, mismatch):
    assert probes.threads_check(row) == {"threads_consistent": consistent, "threads_mismatch": mismatch}


# ------------------------------------------------------------------ executors
def _eval(res, wc=None, attempt=1):
    out = {}
    for k, v in res.items():
        if callable(v):
            out[k] = v(wc, attempt) if v.__code__.co_argcount == 2 else v(wc)
        else:
            out[k] = v
    return out


def test_job_resources_per_scheduler():
    cuda = SimpleNamespace(device="cuda")
    slurm = _eval(
        E.job_resources("s", {"scheduler": "slurm"}, 4000, 60, gpus=lambda wc: 1 if wc.device == "cuda" else 0), cuda, 2
    )
    assert slurm == {"mem_mb": 8000, "runtime": 120, "gpu": 1}
    condor = _eval(E.job_resources("c", {"scheduler": "htcondor"}, 4000, 60, gpus=1), cuda, 1)
    wrapped = {"job_wrapper": str(E.JOB_WRAPPER), "classad_ShouldTransferFiles": "YES"}  # every HTCondor job
    assert condor == {"mem_mb": 4000, "runtime": 60, "gpu": 1, "request_memory": 4000, "request_gpus": 1, **wrapped}
    cpu_only = _eval(E.job_resources("c", {"scheduler": "htcondor"}, 4000, 60, gpus=0))
    assert cpu_only == {"mem_mb": 4000, "runtime": 60, "request_memory": 4000, **wrapped}  # no GPU resource at all
    local = _eval(
        E.job_resources("l", {"scheduler": "local"}, 4000, 60, gpus=lambda wc: 1 if wc.device == "cuda" else 0), cuda, 2
    )
    assert local == {"gpu": 1}  # the local executor reads no memory or runtime
    assert E.job_resources("l", {"scheduler": "local"}, 4000, 60) == {}


def test_lxplus_job_flavour_follows_runtime_and_attempt():
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    res = E.job_resources("lxplus", sites["lxplus"], 2000, 60)
    assert [res["classad_JobFlavour"](None, a) for a in (1, 2, 3)] == ["microcentury", "longlunch", "workday"]
    assert _eval(E.job_resources("lxplus", sites["lxplus"], 2000, 15))["classad_JobFlavour"] == "espresso"
    assert E.pick_flavour(job_flavours(sites["lxplus"]), 10**6) == "nextweek"  # retries clamp
    with pytest.raises(
        E.SiteError, match=r"job.runtime_min: 20000 min .*\(the longest job flavour, nextweek: 10080 min\)"
    ):
        E.job_resources("lxplus", sites["lxplus"], 2000, 20000)


def test_blackett_refuses_cells_longer_than_its_72_hour_limit():
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    bl = sites["blackett"]
    assert runtime_limit(bl) == ("the wall-clock limit of its jobs, max_runtime_min", 72 * 60)
    assert E.job_resources("blackett", bl, 2000, 72 * 60)["runtime"](None, 1) == 4320
    with pytest.raises(
        E.SiteError, match=r"job.runtime_min: 4321 min is longer than site 'blackett' allows .*4320 min"
    ):
        E.job_resources("blackett", bl, 2000, 4321)
    # a group of cells is one job: it must end within the limit too
    assert E.group_problem("blackett", bl, 60, {"cells": 72}) is None
    kind, msg = E.group_problem("blackett", bl, 60, {"cells": 73})
    assert kind == "error" and "4380 min" in msg and "at most cells=72" in msg
    # the shorter of a flavour list and a wall-clock limit wins; a wrong limit is named
    assert runtime_limit({"job_flavours": {"a": 100}, "max_runtime_min": 50})[1] == 50


def test_without_a_shared_filesystem_htcondor_jobs_transfer_the_workflow_attempts_and_results():
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    lx = _eval(E.job_resources("lxplus", sites["lxplus"], 2000, 15, shared_fs=False, results_dir="res"))
    assert lx["htcondor_transfer_input_files"] == "workflow, src, config, res/.grid, res/attempts"
    assert lx["htcondor_transfer_output_files"] == "res"
    bl = _eval(E.job_resources("blackett", sites["blackett"], 2000, 15, shared_fs=False))
    assert (
        bl["htcondor_transfer_input_files"]
        == "workflow, src, config, results/.grid, results/attempts, joulegrid-env.tar.gz"
    )

    # a cell job also takes what its inputs.json names (its dataset and reference model), per job
    def reads(wc):
        return {"data": f"resources/datasets/{wc}.npz", "model": f"res/models/{wc}.pt"}

    cell = E.job_resources("lxplus", sites["lxplus"], 2000, 15, shared_fs=False, results_dir="res", reads=reads)
    assert cell["htcondor_transfer_input_files"]("jets") == (
        "workflow, src, config, res/.grid, res/attempts, resources/datasets/jets.npz, res/models/jets.pt"
    )
    shared = _eval(E.job_resources("htcondor", sites["htcondor"], 2000, 15, reads=reads))
    assert not {"htcondor_transfer_input_files", "htcondor_transfer_output_files"} & set(shared)
    assert E.job_resources("slurm", sites["slurm"], 2000, 15, shared_fs=False).keys() == {"mem_mb", "runtime"}


def test_runs_without_a_shared_filesystem_are_checked_before_any_job(tmp_path):
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    assert E.transfer_problem("htcondor", sites["htcondor"], True, "/abs/results", str(REPO), "/elsewhere") is None
    msg = E.transfer_problem("lxplus", sites["lxplus"], False, "results", str(REPO), str(tmp_path))
    assert "not in the joulegrid checkout" in msg and "cd there, without --directory" in msg
    msg = E.transfer_problem("lxplus", sites["lxplus"], False, "/eos/user/results", str(tmp_path), str(tmp_path))
    assert "config key results: '/eos/user/results' is an absolute path" in msg
    msg = E.transfer_problem("blackett", sites["blackett"], False, "results", str(tmp_path), str(tmp_path))
    assert "blackett.env_tarball: joulegrid-env.tar.gz), which is not in the working directory" in msg
    assert "joulegrid pack-env --out joulegrid-env.tar.gz" in msg
    (tmp_path / "joulegrid-env.tar.gz").write_bytes(b"")
    assert E.transfer_problem("blackett", sites["blackett"], False, "results", str(tmp_path), str(tmp_path)) is None


def test_submit_environment_is_what_the_wrapper_compares():
    env = E.submit_environment("res", "env.tar.gz")
    assert env["JOULEGRID_PYTHON"] == sys.executable and env["JOULEGRID_RESULTS"] == "res"
    assert env["JOULEGRID_PYTHON_VERSION"] == "{}.{}".format(*sys.version_info[:2])
    assert env["JOULEGRID_ENV_TARBALL"] == "env.tar.gz" and env["JOULEGRID_SUBMIT_OS"]
    assert "JOULEGRID_ENV_TARBALL" not in E.submit_environment("results")


def test_env_check_failures_are_collected_once_each_from_this_runs_job_files(tmp_path):
    msg = f"{E.ENV_CHECK_MARK} n1 (OS):\n  the Python environment /x does not exist\n  See docs"
    old, new1, new2, other = (tmp_path / f"{n}.err" for n in ("old", "a", "b", "c"))
    old.write_text("snakemake says\n" + msg)
    os.utime(old, (1000, 1000))  # an earlier run's job
    new1.write_text("snakemake says\n" + msg)
    new2.write_text(msg)  # the same problem on another job: shown once
    other.write_text("Traceback: a job that failed for another reason")
    out = E.env_check_failures([old, new1, new2, other], since=2000)
    assert out == [f"{msg}\n  (from the job's error file {new1})"]
    many = [tmp_path / f"m{i}.err" for i in range(7)]
    for i, f in enumerate(many):
        f.write_text(msg.replace("n1", f"node{i}"))
    out = E.env_check_failures(many, since=0, most=5)
    assert len(out) == 6 and out[-1] == "... and 2 more such messages"


@pytest.mark.parametrize(
    "facts,match",
    [
        ({"scheduler": "pbs"}, r"x\.scheduler: 'pbs' is not allowed\. Fix: use one of local, slurm, htcondor"),
        ({"scheduler": "htcondor", "job_flavours": ["a"]}, r"x\.job_flavours: expected a mapping"),
        (
            {"scheduler": "htcondor", "job_flavours": {"a": "1h"}},
            r"x\.job_flavours\.a: expected an integer, got str '1h'",
        ),
        ({"max_runtime_min": "72h"}, r"x\.max_runtime_min: expected an integer, got str '72h'"),
        ({"max_runtime_min": 0}, r"x\.max_runtime_min: 0 is too small"),
        (
            {"scheduller": "slurm"},
            r"x: unknown key\(s\) 'scheduller'\. Fix: remove or rename them; allowed keys here: .*scheduler",
        ),
        ({"node_power": {"cpu_idle_w": "120 W"}}, r"x\.node_power"),
        ({"pue": 0.9}, r"x\.pue: 0\.9 is too small"),
    ],
)
def test_bad_sites_file_names_file_key_and_fix(tmp_path, facts, match):
    """A bad sites.yaml is refused when it is loaded (before any job), naming the file, the key and the fix."""
    p = tmp_path / "sites.yaml"
    p.write_text(yaml.safe_dump({"local": {"scheduler": "local"}, "x": facts}))
    with pytest.raises(SiteError, match=re.escape(str(p)) + " key " + match):
        load_sites(p)
    with pytest.raises(SiteError, match=match):  # and a site entry handed over directly
        check_site("x", facts)


def test_every_shipped_site_loads_and_a_broken_file_is_named(tmp_path):
    sites = load_sites(REPO / "config" / "sites.yaml")
    assert {site_scheduler(f) for f in sites.values()} <= {"local", "slurm", "htcondor"}
    assert env_tarball(sites["blackett"]) == "joulegrid-env.tar.gz" and env_tarball(sites["lxplus"]) is None
    p = tmp_path / "sites.yaml"
    p.write_text("local: [unclosed\n")
    with pytest.raises(SiteError, match=re.escape(str(p)) + " is not valid YAML"):
        load_sites(p)
    with pytest.raises(SiteError, match="config key sites_file: .* does not exist"):
        load_sites(tmp_path / "nope.yaml")


def test_executor_must_fit_the_site():
    assert E.executor_problem("slurm", "slurm", "slurm") is None
    assert E.executor_problem("lxplus", "htcondor", "htcondor") is None
    assert E.executor_problem("local", "local", "dryrun") is None
    kind, msg = E.executor_problem("local", "local", "slurm")
    assert kind == "error" and "config key site" in msg and "--profile profiles/<site>" in msg
    assert E.executor_problem("lxplus", "htcondor", "slurm")[0] == "error"
    assert E.executor_problem("slurm", "slurm", "local")[0] == "warning"


def test_threads_above_cores_refused_on_clusters():
    assert E.threads_problem(2, 2, "slurm") is None
    kind, msg = E.threads_problem(8, 4, "htcondor")
    assert kind == "error" and "measure.threads" in msg and "--cores 8" in msg
    assert E.threads_problem(8, 4, "local")[0] == "warning"


def test_slurm_plugin_submit_string_from_our_resources():
    """The real plugin turns a cuda cell's resources into --gpus/--mem/-t/--cpus-per-task."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    class Res(dict):
        __getattr__ = dict.__getitem__

    res = _eval(E.job_resources("slurm", {"scheduler": "slurm"}, 4000, 60, gpus=1), None, 1)
    job = SimpleNamespace(resources=Res(res), threads=2)
    params = {
        "run_uuid": "u",
        "slurm_logfile": "l",
        "comment_str": "c",
        "account": "",
        "partition": "",
        "workdir": "/w",
    }
    cmd = get_submit_command(job, params)
    assert " --mem 4000" in cmd and " -t 60" in cmd and "--cpus-per-task=2" in cmd
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    assert set_gres_string(job).strip() == "--gpus=1"


# ------------------------------------------------------------------ profiles
SCHEDULER_KEYS = {"executor", "jobs", "default-resources", "set-resources", "retries", "latency-wait", "config"}


def test_default_profile_has_no_scheduler_keys():
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert not SCHEDULER_KEYS & set(default), "profiles/default wins over site profiles key by key"
    assert default["keep-going"] is True


@pytest.mark.parametrize("name", PROFILES)
def test_site_profile_names_a_site_of_its_scheduler(name):
    prof = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    site = prof["config"]["site"]
    assert site == name and sites[site]["scheduler"] == prof["executor"]
    assert {"jobs", "retries", "latency-wait"} <= set(prof)
    dr = prof["default-resources"]
    assert "cpus_per_task" not in dr  # would override threads: torch threads != allocation
    if prof["executor"] == "htcondor":
        assert dr["getenv"] is True and "request_memory" in dr


@pytest.mark.parametrize("name", PROFILES)
def test_profile_short_name_from_the_repository_root(name, tmp_path, write_config):
    """`snakemake --profile slurm -n` (htcondor, lxplus, blackett) in the checkout, as the README says."""
    cfg = write_config({"grid": {"devices": ["cpu", "cuda"]}})
    proc = C.snakemake(tmp_path, "-n", "--profile", name, configfile=cfg, timeout=300, cwd=REPO)
    out = proc.stdout + proc.stderr
    assert f"Using profiles {name} and workflow specific profile profiles/default" in out
    assert re.search(rf"results/runs/{name}/baler_ae/train/cuda/fp32/bs256/r0-[0-9a-f]{{16}}\.parquet", out)
    gpu_key = "gpu=1" if name == "slurm" else "request_gpus=1"
    assert gpu_key in out  # cuda cells ask for a GPU
    if name != "slurm":  # every HTCondor job runs through joulegrid's job wrapper
        assert f"job_wrapper={E.JOB_WRAPPER}" in out and "classad_ShouldTransferFiles=YES" in out
    no_shared = name in ("lxplus", "blackett")  # shared-fs-usage: none: files travel by transfer
    assert ("htcondor_transfer_output_files=results" in out) == no_shared
    assert ("classad_WantOS=el9" in out) == (name == "lxplus")
