"""Carbon intensity over time: a site's intensity series, the CO2 of each run integrated over its own
windows, and when to run. The one home of the series (docs/sites.md, "Carbon intensity over time").

A site's carbon intensity (config/sites.yaml) is today's plain number, ``carbon_intensity_g_per_kwh:
207`` (an annual mean: it means exactly what it meant before), or a mapping beside or instead of it::

    carbon_intensity:
      annual: 207                    # the annual mean: the fallback, and what the job's own row uses
      series: config/carbon/gb.csv   # CSV or Parquet: timestamp, g_per_kwh [, end] [, region]
      kind: average                  # average | marginal
      basis: direct                  # direct (combustion at the plant) | lifecycle (+ fuel chain, construction)
      source: "NESO Carbon Intensity API, national, actual"
      region: North West England     # the file's rows of this region (files with a region column)

**Interval semantics.** Each value is the MEAN intensity over the period that STARTS at its timestamp
(period-beginning), as NESO publishes half-hours (``from`` .. ``to``) and Electricity Maps its hours
("Datetime (UTC)" is the hour's start). The period ends at the row's ``end`` where the file has that
column (NESO's ``to``), else at the next row's timestamp, but at most one *resolution* (the commonest
step between timestamps) after its own: time beyond that is a gap, covered by no value. A point reading
(an instantaneous value) is not what these sources publish; treating a period mean as a point at its
start would shift every value by half a period. Integration is exact under this convention: the mean
intensity over a window [a, b) is the time-weighted mean of the periods it overlaps, each weighted by
the overlap's length.

**What the analysis does with it.** The job's row keeps the annual mean (``co2_kg``, as before: the
job never reads the series). The analysis (``apply``, run by ``joulegrid aggregate`` and the report
with the CURRENT sites file and series) integrates the series over each row's measured window
(``window_started_at`` .. ``window_finished_at``) and over the whole job (``process_started_at`` ..
``finished_at``), assuming the energy was drawn at a constant rate within each, and writes the
time-resolved CO2 beside the annual-mean CO2 with the series' provenance. A window the series does
not fully cover (outside it, or across a gap) takes the annual mean and ``carbon_fallback`` says why.
So a new or corrected series re-renders the report and measures nothing.

**When to run** (``hourly_profile``, ``fleet_cases``): the series' mean by hour of day (UTC) over its
fully covered hours stands for a typical day; the fleet what-if's CO2 per day is computed with the
jobs spread evenly over the day, at the hours the site's runs were measured, and confined to the
cleanest k hours (``fleet.cleanest_hours``).

Pure Python at import (numpy and polars are imported where used): ``joulegrid.sites`` imports it at
Snakemake's parse time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .base import SiteError, resolve_path
from .units import co2_g

log = logging.getLogger(__name__)

KINDS = ("average", "marginal")
BASES = ("direct", "lifecycle")
#: The highest plausible grid intensity in gCO2e/kWh: lignite plants emit some 1,000-1,200 g/kWh
#: (lifecycle), no grid mix more. A value above it is another unit (g/MWh, mg/kWh).
MAX_G_PER_KWH = 2000.0
#: A series whose every value is below this is in kg/kWh (or t/MWh), not g/kWh.
KG_SUSPECT_BELOW = 2.0
US = 1_000_000  # microseconds per second: timestamps are held as int64 microseconds since the epoch (UTC)
HOUR_US = 3600 * US
SERIES_SUFFIXES = (".csv", ".parquet")
REQUIRED_COLUMNS = ("timestamp", "g_per_kwh")
OPTIONAL_COLUMNS = ("end", "region")


class SeriesError(SiteError):
    """An intensity series (or a site's carbon_intensity entry) that cannot be used: the message names the
    file, the line or key, and the fix."""


# ------------------------------------------------------------------ a site's carbon facts
@dataclass(frozen=True)
class CarbonSpec:
    """A site's carbon intensity as the sites file gives it (``site_carbon``)."""

    site: str
    annual: float | None  # the annual mean, gCO2e/kWh (the fallback)
    source: str | None  # where the figures come from
    kind: str | None = None  # average | marginal (None: not stated, e.g. today's plain number)
    basis: str | None = None  # direct | lifecycle (None: not stated)
    series: str | None = None  # the series file as the sites file names it
    region: str | None = None  # the rows of this region in the series file


def site_carbon(site: str, entry: dict[str, Any] | None) -> CarbonSpec:
    """The carbon facts of one (normalised: ``normalise_site``) site entry."""
    entry = entry or {}
    m = entry.get("carbon_intensity") if isinstance(entry.get("carbon_intensity"), dict) else {}
    annual = entry.get("carbon_intensity_g_per_kwh")
    return CarbonSpec(
        site=site,
        annual=float(annual) if annual is not None else None,
        source=m.get("source") or entry.get("source"),
        kind=m.get("kind"),
        basis=m.get("basis"),
        series=m.get("series"),
        region=m.get("region"),
    )


def normalise_site(site: str, entry: dict[str, Any], where: str) -> None:
    """Check a site's ``carbon_intensity`` mapping (after the JSON schema) and make its annual mean the
    site's ``carbon_intensity_g_per_kwh``, in place, so that every reader of the annual figure (the jobs'
    site facts, SCI, the fleet, the site comparison) finds it where it always was. ``where`` names the file."""
    m = entry.get("carbon_intensity")
    if not isinstance(m, dict):
        return
    at = f"{where} key {site}.carbon_intensity"
    plain = entry.get("carbon_intensity_g_per_kwh")
    annual = m.get("annual")
    if annual is not None and plain is not None and float(annual) != float(plain):
        raise SeriesError(
            f"{at}.annual: {annual} differs from {site}.carbon_intensity_g_per_kwh: {plain}. Fix: give the annual "
            f"mean once (carbon_intensity.annual), or the same value in both"
        )
    if annual is None and plain is None:
        raise SeriesError(
            f"{at}: no annual mean. Fix: add carbon_intensity.annual (gCO2e/kWh): it is the fallback for runs the "
            "series does not cover, and what each job's own row uses (co2_kg)"
        )
    if m.get("series"):
        missing = [k for k in ("kind", "basis", "source") if not m.get(k)]
        if missing:
            raise SeriesError(
                f"{at}: a series needs {', '.join(missing)}. Fix: state what the series is: kind (average or "
                "marginal), "
                "basis (direct: combustion at the plant; lifecycle: plus fuel chain and construction) and source "
                '(docs/sites.md, "Carbon intensity over time"), so that series of different kinds are never mixed'
            )
    entry["carbon_intensity_g_per_kwh"] = float(annual) if annual is not None else plain


def series_files(sites: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, dict[str, str]]:
    """{site: {"path": resolved path, "name": as the sites file names it, "sha256": of its content}} of every
    site with a series, each read and checked (``read_series``: a bad file is refused with its line and the
    fix). The sha256 is part of the report stamp (analysis.settings), so a changed series re-renders."""
    out = {}
    for site, entry in sorted((sites or {}).items()):
        spec = site_carbon(site, entry)
        if not spec.series:
            continue
        path = resolve_path(spec.series, Path(base_dir))
        s = read_series(path, spec.region, name=spec.series, site=site)
        out[site] = {"path": str(path.resolve()), "name": spec.series, "sha256": s.sha256}
    return out


# ------------------------------------------------------------------ a series
@dataclass
class Series:
    """An intensity series: disjoint periods [starts, ends) (int64 µs, UTC) of mean intensities (g/kWh)."""

    name: str  # the file as the sites file names it
    sha256: str
    region: str | None
    starts: Any  # numpy int64 µs
    ends: Any
    values: Any  # numpy float64 g/kWh
    resolution_s: float
    gaps: list[tuple[int, int, str]] = field(default_factory=list)  # (from µs, to µs, where: line/row)
    lengths: Any = field(init=False)
    cum_int: Any = field(init=False)  # Σ value × length (g·s/kWh) of the periods before each
    cum_cov: Any = field(init=False)  # Σ length (µs) of the periods before each

    def __post_init__(self) -> None:
        import numpy as np

        self.lengths = self.ends - self.starts
        seg = self.values * (self.lengths / US)
        self.cum_int = np.concatenate(([0.0], np.cumsum(seg)[:-1]))
        self.cum_cov = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)

    # ---------------------------------------------------------------- what it covers
    @property
    def first(self) -> datetime:
        return _dt(int(self.starts[0]))

    @property
    def last(self) -> datetime:
        return _dt(int(self.ends[-1]))

    def coverage_text(self) -> str:
        gaps = f", {len(self.gaps)} gap(s)" if self.gaps else ""
        return f"{_fmt(self.first)} to {_fmt(self.last)}{gaps}"

    def mean(self) -> float:
        """Time-weighted mean over everything the series covers."""
        return float((self.values * self.lengths).sum() / self.lengths.sum())

    # ---------------------------------------------------------------- integration
    def _at(self, t):
        """(∫ intensity dt in g·s/kWh, covered µs) from the series' start to each t (int64 µs array)."""
        import numpy as np

        i = np.searchsorted(self.starts, t, side="right") - 1
        ic = np.clip(i, 0, len(self.starts) - 1)
        within = np.where(i >= 0, np.clip(t - self.starts[ic], 0, self.lengths[ic]), 0)
        integ = np.where(i >= 0, self.cum_int[ic] + self.values[ic] * (within / US), 0.0)
        cov = np.where(i >= 0, self.cum_cov[ic] + within, 0)
        return integ, cov, i

    def mean_over(self, a, b):
        """(time-weighted mean intensity over [a, b), fully covered?) per window: a, b int64 µs arrays.
        A zero-length window takes the value of the period it falls in. Not covered: mean is NaN."""
        import numpy as np

        a = np.asarray(a, dtype=np.int64)
        b = np.maximum(np.asarray(b, dtype=np.int64), a)
        ia_int, ia_cov, ia = self._at(a)
        ib_int, ib_cov, ib = self._at(b)
        dur = b - a
        integ = ib_int - ia_int
        # inside one period: value × length, without the prefix sums' rounding
        same = (ia == ib) & (ia >= 0)
        ic = np.clip(ia, 0, len(self.starts) - 1)
        integ = np.where(same, self.values[ic] * (dur / US), integ)
        covered = (ib_cov - ia_cov) == dur
        point = dur == 0
        in_period = (ia >= 0) & (a < self.ends[ic])
        covered = np.where(point, in_period, covered)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(point, self.values[ic], integ / (dur / US))
        return np.where(covered, mean, np.nan), covered

    def hourly(self):
        """(hour of day UTC, mean g/kWh) of every clock hour the series covers fully."""
        import numpy as np

        h0 = int(self.starts[0]) // HOUR_US * HOUR_US
        h1 = -(-int(self.ends[-1]) // HOUR_US) * HOUR_US
        edges = np.arange(h0, h1 + 1, HOUR_US, dtype=np.int64)
        integ, cov, _ = self._at(edges)
        full = np.diff(cov) == HOUR_US
        return (edges[:-1][full] // HOUR_US) % 24, np.diff(integ)[full] / 3600.0


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ") if t.second == 0 and t.microsecond == 0 else t.strftime("%Y-%m-%dT%H:%M:%SZ")


_TZ = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


_PARSED: dict[tuple, Series] = {}  # (sha256, suffix, region, name, site) -> Series: each content parsed once a process


def read_series(
    path: str | os.PathLike, region: str | None = None, name: str | None = None, site: str | None = None
) -> Series:
    """The series at ``path`` (CSV or Parquet), checked: columns, time zones, order, overlaps, units; gaps are
    kept and logged. ``name`` is how the sites file names it, ``site`` the site (both for the messages). Parsed
    once per content in a process (keyed by its sha256: a file rewritten in place is read anew)."""
    p = Path(path)
    label = name or str(p)
    if not p.is_file():
        raise SeriesError(
            f"{_where(label, site)}: the intensity series {str(p)!r} does not exist. Fix: point "
            f'carbon_intensity.series at a CSV or Parquet file (docs/sites.md, "Carbon intensity over time"), '
            "relative to the working directory or the joulegrid checkout"
        )
    data = p.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), p.suffix.lower(), region, label, site)
    if key not in _PARSED:
        if len(_PARSED) >= 16:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = _parse(data, *key)
    return _PARSED[key]


