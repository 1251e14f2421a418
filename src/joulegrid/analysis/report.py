"""The self-contained HTML report (inline Vega, no CDN) and the chart PNGs.

``build_report(summary, out_dir)`` writes ``<out_dir>/index.html`` and ``<out_dir>/<chart>.png``
for every chart in charts.CHARTS. The page embeds the Vega/Vega-Lite/vega-embed bundle from
vl-convert once and every chart spec as JSON, so it opens offline from a file:// URL.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .. import schema as S
from ..io import atomic_path
from . import charts as C
from .metrics import best_per_workload

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.chart{margin:1rem 0 2rem} .note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem 1rem}
.bad{background:#fdecea;border-left:4px solid #d93025;padding:.5rem 1rem}
"""


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table_html(df: pl.DataFrame, max_rows: int = 200) -> str:
    if df.height == 0:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.head(max_rows).iter_rows():
        cells = "".join(
            f'<td class="num">{html.escape(_fmt(v))}</td>' if isinstance(v, (int, float)) else f"<td>{html.escape(_fmt(v))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    more = f"<p>... {df.height - max_rows} more rows</p>" if df.height > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _js_bundle() -> str:
    import vl_convert as vlc

    return vlc.javascript_bundle()


def build_report(summary: str, out_dir: str, problems_file: str | None = None) -> str:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = Path(summary)
    df = pl.read_parquet(p) if p.is_file() else pl.DataFrame(schema=S.polars_schema())
    problems = []
    pf = Path(problems_file) if problems_file else p.with_suffix(".problems.json")
    if pf.is_file():
        problems = json.loads(pf.read_text())

    sections: list[str] = []
    specs: dict[str, dict] = {}
    n_ok = df.filter(pl.col("status") == "ok").height
    sections.append(
        f"<p class='sub'>{df.height} run(s): {n_ok} ok, {df.height - n_ok} not ok &middot; "
        f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {html.escape(str(p))}</p>"
    )
    if df.height == 0:
        sections.append("<p class='bad'>No results yet: run the grid (see README) and aggregate.</p>")
    if df.height and df.filter(pl.col("energy_estimated")).height:
        sections.append(
            "<p class='note'>Some energies are <b>estimates</b> (no RAPL / GPU counters on those hosts): "
            "they are drawn as hollow marks and listed under <i>How measured</i>.</p>"
        )
    sections.append("<h2>Best configuration per workload</h2><p>Lowest energy per sample among successful runs.</p>")
    sections.append(table_html(best_per_workload(df)))

    sections.append("<h2>Charts</h2>")
    for name, fn in C.CHARTS.items():
        if df.filter(pl.col("status") == "ok").height == 0:
            break
        chart = fn(df)
        png = out / f"{name}.png"
        with atomic_path(png, suffix=".png") as tmp:
            chart.save(tmp, format="png", scale_factor=1.5)
        specs[name] = chart.to_dict()
        sections.append(f"<div class='chart' id='chart-{name}'></div>")

    not_ok = df.filter(pl.col("status") != "ok")
    sections.append(f"<h2>Failures and skipped cells ({not_ok.height})</h2>")
    sections.append(table_html(not_ok.select("cell_id", "status", "error_type", "skip_reason", "error_message", "hostname")))
    if problems:
        sections.append(f"<h2>Run files left out ({len(problems)})</h2>")
        sections.append(table_html(pl.DataFrame(problems)))

    if df.height:
        sections.append("<h2>How measured</h2><p>Energy method per host (estimated = modelled, not measured).</p>")
        sections.append(
            table_html(
                df.group_by("hostname", "site", "scheduler", "energy_method", "energy_estimated")
                .agg(runs=pl.len(), low_confidence=pl.col("energy_low_confidence").sum())
                .sort("hostname", "energy_method")
            )
        )
        sections.append("<h2>Environment</h2>")
        env_cols = [
            "hostname", "site", "scheduler", "cpu_model", "cpu_cores_logical", "memory_total_bytes", "gpu_model",
            "gpu_count", "torch_version", "python_version", "torch_num_threads", "joulegrid_version", "joulegrid_git_commit",
        ]
        sections.append(table_html(df.select(env_cols).unique(maintain_order=True)))

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>joulegrid report</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:">
<style>{CSS}</style>
<script>{_js_bundle()}</script>
</head><body>
<h1>joulegrid report</h1>
{''.join(sections)}
<script>
const specs = {json.dumps(specs)};
window.joulegridCharts = {{rendered: 0, errors: []}};
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
        Path(tmp).write_text(page)
    return str(index)
