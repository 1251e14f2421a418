"""A temporary git repository holding a bring-your-own workload in versions (docs/compare.md), for the tests that
run `joulegrid compare` campaigns through real Snakemake: tests/workflow/test_compare_run.py (the GitLab job) and
tests/clusters/test_compare_slurm.py (a quadruple through Slurm)."""

from __future__ import annotations

import subprocess
from pathlib import Path

WORKLOAD = """import numpy as np
import torch

from joulegrid.workloads.base import Split, Workload, widen

REPEAT = 1  # how many times the counted step (forward and backward of the model) runs per sample


class Tiny(Workload):
    quality_metric = "test_mse"
    higher_is_better = False
    DEFAULTS = {"rows": 6144, "epochs": 1, "lr": 0.001, "test_fraction": 0.25, "params": {"n_features": 512}}

    def load_data(self, path):
        rng = np.random.default_rng(7)
        n, f = int(self.settings.get("rows") or 6144), int(self.params["n_features"])
        x = rng.standard_normal((n, f)).astype(np.float32)
        y = (x @ np.linspace(-1, 1, f)).astype(np.float32)
        tr, te = self.split_indices(len(x))
        return Split(x[tr], y[tr], x[te], y[te], name="toy", n_features=f)

    def build_model(self, split):
        return torch.nn.Sequential(torch.nn.Linear(split.n_features, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1))

    def loss(self, model, xb, yb):
        total = 0.0
        for _ in range(REPEAT):
            out = widen(model(xb)).squeeze(-1)
            total = total + torch.nn.functional.mse_loss(out, yb.to(out.dtype))
        return total / REPEAT

    def evaluate(self, outputs, x, y):
        mse = float(np.mean((widen(outputs).detach().cpu().double().numpy().ravel() - np.asarray(y)) ** 2))
        return {"test_mse": mse, "loss": mse}
"""


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(tmp_path: Path, files: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A bare origin and its clone with commit A on main, pushed: mypkg/wl.py (the Tiny workload), the files
    given (path: text) and a .gitignore for what a run writes. Returns (origin, repo)."""
    origin, repo = tmp_path / "origin.git", tmp_path / "repo"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(repo))
    for k, v in (("user.email", "t@t"), ("user.name", "t")):
        git(repo, "config", k, v)
    (repo / "mypkg").mkdir()
    (repo / "mypkg" / "__init__.py").write_text("")
    (repo / "mypkg" / "wl.py").write_text(WORKLOAD)
    for name, text in (files or {}).items():
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text("results*/\nresources/\n.snakemake/\njoulegrid-compare.md\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "A: the baseline")
    git(repo, "push", "-q", "origin", "main")
    return origin, repo


def commit_version(repo: Path, branch: str, text: str, message: str) -> str:
    """A branch off main whose mypkg/wl.py is ``text``, committed; its commit."""
    git(repo, "checkout", "-q", "-b", branch, "main")
    (repo / "mypkg" / "wl.py").write_text(text)
    git(repo, "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD")
