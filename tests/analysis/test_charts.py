"""Every chart builds (without the report's fallback) and renders to PNG for a full grid, a single
cell, missing values and no data at all; estimated energies are drawn distinctly."""

from __future__ import annotations

import collections
import json

import polars as pl
import pytest
import synth
from conftest import REPO

from joulegrid import schema as S
from joulegrid.analysis import CHART_NAMES
from joulegrid.analysis import charts as C
from joulegrid.analysis.settings import AnalysisSettings, series_files

EXAMPLE_SERIES = REPO / "config/carbon/synthetic-daily-shape.csv"
SITES = {
    "local": {"carbon_intensity_g_per_kwh": 480, "pue": 1.0},
    "slurm": {"carbon_intensity_g_per_kwh": 50, "pue": 1.4},
}
# site local has an intensity series (the when_to_run chart); the other charts use the annual means
SITES["local"]["carbon_intensity"] = {
    "series": str(EXAMPLE_SERIES),
    "kind": "average",
    "basis": "direct",
    "source": "synthetic",
}
ST = AnalysisSettings(sites=SITES, carbon_series=series_files(SITES))


def frame(rows):
    return pl.from_arrow(S.to_table(rows)) if rows else pl.DataFrame(schema=S.polars_schema())


def full():
    cells = synth.grid_cells(precisions=("fp32", "bf16"), repeats=2)
    rows = [synth.row(c, estimated=c.precision == "bf16", jitter=0.1 * c.repeat) for c in cells]
    rows += [
        synth.row(c, scheduler="slurm", queue_wait_s=12.0) for c in synth.grid_cells(site="slurm", phases=("infer",))
    ]
    return frame(rows)


