"""Every chart builds (without the report's fallback) and renders to PNG for a full grid, a single
cell, missing values and no data at all; estimated energies are drawn distinctly."""

from __future__ import annotations

import json

import polars as pl
import pytest
import synth

from joulegrid import schema as S
from joulegrid.analysis import CHART_NAMES
from joulegrid.analysis import charts as C
from joulegrid.analysis.settings import AnalysisSettings

ST = AnalysisSettings(sites={"local": {"carbon_intensity_g_per_kwh": 480, "pue": 1.0}})


def frame(rows):
    return pl.from_arrow(S.to_table(rows)) if rows else pl.DataFrame(schema=S.polars_schema())


def full():
    cells = synth.grid_cells(precisions=("fp32", "bf16"), repeats=2)
    rows = [synth.row(c, estimated=c.precision == "bf16", jitter=0.1 * c.repeat) for c in cells]
    rows += [synth.row(c, scheduler="slurm", queue_wait_s=12.0) for c in synth.grid_cells(site="slurm", phases=("infer",))]
    return frame(rows)


CASES = {
    "full": full,
    "single_cell": lambda: frame([synth.row(synth.grid_cells(phases=("train",), precisions=("fp32",), batch_sizes=(256,))[0])]),
    "missing_values": lambda: frame([
        synth.row(c, quality=None, epoch_quality=None, epoch_wall_s=None, epoch_energy_j=None, submit_time=None)
        for c in synth.grid_cells(precisions=("bf16",))
    ] + [synth.row(synth.grid_cells(precisions=("fp32",))[0], energy_j=None, mean_power_w=None, co2_kg=None)]),
    "only_failures": lambda: frame([synth.row(c, status="failed") for c in synth.grid_cells()]),
    "empty": lambda: frame([]),
}


def _is_no_data(chart) -> bool:
    return "No data" in json.dumps(chart.to_dict())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", CHART_NAMES)
def test_chart_builds_and_renders(case, name, tmp_path):
    df = CASES[case]()
    chart = C.CHARTS[name](df, ST)  # the real function: an exception here is a bug
    if case in ("only_failures", "empty"):
        assert _is_no_data(chart)
    if case == "full":
        assert not _is_no_data(chart)
    png = tmp_path / f"{name}.png"
    chart.save(str(png), format="png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_estimated_drawn_as_rings_measured_as_disks():
    spec = json.dumps(C.energy_per_sample(full(), ST).to_dict())
    assert C.RING in spec and '"energy_source"' in spec
    data = C.energy_per_sample(full(), ST).to_dict()
    values = next(iter(data["datasets"].values()))
    assert {v["energy_source"] for v in values} == {"measured", "estimated"}


def test_chart_names_in_step():
    assert tuple(C.CHARTS) == CHART_NAMES


def test_build_falls_back_to_an_honest_no_data_chart(monkeypatch):
    def broken(df, st):
        raise RuntimeError("boom")

    monkeypatch.setitem(C.CHARTS, "fleet_whatif", broken)
    chart = C.build("fleet_whatif", full(), ST)
    assert "boom" in json.dumps(chart.to_dict())
