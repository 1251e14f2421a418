"""Carbon over time (joulegrid.carbon; docs/sites.md, "Carbon intensity over time"), on rows, without Snakemake:
the series integrated exactly across period boundaries, a run at a known time, the fallback, every documented
error of a bad series or sites entry, the default configuration as before, the report's "when to run" saving
recomputed by hand from the rows, the stamp, the example series and the download converters."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime, timedelta

import polars as pl
import pytest
import synth
import yaml
from conftest import REPO, html_tables

from joulegrid import carbon
from joulegrid import schema as S
from joulegrid.analysis import aggregate as A
from joulegrid.analysis.report import build_report
from joulegrid.analysis.settings import AnalysisSettings, series_files
from joulegrid.cli import main as cli
from joulegrid.sites import SiteError, load_sites

EXAMPLE = REPO / "config/carbon/synthetic-daily-shape.csv"
US = 1_000_000


def t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def us(d: datetime) -> int:
    return int(round(d.timestamp() * US))


def frame(rows):
    return pl.from_arrow(S.to_table(rows))


def local_sites(series: str | None = None, annual: float = 180.0, pue: float = 1.4, **extra) -> dict:
    """A sites mapping with site local at the series (checked and normalised as load_sites does), slurm without."""
    entry = {"scheduler": "local", "pue": pue, "source": "annual source"}
    if series:
        entry["carbon_intensity"] = {
            "annual": annual,
            "series": series,
            "kind": "average",
            "basis": "direct",
            "source": "synthetic test series",
            **extra,
        }
    else:
        entry["carbon_intensity_g_per_kwh"] = annual
    sites = {"local": entry, "slurm": {"scheduler": "slurm", "carbon_intensity_g_per_kwh": 50.0, "pue": 1.2}}
    for name, e in sites.items():
        carbon.normalise_site(name, e, "test sites")
    return sites


def timed_row(cell, window: tuple[datetime, datetime], job: tuple[datetime, datetime] | None = None, **kw):
    """A synthetic row (tests/synth.py) whose measured window and whole job ran at the given UTC times."""
    r = synth.row(cell, **kw)
    a, b = window
    ja, jb = job or (a - timedelta(seconds=20), b + timedelta(seconds=5))
    r.update(
        window_started_at=a,
        window_finished_at=b,
        process_started_at=ja,
        started_at=ja + timedelta(seconds=1),
        finished_at=jb,
        job_energy_j=(r["energy_j"] or 0) * 1.5 if r["energy_j"] is not None else None,
    )
    return r


# ------------------------------------------------------------------ integration
KNOWN = """# a series of known shape: half hours, one hour given by its end, then a gap
timestamp,end,g_per_kwh
2025-03-01T00:00Z,2025-03-01T00:30Z,100
2025-03-01T00:30Z,2025-03-01T01:00Z,250
2025-03-01T01:00Z,2025-03-01T02:00Z,40
2025-03-01T02:30Z,2025-03-01T03:00Z,400
"""
PERIODS = [
    ("2025-03-01T00:00Z", "2025-03-01T00:30Z", 100.0),
    ("2025-03-01T00:30Z", "2025-03-01T01:00Z", 250.0),
    ("2025-03-01T01:00Z", "2025-03-01T02:00Z", 40.0),
    ("2025-03-01T02:30Z", "2025-03-01T03:00Z", 400.0),
]


def by_hand(a: datetime, b: datetime) -> float | None:
    """The time-weighted mean over [a, b) of PERIODS, each value the mean of its period; None if not covered."""
    covered = sum(max(0.0, (min(b, t(e)) - max(a, t(s))).total_seconds()) for s, e, _ in PERIODS)
    if covered < (b - a).total_seconds():
        return None
    return (
        sum(v * max(0.0, (min(b, t(e)) - max(a, t(s))).total_seconds()) for s, e, v in PERIODS)
        / (b - a).total_seconds()
    )


@pytest.mark.parametrize(
    "a, b",
    [
        ("2025-03-01T00:10Z", "2025-03-01T00:20Z"),  # inside one period
        ("2025-03-01T00:20Z", "2025-03-01T00:40Z"),  # across one boundary, 10 min each side
        ("2025-03-01T00:29:59.5Z", "2025-03-01T00:30:00.5Z"),  # one second around a boundary
        ("2025-03-01T00:00Z", "2025-03-01T02:00Z"),  # exactly three periods, boundary to boundary
        ("2025-03-01T00:17:03Z", "2025-03-01T01:41:07Z"),  # three periods, odd edges
        ("2025-03-01T02:40Z", "2025-03-01T03:00Z"),  # up to the series' end
        ("2025-03-01T01:50Z", "2025-03-01T02:10Z"),  # into the gap: not covered
        ("2025-03-01T02:50Z", "2025-03-01T03:10Z"),  # past the end: not covered
        ("2025-02-28T23:59Z", "2025-03-01T00:10Z"),  # before the start: not covered
    ],
)
def test_integration_is_exact_across_period_boundaries(tmp_path, a, b):
    f = tmp_path / "known.csv"
    f.write_text(KNOWN)
    s = carbon.read_series(f)
    mean, covered = s.mean_over([us(t(a))], [us(t(b))])
    expected = by_hand(t(a), t(b))
    assert bool(covered[0]) is (expected is not None)
    if expected is not None:
        assert mean[0] == pytest.approx(expected, rel=1e-12)
    assert s.resolution_s == 1800 and len(s.gaps) == 1  # the hour given by its end; 02:00-02:30 uncovered


def test_a_value_is_the_mean_of_the_period_starting_at_its_timestamp(tmp_path):
    """Without an end column a period lasts to the next timestamp, at most one resolution (the commonest step); a
    zero-length window at a boundary takes the period that starts there."""
    f = tmp_path / "s.csv"
    f.write_text(
        "timestamp,g_per_kwh\n2025-03-01T00:00Z,100\n2025-03-01T00:30Z,200\n2025-03-01T01:00Z,300\n"
        "2025-03-01T03:00Z,500\n"
    )
    s = carbon.read_series(f)
    assert [g[0] for g in s.gaps] == [us(t("2025-03-01T01:30Z"))]  # 01:30-03:00: no value
    m, c = s.mean_over(
        [us(t("2025-03-01T00:30Z")), us(t("2025-03-01T03:29Z"))],
        [us(t("2025-03-01T00:30Z")), us(t("2025-03-01T03:30Z"))],
    )
    assert list(m) == [200.0, 500.0] and all(c)  # the last period lasts one resolution (30 min)


# ------------------------------------------------------------------ a run at a known time
def test_a_run_at_a_known_time_gets_its_periods_intensity():
    values = synth.series_values(EXAMPLE)  # the example file, read by hand
    sites = local_sites(str(EXAMPLE), annual=180.0, pue=1.4)
    cell = synth.grid_cells(phases=("infer",), precisions=("fp32",), batch_sizes=(256,))[0]
    window = (t("2025-01-08T03:10Z"), t("2025-01-08T03:20Z"))  # inside the half hour from 03:00
    job = (t("2025-01-08T02:50Z"), t("2025-01-08T03:40Z"))  # 10 min of 02:30, 30 of 03:00, 10 of 03:30
    row = timed_row(cell, window, job)
    d = carbon.apply(frame([row]), sites, series_files(sites)).row(0, named=True)
    v = values[t("2025-01-08T03:00Z")]
    assert d["carbon_intensity_series_g_per_kwh"] == pytest.approx(v, rel=1e-12)
    assert d["co2_series_kg"] == pytest.approx(row["energy_j"] / 3.6e6 * 1.4 * v / 1000, rel=1e-12)
    assert d["co2_annual_kg"] == pytest.approx(row["energy_j"] / 3.6e6 * 1.4 * 180.0 / 1000, rel=1e-12)
    job_i = (10 * values[t("2025-01-08T02:30Z")] + 30 * v + 10 * values[t("2025-01-08T03:30Z")]) / 50
    assert d["job_carbon_intensity_series_g_per_kwh"] == pytest.approx(job_i, rel=1e-12)
    assert d["job_co2_series_kg"] == pytest.approx(row["job_energy_j"] / 3.6e6 * 1.4 * job_i / 1000, rel=1e-12)
    assert d["job_co2_annual_kg"] == pytest.approx(row["job_energy_j"] / 3.6e6 * 1.4 * 180.0 / 1000, rel=1e-12)
    assert d["co2_kg"] == row["co2_kg"], "the job's own CO2 (annual, as recorded) is never rewritten"
    assert d["carbon_fallback"] is None
    assert (d["carbon_kind"], d["carbon_basis"], d["carbon_resolution_s"]) == ("average", "direct", 1800.0)
    assert d["carbon_source"] == "synthetic test series" and d["carbon_series"].startswith(f"{EXAMPLE} (sha256 ")


def test_windows_the_series_does_not_cover_take_the_annual_mean_and_say_so(tmp_path):
    f = tmp_path / "gappy.csv"
    f.write_text(KNOWN)
    sites = local_sites(str(f), annual=300.0, pue=1.0)
    cells = synth.grid_cells(phases=("infer",), precisions=("fp32",), batch_sizes=(256,), repeats=4)
    rows = [
        timed_row(cells[0], (t("2026-12-01T10:00Z"), t("2026-12-01T10:05Z"))),  # long after the series
        timed_row(cells[1], (t("2025-03-01T01:55Z"), t("2025-03-01T02:05Z"))),  # across its gap
        {
            **timed_row(cells[2], (t("2025-03-01T00:05Z"), t("2025-03-01T00:10Z"))),
            "window_started_at": None,
            "window_finished_at": None,
        },  # a row without window times (an older joulegrid)
        timed_row(
            cells[3], (t("2025-03-01T00:05Z"), t("2025-03-01T00:10Z")), (t("2025-03-01T00:00Z"), t("2025-03-01T00:20Z"))
        ),  # covered: window and job
    ]
    d = carbon.apply(frame(rows), sites, series_files(sites)).to_dicts()
    for r in d[:3]:
        assert r["carbon_intensity_series_g_per_kwh"] == 300.0 and r["co2_series_kg"] == pytest.approx(
            r["co2_annual_kg"]
        )
        assert "annual mean for the measured window" in r["carbon_fallback"]
    assert d[0]["carbon_fallback"] == (
        "annual mean for the measured window (2026-12-01T10:00Z to 2026-12-01T10:05Z) and the whole job "
        f"(2026-12-01T09:59:40Z to 2026-12-01T10:05:05Z): not fully covered by {f} (2025-03-01T00:00Z to "
        "2025-03-01T03:00Z, 1 gap(s))"
    )
    assert "1 gap(s)" in d[1]["carbon_fallback"]
    assert "the row has no times for it" in d[2]["carbon_fallback"]
    assert d[3]["carbon_fallback"] is None and d[3]["carbon_intensity_series_g_per_kwh"] == pytest.approx(100.0)
    assert d[3]["job_carbon_intensity_series_g_per_kwh"] == pytest.approx(100.0)


# ------------------------------------------------------------------ bad input: every documented error
def _csv(body: str) -> str:
    return "# a comment line first: line numbers count every line of the file\n" + body


BAD = {
    "missing column": ("s.csv", _csv("time,value\n2025-01-01T00:00Z,1\n"), ["no column timestamp, g_per_kwh", "Fix:"]),
    "no time zone": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-01-01 00:30,110\n"),
        ["line 4", "'2025-01-01 00:30' has no time zone", "Fix:"],
    ),
    "not a time": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-13-45T00:30Z,110\n"),
        ["line 4", "not an ISO 8601 time"],
    ),
    "out of order": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T01:00Z,100\n2025-01-01T00:30Z,110\n"),
        ["line 4", "earlier than line 3", "Fix: sort"],
    ),
    "duplicate": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-01-01T01:00+01:00,110\n"),
        ["line 4", "repeats line 3", "overlap"],
    ),
    "overlap": (
        "s.csv",
        _csv(
            "timestamp,end,g_per_kwh\n2025-01-01T00:00Z,2025-01-01T01:00Z,100\n"
            "2025-01-01T00:30Z,2025-01-01T01:30Z,110\n"
        ),
        ["line 3", "overlaps the next one (line 4"],
    ),
    "end not after": (
        "s.csv",
        _csv("timestamp,end,g_per_kwh\n2025-01-01T00:00Z,2025-01-01T00:00Z,100\n"),
        ["line 3", "is not after its timestamp"],
    ),
    "not a number": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-01-01T00:30Z,n/a\n"),
        ["line 4", "'n/a' is not a number"],
    ),
    "negative": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-01-01T00:30Z,-3\n"),
        ["line 4", "negative"],
    ),
    "g per MWh": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,207000\n2025-01-01T00:30Z,210000\n"),
        ["line 3", "implausible", "divide by 1000"],
    ),
    "kg per kWh": (
        "s.csv",
        _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,0.207\n2025-01-01T00:30Z,0.21\n"),
        ["kg/kWh", "multiply the values by 1000"],
    ),
    "regions": (
        "s.csv",
        _csv("timestamp,g_per_kwh,region\n2025-01-01T00:00Z,100,GB\n2025-01-01T00:00Z,90,North West England\n"),
        ["holds 2 regions", "carbon_intensity.region"],
    ),
    "one row": ("s.csv", _csv("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n"), ["one row only", "end column"]),
    "no rows": ("s.csv", _csv("timestamp,g_per_kwh\n"), ["no rows"]),
    "not a format": ("s.txt", "timestamp,g_per_kwh\n", ["is not a series format", ".csv or .parquet"]),
    "naive parquet": ("s.parquet", None, ["without a time zone"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_series_file_gets_its_documented_error(tmp_path, case):
    name, text, expected = BAD[case]
    f = tmp_path / name
    if text is None:
        pl.DataFrame(
            {"timestamp": [datetime(2025, 1, 1), datetime(2025, 1, 1, 0, 30)], "g_per_kwh": [1e2, 2e2]}
        ).write_parquet(f)
    else:
        f.write_text(text)
    with pytest.raises(carbon.SeriesError) as e:
        carbon.read_series(f, name="config/carbon/x.csv", site="blackett")
    msg = str(e.value)
    assert msg.startswith("config/carbon/x.csv (site blackett's carbon_intensity.series): "), msg
    for frag in expected:
        assert frag in msg, msg


def test_region_errors_and_choice(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text(
        "timestamp,g_per_kwh,region\n2025-01-01T00:00Z,100,GB\n2025-01-01T00:30Z,110,GB\n"
        "2025-01-01T00:00Z,90,North West England\n2025-01-01T00:30Z,95,North West England\n"
    )
    assert list(carbon.read_series(f, "North West England").values) == [90.0, 95.0]
    with pytest.raises(
        carbon.SeriesError, match="no rows of region 'Wales'.*Fix: use one of 'GB', 'North West England'"
    ):
        carbon.read_series(f, "Wales")
    g = tmp_path / "g.csv"
    g.write_text("timestamp,g_per_kwh\n2025-01-01T00:00Z,100\n2025-01-01T00:30Z,110\n")
    with pytest.raises(carbon.SeriesError, match="has no region column"):
        carbon.read_series(g, "GB")
    with pytest.raises(carbon.SeriesError, match="does not exist"):
        carbon.read_series(tmp_path / "missing.csv")


SITE_ERRORS = {
    "annual differs": (
        {"carbon_intensity_g_per_kwh": 207, "carbon_intensity": {"annual": 200}},
        ["key blackett.carbon_intensity.annual: 200 differs from", "Fix:"],
    ),
    "no annual": (
        {"carbon_intensity": {"series": "x.csv", "kind": "average", "basis": "direct", "source": "s"}},
        ["key blackett.carbon_intensity: no annual mean", "Fix: add carbon_intensity.annual"],
    ),
    "series without kind/basis": (
        {"carbon_intensity": {"annual": 207, "series": "x.csv", "source": "s"}},
        ["a series needs kind, basis", "Fix:"],
    ),
    "unknown kind": (
        {"carbon_intensity": {"annual": 207, "kind": "hourly"}},
        ["kind", "'hourly' is not allowed", "average, marginal"],
    ),
    "unknown key": ({"carbon_intensity": {"annual": 207, "seris": "x.csv"}}, ["unknown key(s) 'seris'"]),
}


@pytest.mark.parametrize("case", list(SITE_ERRORS))
def test_a_bad_carbon_intensity_entry_names_the_key_and_the_fix(tmp_path, case):
    entry, expected = SITE_ERRORS[case]
    f = tmp_path / "sites.yaml"
    f.write_text(yaml.safe_dump({"blackett": {"scheduler": "htcondor", "pue": 1.4, **entry}}))
    with pytest.raises(SiteError) as e:
        load_sites(f)
    for frag in [str(f), *expected]:
        assert frag in str(e.value), str(e.value)


def test_a_bad_series_is_refused_when_the_workflow_starts(tmp_path):
    """AnalysisSettings.from_config is what the Snakefile's stamps call at parse time (before any job)."""
    from joulegrid.config import ConfigError, load

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,g_per_kwh\n2025-01-01 00:00,100\n2025-01-01 00:30,100\n")
    sites = yaml.safe_load((REPO / "config/sites.yaml").read_text())
    sites["local"]["carbon_intensity"] = {"series": str(bad), "kind": "average", "basis": "direct", "source": "s"}
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(sites))
    config, loaded = load([], [f"sites_file={tmp_path / 'sites.yaml'}"])
    with pytest.raises(ConfigError, match="line 2: timestamp '2025-01-01 00:00' has no time zone"):
        AnalysisSettings.from_config(config, loaded)


