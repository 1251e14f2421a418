"""Merge every run file under results/runs/ into results/summary.parquet.

Fast path: one polars read of all files. If that fails (a truncated file, a file of another
schema version), every file is checked on its own and the bad ones are reported by path and
left out -- unless strict, then the first one is an error. Runs from several sites merge as
long as they share the schema version.

With the current configuration (``--current``: the config hash the configuration gives every
workload -- those of the grid, those it defines, the built-in ones --, written by the Snakefile to
<results>/.stamps/current.json) the summary holds the runs of that configuration only -- of every
site, since the site is not part of the hash, and of workloads measured by another run of the same
configuration (a campaign split by workload) -- and the runs of any other configuration (before an
edit of the config, another seed, copied from elsewhere) go to ``summary.other-configs.parquet``:
kept, listed by the report, never averaged with the current ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import schema
from ..grid import run_files

log = logging.getLogger(__name__)


class AggregateError(RuntimeError):
    pass


@dataclass
class AggregateResult:
    n_files: int
    n_rows: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    n_other: int = 0  # runs of other configurations (summary.other-configs.parquet)


def other_path(summary: str | Path) -> Path:
    """Where the runs of other configurations go, next to the summary."""
    p = Path(summary)
    return p.with_name(p.name.removesuffix(".parquet") + ".other-configs.parquet")


def current_hashes(data: dict[str, Any]) -> dict[str, list[str]]:
    """{workload: its current config hashes} of a current-configuration mapping (SpecBuilder.current): the
    workload's, then those of its precisions with their own (a pinned precision_options entry)."""
    return {
        w: [v["config_hash"], *(p["config_hash"] for p in (v.get("precisions") or {}).values())]
        for w, v in data.items()
    }


def read_current(path: str | Path) -> dict[str, list[str]]:
    """{workload: config hashes} from the Snakefile's current-configuration stamp (SpecBuilder.current)."""
    try:
        return current_hashes(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise AggregateError(
            f"--current {path}: not a joulegrid current-configuration file ({type(e).__name__}: {e})"
        ) from None


def split_current(df, current: dict[str, str | list[str]] | None):
    """(runs of the current configuration, runs of any other): a run is current when its config_hash
    is one the current configuration gives its workload. None: every run is current."""
    import polars as pl

    if current is None:
        return df, df.clear()
    flat = [(w, h) for w, hs in current.items() for h in ([hs] if isinstance(hs, str) else hs)]
    pairs = pl.DataFrame(
        {"workload": [w for w, _ in flat], "config_hash": [h for _, h in flat]},
        schema={"workload": pl.String, "config_hash": pl.String},
    )
    cur = df.join(pairs, on=["workload", "config_hash"], how="semi", maintain_order="left")
    other = df.join(pairs, on=["workload", "config_hash"], how="anti", maintain_order="left")
    return cur, other


def _check_file(path: str) -> str | None:
    """None if the file is a valid run file of this schema version, else why not."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - a bad file is skipped, with why (or refused with --strict)
        return f"not a readable Parquet file ({type(e).__name__}: {e})"
    meta = pf.schema_arrow.metadata or {}
    ver = meta.get(b"joulegrid.schema_version")
    if ver is None:
        return "not a joulegrid run file (no joulegrid.schema_version in the Parquet metadata)"
    if int(ver) != schema.SCHEMA_VERSION:
        return (
            f"schema version {int(ver)}, this joulegrid reads version {schema.SCHEMA_VERSION} (re-run the cell, or "
            "aggregate with the joulegrid that wrote it)"
        )
    if pf.schema_arrow.remove_metadata() != schema.arrow_schema().remove_metadata():
        return "columns differ from the result schema of the same version"
    try:
        pf.read()
    except Exception as e:  # noqa: BLE001 - a bad file is skipped, with why (or refused with --strict)
        return f"corrupt data ({type(e).__name__}: {e})"
    return None


def read_runs(files: list[str], strict: bool = False):
    """(polars DataFrame, problems) from run files."""
    import polars as pl

    problems: list[tuple[str, str]] = []
    if not files:
        return pl.DataFrame(schema=schema.polars_schema()), problems
    try:
        # One scan of every file with the exact schema: a file with other columns or types raises here.
        df = pl.scan_parquet(
            files, schema=schema.polars_schema(), missing_columns="raise", extra_columns="raise"
        ).collect()
        bad_versions = df.filter(pl.col("schema_version") != schema.SCHEMA_VERSION)
        if bad_versions.height == 0:
            return df, problems
    except Exception:  # noqa: BLE001 - fall back to finding the culprit(s)
        pass
    good = []
    for f in files:
        why = _check_file(f)
        if why is None:
            good.append(f)
        elif strict:
            raise AggregateError(f"{f}: {why} (strict: true; set strict: false to skip bad files and list them)")
        else:
            problems.append((f, why))
    df = pl.read_parquet(good, schema=schema.polars_schema()) if good else pl.DataFrame(schema=schema.polars_schema())
    return df, problems


def aggregate(
    runs_dir: str,
    out: str,
    strict: bool = False,
    problems_out: str | None = None,
    current: dict[str, str] | None = None,
    other_out: str | None = None,
    carbon: tuple[dict, dict] | None = None,
) -> AggregateResult:
    """Write the summary (the current configuration's runs, or every run when current is None), the
    runs of other configurations and the problems list; returns the counts. With ``carbon`` (the sites
    file and its intensity series: joulegrid.carbon.read_stamp) the carbon columns are filled
    (joulegrid.carbon.apply); without, they stay as the run files have them (null)."""
    from ..io import write_table

    files = run_files(runs_dir)
    df, problems = read_runs(files, strict=strict)
    import polars as pl

    dup = df.group_by("run_id").len().filter(pl.col("len") > 1)
    if dup.height:
        for rid, n in dup.iter_rows():
            problems.append((rid, f"run_id found in {n} files (a copied run file?); kept once"))
        df = df.unique(subset="run_id", keep="first", maintain_order=True)
    df, other = split_current(df, current)
    if carbon is not None:
        from ..carbon import apply

        df, other = (apply(d, *carbon) for d in (df, other))
    write_table(df.to_arrow().cast(schema.arrow_schema()), out)
    write_table(other.to_arrow().cast(schema.arrow_schema()), other_out or other_path(out))
    problems_path = problems_out or str(Path(out).with_suffix(".problems.json"))
    from ..io import atomic_path

    with atomic_path(problems_path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps([{"path": p, "problem": w} for p, w in problems], indent=1))
    return AggregateResult(len(files), df.height, problems, other.height)


def load_earlier(results: str):
    """Earlier results: <results>/summary.parquet and the runs of other configurations next to it
    (summary.other-configs.parquet: another seed or epochs still predicts a cell's cost) as one
    polars frame, or None when absent or unreadable."""
    p = Path(results) / "summary.parquet"
    if not p.is_file():
        return None
    import polars as pl

    try:
        frames = [pl.read_parquet(p)]
        if other_path(p).is_file():
            frames.append(pl.read_parquet(other_path(p)))
        return pl.concat(frames, how="diagonal_relaxed")
    except Exception as e:  # noqa: BLE001 - no forecast, with why: the plan itself goes on
        log.warning("cannot read %s for the forecast (%s: %s); no forecast", p, type(e).__name__, e)
        return None
