"""The self-contained HTML report (inline Vega, no CDN) and the chart PNGs.

``build_report(summary, out_dir)`` writes ``<out_dir>/index.html``, ``<out_dir>/<chart>.png`` for
every name in CHART_NAMES (a "no data" chart when there is nothing to draw, so every PNG the
Snakemake rule declares exists), ``<out_dir>/cells.csv`` (per-cell derived metrics) and
``<out_dir>/fleet.csv`` (the fleet what-if, for spreadsheet users). The page
embeds the Vega/Vega-Lite/vega-embed bundle from vl-convert once and every chart spec as JSON, so
it opens offline from a file:// URL; ``window.joulegridCharts = {expected, rendered, errors}`` tells
a browser test whether every chart rendered.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .. import schema as S
from ..io import atomic_path
from . import CHART_NAMES
from . import metrics as M
from .settings import AnalysisSettings

CHART_TEXT = {
    "energy_per_sample": (
        "Energy per sample",
        "Mean energy per sample (= per event) over repeats, by batch size and precision; bars are 95 % confidence "
        "intervals. Rings (hollow marks) are estimated energies (no hardware counter), disks measured ones.",
    ),
    "quality_vs_energy": (
        "Quality vs energy",
        "Every cell's quality against its energy per sample; the dashed line joins the Pareto-optimal cells "
        "(nothing else is both cheaper and at least as good). The arrow in each panel title gives the better direction.",
    ),
    "time_to_target": (
        "Time to target",
        "Per-epoch quality of each training run against cumulative wall time; the dotted line is the target "
        "quality, the large dot the epoch that reached it (TTA).",
    ),
    "scheduler_overhead": (
        "Scheduler overhead per site",
        "Mean time per job spent waiting in the queue, starting up (imports, data, model, warm-up, writing) and "
        "in the measured phase. Batch efficiency = measured time / (end - submission).",
    ),
    "fleet_whatif": (
        "Fleet what-if",
        "The energy of one equal-work job (the same samples per job for every precision and batch size) scaled to "
        "the configured jobs per day at each site (MWh/day, PUE included); the label is the change against the fp32 "
        "baseline of the same workload, phase, device and batch size.",
    ),
    "sites": (
        "Sites",
        "CO2 per 1,000 samples of each cell measured at two sites or more, one line per precision and batch size "
        "across the sites; rings are estimated energies.",
    ),
}
assert set(CHART_TEXT) == set(CHART_NAMES)

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:var(--fg);line-height:1.45;background:#fff}
header{background:linear-gradient(90deg,#0b3d2e,#14532d 60%,#166534);color:#fff;padding:1.4rem 2rem 1rem}
header h1{margin:0;font-size:1.7rem;letter-spacing:.01em} header p{margin:.3rem 0 0;color:#d1fae5}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:.45rem 2rem;font-size:.9rem}
nav a{color:var(--accent);text-decoration:none;margin-right:1.1rem;white-space:nowrap} nav a:hover{text-decoration:underline}
main{max-width:1500px;margin:0 auto;padding:1rem 2rem 3rem}
h2{border-bottom:1px solid var(--line);padding-bottom:.3rem;margin-top:2.2rem} h3{margin:1.6rem 0 .3rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:.6rem 1rem;min-width:150px}
.card b{display:block;font-size:1.5rem} .card span{color:var(--muted);font-size:.85rem}
.card.bad b{color:#cf222e} .card.warn b{color:#9a6700}
.tablewrap{overflow-x:auto;margin:.4rem 0 1.2rem}
table{border-collapse:collapse;font-size:.85rem}
th,td{border:1px solid var(--line);padding:.28rem .55rem;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;white-space:nowrap} tbody tr:nth-child(even){background:#fbfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.good{color:#1a7f37} td.worse{color:#cf222e}
.caption{color:var(--muted);margin:.1rem 0 .5rem;max-width:75rem}
.chart{margin:.3rem 0 1.5rem;overflow-x:auto}
.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.5rem 1rem;border-radius:4px}
.bad{background:#ffebe9;border-left:4px solid #cf222e;padding:.5rem 1rem;border-radius:4px}
.ok{background:#dafbe1;border-left:4px solid #1a7f37;padding:.5rem 1rem;border-radius:4px}
footer{color:var(--muted);font-size:.8rem;margin-top:3rem;border-top:1px solid var(--line);padding-top:.6rem}
code{background:var(--bg);padding:0 .25rem;border-radius:3px}
"""