# ------------------------------------------------------------------ the default configuration
def test_without_a_series_the_summary_and_report_are_as_before(tmp_path):
    """config/sites.yaml has no series: the summary's columns keep the run files' values, the carbon columns are
    the annual-mean figures, SCI with the series is SCI, and the report says no site has a series."""
    cells = synth.grid_cells(precisions=("fp32", "bf16"), repeats=2) + synth.grid_cells(
        site="lxplus", phases=("infer",)
    )
    rows = [synth.row(c, scheduler="htcondor" if c.site == "lxplus" else "local") for c in cells]
    synth.write_runs(tmp_path, rows)
    st = AnalysisSettings.defaults()
    assert st.carbon_series == {}
    A.aggregate(str(tmp_path / "runs"), str(tmp_path / "plain.parquet"))  # the run files' columns, as aggregated before
    A.aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"), carbon=(st.sites, st.carbon_series))
    plain, with_carbon = pl.read_parquet(tmp_path / "plain.parquet"), pl.read_parquet(tmp_path / "summary.parquet")
    assert plain.drop(carbon.COLUMNS).equals(with_carbon.drop(carbon.COLUMNS))
    assert plain.select(carbon.COLUMNS).null_count().row(0) == (plain.height,) * len(
        carbon.COLUMNS
    )  # null in run files
    for r in with_carbon.to_dicts():
        annual, pue = st.sites[r["site"]]["carbon_intensity_g_per_kwh"], st.sites[r["site"]]["pue"]
        assert r["carbon_intensity_series_g_per_kwh"] == annual and r["carbon_resolution_s"] is None
        assert r["co2_series_kg"] == r["co2_annual_kg"] == pytest.approx(r["energy_j"] / 3.6e6 * pue * annual / 1000)
        assert r["carbon_fallback"] == f"annual mean: site {r['site']} has no intensity series"
    build_report(str(tmp_path / "summary.parquet"), str(tmp_path / "report"), settings=st)
    page = (tmp_path / "report/index.html").read_text()
    assert "No site has an intensity series: every CO2 figure of this report uses the site's annual mean" in page
    full = pl.read_csv(tmp_path / "report/cells.csv")
    assert full["sci_series_g_per_1k"].to_list() == pytest.approx(full["sci_g_per_1k"].to_list(), rel=1e-9)


