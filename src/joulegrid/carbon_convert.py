"""Downloaded carbon intensity data -> a series file joulegrid reads (``joulegrid carbon-series convert``;
docs/sites.md, "Carbon intensity over time", "Getting a series offline"). The series itself, its checks and
its use are joulegrid.carbon's.

Pure Python at import (polars is imported where used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .carbon import _TZ, BASES, SeriesError

CONVERT_FORMATS = ("neso", "electricitymaps", "csv")


@dataclass
class Converted:
    """A series converted from downloads (``convert``): its rows and what was done, for the file's header."""

    df: Any  # polars: timestamp (UTC), [end,] g_per_kwh [, region]
    notes: list[str]


def convert(fmt: str, paths: list[str], **kw: Any) -> Converted:
    """Downloaded files -> one series (docs/sites.md, "Carbon intensity over time"):

    - ``neso``: JSON of NESO's Carbon Intensity API (national ``/intensity/{from}/{to}``, regional
      ``/regional/intensity/{from}/{to}`` and ``.../regionid/{id}``), ``value`` auto (actual where published,
      else forecast: regional data is forecast only), actual or forecast; ``from``/``to`` become timestamp/end;
    - ``electricitymaps``: Electricity Maps' free CSVs ("Datetime (UTC)", one intensity column per basis):
      ``basis`` (direct or lifecycle) picks the column; "Zone Id" becomes the region;
    - ``csv``: any table: ``time`` (one column, or several joined by a space, e.g. RTE éCO2mix's Date and
      Heures), ``value``, optional ``end`` and ``region`` columns, ``tz`` for local times without an offset,
      ``sep`` and ``encoding``.
    Rows of several files are joined; a period given twice keeps the later file's value (counted)."""
    if fmt not in CONVERT_FORMATS:
        raise SeriesError(f"--from {fmt!r}: unknown. Fix: use one of {', '.join(CONVERT_FORMATS)}")
    if not paths:
        raise SeriesError("no input file. Fix: name the downloaded file(s)")
    for p in paths:
        if not Path(p).is_file():
            raise SeriesError(f"{p}: no such file. Fix: name the downloaded file(s)")
    return {"neso": _from_neso, "electricitymaps": _from_electricitymaps, "csv": _from_csv}[fmt](paths, **kw)


def _finish(frames: list, notes: list[str]) -> Converted:
    import polars as pl

    df = pl.concat(frames, how="diagonal_relaxed")
    keys = ["timestamp"] + (["region"] if "region" in df.columns else [])
    before = df.height
    df = df.unique(subset=keys, keep="last", maintain_order=True).sort(keys[::-1])
    if df.height < before:
        notes.append(f"{before - df.height} period(s) given twice (overlapping downloads): the later file's value kept")
    cols = ["timestamp"] + [c for c in ("end", "g_per_kwh", "region") if c in df.columns]
    return Converted(df.select(cols), notes)