# ------------------------------------------------------------------ tables
def _fmt(col: str, v) -> tuple[str, str]:
    """(text, css class) of one table cell."""
    if v is None:
        return "", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), ""
    if isinstance(v, float):
        if v != v:  # NaN
            return "", "num"
        if col.endswith("_pct"):
            cls = "good" if v < 0 and col.startswith("d_") else ("worse" if v > 0 and col.startswith("d_") else "")
            if col.startswith("saving"):
                cls = "good" if v > 0 else ("worse" if v < 0 else "")
            return f"{v:+.1f} %", f"num {cls}".strip()
        if col.endswith(("_cv", "efficiency", "_share")):
            return f"{v:.1%}", "num"
        a = abs(v)
        return (f"{v:.3e}" if (a and (a < 1e-3 or a >= 1e6)) else f"{v:.4g}"), "num"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v), "num"
    return str(v), ""


def table_html(df: pl.DataFrame, max_rows: int = 200, empty: str = "none") -> str:
    if df.height == 0:
        return f"<p><em>{html.escape(empty)}</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.head(max_rows).iter_rows():
        cells = []
        for c, v in zip(df.columns, r):
            text, cls = _fmt(c, v)
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>' if cls else f"<td>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = f"<p>… {df.height - max_rows} more rows (all of them are in cells.csv / summary.parquet)</p>" if df.height > max_rows else ""
    return f"<div class='tablewrap'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{more}"


def _js_bundle() -> str:
    import vl_convert as vlc

    return vlc.javascript_bundle()


def _script_json(obj) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