# ------------------------------------------------------------------ when to run, by hand
def test_when_to_run_saving_recomputed_by_hand_from_the_rows(tmp_path):
    k = 6
    sites = local_sites(str(EXAMPLE), annual=180.0, pue=1.2)
    st = dataclasses.replace(AnalysisSettings(sites=sites, carbon_series=series_files(sites)), cleanest_hours=k)
    cells = synth.grid_cells(phases=("infer",), precisions=("fp32", "bf16"), batch_sizes=(256,), repeats=2)
    # the runs' measured windows: 17:50-18:20 (crossing an hour), 18:05-18:15, 02:40-02:55 and 09:00-09:30 UTC
    spans = [
        ("2025-01-08T17:50Z", "2025-01-08T18:20Z"),
        ("2025-01-09T18:05Z", "2025-01-09T18:15Z"),
        ("2025-01-10T02:40Z", "2025-01-10T02:55Z"),
        ("2025-01-11T09:00Z", "2025-01-11T09:30Z"),
    ]
    rows = [timed_row(c, (t(a), t(b))) for c, (a, b) in zip(cells, spans, strict=True)]
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    build_report(str(summary), str(tmp_path / "report"), settings=st)
    page = (tmp_path / "report/index.html").read_text()

    # by hand: the typical day from the CSV, the measured hours from the rows
    day = synth.typical_day(EXAMPLE)
    even = sum(day.values()) / 24
    cleanest = sorted(sorted(day, key=lambda h: (day[h], h))[:k])
    i_k = sum(day[h] for h in cleanest) / k
    seconds = {h: 0.0 for h in range(24)}
    for a, b in spans:
        x, y = t(a), t(b)
        while x < y:
            nxt = min(y, x.replace(minute=0, second=0) + timedelta(hours=1))
            seconds[x.hour] += (nxt - x).total_seconds()
            x = nxt
    measured = sum(seconds[h] * day[h] for h in range(24)) / sum(seconds.values())

    tables = html_tables(page, "id='when-to-run'", "id='hotspots'")
    case = next(tb for tb in tables if tb and "intensity_even_g_per_kwh" in tb[0])[0]
    assert float(case["intensity_even_g_per_kwh"]) == pytest.approx(even, rel=1e-3)
    assert float(case["intensity_measured_g_per_kwh"]) == pytest.approx(measured, rel=1e-3)
    assert float(case["intensity_cleanest_g_per_kwh"]) == pytest.approx(i_k, rel=1e-3)
    assert case["cleanest_hours_utc"] == ", ".join(f"{h:02d}" for h in cleanest)
    assert case["measured_hours_utc"] == "02, 09, 17, 18"
    assert float(case["saving_vs_even_pct"].rstrip(" %")) == pytest.approx((1 - i_k / even) * 100, abs=0.051)
    assert float(case["saving_vs_measured_pct"].rstrip(" %")) == pytest.approx((1 - i_k / measured) * 100, abs=0.051)
    assert float(case["capacity_factor"]) == pytest.approx(24 / k)
    # the fleet's tonnes per day in the three cases: fleet.csv's MWh/day x each intensity
    fleet = pl.read_csv(tmp_path / "report/fleet.csv")
    per_cell = next(tb for tb in tables if tb and "t_co2_per_day_even" in tb[0])
    for r in per_cell:
        mwh = fleet.filter((pl.col("precision_variant") == r["precision_variant"]) & (pl.col("phase") == r["phase"]))[
            "mwh_per_day"
        ][0]
        assert float(r["t_co2_per_day_even"]) == pytest.approx(mwh * even / 1000, rel=1e-3)
        assert float(r["t_co2_per_day_measured"]) == pytest.approx(mwh * measured / 1000, rel=1e-3)
        assert float(r["t_co2_per_day_cleanest"]) == pytest.approx(mwh * i_k / 1000, rel=1e-3)
    assert "needs 4× the concurrent job slots" in page and "average-intensity estimate" in page
    # the runs' CO2 with the series: each row's window integrated by hand from the file's values
    values = synth.series_values(EXAMPLE)
    co2 = 0.0
    for r, (a, b) in zip(rows, spans, strict=True):
        x, y, acc = t(a), t(b), 0.0
        while x < y:
            start = x.replace(minute=30 if x.minute >= 30 else 0, second=0)
            nxt = min(y, start + timedelta(minutes=30))
            acc += values[start] * (nxt - x).total_seconds()
            x = nxt
        co2 += r["energy_j"] / 3.6e6 * 1.2 * acc / (t(b) - t(a)).total_seconds() / 1000
    runs = next(tb for tb in tables if tb and "window_from_series" in tb[0])[0]
    assert runs["runs"] == "4" and runs["window_from_series"] == "4"
    assert float(runs["co2_series_kg"]) == pytest.approx(co2, rel=1e-3)