def _from_neso(paths: list[str], value: str | None = "auto", **_: Any) -> Converted:
    import json

    import polars as pl

    value = value or "auto"
    if value not in ("auto", "actual", "forecast"):
        raise SeriesError(f"--value {value!r}: unknown. Fix: auto, actual or forecast")
    recs: list[dict[str, Any]] = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())["data"]
        except (ValueError, KeyError, TypeError) as e:
            raise SeriesError(
                f"{p}: not a NESO Carbon Intensity API response ({type(e).__name__}: {e}). Fix: save the JSON the API "
                "returns for /intensity/{from}/{to} or /regional/intensity/{from}/{to}[/regionid/{id}]"
            ) from None
        if isinstance(data, dict):  # /regional/intensity/{from}/{to}/regionid/{id}
            recs += [{**d, "region": data.get("shortname")} for d in data.get("data", [])]
        for d in data if isinstance(data, list) else []:
            if "regions" in d:  # /regional/intensity/{from}/{to}: every region per period
                recs += [
                    {
                        "from": d["from"],
                        "to": d["to"],
                        "intensity": r.get("intensity", {}),
                        "region": r.get("shortname"),
                    }
                    for r in d["regions"]
                ]
            else:
                recs.append(d)
    if not recs:
        raise SeriesError(f"{', '.join(paths)}: no periods in the response(s). Fix: check the dates of the request")
    n_forecast = 0
    rows = []
    for r in recs:
        i = r.get("intensity") or {}
        v = i.get("actual") if value in ("auto", "actual") else i.get("forecast")
        if v is None and value == "auto":
            v, n_forecast = i.get("forecast"), n_forecast + 1
        if v is None:
            continue
        rows.append(
            {
                "timestamp": r["from"],
                "end": r["to"],
                "g_per_kwh": float(v),
                **({"region": r["region"]} if "region" in r else {}),
            }
        )
    notes = [f"NESO Carbon Intensity API, {len(paths)} file(s); value: {value}"]
    if n_forecast:
        notes.append(
            f"{n_forecast} of {len(rows)} period(s) have no actual (regional data is forecast only): forecast used"
        )
    if len(rows) < len(recs):
        notes.append(f"{len(recs) - len(rows)} period(s) without a {value} value left out (gaps)")
    df = pl.DataFrame(rows)
    df = df.with_columns(pl.col("timestamp", "end").str.to_datetime(time_zone="UTC"))
    return _finish([df], notes)


def _read_table(p: str, sep: str = ",", encoding: str = "utf-8"):
    import io

    import polars as pl

    text = Path(p).read_bytes().decode(encoding)
    return pl.read_csv(io.StringIO(text), separator=sep, infer_schema=False, truncate_ragged_lines=True)


def _from_electricitymaps(paths: list[str], basis: str | None = None, **_: Any) -> Converted:
    import polars as pl

    if basis not in BASES:
        raise SeriesError(
            "--basis: Electricity Maps' files give a direct and a lifecycle intensity. Fix: choose one, --basis direct "
            "or --basis lifecycle (and say the same in the sites file's carbon_intensity.basis)"
        )
    frames = []
    for p in paths:
        df = _read_table(p)
        tcol = next((c for c in df.columns if c.strip().lower().startswith("datetime")), None)
        want = ("direct",) if basis == "direct" else ("life cycle", "lifecycle", "lca")
        vcol = next(
            (c for c in df.columns if "carbon intensity" in c.lower() and any(w in c.lower() for w in want)), None
        )
        if tcol is None or vcol is None:
            raise SeriesError(
                f"{p}: no {'Datetime (UTC)' if tcol is None else basis + ' carbon intensity'} column (columns: "
                f"{', '.join(df.columns)}). Fix: use a file of the Electricity Maps data portal, or --from csv with "
                "--time and --value"
            )
        if "utc" not in tcol.lower():
            raise SeriesError(f"{p}: column {tcol!r} does not say UTC. Fix: use --from csv with --tz")
        zone = next((c for c in df.columns if c.strip().lower() == "zone id"), None)
        out = df.select(
            timestamp=pl.col(tcol).str.strip_chars().str.to_datetime(strict=True).dt.replace_time_zone("UTC"),
            g_per_kwh=pl.col(vcol).str.strip_chars().cast(pl.Float64, strict=False),
            **({"region": pl.col(zone)} if zone else {}),
        )
        frames.append(out.filter(pl.col("g_per_kwh").is_not_null()))
        vname = vcol
    return _finish(frames, [f"Electricity Maps data portal, {len(paths)} file(s); column {vname!r} (basis {basis})"])