def _where(label: str, site: str | None) -> str:
    return f"{label} (site {site}'s carbon_intensity.series)" if site else label


def _parse(data: bytes, sha: str, suffix: str, region: str | None, label: str, site: str | None) -> Series:
    import io

    import numpy as np
    import polars as pl

    where = _where(label, site)
    if suffix == ".csv":
        text = data.decode("utf-8-sig", errors="replace")
        lines, kept = [], []
        for n, ln in enumerate(text.splitlines(), 1):
            if ln.strip() and not ln.lstrip().startswith("#"):
                lines.append(ln)
                kept.append(n)
        if not lines:
            raise SeriesError(
                f"{where}: the file holds no rows. Fix: a header line timestamp,g_per_kwh then one row per period"
            )
        try:
            df = pl.read_csv(io.StringIO("\n".join(lines)), infer_schema=False)
        except Exception as e:  # noqa: BLE001
            raise SeriesError(
                f"{where}: not a readable CSV ({type(e).__name__}: {e}). Fix: write it comma-separated, header first"
            ) from None
        line_of = lambda k: f"line {kept[k + 1]}"  # noqa: E731 - data row k (0-based) is after the header
    elif suffix == ".parquet":
        try:
            df = pl.read_parquet(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001
            raise SeriesError(
                f"{where}: not a readable Parquet file ({type(e).__name__}: {e}). Fix: rewrite it, or use a CSV"
            ) from None
        line_of = lambda k: f"row {k + 1}"  # noqa: E731
    else:
        raise SeriesError(f"{where}: {suffix or 'no suffix'} is not a series format. Fix: a .csv or .parquet file")
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SeriesError(
            f"{where}: no column {', '.join(missing)} (the file has: {', '.join(df.columns) or 'none'}). Fix: name the "
            "columns timestamp (the period's start, ISO 8601 with its time zone) and g_per_kwh (gCO2e/kWh); optional: "
            "end, region (docs/sites.md; `joulegrid carbon-series convert` writes them from NESO, Electricity Maps "
            "or any CSV)"
        )
    if df.height == 0:
        raise SeriesError(f"{where}: the file holds no rows. Fix: one row per period after the header")
    df = df.with_row_index("_row")
    if "region" in df.columns:
        df = df.with_columns(df["region"].cast(pl.String))  # a column of the series file, not of a result row
        regions = sorted(r for r in df["region"].unique().to_list() if r is not None)
        if region is not None:
            if region not in regions:
                raise SeriesError(
                    f"{where}: no rows of region {region!r} (carbon_intensity.region). "
                    f"Fix: use one of {', '.join(map(repr, regions))}"
                )
            df = df.filter(df["region"] == region)
        elif len(regions) > 1:
            raise SeriesError(
                f"{where}: the file holds {len(regions)} regions "
                f"({', '.join(map(repr, regions[:8]))}{'…' if len(regions) > 8 else ''}). "
                f"Fix: choose one with carbon_intensity.region in the sites file{f' (site {site})' if site else ''}"
            )
        else:
            region = regions[0] if regions else None
    elif region is not None:
        raise SeriesError(
            f"{where}: carbon_intensity.region is {region!r} but the file has no region column. Fix: remove "
            "carbon_intensity.region, or add a region column"
        )
    rows = df["_row"].to_numpy()

    def at(k: int) -> str:
        return line_of(int(rows[k]))

    starts = _timestamps(df["timestamp"], "timestamp", at, where)
    values = _values(df["g_per_kwh"], at, where)
    n = len(starts)
    d = np.diff(starts)
    if n > 1 and (d <= 0).any():
        k = int(np.argmax(d <= 0))
        if d[k] == 0:
            raise SeriesError(
                f"{where}: {at(k + 1)}: timestamp {_fmt(_dt(int(starts[k + 1])))} repeats {at(k)}'s: two values "
                "for one "
                "period (an overlap). Fix: keep one row per period (per region: add a region column and choose it)"
            )
        raise SeriesError(
            f"{where}: {at(k + 1)}: timestamp {_fmt(_dt(int(starts[k + 1])))} is earlier than {at(k)}'s "
            f"({_fmt(_dt(int(starts[k])))}): timestamps must increase. Fix: sort the file by timestamp"
        )
    if "end" in df.columns:
        ends = _timestamps(df["end"], "end", at, where)
        bad = ends <= starts
        if bad.any():
            k = int(np.argmax(bad))
            raise SeriesError(
                f"{where}: {at(k)}: end {_fmt(_dt(int(ends[k])))} is not after its timestamp. "
                "Fix: end is the period's end"
            )
        over = ends[:-1] > starts[1:]
        if over.any():
            k = int(np.argmax(over))
            raise SeriesError(
                f"{where}: {at(k)}: its period (to {_fmt(_dt(int(ends[k])))}) overlaps the next one ({at(k + 1)}, from "
                f"{_fmt(_dt(int(starts[k + 1])))}). Fix: periods must not overlap: correct end, or drop one of the rows"
            )
        lengths = ends - starts
        resolution = int(_mode(lengths))
    else:
        if n < 2:
            raise SeriesError(
                f"{where}: one row only: its period's length is unknown. "
                "Fix: add rows, or an end column giving each period's end"
            )
        resolution = int(_mode(d))
        ends = np.minimum(np.append(starts[1:], starts[-1] + resolution), starts + resolution)
    gaps = [(int(ends[k]), int(starts[k + 1]), at(k + 1)) for k in np.nonzero(ends[:-1] < starts[1:])[0]]
    s = Series(label, sha, region, starts, ends.astype(np.int64), values, resolution / US, gaps)
    if gaps:
        hours = sum(b - a for a, b, _ in gaps) / HOUR_US
        log.warning(
            "%s: %d gap(s) in the series (%.1f h in all; the first before %s: %s to %s); "
            "runs in a gap take the annual mean",
            where,
            len(gaps),
            hours,
            gaps[0][2],
            _fmt(_dt(gaps[0][0])),
            _fmt(_dt(gaps[0][1])),
        )
    return s


def _mode(x) -> int:
    import numpy as np

    vals, counts = np.unique(x, return_counts=True)
    return int(vals[np.argmax(counts)])


def _timestamps(col, name: str, at, where: str):
    """A column of period times as int64 µs since the epoch (UTC); every value must carry its time zone."""
    import numpy as np
    import polars as pl

    if col.dtype == pl.Datetime:
        if col.dtype.time_zone is None:
            raise SeriesError(
                f"{where}: column {name} holds times without a time zone. Fix: store them time-zone aware (UTC), "
                "e.g. polars .dt.replace_time_zone('UTC') if they are UTC"
            )
        if col.null_count():
            k = int(col.is_null().arg_max())
            raise SeriesError(f"{where}: {at(k)}: {name} is empty. Fix: give every row its time")
        return col.dt.convert_time_zone("UTC").dt.epoch("us").to_numpy().astype(np.int64)
    s = col.cast(pl.String).str.strip_chars()
    empty = s.is_null() | (s == "")
    if empty.any():
        k = int(empty.arg_max())
        raise SeriesError(f"{where}: {at(k)}: {name} is empty. Fix: give every row its time")
    naive = ~s.str.contains(_TZ.pattern)
    if naive.any():
        k = int(naive.arg_max())
        raise SeriesError(
            f"{where}: {at(k)}: {name} {s[k]!r} has no time zone. Fix: write ISO 8601 with the offset, e.g. "
            "2025-01-06T00:00Z (UTC) or 2025-01-06T01:00+01:00; times that are UTC "
            "(Electricity Maps' 'Datetime (UTC)'): "
            "append Z; local times: `joulegrid carbon-series convert --tz Europe/Paris`"
        )
    parsed = s.str.to_datetime(time_zone="UTC", strict=False)
    out = parsed.dt.epoch("us").to_list()
    for k in parsed.is_null().arg_true().to_list():  # another ISO 8601 variant than the one polars inferred
        try:
            out[k] = int(round(datetime.fromisoformat(s[k].replace("z", "Z")).timestamp() * US))
        except ValueError:
            raise SeriesError(
                f"{where}: {at(k)}: {name} {s[k]!r} is not an ISO 8601 time. Fix: write e.g. 2025-01-06T00:30Z"
            ) from None
    return np.asarray(out, dtype=np.int64)


def _values(col, at, where: str):
    import numpy as np
    import polars as pl

    v = (
        col.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        if col.dtype == pl.String
        else col.cast(pl.Float64)
    )
    bad = v.is_null() | v.is_nan()
    if bad.any():
        k = int(bad.arg_max())
        raise SeriesError(
            f"{where}: {at(k)}: g_per_kwh {col[k]!r} is not a number. Fix: one intensity in gCO2e/kWh per row "
            "(remove rows without a value: the time they cover becomes a gap)"
        )
    a = v.to_numpy().astype(np.float64)
    if (a < 0).any():
        k = int(np.argmax(a < 0))
        raise SeriesError(f"{where}: {at(k)}: g_per_kwh {a[k]:g} is negative. Fix: intensities are >= 0 gCO2e/kWh")
    if (a > MAX_G_PER_KWH).any():
        k = int(np.argmax(a > MAX_G_PER_KWH))
        raise SeriesError(
            f"{where}: {at(k)}: g_per_kwh {a[k]:g} is implausible for a grid (above {MAX_G_PER_KWH:g} gCO2e/kWh; coal "
            "plants emit about 1,000). Fix: convert to g/kWh (from g/MWh or kg/MWh: divide by 1000)"
        )
    if a.max() < KG_SUSPECT_BELOW:
        raise SeriesError(
            f"{where}: every g_per_kwh is below {KG_SUSPECT_BELOW:g} (the largest is {a.max():g}): that is kg/kWh or "
            "t/MWh, not g/kWh. Fix: multiply the values by 1000"
        )
    return a


# ------------------------------------------------------------------ the rows
#: The columns ``apply`` fills (schema group "carbon"; null in a run file).
COLUMNS = (
    "carbon_source",
    "carbon_kind",
    "carbon_basis",
    "carbon_resolution_s",
    "carbon_region",
    "carbon_series",
    "carbon_fallback",
    "carbon_intensity_series_g_per_kwh",
    "co2_series_kg",
    "co2_annual_kg",
    "job_carbon_intensity_series_g_per_kwh",
    "job_co2_series_kg",
    "job_co2_annual_kg",
)


def load(series: dict[str, dict[str, str]] | None, sites: dict[str, Any] | None) -> dict[str, Series]:
    """{site: Series} of the series files (``series_files``' output, e.g. AnalysisSettings.carbon_series)."""
    out = {}
    for site, f in (series or {}).items():
        spec = site_carbon(site, (sites or {}).get(site))
        out[site] = read_series(f["path"], spec.region, name=f.get("name") or f["path"], site=site)
    return out


def _epoch_us(df, *cols: str):
    """(int64 µs array, valid mask) of the first non-null of cols per row."""
    import numpy as np
    import polars as pl

    s = df.select(pl.coalesce(*cols).dt.epoch("us").alias("t"))["t"]
    return s.fill_null(0).to_numpy().astype(np.int64), s.is_not_null().to_numpy()


def apply(df, sites: dict[str, Any] | None, series: dict[str, dict[str, str]] | None):
    """Rows in the result schema -> the same rows with the carbon columns (``COLUMNS``) filled from the
    current sites file and its series: the time-resolved CO2 of the measured window and of the whole job,
    beside the annual-mean CO2 (the site's current intensity and PUE; a site missing from the sites file
    keeps the intensity and PUE its rows recorded)."""
    import numpy as np
    import polars as pl

    if df.height == 0:
        return df
    sites = sites or {}
    loaded = load(series, sites)
    n = df.height
    site_col = df["site"].to_list()
    ws, ws_ok = _epoch_us(df, "window_started_at")
    we, we_ok = _epoch_us(df, "window_finished_at")
    js, js_ok = _epoch_us(df, "process_started_at", "started_at")
    je, je_ok = _epoch_us(df, "finished_at")
    rec_i = df["carbon_intensity_g_per_kwh"].cast(pl.Float64).to_numpy()
    rec_pue = df["pue"].cast(pl.Float64).fill_null(1.0).to_numpy()
    energy = df["energy_j"].cast(pl.Float64).to_numpy()
    job_energy = df["job_energy_j"].cast(pl.Float64).to_numpy()
    cols = {c: np.full(n, None, dtype=object) for c in COLUMNS}
    i_win = np.full(n, np.nan)
    i_job = np.full(n, np.nan)
    annual = np.full(n, np.nan)
    pue = np.full(n, np.nan)
    site_arr = np.array(site_col, dtype=object)
    for site in sorted({s for s in site_col if s is not None} | ({None} if None in site_col else set()), key=str):
        idx = np.nonzero(np.array([x == site for x in site_col]) if site is None else site_arr == site)[0]
        entry = sites.get(site) if site is not None else None
        spec = site_carbon(site or "", entry)
        a = np.full(len(idx), spec.annual) if spec.annual is not None else rec_i[idx]
        annual[idx] = a
        p = (entry or {}).get("pue")
        pue[idx] = float(p) if p is not None else rec_pue[idx]
        s = loaded.get(site)
        if s is None:
            i_win[idx], i_job[idx] = a, a
            why = f"annual mean: site {site} has no intensity series" if site else "annual mean: the row names no site"
            cols["carbon_fallback"][idx] = why
        else:
            mw, cw = s.mean_over(ws[idx], we[idx])
            mj, cj = s.mean_over(js[idx], je[idx])
            cw &= ws_ok[idx] & we_ok[idx]
            cj &= js_ok[idx] & je_ok[idx]
            i_win[idx] = np.where(cw, mw, a)
            i_job[idx] = np.where(cj, mj, a)
            for j in np.nonzero(~(cw & cj))[0]:  # the rows the series did not cover: why, per row
                k = idx[j]
                spans = [
                    (what, ok_, x, y)
                    for what, cov, ok_, x, y in (
                        ("measured window", cw[j], ws_ok[k] and we_ok[k], ws[k], we[k]),
                        ("whole job", cj[j], js_ok[k] and je_ok[k], js[k], je[k]),
                    )
                    if not cov
                ]
                cols["carbon_fallback"][k] = _why(spans, s)
            cols["carbon_resolution_s"][idx] = s.resolution_s
            cols["carbon_region"][idx] = s.region
            cols["carbon_series"][idx] = f"{s.name} (sha256 {s.sha256[:12]})"
        cols["carbon_source"][idx] = spec.source
        cols["carbon_kind"][idx] = spec.kind
        cols["carbon_basis"][idx] = spec.basis
    with np.errstate(invalid="ignore"):  # g -> kg: / 1000
        num = {
            "carbon_intensity_series_g_per_kwh": i_win,
            "co2_series_kg": co2_g(energy, i_win, pue) / 1000.0,
            "co2_annual_kg": co2_g(energy, annual, pue) / 1000.0,
            "job_carbon_intensity_series_g_per_kwh": i_job,
            "job_co2_series_kg": co2_g(job_energy, i_job, pue) / 1000.0,
            "job_co2_annual_kg": co2_g(job_energy, annual, pue) / 1000.0,
        }
    text = ("carbon_source", "carbon_kind", "carbon_basis", "carbon_region", "carbon_series", "carbon_fallback")
    out = [pl.Series(c, cols[c].tolist(), dtype=pl.String) for c in text]
    out.append(pl.Series("carbon_resolution_s", cols["carbon_resolution_s"].tolist(), dtype=pl.Float64))
    out += [pl.Series(c, v, dtype=pl.Float64, nan_to_null=True) for c, v in num.items()]
    return df.with_columns(out)


def _why(spans: list[tuple[str, bool, int, int]], s: Series) -> str:
    """Why a row's measured window and/or whole job took the annual mean: (what, times known, from, to) each."""
    unknown = [w for w, known, _, _ in spans if not known]
    outside = [f"the {w} ({_fmt(_dt(int(a)))} to {_fmt(_dt(int(b)))})" for w, known, a, b in spans if known]
    out = []
    if outside:
        out.append(f"annual mean for {' and '.join(outside)}: not fully covered by {s.name} ({s.coverage_text()})")
    if unknown:
        out.append(
            f"annual mean for the {' and the '.join(unknown)}: the row has no times for it (written by a "
            "joulegrid that did not record them, or the run stopped before it)"
        )
    return "; ".join(out)


# ------------------------------------------------------------------ when to run
def hourly_profile(s: Series):
    """The series' typical day: per UTC hour of day, the mean intensity over the fully covered clock hours
    (``days`` of them); hours never fully covered are null."""
    import numpy as np
    import polars as pl

    hod, means = s.hourly()
    g = [float(means[hod == h].mean()) if (hod == h).any() else None for h in range(24)]
    days = [int((hod == h).sum()) for h in range(24)]
    return pl.DataFrame(
        {"hour": np.arange(24, dtype=np.int64), "g_per_kwh": g, "days": days},
        schema={"hour": pl.Int64, "g_per_kwh": pl.Float64, "days": pl.Int64},
    )


def cleanest_hours(profile, k: int) -> list[int]:
    """The k UTC hours of the day with the lowest mean intensity (ties: the earlier hour first)."""
    import polars as pl

    p = profile.filter(pl.col("g_per_kwh").is_not_null()).sort(["g_per_kwh", "hour"])
    return sorted(p["hour"].head(k).to_list())


def hour_weights(starts, ends):
    """Share of the total time of the spans [starts, ends) (int64 µs arrays) in each UTC hour of day (24 floats,
    summing to 1; all zero when the spans have no length)."""
    import numpy as np

    w = np.zeros(24)
    for a, b in zip(starts, ends, strict=True):
        t = int(a)
        while t < b:
            nxt = min(int(b), (t // HOUR_US + 1) * HOUR_US)
            w[(t // HOUR_US) % 24] += nxt - t
            t = nxt
    total = w.sum()
    return w / total if total > 0 else w


def measured_weights(df, site: str, scope: str):
    """(hour-of-day weights, runs) of the site's ok runs: their measured windows (fleet scope phase) or whole
    jobs (scope job), the times the what-if's "as measured" case keeps."""
    import polars as pl

    d = df.filter((pl.col("site") == site) & (pl.col("status") == "ok"))
    if scope == "job":
        a, a_ok = _epoch_us(d, "process_started_at", "started_at")
        b, b_ok = _epoch_us(d, "finished_at")
    else:
        a, a_ok = _epoch_us(d, "window_started_at")
        b, b_ok = _epoch_us(d, "window_finished_at")
    ok = a_ok & b_ok
    return hour_weights(a[ok], b[ok]), int(ok.sum())


def site_table(sites: dict[str, Any], loaded: dict[str, Series], k: int):
    """One row per site with a series: its provenance, coverage, gaps, means (series, annual) and typical day."""
    import polars as pl

    rows = []
    for site, s in sorted(loaded.items()):
        spec = site_carbon(site, sites.get(site))
        prof = hourly_profile(s)
        g = prof.filter(pl.col("g_per_kwh").is_not_null())
        rows.append(
            {
                "site": site,
                "series": f"{s.name} (sha256 {s.sha256[:12]})",
                "source": spec.source,
                "kind": spec.kind,
                "basis": spec.basis,
                "region": s.region,
                "resolution_s": s.resolution_s,
                "from": _fmt(s.first),
                "to": _fmt(s.last),
                "periods": len(s.starts),
                "gaps": len(s.gaps),
                "gap_hours": sum(b - a for a, b, _ in s.gaps) / HOUR_US,
                "mean_g_per_kwh": s.mean(),
                "annual_g_per_kwh": spec.annual,
                "series_vs_annual_pct": (s.mean() / spec.annual - 1) * 100 if spec.annual else None,
                "min_hour_g_per_kwh": g["g_per_kwh"].min(),
                "max_hour_g_per_kwh": g["g_per_kwh"].max(),
                "cleanest_hours_utc": ", ".join(f"{h:02d}" for h in cleanest_hours(prof, k)),
            }
        )
    return pl.DataFrame(rows) if rows else None


#: A series whose mean is further than this from the annual mean is flagged (another basis, region or year?).
FAR_FROM_ANNUAL = 0.25


def annual_mismatches(sites: dict[str, Any], loaded: dict[str, Series]) -> list[str]:
    """A sentence per site whose series' mean is far (FAR_FROM_ANNUAL) from its annual mean."""
    out = []
    for site, s in sorted(loaded.items()):
        spec = site_carbon(site, sites.get(site))
        if spec.annual and abs(s.mean() / spec.annual - 1) > FAR_FROM_ANNUAL:
            off = s.mean() / spec.annual - 1
            out.append(
                f"Site {site}: the series' mean ({s.mean():.0f} g/kWh over {s.coverage_text()}) is {abs(off):.0%} "
                f"{'below' if off < 0 else 'above'} the annual mean of the sites file ({spec.annual:g} g/kWh), "
                "the fallback of runs it does not cover: check that both are of the same kind, basis and region "
                "(docs/sites.md)."
            )
    return out


def intensity_cases(df, sites: dict[str, Any], loaded: dict[str, Series], k: int, scope: str):
    """Per site with a series, the fleet's intensity (g/kWh) in the three cases: jobs spread evenly over the
    typical day (the mean of its 24 hours), as measured (the typical day weighted by the hours the site's runs
    took), and confined to the cleanest k hours (their mean); with the savings of the last against the others."""
    import numpy as np
    import polars as pl

    rows = []
    for site, s in sorted(loaded.items()):
        prof = hourly_profile(s)
        g = prof["g_per_kwh"].to_numpy()
        if np.isnan(g.astype(float)).any():
            log.warning("%s: the series does not cover every hour of the day fully: no what-if", s.name)
            continue
        even = float(g.mean())
        clean = cleanest_hours(prof, k)
        cleanest = float(g[clean].mean())
        w, runs = measured_weights(df, site, scope)
        measured = float((w * g).sum()) if runs else None
        rows.append(
            {
                "site": site,
                "intensity_even_g_per_kwh": even,
                "intensity_measured_g_per_kwh": measured,
                "intensity_cleanest_g_per_kwh": cleanest,
                "cleanest_hours_utc": ", ".join(f"{h:02d}" for h in clean),
                "measured_runs": runs,
                "measured_hours_utc": ", ".join(f"{h:02d}" for h in range(24) if w[h] > 0),
                "saving_vs_even_pct": (1 - cleanest / even) * 100,
                "saving_vs_measured_pct": (1 - cleanest / measured) * 100 if measured else None,
                "capacity_factor": 24 / k,
            }
        )
    schema = {
        "site": pl.String,
        "intensity_even_g_per_kwh": pl.Float64,
        "intensity_measured_g_per_kwh": pl.Float64,
        "intensity_cleanest_g_per_kwh": pl.Float64,
        "cleanest_hours_utc": pl.String,
        "measured_runs": pl.Int64,
        "measured_hours_utc": pl.String,
        "saving_vs_even_pct": pl.Float64,
        "saving_vs_measured_pct": pl.Float64,
        "capacity_factor": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def fleet_cases(fleet, cases):
    """The fleet what-if (metrics.fleet: MWh/day per cell, PUE included) in the three cases: tCO2e/day =
    MWh/day × intensity / 1000, and the tonnes a day the cleanest hours save against the other two."""
    import polars as pl

    d = fleet.join(cases, on="site", how="inner")
    mwh = pl.col("mwh_per_day")
    return d.with_columns(
        t_co2_per_day_even=mwh * pl.col("intensity_even_g_per_kwh") / 1000,
        t_co2_per_day_measured=mwh * pl.col("intensity_measured_g_per_kwh") / 1000,
        t_co2_per_day_cleanest=mwh * pl.col("intensity_cleanest_g_per_kwh") / 1000,
    ).with_columns(
        saving_t_per_day_vs_even=pl.col("t_co2_per_day_even") - pl.col("t_co2_per_day_cleanest"),
        saving_t_per_day_vs_measured=pl.col("t_co2_per_day_measured") - pl.col("t_co2_per_day_cleanest"),
    )


def hourly_co2_per_sample(cells, sites: dict[str, Any], loaded: dict[str, Series]):
    """CO2 per 1,000 samples by UTC hour of day, per site with a series and per workload and phase, for the
    site's cell with the lowest energy per sample (the configuration one would run): energy per sample × PUE
    × the typical day's intensity at that hour; ``annual_g`` the same with the annual mean."""
    import polars as pl

    out = []
    for site, s in sorted(loaded.items()):
        c = cells.filter((pl.col("site") == site) & pl.col("energy_per_sample_j").is_not_null())
        if c.height == 0:
            continue
        spec = site_carbon(site, sites.get(site))
        p = (sites.get(site) or {}).get("pue")
        best = c.sort("energy_per_sample_j").group_by("workload", "phase", maintain_order=True).first()
        prof = hourly_profile(s).filter(pl.col("g_per_kwh").is_not_null())
        for r in best.iter_rows(named=True):
            pue = float(p) if p is not None else (r.get("pue") or 1.0)
            annual = spec.annual if spec.annual is not None else r.get("carbon_intensity_g_per_kwh")
            per_1k = r["energy_per_sample_j"] * 1000  # J per 1,000 samples
            cell = f"{r['device']} {r['precision_variant']} bs{r['batch_size']}"
            for h, g in prof.select("hour", "g_per_kwh").iter_rows():
                out.append(
                    {
                        "site": site,
                        "workload": r["workload"],
                        "phase": r["phase"],
                        "cell": cell,
                        "hour": h,
                        "g_per_kwh": g,
                        "co2_per_1k_samples_g": co2_g(per_1k, g, pue),
                        "annual_g": co2_g(per_1k, annual, pue) if annual is not None else None,
                    }
                )
    schema = {
        "site": pl.String,
        "workload": pl.String,
        "phase": pl.String,
        "cell": pl.String,
        "hour": pl.Int64,
        "g_per_kwh": pl.Float64,
        "co2_per_1k_samples_g": pl.Float64,
        "annual_g": pl.Float64,
    }
    return pl.DataFrame(out, schema=schema)


def sci_series(sci_cells, df):
    """SCI per functional unit (1,000 samples) with the series: the cell's operational carbon is the mean over
    its runs of co2_series_kg (the series integrated over each run's measured window) instead of energy ×
    annual intensity; the embodied part is sci()'s."""
    import polars as pl

    from .analysis.metrics import CELL_KEYS

    ops = (
        df.filter(pl.col("status") == "ok")
        .group_by(*CELL_KEYS)
        .agg(
            sci_series_operational_g=pl.col("co2_series_kg").mean() * 1000,
            series_runs=(pl.col("carbon_fallback").is_null()).sum(),
            carbon_kind=pl.col("carbon_kind").drop_nulls().first(),
            carbon_basis=pl.col("carbon_basis").drop_nulls().first(),
        )
    )
    d = sci_cells.join(ops, on=list(CELL_KEYS), how="left", nulls_equal=True)
    r = pl.col("n_samples") / 1000
    return d.with_columns(
        sci_series_g_per_1k=pl.when(r > 0).then(
            (pl.col("sci_series_operational_g") + pl.col("sci_embodied_g").fill_null(0)) / r
        )
    )


# ------------------------------------------------------------------ the stamp rule aggregate depends on
def stamp(sites: dict[str, Any], series: dict[str, dict[str, str]]) -> str:
    """<results>/.stamps/carbon.json: what the summary's carbon columns are computed with (each site's
    intensity, its carbon_intensity mapping, PUE and source; the series files with their sha256). It changes
    with any of them, a series file's content included, so rule aggregate (and then the report) reruns."""
    import json

    keep = ("carbon_intensity_g_per_kwh", "carbon_intensity", "pue", "source")
    facts = {s: {k: (e or {}).get(k) for k in keep} for s, e in sorted((sites or {}).items())}
    return json.dumps({"sites": facts, "series": series or {}}, sort_keys=True, indent=1)


def read_stamp(text: str) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """(sites, series) from ``stamp``'s text, as ``apply`` takes them."""
    import json

    try:
        d = json.loads(text)
        return d["sites"], d["series"]
    except (ValueError, KeyError, TypeError) as e:
        raise SeriesError(f"--carbon: not a joulegrid carbon stamp ({type(e).__name__}: {e})") from None


def describe(s: Series, k: int = 8) -> list[str]:
    """What ``joulegrid carbon-series check`` prints about a series."""
    prof = hourly_profile(s)
    g = prof.drop_nulls("g_per_kwh")
    lines = [
        f"{s.name}: {len(s.starts)} periods of {s.resolution_s:g} s{f', region {s.region}' if s.region else ''}, "
        f"{s.coverage_text()}; sha256 {s.sha256[:12]}",
        f"mean {s.mean():.1f} g/kWh (time-weighted), periods {s.values.min():g} to {s.values.max():g} g/kWh",
    ]
    if s.gaps:
        lines.append(
            "gaps: "
            + "; ".join(f"{_fmt(_dt(a))} to {_fmt(_dt(b))} (before {w})" for a, b, w in s.gaps[:5])
            + (f"; … {len(s.gaps) - 5} more" if len(s.gaps) > 5 else "")
        )
    if g.height:
        lines.append(
            f"typical day (UTC, mean by hour): {g['g_per_kwh'].min():.1f} to {g['g_per_kwh'].max():.1f} g/kWh; "
            f"cleanest {k} hours: {', '.join(f'{h:02d}' for h in cleanest_hours(prof, k))}"
        )
    return lines