# ------------------------------------------------------------------ the stamp rule aggregate depends on
def test_a_changed_series_file_changes_the_carbon_and_report_stamps(tmp_path):
    f = tmp_path / "gb.csv"
    shutil.copy(EXAMPLE, f)
    sites = local_sites(str(f))

    def stamps():
        st = AnalysisSettings(sites=sites, carbon_series=series_files(sites))
        return carbon.stamp(sites, st.carbon_series), st.to_json()

    first = stamps()
    assert stamps() == first, "the same content, the same stamps"
    text = f.read_text()
    f.write_text(text.replace("2025-01-06T00:00Z,166.0", "2025-01-06T00:00Z,167.0"))  # one value corrected
    second = stamps()
    assert second[0] != first[0] and second[1] != first[1]
    assert json.loads(second[0])["series"]["local"]["sha256"] != json.loads(first[0])["series"]["local"]["sha256"]


# ------------------------------------------------------------------ the example series
def test_the_example_series_is_synthetic_and_follows_its_header():
    import math

    text = EXAMPLE.read_text()
    assert "synthetic" in EXAMPLE.name and text.startswith("# SYNTHETIC EXAMPLE: NOT MEASURED GRID DATA")
    s = carbon.read_series(EXAMPLE)
    assert (s.first, s.last, s.resolution_s, s.gaps) == (t("2025-01-06T00:00Z"), t("2025-01-20T00:00Z"), 1800.0, [])

    def dh(h, c):
        return ((h - c + 12) % 24) - 12

    for start, g in synth.series_values(EXAMPLE).items():  # the formula its header states
        h, d = start.hour + start.minute / 60, (start - t("2025-01-06T00:00Z")).total_seconds() / 86400
        f = (
            180
            + 60 * math.exp(-((dh(h, 17.5) / 2.5) ** 2))
            - 55 * math.exp(-((dh(h, 3.5) / 3) ** 2))
            + 35 * math.sin(2 * math.pi * d / 5)
        )
        assert g == round(f, 1)