# ------------------------------------------------------------------ inputs
def load_summary(summary: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """The summary frame (empty if absent) and messages about what is wrong with it."""
    p = Path(summary)
    notes: list[str] = []
    if not p.is_file():
        notes.append(f"No summary at {p}: run the grid and `joulegrid aggregate` (or `snakemake`) first.")
        return pl.DataFrame(schema=S.polars_schema()), notes
    try:
        df = pl.read_parquet(p)
    except Exception as e:  # noqa: BLE001
        notes.append(f"The summary {p} cannot be read ({type(e).__name__}: {e}); re-run `joulegrid aggregate`.")
        return pl.DataFrame(schema=S.polars_schema()), notes
    missing = [c for c in S.COLUMN_NAMES if c not in df.columns]
    if missing:
        notes.append(
            f"The summary {p} lacks {len(missing)} column(s) of result schema version {S.SCHEMA_VERSION} "
            f"({', '.join(missing[:6])}{'…' if len(missing) > 6 else ''}): it was written by another joulegrid; "
            "re-run `joulegrid aggregate` with this one. Missing columns are shown empty."
        )
        df = df.with_columns([pl.lit(None).alias(c) for c in missing])
    try:
        df = df.select(S.COLUMN_NAMES).cast(dict(S.polars_schema()), strict=False)
    except Exception as e:  # noqa: BLE001
        notes.append(f"The summary {p} has columns of unexpected types ({e}); re-run `joulegrid aggregate`.")
        return pl.DataFrame(schema=S.polars_schema()), notes
    return df, notes


def load_hotspots(results_dir: Path) -> tuple[pl.DataFrame | None, str | None]:
    """The hotspots table: every <results>/hotspots/<cell id>.parquet the profiler wrote (per-cell
    subfolders; joulegrid.hotspots.collect), None if there is none; unreadable files are named."""
    import warnings

    from .. import hotspots

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hs = hotspots.collect(results_dir)
    bad = [str(w.message) for w in caught if "joulegrid.hotspots" in str(w.message)]
    note = f"{len(bad)} hotspot file(s) left out: " + "; ".join(bad[:3]) if bad else None
    return (hs if hs.height else None), note


def _hotspots_view(hs: pl.DataFrame, df: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """The most expensive functions/ops of the summary's profiled runs: per profiler, the top rows by
    fraction of the profiled pass (cprofile: cumulative time; torch: self time)."""
    if df.height:
        hs = hs.filter(pl.col("run_id").is_in(df["run_id"].to_list()))
    cols = ["cell_id", "profiler", "rank", "function", "calls", "self_s", "cumulative_s", "device_self_s", "fraction"]
    parts = [g.sort("fraction", descending=True, nulls_last=True).head(top) for _, g in hs.group_by("profiler", maintain_order=True)]
    out = pl.concat(parts) if parts else hs
    return out.select([c for c in cols if c in out.columns]).sort("profiler", "fraction", descending=[False, True], nulls_last=True)


# ------------------------------------------------------------------ sections
def _cards(df: pl.DataFrame, cells: pl.DataFrame, problems: list) -> str:
    n_ok = df.filter(pl.col("status") == "ok").height
    n_bad = df.height - n_ok
    hosts = df.select(pl.col("hostname").drop_nulls().n_unique()).item() if df.height else 0
    sites = df.select(pl.col("site").drop_nulls().n_unique()).item() if df.height else 0
    est = df.filter(pl.col("energy_estimated").fill_null(False) & (pl.col("status") == "ok")).height
    noisy = cells.filter(pl.col("noisy")).height if cells.height else 0
    items = [
        (df.height, "runs", ""), (cells.height, "cells (repeats averaged)", ""), (n_ok, "ok", ""),
        (n_bad, "failed / skipped", "bad" if n_bad else ""), (sites, "sites", ""), (hosts, "hosts", ""),
        (est, "runs with estimated energy", "warn" if est else ""), (noisy, "noisy cells (CV > threshold)", "warn" if noisy else ""),
        (len(problems), "run files left out", "bad" if problems else ""),
    ]  # fmt: skip
    return "<div class='cards'>" + "".join(
        f"<div class='card {cls}'><b>{v}</b><span>{html.escape(t)}</span></div>" for v, t, cls in items
    ) + "</div>"


def whose_energy(df: pl.DataFrame) -> pl.DataFrame:
    """Per site and host: the node's energy vs the jobs' in the measured windows, and the neighbours' share."""
    ok = df.filter((pl.col("status") == "ok") & pl.col("node_energy_j").is_not_null())
    return (
        ok.group_by("site", "hostname")
        .agg(
            runs=pl.len(),
            node_energy_j=pl.col("node_energy_j").sum(),
            job_energy_j=pl.col("energy_j").sum(),
            job_energy_share=pl.col("energy_j").sum() / pl.col("node_energy_j").sum(),
            neighbour_cpu_share=pl.col("neighbour_cpu_fraction").mean(),
            max_neighbour_cpu_share=pl.col("neighbour_cpu_fraction").max(),
            shared_runs=pl.col("node_shared").fill_null(False).sum(),
            attribution=pl.col("energy_attribution").drop_nulls().unique().sort().str.join("; "),
            p0_cpu_source=pl.col("p0_cpu_source").drop_nulls().unique().sort().str.join(", "),
            job_cpus=pl.col("job_cpus").drop_nulls().unique().sort().cast(pl.String).str.join(", "),
            node_cpus=pl.col("node_cpus").max(),
            job_cpu_source=pl.col("job_cpu_source").drop_nulls().unique().sort().str.join(", "),
            job_mem_source=pl.col("job_mem_source").drop_nulls().unique().sort().str.join(", "),
        )
        .sort("site", "hostname")
    )


def model_error(df: pl.DataFrame) -> pl.DataFrame:
    """Per site, host and CPU power model, over the runs where counters measured the node: the model's
    prediction for the same windows against the counters (docs/measurement.md, "Calibrating a CPU model")."""
    ok = df.filter((pl.col("status") == "ok") & pl.col("model_node_energy_j").is_not_null() & pl.col("model_rel_err").is_not_null())
    counter = pl.col("node_energy_cpu_j") + pl.when(pl.col("model_components") == "cpu+dram").then(pl.col("node_energy_ram_j")).otherwise(0.0)
    return (
        ok.with_columns(counter_j=counter)
        .group_by("site", "hostname", "cpu_model", "model_method")
        .agg(
            runs=pl.len(),
            components=pl.col("model_components").unique().sort().str.join(", "),
            counter_node_energy_j=pl.col("counter_j").sum(),
            model_node_energy_j=pl.col("model_node_energy_j").sum(),
            model_error_pct=(pl.col("model_node_energy_j").sum() / pl.col("counter_j").sum() - 1.0) * 100,
            median_run_error_pct=pl.col("model_rel_err").median() * 100,
            max_abs_run_error_pct=pl.col("model_rel_err").abs().max() * 100,
            calibration=pl.col("model_calibration").drop_nulls().unique().sort().str.join("; "),
            ladder_error_pct=pl.col("model_fit_max_rel_err").max() * 100,
        )
        .sort("site", "hostname", "model_method")
    )


def _how_measured(df: pl.DataFrame) -> str:
    ok = df.filter(pl.col("status") == "ok")
    if ok.height == 0:
        return "<p><em>no successful runs</em></p>"
    methods = (
        ok.group_by("site", "hostname", "scheduler", "energy_method", "energy_components")
        .agg(
            runs=pl.len(),
            estimated=pl.col("energy_estimated").fill_null(False).any(),
            low_confidence_runs=pl.col("energy_low_confidence").fill_null(False).sum(),
            meter_interval_s=pl.col("energy_interval_s").mean(),
            calibration=pl.col("model_calibration").drop_nulls().unique().sort().str.join("; "),
            calibration_error_pct=pl.col("model_fit_max_rel_err").max() * 100,
            intensity_g_per_kwh=pl.col("carbon_intensity_g_per_kwh").mean(),
            pue=pl.col("pue").mean(),
        )
        .sort("site", "hostname", "energy_method")
    )
    out = table_html(methods)
    out += ("<h3>Whose energy: node vs job</h3><p class='caption'>Sums over the runs' measured windows: what the node "
            "drew (node_energy_j: whole CPU packages, DRAM or the host's RAM model, the job's GPUs) and the jobs' "
            "attributed share (energy_j: active energy by the job's CPU time, idle power by what it reserved, RAM by its "
            "memory share). Neighbour CPU = other processes' share of the node's busy CPU time; shared runs = runs "
            "where others used more than the threshold of the node's CPUs. Never add node energies of jobs that "
            "shared a node.</p>")  # fmt: skip
    out += table_html(whose_energy(df), empty="no run with a node energy (results of an older joulegrid?)")
    out += ("<h3 id='model-error'>The CPU power model against the counters, per host</h3><p class='caption'>Where RAPL "
            "measured the node, the row also holds the CPU power model's prediction for the same window (the model that "
            "gives the energy on hosts without counters: <code>model-calibrated</code> from a calibration of the CPU model "
            "by <code>joulegrid calibrate</code>, else <code>estimate-tdp</code>, W per thread). Model error = the model's "
            "node energy over the counters' − 1, over all runs of the host (components: the package, plus DRAM where "
            "both have it); per run: the median and the largest |error|. Ladder error = the calibration's largest held-out "
            "error on its own load steps. A small error here is the reason to trust the model on the hosts of the same CPU "
            "model where it is all there is; a large one says how far off their figures can be.</p>")  # fmt: skip
    out += table_html(model_error(df), empty="no run with both a counter and the model's prediction (no readable RAPL, "
                      "or the estimate meter was not among measure.meters)")  # fmt: skip
    absent = (
        ok.select("hostname", "meters_absent")
        .explode("meters_absent")
        .drop_nulls("meters_absent")
        .unnest("meters_absent")
        .group_by("hostname", "meter", "reason")
        .agg(runs=pl.len())
        .sort("hostname", "meter")
    )
    if absent.height:
        out += "<h3>Meters asked for but not available</h3>" + table_html(absent)
    return out


def _precision_notes(rel: pl.DataFrame) -> str:
    """Next to the charts: which precisions ran emulated on which host, with the slowdown measured in
    the rows, and how the other precisions ran (int8 backend, native, time and quality against fp32)."""
    if rel.height == 0:
        return ""
    out = []
    emu = M.emulated(rel)
    for note in M.emulated_notes(emu):
        out.append(f"<p class='note emulated'>{html.escape(note)}</p>")
    d = rel.filter((pl.col("precision") != "fp32") | (pl.col("variant") != "baseline"))
    if d.height:
        d = d.with_columns(
            time_vs_fp32=pl.col("time_per_sample_s") / pl.col("base_time_per_sample_s"),
            native=pl.col("precision_native"),
            backend=pl.when(pl.col("precision_backend") != "").then(
                pl.col("precision_backend") + pl.lit(" (") + pl.col("precision_scheme") + pl.lit(")")
            ),
        )
        out.append(
            "<h3 id='precisions'>How each precision ran</h3><p class='caption'>Native = the device has instructions for "
            "the precision (CPU flags, GPU compute capability); emulated cells cost what the host lacks. Time vs fp32 = "
            "time per sample / the fp32 baseline's (same site, workload, phase, device, batch size); d_quality = quality − "
            "the baseline's, in the metric's units (int8: the accuracy its quantization cost). Backend: the int8 "
            "kernels and scheme (docs/workloads.md, “Which int8?”).</p>"
        )  # fmt: skip
        out.append(table_html(d.select(
            "site", "workload", "phase", "device", "precision_variant", "batch_size", "backend", "native", "time_vs_fp32",
            "quality_metric", "quality", "d_quality", "compile_s",
        ).sort("site", "workload", "phase", "device", "batch_size", "precision_variant")))  # fmt: skip
    return "".join(out)


def _other_configs(other: pl.DataFrame, df: pl.DataFrame) -> str:
    """The runs of other configurations (aggregate --current): named per site, workload and config
    hash with what tells them apart in the rows, never averaged with the current ones."""
    current = df.group_by("workload").agg(pl.col("config_hash").drop_nulls().unique().sort().str.join(", ")).sort("workload")
    cur = "; ".join(f"{w} {h}" for w, h in current.iter_rows()) or "none measured yet"
    uniq = lambda c: pl.col(c).drop_nulls().unique().sort().cast(pl.String).str.join(", ")  # noqa: E731
    t = (
        other.group_by("site", "workload", "config_hash")
        .agg(runs=pl.len(), cells=pl.col("cell_id").n_unique(), phases=uniq("phase"), seeds=uniq("seed"),
             epochs=uniq("epochs"), target_quality=uniq("target_quality"), dataset_rows=uniq("dataset_rows"),
             first_finished=pl.col("finished_at").min(), last_finished=pl.col("finished_at").max())
        .sort("workload", "site", "last_finished")
    )  # fmt: skip
    return (
        f"<p class='note'>{other.height} run(s) measured with other settings than the current configuration "
        "(another config hash: an earlier version of the config, another seed or epochs, or run files copied from "
        f"elsewhere). They are kept in <code>summary.other-configs.parquet</code> and are <b>not</b> in the charts and "
        f"tables above, which show the current configuration only (config hash per workload: {html.escape(cur)}).</p>"
        + table_html(t)
    )


def sites_section(df: pl.DataFrame, st: AnalysisSettings, chart: str = "") -> str:
    """The Sites section: the same cell side by side across sites (metrics.site_comparison) and where to
    run each workload (metrics.where_to_run), from the summary's rows (the current configuration's)."""
    comp = M.site_comparison(df, st.sites)
    sites = sorted(df.filter(pl.col("status") == "ok")["site"].drop_nulls().unique().to_list()) if df.height else []
    out = [f"<h2 id='sites'>Sites</h2><p class='caption'>The same cell (workload, phase, device, precision, batch size) "
           "measured at several sites, repeats averaged, from the current configuration's runs. CO2 per 1,000 samples = "
           "energy per sample × PUE × carbon intensity of each site (config/sites.yaml); whole-job overhead = the job's "
           "wall time and energy (job_wall_s, job_energy_j) and the share of both outside the measured phase; batch "
           "efficiency = measured time / (end − submission). Definitions: docs/metrics.md, \"Sites\".</p>"]  # fmt: skip
    if comp.height == 0:
        why = (f"one site only ({html.escape(', '.join(sites))})" if len(sites) == 1 else "no cell was measured at two sites") if sites else "no runs"
        out.append(f"<p><em>Nothing to compare: {why}. Merge another site's results (docs/sites.md, \"Merging sites\": "
                   "copy its results/runs/&lt;site&gt;/ here or <code>joulegrid import</code>, then <code>snakemake</code>).</em></p>")  # fmt: skip
        return "".join(out + [chart])  # a "no data" chart, as the other sections show
    where = M.where_to_run(comp)
    out.append(f"<h3>Where to run each workload</h3><p class='caption'>Criterion: {html.escape(M.WHERE_TO_RUN_CRITERION)}.</p>")
    lines = []
    for (wl, ph), g in where.group_by("workload", "phase", maintain_order=True):
        best = g.row(0, named=True)
        text = (f"<b>{html.escape(wl)} {html.escape(ph)}</b>: run it at <b>{html.escape(best['site'])}</b> — "
                f"{best['co2_per_1k_samples_g']:.3g} g CO2 per 1,000 samples")  # fmt: skip
        if g.height > 1:
            nxt = g.row(1, named=True)
            text += f"; {html.escape(nxt['site'])} emits {nxt['vs_best']:.2f}× as much ({nxt['co2_per_1k_samples_g']:.3g} g)"
        text += f" (mean over {best['common_cells']} cell(s) measured at every site)"
        lines.append(f"<li>{text}</li>")
    out.append(f"<ul class='where'>{''.join(lines)}</ul>")
    out.append(table_html(where))
    out.append(chart)
    out.append("<h3>The same cell at each site</h3>")
    out.append(table_html(comp.drop("config_hash")))
    return "".join(out)


def _environment(df: pl.DataFrame) -> str:
    if df.height == 0:
        return "<p><em>no runs</em></p>"
    env = (
        df.group_by("hostname", "site", "scheduler")
        .agg(
            runs=pl.len(),
            cpu_model=pl.col("cpu_model").drop_nulls().first(),
            cpu_flags=pl.col("cpu_flags").drop_nulls().first(),
            cores_logical=pl.col("cpu_cores_logical").max(),
            memory_gib=(pl.col("memory_total_bytes").max() / 2**30).round(1),
            gpu_model=pl.col("gpu_model").drop_nulls().first(),
            gpu_compute_capability=pl.col("gpu_compute_capability").drop_nulls().first(),
            gpu_count=pl.col("gpu_count").max(),
            os=pl.col("os").drop_nulls().first(),
            python=pl.col("python_version").drop_nulls().first(),
            torch=pl.col("torch_version").drop_nulls().first(),
            torch_threads=pl.col("torch_num_threads").drop_nulls().unique().sort().cast(pl.String).str.join(","),
            codecarbon=pl.col("codecarbon_version").drop_nulls().first(),
            zeus=pl.col("zeus_version").drop_nulls().first(),
            joulegrid=pl.col("joulegrid_version").drop_nulls().first(),
            git_commit=pl.col("joulegrid_git_commit").drop_nulls().first(),
        )
        .sort("site", "hostname")
    )
    return table_html(env)


# ------------------------------------------------------------------ the page
def build_report(
    summary: str,
    out_dir: str,
    problems_file: str | None = None,
    settings: AnalysisSettings | None = None,
    results_dir: str | None = None,
    other_file: str | None = None,
) -> str:
    from .aggregate import other_path

    st = settings or AnalysisSettings.defaults()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = Path(summary)
    res_dir = Path(results_dir) if results_dir else p.parent
    df, load_notes = load_summary(p)
    op = Path(other_file) if other_file else other_path(p)
    other = load_summary(op)[0] if op.is_file() else pl.DataFrame(schema=S.polars_schema())
    problems: list[dict] = []
    pf = Path(problems_file) if problems_file else p.with_suffix(".problems.json")
    if pf.is_file():
        try:
            problems = json.loads(pf.read_text())
        except ValueError as e:
            load_notes.append(f"{pf} is not valid JSON ({e}); the list of left-out run files is unknown.")

    cells = M.cell_stats(df, noisy_cv=st.noisy_cv)
    rel = M.relative_to_baseline(cells) if cells.height else cells
    missing_base = M.missing_baselines(cells) if cells.height else pl.DataFrame()

    nav = [("summary", "Summary"), ("charts", "Charts"), ("fleet", "Fleet what-if"), ("tables", "Metrics"),
           ("scheduler", "Scheduler"), ("sites", "Sites"), ("hotspots", "Hotspots"), ("missing", "Missing & failures"),
           ("measured", "How measured"), ("environment", "Environment")]  # fmt: skip
    if other.height:
        nav.insert(-2, ("other-configs", "Other configurations"))
    sec: list[str] = []

    # ---- summary
    sec.append("<h2 id='summary'>Summary</h2>")
    sec.append(_cards(df, cells, problems))
    for n in load_notes:
        sec.append(f"<p class='bad'>{html.escape(n)}</p>")
    if df.height == 0:
        sec.append("<p class='bad'>No results yet: run the grid (<code>snakemake</code>, see README) and aggregate. "
                   "The sections below are empty until then.</p>")  # fmt: skip
    if df.filter(pl.col("energy_estimated").fill_null(False)).height:
        sec.append(
            "<p class='note'>Some energies are <b>estimates</b> (no RAPL / GPU counters on those hosts): they are drawn "
            "as rings (hollow marks) and their methods are listed under <a href='#measured'>How measured</a>.</p>"
        )
    sec.append("<h3>Best configuration per workload</h3><p class='caption'>Lowest mean energy per sample among "
               "successful cells of each workload and phase, with its change against the fp32 baseline (negative "
               "Δ = cheaper / faster) and whether it lies on the quality–energy Pareto front.</p>")  # fmt: skip
    sec.append(table_html(M.best_per_workload(df), empty="no successful run with an energy figure yet"))
    tta = M.time_to_target(df, targets=st.targets, eta=st.eta)
    bbs = M.best_batch_size(tta)
    sec.append(f"<h3>Best batch size by Zeus cost (η = {st.eta:g})</h3><p class='caption'>Cost = η·ETA + (1−η)·MaxPower·TTA "
               "per training run (J), averaged over repeats; the batch size with the lowest cost per workload, device "
               "and precision.</p>")  # fmt: skip
    sec.append(table_html(bbs, empty="no training run reached a target quality (or none has per-epoch curves)"))

    # ---- charts
    specs: dict[str, dict] = {}
    chart_html: dict[str, str] = {}
    from . import charts as C

    for name in CHART_NAMES:
        chart = C.build(name, df, st)
        png = out / f"{name}.png"
        with atomic_path(png, suffix=".png") as tmp:
            chart.save(tmp, format="png", scale_factor=1.5)
        specs[name] = chart.to_dict()
        title, caption = CHART_TEXT[name]
        chart_html[name] = (
            f"<h3>{html.escape(title)}</h3><p class='caption'>{html.escape(caption)} "
            f"(<a href='{name}.png'>PNG</a>)</p><div class='chart' id='chart-{name}'></div>"
        )
    sec.append("<h2 id='charts'>Charts</h2><p class='caption'>Hover a mark for its details.</p>")
    sec.append(_precision_notes(rel))
    for name in CHART_NAMES:
        if name not in ("fleet_whatif", "scheduler_overhead", "sites"):
            sec.append(chart_html[name])

    # ---- fleet
    sec.append(f"<h2 id='fleet'>Fleet what-if</h2><p class='caption'>Do small efficiency gains matter at scale? "
               f"{st.jobs_per_day:,.0f} jobs/day per site (config <code>fleet.jobs_per_day</code>"
               f"{', per-site overrides in fleet.per_site' if st.per_site else ''}). One job = "
               f"{html.escape(st.fleet_job_text())} (<code>fleet.samples_per_job</code>, <code>fleet.scope</code>). "
               "All columns: <a href='fleet.csv'>fleet.csv</a>.</p>")  # fmt: skip
    sec.append(chart_html["fleet_whatif"].split("</h3>", 1)[1])  # the section heading says it already
    fleet_cells = cells.filter(pl.col("energy_j").is_not_null()) if cells.height else cells
    fl = st.fleet_table(fleet_cells) if fleet_cells.height else pl.DataFrame(schema={c: pl.String for c in M.FLEET_CSV_COLUMNS})
    fl = fl.sort("site", "workload", "phase", "device", "batch_size", "precision_variant") if fl.height else fl
    _write_csv(fl.select(M.FLEET_CSV_COLUMNS), out / "fleet.csv")
    if fl.height:
        sec.append(table_html(fl.select(
            "site", "workload", "phase", "device", "precision_variant", "batch_size", "samples_per_job", "jobs_per_day",
            "energy_per_job_j", "mwh_per_day", "t_co2_per_day", "saving_mwh_per_day", "saving_t_co2_per_day", "saving_pct",
            "energy_source",
        )))  # fmt: skip

    # ---- per-cell metrics
    sec.append("<h2 id='tables'>Metrics per cell</h2><p class='caption'>Repeats averaged; Δ against the fp32 baseline "
               "of the same site, workload, phase, device and batch size; SCI per 1,000 samples (inferences for "
               f"infer), embodied carbon from <code>{html.escape(st.hardware_source or 'no hardware table')}</code>. "
               "Definitions: docs/metrics.md. All columns: <a href='cells.csv'>cells.csv</a>.</p>")  # fmt: skip
    if cells.height:
        full = M.pareto(st.sci_table(rel))
        _write_csv(full, out / "cells.csv")
        sec.append(table_html(full.select(
            "site", "workload", "phase", "device", "precision_variant", "batch_size", "repeats", "energy_per_sample_j",
            "energy_per_sample_ci95_j", "energy_per_sample_cv", "noisy", "samples_per_j", "mean_power_w",
            "co2_per_1k_samples_kg", "sci_g_per_1k", "sci_embodied_share", "d_energy_pct", "d_time_pct", "quality_metric",
            "quality", "d_quality", "pareto", "energy_source",
        ).sort("site", "workload", "phase", "device", "batch_size", "precision_variant")))  # fmt: skip
    else:
        _write_csv(cells, out / "cells.csv")
        sec.append("<p><em>no successful cells</em></p>")
    if tta.height:
        sec.append("<h3>Time and energy to target (training runs)</h3>")
        sec.append(table_html(tta.select(
            "site", "workload", "device", "precision_variant", "batch_size", "repeat", "target", "target_source",
            "epochs_to_target", "tta_s", "eta_j", "max_power_w", "zeus_cost",
        ).sort("workload", "device", "precision_variant", "batch_size", "repeat")))  # fmt: skip

    # ---- scheduler
    sec.append("<h2 id='scheduler'>Scheduler view</h2>")
    sec.append(chart_html["scheduler_overhead"].split("</h3>", 1)[1])
    sec.append(table_html(M.scheduler_view(df)))

    # ---- sites
    sec.append(sites_section(df, st, chart_html["sites"].split("</h3>", 1)[1]))

    # ---- hotspots
    sec.append("<h2 id='hotspots'>Hotspots</h2>")
    hs, hs_err = load_hotspots(res_dir)
    if hs_err:
        sec.append(f"<p class='bad'>{html.escape(hs_err)}</p>")
    view = _hotspots_view(hs, df) if hs is not None else None
    if view is None or view.height == 0:
        sec.append(f"<p><em>No hotspot table for the runs of this summary under {html.escape(str(res_dir / 'hotspots'))} "
                   "(profiling off: measure.hotspots).</em></p>")  # fmt: skip
    else:
        n_cells = hs.filter(pl.col("run_id").is_in(df["run_id"].to_list()))["cell_id"].n_unique() if df.height else hs["cell_id"].n_unique()
        sec.append(f"<p class='caption'>Where the profiled runs ({n_cells} cell(s)) spend their time, in separate passes after "
                   "the measured window: the top Python functions (cprofile, cumulative time) and torch operators (torch, "
                   "self time), as a fraction of the profiled pass. All rows: <code>joulegrid.hotspots.collect</code>.</p>")  # fmt: skip
        sec.append(table_html(view))

    # ---- missing and failures
    not_ok = df.filter(pl.col("status") != "ok")
    sec.append(f"<h2 id='missing'>Missing and failures</h2>")
    if problems:
        sec.append(f"<h3>Run files left out ({len(problems)})</h3><p class='caption'>Found under runs/ but not aggregated.</p>")
        sec.append(table_html(pl.DataFrame(problems)))
    if missing_base.height:
        sec.append(f"<h3>Baselines not run ({missing_base.height})</h3><p class='caption'>These comparison groups have "
                   "no successful fp32 baseline cell, so their Δ and savings are empty. Fix: add fp32 to "
                   "<code>grid.precisions</code> (and baseline to <code>grid.variants</code>) and re-run.</p>")  # fmt: skip
        sec.append(table_html(missing_base))
    sec.append(f"<h3>Failed and skipped runs ({not_ok.height})</h3>")
    if not_ok.height:
        counts = not_ok.group_by("status").agg(runs=pl.len()).sort("status")
        sec.append(table_html(counts))
    sec.append(table_html(
        not_ok.select("cell_id", "status", "error_type", "skip_reason", "error_message", "hostname", "attempt"),
        empty="none: every run finished ok",
    ))  # fmt: skip
    if not problems and not missing_base.height and not not_ok.height and df.height:
        sec.append("<p class='ok'>Nothing missing: every run file was read, every comparison has its baseline, every run finished ok.</p>")

    # ---- runs of other configurations
    if other.height:
        sec.append(f"<h2 id='other-configs'>Other configurations ({other.height} run(s))</h2>")
        sec.append(_other_configs(other, df))

    # ---- how measured / environment
    sec.append("<h2 id='measured'>How measured</h2><p class='caption'>Energy method per site and host. "
               "<i>estimated</i> = a model (CPU time × W per thread, a calibration of the CPU model, RAM model), not a "
               "hardware counter; calibration = the calibration of the host's CPU model the model used, calibration error = "
               "its largest held-out error on its ladder's load steps (model-calibrated rows); low confidence = "
               "fewer than 60 meter samples in the window. Every energy is the job's share of what the node's meters "
               "measured (docs/measurement.md, \"Whose energy\"). CO2 = energy × PUE × intensity of the site.</p>")  # fmt: skip
    sec.append(_how_measured(df))
    sec.append("<h2 id='environment'>Environment</h2>")
    sec.append(_environment(df))
    sec.append(f"<footer>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {html.escape(str(p))} "
               f"by joulegrid (result schema v{S.SCHEMA_VERSION}). Metric definitions and sources: docs/metrics.md.</footer>")  # fmt: skip

    navhtml = "".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t in nav)
    subtitle = f"{df.height} run(s) · {cells.height} cell(s) · η = {st.eta:g} · noisy if CV &gt; {st.noisy_cv:.0%}"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>joulegrid report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:">
<style>{CSS}</style>
<script>window.joulegridCharts = {{expected: {len(specs)}, rendered: 0, errors: []}};
window.addEventListener('error', e => window.joulegridCharts.errors.push('page: ' + e.message));</script>
<script>{_js_bundle()}</script>
</head><body>
<header><h1>joulegrid report</h1><p>What the measured ML workloads cost in time, energy and CO2 · {subtitle}</p></header>
<nav>{navhtml}</nav>
<main>
{''.join(sec)}
</main>
<script>
const specs = {_script_json(specs)};
for (const [name, spec] of Object.entries(specs)) {{
  vegaEmbed('#chart-' + name, spec, {{actions: false, renderer: 'svg'}})
    .then(() => {{ window.joulegridCharts.rendered += 1; }})
    .catch(err => {{ window.joulegridCharts.errors.push(name + ': ' + err); console.error('vega error', name, err); }});
}}
</script>
</body></html>
"""
    index = out / "index.html"
    with atomic_path(index, suffix=".html") as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return str(index)


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    flat = df.select([c for c, t in df.schema.items() if not isinstance(t, (pl.List, pl.Struct, pl.Array))])
    with atomic_path(path, suffix=".csv") as tmp:
        flat.write_csv(tmp)