def _from_csv(
    paths: list[str],
    time: list[str] | None = None,
    value: str | None = None,
    end: str | None = None,
    region: str | None = None,
    tz: str | None = None,
    sep: str = ",",
    encoding: str = "utf-8",
    **_: Any,
) -> Converted:
    import polars as pl

    if not time or not value:
        raise SeriesError("--from csv needs --time COLUMN (repeatable: joined by a space) and --value COLUMN")
    frames, dropped = [], 0
    for p in paths:
        try:
            df = _read_table(p, sep, encoding)
        except (UnicodeDecodeError, LookupError) as e:
            raise SeriesError(
                f"{p}: cannot be read as {encoding} ({e}). Fix: --encoding latin-1 (RTE's files), or cp1252"
            ) from None
        df = df.rename({c: c.strip() for c in df.columns})
        missing = [c for c in [*time, value, end, region] if c and c not in df.columns]
        if missing:
            raise SeriesError(
                f"{p}: no column {', '.join(map(repr, missing))} (columns: {', '.join(map(repr, df.columns))}). "
                "Fix: name them as the file does"
            )
        v = pl.col(value).str.strip_chars().str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
        df = df.with_columns(_t=pl.concat_str([pl.col(c).str.strip_chars() for c in time], separator=" "), _v=v)
        n = df.height
        df = df.filter(pl.col("_v").is_not_null() & pl.col("_t").is_not_null() & (pl.col("_t") != ""))
        dropped += n - df.height
        cols = {"timestamp": _localise(df["_t"], tz, p), "g_per_kwh": df["_v"]}
        if end:
            cols["end"] = _localise(df[end].str.strip_chars(), tz, p)
        if region:
            cols["region"] = df[region]
        frames.append(pl.DataFrame(cols))
    notes = [f"{len(paths)} file(s); time {' + '.join(time)}{f' (local time {tz})' if tz else ''}, value {value!r}"]
    if dropped:
        notes.append(f"{dropped} row(s) without a value or a time left out (gaps)")
    return _finish(frames, notes)


def _localise(s, tz: str | None, p: str):
    """Times as text -> UTC datetimes: with their offset, or local times of ``tz`` (a repeated local hour at the
    end of summer time: its first occurrence is the earlier instant, its second the later)."""
    import polars as pl

    naive = ~s.str.contains(_TZ.pattern)
    if naive.all() and tz:
        t = s.str.to_datetime(strict=False)
        if t.null_count():
            k = int(t.is_null().arg_max())
            raise SeriesError(f"{p}: {s[k]!r} is not a time. Fix: check --time (the columns of the date and the time)")
        try:
            early = t.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="raise")
            late = t.dt.replace_time_zone(tz, ambiguous="latest", non_existent="raise")
        except Exception as e:  # noqa: BLE001 - an unknown zone, a time that does not exist there
            raise SeriesError(
                f"{p}: --tz {tz}: {e}. Fix: an IANA zone such as Europe/Paris, and times that exist in it"
            ) from None
        second = pl.DataFrame({"t": t}).select((pl.int_range(pl.len()).over("t") > 0).alias("second"))["second"]
        return pl.select(pl.when(second & (early != late)).then(late).otherwise(early))[:, 0].dt.convert_time_zone(
            "UTC"
        )
    if naive.any():
        k = int(naive.arg_max())
        raise SeriesError(
            f"{p}: {s[k]!r} has no time zone. Fix: --tz ZONE for local times (e.g. --tz Europe/Paris for RTE), or "
            "--tz UTC for times in UTC"
        )
    t = s.str.to_datetime(time_zone="UTC", strict=False)
    if t.null_count():
        k = int(t.is_null().arg_max())
        raise SeriesError(f"{p}: {s[k]!r} is not an ISO 8601 time. Fix: check --time")
    return t


def write_series(conv: Converted, out: str | os.PathLike, header: list[str]) -> Path:
    """The converted series as joulegrid's CSV (header comments first), written atomically."""
    import polars as pl

    from .io import atomic_path

    df = conv.df.with_columns(
        [pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%SZ") for c in ("timestamp", "end") if c in conv.df.columns]
    )
    out = Path(out)
    with atomic_path(out, suffix=".csv") as tmp:
        body = df.write_csv()
        Path(tmp).write_text("".join(f"# {ln}\n" for ln in [*header, *conv.notes]) + body)
    return out