# ------------------------------------------------------------------ getting a series offline (docs/sites.md)
def _neso(periods, region=None):
    data = [
        {"from": a, "to": b, "intensity": {"forecast": f, "actual": act, "index": "moderate"}}
        for a, b, f, act in periods
    ]
    if region is None:
        return {"data": data}
    for d in data:
        d["intensity"].pop("actual")
    return {"data": {"regionid": 3, "dnoregion": "Electricity North West", "shortname": region, "data": data}}


def test_convert_neso_national_and_regional_responses(tmp_path, capsys):
    """The docs' commands on API responses of NESO's layout (values invented for the test): two overlapping
    14-day downloads of the national series, and the North West region's forecast."""
    (tmp_path / "gb-1.json").write_text(
        json.dumps(
            _neso(
                [
                    ("2026-01-01T00:00Z", "2026-01-01T00:30Z", 150, 148),
                    ("2026-01-01T00:30Z", "2026-01-01T01:00Z", 152, None),
                ]
            )
        )
    )
    (tmp_path / "gb-2.json").write_text(
        json.dumps(
            _neso(
                [
                    ("2026-01-01T00:30Z", "2026-01-01T01:00Z", 152, 151),
                    ("2026-01-01T01:00Z", "2026-01-01T01:30Z", 140, 139),
                ]
            )
        )
    )
    out = tmp_path / "gb.csv"
    assert (
        cli(
            [
                "carbon-series",
                "convert",
                "--from",
                "neso",
                str(tmp_path / "gb-1.json"),
                str(tmp_path / "gb-2.json"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    s = carbon.read_series(out)
    assert list(s.values) == [148.0, 151.0, 139.0], "actuals; the period given twice keeps the later download's"
    assert s.first == t("2026-01-01T00:00Z") and s.last == t("2026-01-01T01:30Z") and s.resolution_s == 1800
    assert "1 period(s) given twice" in capsys.readouterr().out
    (tmp_path / "nw-1.json").write_text(
        json.dumps(
            _neso(
                [
                    ("2026-01-01T00:00Z", "2026-01-01T00:30Z", 90, None),
                    ("2026-01-01T00:30Z", "2026-01-01T01:00Z", 95, None),
                ],
                "North West England",
            )
        )
    )
    assert (
        cli(["carbon-series", "convert", "--from", "neso", str(tmp_path / "nw-1.json"), "-o", str(tmp_path / "nw.csv")])
        == 0
    )
    nw = carbon.read_series(tmp_path / "nw.csv", "North West England")
    assert list(nw.values) == [90.0, 95.0] and nw.region == "North West England"
    assert "2 of 2 period(s) have no actual" in capsys.readouterr().out


def test_convert_electricity_maps_and_rte_files(tmp_path):
    em = tmp_path / "FR_2025_hourly.csv"
    em.write_text(
        "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
        "Carbon Intensity gCO₂eq/kWh (life cycle assessment),Low Carbon Percentage\n"
        "2025-01-01 00:00:00,France,France,FR,25.1,40.2,95\n2025-01-01 01:00:00,France,France,FR,24.0,39.0,95\n"
    )
    for basis, want in (("direct", [25.1, 24.0]), ("lifecycle", [40.2, 39.0])):
        out = tmp_path / f"fr-{basis}.csv"
        assert (
            cli(["carbon-series", "convert", "--from", "electricitymaps", "--basis", basis, str(em), "-o", str(out)])
            == 0
        )
        s = carbon.read_series(out, "FR")
        assert list(s.values) == want and s.first == t("2025-01-01T00:00Z") and s.resolution_s == 3600
    with pytest.raises(SystemExit):  # --basis is required: no silent choice between direct and lifecycle
        cli(
            [
                "carbon-series",
                "convert",
                "--from",
                "electricitymaps",
                "--basis",
                "both",
                str(em),
                "-o",
                str(tmp_path / "x.csv"),
            ]
        )
    # RTE éCO2mix's layout: tab-separated Latin-1, French local time in Date + Heures, empty quarter hours, the
    # hour repeated when summer time ends (2025-10-26: 02:00 and 02:30 twice)
    rte = tmp_path / "eCO2mix_RTE_Annuel-Definitif_2025.xls"
    lines = ["Périmètre\tNature\tDate\tHeures\tConsommation\tTaux de Co2"]
    for hm, v in [
        ("01:30", "30"),
        ("01:45", ""),
        ("02:00", "31"),
        ("02:30", "32"),
        ("02:00", "33"),
        ("02:30", "34"),
        ("03:00", "35"),
    ]:
        lines.append(f"France\tDonnées définitives\t2025-10-26\t{hm}\t50000\t{v}")
    lines.append("RTE ne pourra être tenu responsable\t\t\t\t\t")
    rte.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    out = tmp_path / "fr-rte.csv"
    assert (
        cli(
            [
                "carbon-series",
                "convert",
                "--from",
                "csv",
                str(rte),
                "--sep",
                "\t",
                "--encoding",
                "latin-1",
                "--time",
                "Date",
                "--time",
                "Heures",
                "--value",
                "Taux de Co2",
                "--tz",
                "Europe/Paris",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    s = carbon.read_series(out)
    # 01:30 CEST = 23:30Z; the first 02:00 CEST = 00:00Z, the second 02:00 CET = 01:00Z; 03:00 CET = 02:00Z
    starts = [carbon._dt(int(x)) for x in s.starts]
    assert starts == [t("2025-10-25T23:30Z") + timedelta(minutes=30 * i) for i in range(6)]
    assert list(s.values) == [30.0, 31.0, 32.0, 33.0, 34.0, 35.0]


def test_check_says_what_a_series_holds(capsys):
    assert cli(["carbon-series", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "672 periods of 1800 s, 2025-01-06T00:00Z to 2025-01-20T00:00Z" in out and "cleanest 8 hours:" in out


def test_the_docs_sites_entries_load(tmp_path):
    """docs/sites.md, "Carbon intensity over time": each YAML example is a valid sites entry; the one that tries
    the synthetic example series reads it."""
    import re

    doc = (REPO / "docs/sites.md").read_text()
    section = doc[doc.index("## Carbon intensity over time") :]
    section = section[: section.index("\n## ", 1)]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert len(blocks) == 2
    base = yaml.safe_load((REPO / "config/sites.yaml").read_text())
    for block, merge in zip(blocks, (True, False), strict=True):  # blackett's keys "as before"; local's whole entry
        ((name, entry),) = block.items()
        f = tmp_path / "sites.yaml"
        f.write_text(yaml.safe_dump({**base, name: {**base[name], **entry} if merge else entry}))
        sites = load_sites(f)
        assert sites[name]["carbon_intensity_g_per_kwh"] == entry["carbon_intensity"]["annual"]
    assert blocks[1]["local"]["carbon_intensity"]["series"] == "config/carbon/synthetic-daily-shape.csv"
    files = series_files(sites)  # the last block: site local at the example series
    assert set(files) == {"local"} and carbon.read_series(files["local"]["path"]).mean() == pytest.approx(180, abs=0.5)