CASES = {
    "full": full,
    "single_cell": lambda: frame(
        [synth.row(synth.grid_cells(phases=("train",), precisions=("fp32",), batch_sizes=(256,))[0])]
    ),
    # bf16: no per-epoch curves, no quality at batch size 256; fp32 (train, 256): no energy figure
    "missing_values": lambda: frame(
        [
            synth.row(
                c,
                epoch_quality=None,
                epoch_wall_s=None,
                epoch_energy_j=None,
                submit_time=None,
                **({"quality": None} if c.batch_size == 256 else {}),
            )
            for c in synth.grid_cells(precisions=("bf16",))
        ]
        + [synth.row(synth.grid_cells(precisions=("fp32",))[0], energy_j=None, mean_power_w=None, co2_kg=None)]
    ),
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
    expected = expected_marks(name, df.to_dicts())
    if case in ("only_failures", "empty") or (name in ("sites", "when_to_run") and not expected):
        assert _is_no_data(chart)  # (sites: no cell measured at two sites; when_to_run: none at the site with a series)
    else:  # what the chart draws, mark by mark, against what the rows hold
        assert not _is_no_data(chart)
        assert drawn(chart, name) == expected, name
    png = tmp_path / f"{name}.png"
    chart.save(str(png), format="png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the marks a chart draws
MARK = {
    "energy_per_sample": "point",
    "quality_vs_energy": "point",
    "time_to_target": "point",
    "scheduler_overhead": "bar",
    "fleet_whatif": "bar",
    "sites": "point",
    "when_to_run": "point",
}


# the charts that show one site at a time (charts.chooser): the SVG and the PNG show the first site
SITE_CHOOSER = ("energy_per_sample", "quality_vs_energy", "time_to_target", "fleet_whatif")


def _labels(chart, role: str) -> list[dict[str, str]]:
    """The rendered marks of one kind (vega's SVG: one aria-label per mark, "field: value; ..."), as dicts."""
    import re

    svg = _svg(chart)
    out = []
    for label in re.findall(rf'aria-label="([^"]*)"[^>]*aria-roledescription="{role}"', svg):
        out.append(dict(part.rsplit(": ", 1) for part in label.split("; ")))  # keys may hold ": "
    return out


def g(x) -> float:
    """A number rounded to 3 significant digits (how drawn and expected_marks compare figures)."""
    return float(f"{float(x):.3g}")


def drawn(chart, name: str) -> collections.Counter:
    """What the chart draws, keyed like expected_marks (numbers rounded to 3 significant digits)."""
    marks = _labels(chart, MARK[name])
    if name in ("energy_per_sample", "quality_vs_energy"):  # the axis in J, mJ, µJ or nJ: back to J
        (e,) = {k for m in marks for k in m if k.startswith("energy per sample (")}
        k = {"J": 1.0, "mJ": 1e-3, "µJ": 1e-6, "nJ": 1e-9}[e.split("(")[1].rstrip(")")]
    if name == "energy_per_sample":
        return collections.Counter((m["precision"], int(m["batch size"]), g(float(m[e]) * k)) for m in marks)
    if (
        name == "quality_vs_energy"
    ):  # the cell's point (its tooltip names it), and a black ring where it is on the Pareto front
        q = "quality (arrow: better direction)"
        return collections.Counter((m.get("config", "pareto front"), g(float(m[e]) * k), g(m[q])) for m in marks)
    if name == "time_to_target":  # one point per epoch, and a larger one at the epoch that reached the target
        return collections.Counter((m["run"], int(m["epoch"]), g(m["epoch_quality"]), m["reached"]) for m in marks)
    if name == "scheduler_overhead":
        return collections.Counter((m["site_label"], m["part"], int(m["jobs"])) for m in marks)
    if name == "sites":
        return collections.Counter((m["site"], m["config"], g(m["g CO2 / 1k samples"])) for m in marks)
    if name == "when_to_run":
        return collections.Counter((m["site"], m["panel"], int(m["hour"]), g(m["g CO2e / 1k samples"])) for m in marks)
    return collections.Counter((m["config"], g(m["J/job"])) for m in marks)  # fleet_whatif


def expected_marks(name: str, rows: list[dict]) -> collections.Counter:
    """What the rows ask each chart to draw, from the rows alone: one mark per cell (repeats averaged) that has
    the chart's figures, one per epoch of each training curve, three parts per site."""
    ok = [r for r in rows if r["status"] == "ok"]
    cells: dict[tuple, list[dict]] = collections.defaultdict(list)  # a cell: its repeats together
    for r in ok:
        cells[
            tuple(r[k] for k in ("site", "workload", "phase", "device", "precision", "variant", "batch_size"))
        ].append(r)

    def pv(r):
        return r["precision"] if r["variant"] == "baseline" else f"{r['precision']}+{r['variant']}"

    def mean(rs, f):
        return sum(f(r) for r in rs) / len(rs)

    def eps(r):
        return r["energy_j"] / r["n_samples"]

    if name in SITE_CHOOSER and len({k[0] for k in cells}) > 1:  # a drop-down picks the site: the first is drawn
        first = min(k[0] for k in cells)
        cells = {k: v for k, v in cells.items() if k[0] == first}
    out: collections.Counter = collections.Counter()
    panels: dict[tuple, list[tuple]] = collections.defaultdict(list)  # quality vs energy: (workload, phase) -> points
    for rs in cells.values():
        r = rs[0]
        has_e = all(x["energy_j"] is not None for x in rs)
        if name == "energy_per_sample" and has_e:
            out[(pv(r), r["batch_size"], g(mean(rs, eps)))] += 1
        if name == "quality_vs_energy" and has_e and all(x["quality"] is not None for x in rs):
            point = (g(mean(rs, eps)), g(mean(rs, lambda x: x["quality"])))
            out[(f"{pv(r)} bs{r['batch_size']} {r['device']}", *point)] += 1
            panels[(r["workload"], r["phase"])].append(point)
        if name == "fleet_whatif" and has_e:
            # one pass over the test split / one training run
            per_job = r["n_test"] if r["phase"] == "infer" else r["n_samples"]
            out[(f"{pv(r)} bs{r['batch_size']}", g(mean(rs, eps) * per_job))] += 1
    for pts in panels.values():  # the Pareto front of each panel (recon_mse: lower is better) gets a ring
        for e, q in pts:
            if not any(e2 <= e and q2 <= q and (e2, q2) != (e, q) for e2, q2 in pts):
                out[("pareto front", e, q)] += 1
    if name == "time_to_target":
        runs = [r for r in ok if r["phase"] == "train" and r["epoch_quality"] and r["epoch_wall_s"]]
        for r in runs:
            # no report.targets, no target_quality: the best quality every run of the workload reached
            target = max(min(x["epoch_quality"]) for x in runs if x["workload"] == r["workload"])
            reached = next(k for k, q in enumerate(r["epoch_quality"], 1) if q <= target)
            for k, q in enumerate(r["epoch_quality"], 1):
                out[(f"{pv(r)} bs{r['batch_size']} r{r['repeat']}", k, g(q), str(k == reached).lower())] += 1 + (
                    k == reached
                )
    if name == "sites":  # a cell measured at two sites or more: a point per site at its CO2 per 1,000 samples
        at: dict[tuple, dict[str, list[dict]]] = collections.defaultdict(dict)
        for (site, *rest), rs in cells.items():
            at[tuple(rest)][site] = rs
        for per_site in at.values():
            for site, rs in per_site.items():
                if len(per_site) >= 2 and all(x["energy_j"] is not None for x in rs):
                    f = SITES[site]
                    co2 = mean(rs, eps) * 1000 / 3.6e6 * f["pue"] * f["carbon_intensity_g_per_kwh"]
                    out[(site, f"{pv(rs[0])} bs{rs[0]['batch_size']}", g(co2))] += 1
    if name == "when_to_run":  # site local (the series): its lowest-energy cell per workload and phase, hour by hour
        typical = synth.typical_day(EXAMPLE_SERIES)
        best: dict[tuple, float] = {}
        for (site, wl, ph, *_), rs in cells.items():
            if site == "local" and all(x["energy_j"] is not None for x in rs):
                best[(wl, ph)] = min(best.get((wl, ph), float("inf")), mean(rs, eps))
        for (wl, ph), e in best.items():
            for h, i in typical.items():
                out[("local", f"{wl} · {ph}", h, g(e * 1000 / 3.6e6 * SITES["local"]["pue"] * i))] += 1
    if name == "scheduler_overhead":
        for site in {r["site"] for r in ok}:
            mine = [r for r in ok if r["site"] == site]
            for part in ("queue wait", "start-up, setup, write", "measured phase"):
                out[(f"{site} ({mine[0]['scheduler']})", part, len(mine))] += 1
    return out


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
    scales = [
        e["scale"]
        for e in _walk(chart.to_dict())
        if isinstance(e, dict) and e.get("field") == "precision_variant" and "scale" in e
    ]
    assert scales
    return {d: r for s in scales for d, r in zip(s["domain"], s["range"], strict=False)}


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
    """fp32 has the same colour in every chart of every report, whichever precisions a grid has; the legend (the
    colour scale's domain) lists only the precisions the chart draws."""
    few = frame(synth.rows(synth.grid_cells(precisions=("fp32",))))
    many = frame(synth.rows(synth.grid_cells(precisions=("int8", "bf16", "fp32"), variants=("baseline", "pruned"))))
    a, b = _colour_of(C.CHARTS[name](few, ST)), _colour_of(C.CHARTS[name](many, ST))
    fixed = dict(zip(C.PRECISION_DOMAIN, C.PRECISION_RANGE, strict=True))
    assert a == {"fp32": fixed["fp32"]}
    drawn_many = {r["precision"] + ("" if r["variant"] == "baseline" else "+" + r["variant"]) for r in many.to_dicts()}
    assert b == {k: fixed[k] for k in b} and "fp32" in b and set(b) <= drawn_many
    if name != "fleet_whatif":  # (the fleet chart shows the 10 configurations with the least energy per panel)
        assert set(b) == drawn_many
    assert len(set(C.PRECISION_RANGE)) == len(C.PRECISION_RANGE), "each precision+variant its own colour"
    assert (
        a["fp32"] == C.PRECISION_COLOURS["fp32"]
        and fixed["fp32+pruned"] == C.variant_colour("fp32", "pruned") != a["fp32"]
    )
