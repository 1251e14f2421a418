"""Wildcards are safe: unsafe names never become paths or shell words."""

import re

import pytest
from conftest import REPO

from joulegrid import grid as G

UNSAFE = ["a/b", "..", "../etc", "a b", "x;rm -rf ~", "$(reboot)", "`id`", "a|b", "a&b", "a'b", 'a"b', "a\nb", "é", ""]


@pytest.mark.parametrize("value", UNSAFE)
@pytest.mark.parametrize("wildcard", ["site", "workload"])
def test_wildcard_constraints_reject_unsafe_values(wildcard, value):
    assert not re.fullmatch(G.WILDCARD_CONSTRAINTS[wildcard], value)
    wc = dict(
        site="local",
        workload="baler_ae",
        phase="train",
        device="cpu",
        precision="fp32",
        batch="8",
        repeat="0",
        chash="0" * 16,
    )
    wc[wildcard] = value
    path = "results/" + G.RUN_PATTERN.format(**wc)
    with pytest.raises(ValueError):
        G.cell_from_path(path)


@pytest.mark.parametrize("value", UNSAFE)
def test_config_validation_rejects_unsafe_names(value):
    from joulegrid import config as C

    for key, cfg in (
        ("site", {"site": value}),
        ("grid.workloads[0]", {"grid": {"workloads": [value]}}),
        ("workloads", {"workloads": {value: {"class": "x:Y"}}}),
    ):
        with pytest.raises(C.ConfigError) as e:
            C.prepare(cfg, base_dir=C.REPO_ROOT)
        assert key.split("[")[0] in str(e.value)


# Placeholders a rule's shell may use without :q, and why each is safe.
SAFE_UNQUOTED = {
    "JG": "built with shlex.quote (joulegrid.snakefile, Workflow._command)",
    "params.jg": "the same command, given to the shell as a param",
    "JOULEGRID.grid_snapshot_q": "the grid snapshot path, shlex.quote-d when the Snakefile is parsed (rule measure)",
    "JOULEGRID.run_command": "the constant run-cell or run-quadruple (joulegrid.snakefile)",
    "threads": "an integer",
    "resources.attempt": "an integer",
    "wildcards.workload": "constrained to [A-Za-z][A-Za-z0-9_]* (global wildcard constraints)",
    "params.strict": "the constant --strict or nothing",
    "wildcards.dataset": "constrained to [A-Za-z][A-Za-z0-9_]* (global wildcard constraints)",
    "wildcards.rows": "constrained to digits",
    "output.index": "inside single quotes of an echo, a path made of constrained wildcards",
}


def test_no_rule_interpolates_config_or_params_unquoted():
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    shells = re.findall(r"shell:\s*\n((?:\s+f?\".*\"\s*\n)+)", text)
    assert len(shells) >= 5, "the rules' shell commands were not found"
    unquoted = set()
    for block in shells:
        for name in re.findall(r"(?<!\{)\{([A-Za-z_][\w.]*)(:q)?\}(?!\})", block):
            if not name[1]:
                unquoted.add(name[0])
    assert unquoted <= set(SAFE_UNQUOTED), (
        f"unquoted in a shell command (add :q): {sorted(unquoted - set(SAFE_UNQUOTED))}"
    )
    assert "{config" not in "".join(shells), "config values must go through params (quoted), never straight into shell"
