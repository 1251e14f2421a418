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


def _svg(chart) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_dict())


def test_time_to_target_draws_each_target_set_not_their_mean():
    import re

    cells = synth.grid_cells(phases=("train",), precisions=("fp32", "fp16"), batch_sizes=(256,))
    rows = [synth.row(c, target_quality=0.25 if c.precision == "fp16" else 0.508) for c in cells]
    svg = _svg(C.time_to_target(frame(rows), ST))
    rules = re.findall(r'aria-label="([^"]*)"[^>]*aria-roledescription="rule mark"', svg)
    targets = sorted(float(re.search(r"target: ([0-9.]+)", r).group(1)) for r in rules)
    assert targets == [0.25, 0.508], rules  # not mean(target) = 0.379, a target nobody set


def _colour_of(chart) -> dict[str, str]:
    """precision_variant -> colour of a chart's colour scale (whatever values its data holds)."""
    scales = [e["scale"] for e in _walk(chart.to_dict()) if isinstance(e, dict) and e.get("field") == "precision_variant" and "scale" in e]
    assert scales
    return {d: r for s in scales for d, r in zip(s["domain"], s["range"])}


def _walk(o):
    yield o
    if isinstance(o, dict):
        for v in o.values():
            yield from _walk(v)
    elif isinstance(o, list):
        for v in o:
            yield from _walk(v)


@pytest.mark.parametrize("name", ["energy_per_sample", "quality_vs_energy", "time_to_target", "fleet_whatif"])
def test_one_colour_per_precision_whatever_the_data(name):
    """fp32 has the same colour in every chart of every report, whichever precisions a grid has."""
    few = frame(synth.rows(synth.grid_cells(precisions=("fp32",))))
    many = frame(synth.rows(synth.grid_cells(precisions=("int8", "bf16", "fp32"), variants=("baseline", "pruned"))))
    a, b = _colour_of(C.CHARTS[name](few, ST)), _colour_of(C.CHARTS[name](many, ST))
    assert a == b == dict(zip(C.PRECISION_DOMAIN, C.PRECISION_RANGE))
    assert len(set(C.PRECISION_RANGE)) == len(C.PRECISION_RANGE), "each precision+variant its own colour"
    assert a["fp32"] == C.PRECISION_COLOURS["fp32"] and a["fp32+pruned"] == C.variant_colour("fp32", "pruned") != a["fp32"]
