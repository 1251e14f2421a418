"""notebooks/explore.ipynb executes top to bottom (nbclient) against a generated results set."""

from __future__ import annotations

import pytest
import synth
from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.mark.slow
def test_explore_notebook_runs(tmp_path, monkeypatch):
    cells = synth.grid_cells(precisions=("fp32", "bf16"), repeats=2)
    summary = synth.summary(tmp_path / "summary.parquet", [synth.row(c, jitter=0.1 * c.repeat) for c in cells])
    monkeypatch.setenv("JOULEGRID_SUMMARY", str(summary))
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "16 runs" in text and "d_energy_pct" in text and "mwh_per_day" in text
    # the verdicts: bf16 is 0.6x fp32 in both blocks (the repeats' jitter is the same in both cells): exactly cheaper
    assert "cheaper" in text and "(exact)" in text
    charts = [
        o
        for o in outputs
        if "application/vnd.vegalite.v6+json" in o.get("data", {}) or "text/html" in o.get("data", {})
    ]
    assert len(charts) >= 2
