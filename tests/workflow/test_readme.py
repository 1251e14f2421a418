"""README's examples are each run by a test: every command README.md shows (code blocks and inline)
is listed here with the tests that run it, and a README example without a test fails
test_every_readme_command_has_a_test. The examples no other test runs are run below."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import synth
import yaml
from conftest import BIN, REPO, subprocess_env

README = (REPO / "README.md").read_text()

# command as README shows it -> tests that run it (path::function)
TESTS = {
    "make run": [
        "tests/workflow/test_readme.py::test_make_run_is_bare_snakemake_then_the_report_path",
        "tests/workflow/test_local_run.py::test_summary_and_report",
    ],
    "make test": ["tests/workflow/test_readme.py::test_make_test_runs_the_suite_script"],
    # its pip command (make -n) and the CPU constraint resolved offline against the local +cpu wheel
    "make setup TORCH=cpu": [
        "tests/unit/test_make_envs.py::test_make_setup_torch_builds",
        "tests/unit/test_make_envs.py::test_cpu_constraint_takes_the_cpu_wheel_and_cuda_constraint_never_does",
    ],
    ".venv/bin/joulegrid meters --window 10": ["tests/workflow/test_readme.py::test_meters_with_a_test_window"],
    ".venv/bin/joulegrid plan": [
        "tests/workflow/test_plan_agrees.py::test_plan_and_snakemake_dry_run_agree",
        "tests/analysis/test_plan.py::test_cli_plan_grid_and_forecast_counts_agree",
    ],
    "joulegrid plan": ["tests/workflow/test_plan_agrees.py::test_plan_and_snakemake_dry_run_agree"],
    "joulegrid compare": [
        "tests/workflow/test_compare_run.py::test_the_gitlab_job_blocks_a_planted_regression",
        "tests/analysis/test_compare.py::test_the_command_compares_two_trees_and_says_bad_input",
    ],
    ".venv/bin/joulegrid plan --pilot": [
        "tests/workflow/test_design_auto.py::test_pilot_then_auto_repeats_plan_and_snakemake_agree_and_converge"
    ],
    ".venv/bin/snakemake -n": ["tests/workflow/test_dry_run.py::test_default_grid_dry_run_lists_jobs"],
    "snakemake": [
        "tests/workflow/test_quiet_logs.py::test_bare_snakemake_does_not_warn_about_condor_config",
        "tests/workflow/test_local_run.py::test_result_rows_follow_the_schema",
    ],
    "snakemake --config seed=7": [
        "tests/workflow/test_config_identity.py::test_changed_seed_measures_new_cells_keeps_old_and_shows_current",
        "tests/workflow/test_config_identity.py::test_default_run_then_seed_7_plans_60_new_runs_and_keeps_the_old",
    ],
    "snakemake --configfile config/experiments/<name>.yaml": [
        "tests/workloads/test_wl_config.py::test_experiment_configs_validate_and_expand",
        "tests/workflow/test_config_identity.py::test_time_to_target_experiment_after_a_default_run_measures_its_own_fp32_cells",
    ],
    # after whatever was done to results/, one snakemake, then a dry run that plans nothing (guarantee 10)
    "snakemake -n": [
        "tests/reliability/test_converge.py::test_randomized_user_actions_converge_in_one_run",
        "tests/reliability/test_converge.py::test_newer_dataset_and_copied_site_merge_in_one_run",
    ],
    "snakemake --unlock": ["tests/reliability/test_resume.py::test_kill_9_mid_run_then_rerun_resumes"],
    ".venv/bin/joulegrid remeasure 'local/*/infer/*'": [
        "tests/workflow/test_readme.py::test_remeasure_infer_cells",
        "tests/reliability/test_never_overwrite.py::test_forcerun_refused_remeasure_archives_then_measures_anew",
    ],
    "snakemake --profile slurm": [
        "tests/clusters/test_site_resources.py::test_profile_short_name_from_the_repository_root",
        "tests/clusters/test_schedulers.py::test_grid_through_slurm",
    ],
    "joulegrid pack-env": [
        "tests/clusters/test_worker_environment.py::test_blackett_profile_runs_jobs_in_the_packed_venv",
        "tests/clusters/test_job_wrapper.py::test_packed_environment_is_unpacked_and_used",
    ],
    # sudo: only to read root-only counters (test_root_only_counters_name_the_fix); the ladder on a fake powercap tree
    "sudo -E .venv/bin/joulegrid calibrate": [
        "tests/meters/test_calibrate.py::test_calibrate_finds_the_fake_nodes_rates",
        "tests/meters/test_calibrate.py::test_root_only_counters_name_the_fix",
    ],
    "snakemake --report report.zip": [
        "tests/report/test_snakemake_report.py::test_pipeline_report_and_snakemake_report_zip"
    ],
    "yaml: Changing the grid": ["tests/workflow/test_readme.py::test_changing_the_grid_example"],
    # a copy of another site's folder, then snakemake (the test copies with old mtimes, as rsync -a does)
    "rsync -a lxplus.cern.ch:/afs/cern.ch/work/<u>/<user>/joulegrid/results/runs/lxplus results/runs/": [
        "tests/workflow/test_sites.py::test_copied_site_folder_merges_with_the_main_command"
    ],
    ".venv/bin/joulegrid import /path/to/other/results": [
        "tests/workflow/test_sites.py::test_import_takes_another_tree_with_its_checks",
        "tests/workflow/test_sites.py::test_import_refuses_a_site_name_of_another_machine_until_renamed",
    ],
}


def readme_commands() -> set[str]:
    cmds = set()
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if lang == "bash":
            cmds |= {ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()}
        elif lang == "yaml":
            cmds.add("yaml: Changing the grid")
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S)):
        if re.match(r"(\.venv/bin/)?(snakemake|joulegrid [a-z]|make [a-z])", span):
            cmds.add(span)
    return cmds


def test_every_readme_command_has_a_test():
    cmds = readme_commands()
    assert "snakemake --config seed=7" in cmds and ".venv/bin/joulegrid plan" in cmds  # the extraction works
    assert cmds == set(TESTS), (
        f"README commands without a test: {sorted(cmds - set(TESTS))}; stale: {sorted(set(TESTS) - cmds)}"
    )
    for cmd, tests in TESTS.items():
        for t in tests:
            path, name = t.split("::")
            assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{cmd}: {t} does not exist"


def test_changing_the_grid_example(tmp_path):
    """The README's edit of config/config.yaml: valid, and `joulegrid plan` shows its grid."""
    block = re.search(r"```yaml\n(.*?)```", README, re.S).group(1)
    (tmp_path / "edit.yaml").write_text(block)
    edit = yaml.safe_load(block)
    out = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(tmp_path / "edit.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert out.returncode == 0, out.stderr
    # train: fp32, bf16 (int8 is inference only) x 2 batch sizes x 3 repeats; infer: 3 precisions x 2 x 3
    assert edit["grid"]["repeats"] == 3 and "site local: 30 cell(s) in the grid, 6 excluded" in out.stdout, out.stdout
    assert "workload    baler_ae (30)" in out.stdout


def test_make_run_is_bare_snakemake_then_the_report_path():
    out = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if "snakemake" in ln]
    assert lines and lines[-1].strip() == ".venv/bin/snakemake", out  # the default grid, as `snakemake`
    assert "results/report/index.html" in out


def test_make_test_runs_the_suite_script():
    out = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "tests/run-tests.sh" in out
    assert "ruff check ." in out and "ruff format --check ." in out  # the linter runs first


@pytest.mark.slow
def test_meters_with_a_test_window():
    proc = subprocess.run(
        [str(BIN / "joulegrid"), "meters", "--window", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "idle test window" in proc.stdout and "estimate" in proc.stdout


def test_remeasure_infer_cells(tmp_path):
    h = "0123456789abcdef"
    rows = [synth.row(c, config_hash=h) for c in synth.grid_cells()]
    synth.write_runs(tmp_path / "results", rows)
    proc = subprocess.run(
        [str(BIN / "joulegrid"), "remeasure", "local/*/infer/*"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    left = sorted(Path(p).name for p in (tmp_path / "results/runs").rglob("*.parquet"))
    assert len(left) == sum(r["phase"] == "train" for r in rows)
    archived = list((tmp_path / "results/archive").rglob("*.parquet"))
    assert sorted(pl.read_parquet(archived)["run_id"]) == sorted(r["run_id"] for r in rows if r["phase"] == "infer")
