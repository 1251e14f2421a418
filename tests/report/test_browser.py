"""Open the report in headless Debian chromium (playwright driving /usr/bin/chromium; never a browser
download): every chart rendered (no Vega error, an SVG in each chart element), no network request,
and a screenshot (kept under $JOULEGRID_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import synth

from joulegrid.analysis import CHART_NAMES
from joulegrid.analysis.report import build_report
from joulegrid.analysis.settings import AnalysisSettings

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium not installed (scripts/setup-system.sh installs it)")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a new, empty --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield ctx
        ctx.close()


def open_report(ctx, index: Path, shot: Path):
    page = ctx.new_page()
    requests, console_errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(index.as_uri())
    page.wait_for_function(
        "window.joulegridCharts && window.joulegridCharts.rendered + window.joulegridCharts.errors.length"
        " >= window.joulegridCharts.expected",
        timeout=120_000,
    )
    state = page.evaluate("window.joulegridCharts")
    marks = {n: page.locator(f"#chart-{n} svg, #chart-{n} canvas").count() for n in CHART_NAMES}
    # the Sites section as the reader sees it: its advice per workload, its tables' rows
    sites = page.evaluate("""() => { const h = document.getElementById('sites');
        const out = {where: [], rows: 0, visible: !!(h && h.offsetParent)};
        for (let e = h && h.nextElementSibling; e && e.tagName !== 'H2'; e = e.nextElementSibling) {
          if (e.matches('ul.where')) out.where = [...e.querySelectorAll('li')].map(li => li.innerText);
          out.rows += e.querySelectorAll('tbody tr').length; }
        return out; }""")
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("JOULEGRID_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    page.close()
    return state, marks, requests, console_errors, sites


@pytest.mark.parametrize("case", ["results", "empty"])
def test_report_renders_offline_in_chromium(browser_context, tmp_path, case):
    if case == "results":
        cells = synth.grid_cells(precisions=("fp32", "bf16"), repeats=2) + synth.grid_cells(
            site="lxplus", phases=("infer",)
        )
        rows = [
            synth.row(
                c,
                estimated=c.site == "local",
                scheduler="htcondor" if c.site == "lxplus" else "local",
                queue_wait_s=25.0 if c.site == "lxplus" else None,
                jitter=0.2 * c.repeat,
            )
            for c in cells
        ]
        summary = synth.summary(tmp_path / "summary.parquet", rows)
    else:
        summary = tmp_path / "absent" / "summary.parquet"
    index = Path(build_report(str(summary), str(tmp_path / "report"), settings=AnalysisSettings.defaults()))
    shot = tmp_path / f"report-{case}.png"
    state, marks, requests, console_errors, sites = open_report(browser_context, index, shot)
    assert state["errors"] == [] and not [e for e in console_errors if "vega" in e.lower() or "error" in e.lower()], (
        state,
        console_errors,
    )
    assert state["rendered"] == state["expected"] == len(CHART_NAMES)
    assert all(n >= 1 for n in marks.values()), marks
    external = [u for u in requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
    assert external == [], external
    assert shot.stat().st_size > 20_000
    # the Sites section: local and lxplus measured the same infer cells; lxplus (56 gCO2/kWh, PUE 1.5) wins
    assert sites["visible"]
    if case == "results":
        assert len(sites["where"]) == 1 and sites["where"][0].startswith("baler_ae infer: run it at lxplus"), sites
        assert sites["rows"] > 0 and marks["sites"] >= 1
    else:
        assert sites["where"] == [] and sites["rows"] == 0
