"""`snakemake --lint`: the rules stay thin (no functions mixed with rules, no globals in shell commands,
no environment variables read in the rule files, a log for every rule that runs)."""

from conftest import SNAKEFILE


def test_snakemake_lint_is_clean(tmp_path, run_snakemake):
    proc = run_snakemake(tmp_path, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-3000:]


def test_lint_finds_what_it_is_asked_to(tmp_path, run_snakemake):
    """The same lint on a copy of the rules with a global in a shell command fails (the check can fail)."""
    import shutil

    copy = tmp_path / "wf"
    shutil.copytree(SNAKEFILE.parent / "workflow", copy / "workflow")
    shutil.copytree(SNAKEFILE.parent / "config", copy / "config")
    shutil.copy(SNAKEFILE, copy / "Snakefile")
    data = copy / "workflow" / "rules" / "data.smk"
    data.write_text(data.read_text().replace("{params.jg} prepare-data", "{JG} prepare-data"))
    proc = run_snakemake(tmp_path / "work", "-s", str(copy / "Snakefile"), "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert "Shell command directly uses variable JG from outside of the rule" in out, out[-3000:]
