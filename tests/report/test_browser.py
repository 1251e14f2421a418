"""Open the report in headless Debian chromium (playwright driving /usr/bin/chromium; never a browser
download): every chart rendered (no Vega error, an SVG in each chart element), no network request,
and a screenshot (kept under $JOULEGRID_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import math
import os
import shutil
import statistics
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


# ------------------------------------------------------------------ the report at campaign scale (issue 27)
PAGE_BUDGET_PX = 13_500  # 15 screens of 900 px at 1400 px wide, the details closed


@pytest.fixture(scope="module")
def campaign_report(tmp_path_factory):
    """The campaign fixture (tests/campaign.py: 3 sites x 8 batch sizes x 5 repeats, 240 cells, 1,200 runs)
    and its report, built once for the module."""
    import campaign
    import yaml

    root = tmp_path_factory.mktemp("campaign")
    sites_file = yaml.safe_load((Path(__file__).parents[2] / "config" / "sites.yaml").read_text())
    rows = campaign.campaign_rows(campaign.default_grid_templates(), sites_file)
    summary = synth.summary(root / "summary.parquet", rows)
    index = Path(build_report(str(summary), str(root / "report"), settings=AnalysisSettings.defaults()))
    return rows, index


def _gm(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def expected_answers(rows):
    """The first screen's answers per (workload, phase), from the rows alone: the configuration with the lowest
    geometric mean energy per sample; the comparison against fp32 (same site, device, batch size; one log-ratio per
    repeat) with the largest reduction; the site with the lowest mean CO2 per sample over the cells every site
    measured."""
    cells = {}
    for r in rows:
        key = (r["site"], r["workload"], r["phase"], r["device"], r["precision"], r["variant"], r["batch_size"])
        cells.setdefault(key, {})[r["repeat"]] = r
    eps = lambda r: r["energy_j"] / r["n_samples"]  # noqa: E731
    out = {}
    for wl, ph in sorted({(k[1], k[2]) for k in cells}):
        mine = {k: v for k, v in cells.items() if k[1:3] == (wl, ph)}
        best = min(mine, key=lambda k: _gm([eps(r) for r in mine[k].values()]))
        deltas = {}
        for k, reps in mine.items():
            base = mine.get((*k[:4], "fp32", "baseline", k[6]))
            if k[4] == "fp32" or base is None:
                continue
            logs = [math.log(eps(reps[i]) / eps(base[i])) for i in sorted(set(reps) & set(base))]
            deltas[k] = 100 * (math.exp(sum(logs) / len(logs)) - 1)
        saving = min(deltas, key=deltas.get)
        sites = sorted({k[0] for k in mine})
        common = set.intersection(*({k[1:] for k in mine if k[0] == s} for s in sites))
        co2 = {
            s: statistics.mean(
                statistics.mean(r["co2_kg"] / r["n_samples"] for r in mine[(s, *c)].values()) for c in common
            )
            for s in sites
        }
        out[(wl, ph)] = {
            "use": f"{best[4]} bs{best[6]} @ {best[0]}",
            "saving": f"{saving[4]} bs{saving[6]} @ {saving[0]}",
            "saving_pct": deltas[saving],
            "site": min(co2, key=co2.get),
        }
    return out


def test_campaign_report_first_screen_size_and_filters(browser_context, campaign_report):
    """At campaign scale the first screen answers per workload and phase (derived here from the rows), the page
    with its details closed fits the size budget, nothing is wider than the 1400-px viewport, every drop-down
    shows the rows its label promises (counted from the rows), and the legends list the precisions present."""
    rows, index = campaign_report
    page = browser_context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(index.as_uri())
    page.wait_for_function(
        "window.joulegridCharts.rendered + window.joulegridCharts.errors.length >= window.joulegridCharts.expected",
        timeout=120_000,
    )
    assert page.evaluate("window.joulegridCharts.errors") == [] and errors == []

    # the first screen: the answers table sits in the first 900 px and says, per workload and phase, the
    # configuration to use, the largest saving against fp32 (its interval around the rows' figure) and the site
    answers = page.evaluate("""() => { const t = document.getElementById('answers');
        return {bottom: t.getBoundingClientRect().bottom, top: t.getBoundingClientRect().top,
                rows: [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText))}; }""")
    assert answers["top"] < 400, answers["top"]
    want = expected_answers(rows)
    assert [(a[0], a[1]) for a in answers["rows"]] == sorted(want)
    for wl, ph, use, saving, site in answers["rows"]:
        w = want[(wl, ph)]
        assert use.startswith(w["use"] + " — "), (use, w)
        assert saving.startswith(w["saving"] + ": "), (saving, w)
        text = saving.split(": ")[1].split()[0].replace("−", "-")  # rounded at its interval's last digit (PDG)
        step = 10.0 ** -len(text.split(".")[1]) if "." in text else 1.0
        assert abs(float(text) - w["saving_pct"]) <= step / 2 + 1e-9, (saving, w)
        assert "cheaper" in saving and "[" in saving, saving  # the verdict with its interval
        assert site.startswith(w["site"] + " — "), (site, w)

    # each answer links to its detail: the best set's link opens that table filtered to its workload and phase
    page.locator("#answers a[href='#best-table']").first.click()
    first = page.evaluate("""() => { const d = document.getElementById('best-table').closest('details');
        const rows = [...document.querySelectorAll('#best-table tbody tr:not([hidden])')];
        return {open: d.open, rows: rows.map(r => [...r.cells].slice(0, 2).map(c => c.innerText))}; }""")
    wl, ph = answers["rows"][0][:2]
    assert first["open"] and first["rows"] and all(r == [wl, ph] for r in first["rows"]), first
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = false)")

    # size budget with every <details> closed, and nothing wider than the viewport
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => !d.open)")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= PAGE_BUDGET_PX, height
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    svg_right = page.evaluate(
        "Math.max(...[...document.querySelectorAll('.chart svg')].map(e => e.getBoundingClientRect().right))"
    )
    assert svg_right <= 1400, svg_right
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    clipped = page.evaluate("""() => [...document.querySelectorAll('.tablewrap')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.id || e.innerText.slice(0, 40))""")
    assert clipped == [], clipped

    # every filter of the per-cell table shows the rows its option promises, and as many as the rows hold
    n_cells = {}
    for r in rows:
        pv = r["precision"] if r["variant"] == "baseline" else f"{r['precision']}+{r['variant']}"
        n_cells.setdefault((r["site"], r["workload"], r["phase"], pv, str(r["batch_size"])), 0)
    by = {"site": 0, "workload": 1, "phase": 2, "precision_variant": 3, "batch_size": 4}
    boxes = page.evaluate("""() => [...document.querySelectorAll(".filters[data-table='cells-table'] select")]
        .map(s => [s.dataset.name, [...s.options].map(o => [o.value, o.text])])""")
    assert {name for name, _ in boxes} == set(by), boxes
    for name, options in boxes:
        assert options[0] == ["", f"all ({len(n_cells)})"]
        for value, text in options[1:]:
            want_n = sum(k[by[name]] == value for k in n_cells)
            assert text == f"{value} ({want_n})", (name, value, text)
            page.select_option(f".filters[data-table='cells-table'] select[data-name='{name}']", value)
            shown = page.evaluate("document.querySelectorAll('#cells-table tbody tr:not([hidden])').length")
            assert shown == want_n, (name, value, shown)
        page.select_option(f".filters[data-table='cells-table'] select[data-name='{name}']", "")

    # the charts' site drop-downs: one option per site, with its cells; the legends: the precisions present
    sites = sorted({r["site"] for r in rows})
    options = page.evaluate("[...document.querySelectorAll('#controls-energy_per_sample option')].map(o => o.text)")
    assert options == [f"{s} ({sum(k[0] == s for k in n_cells)} cells)" for s in sites], options
    present = {r["precision"] for r in rows}
    for name in ("energy_per_sample", "quality_vs_energy", "fleet_whatif"):
        labels = page.evaluate(
            f"[...document.querySelectorAll('#chart-{name} .role-legend-label text')].map(t => t.textContent)"
        )
        assert set(labels) - {"measured", "estimated"} == present, (name, labels)
    train = {r["precision"] for r in rows if r["phase"] == "train"}
    labels = page.evaluate(
        "[...document.querySelectorAll('#chart-time_to_target .role-legend-label text')].map(t => t.textContent)"
    )
    assert set(labels) == train, labels
    shot = index.parent / "campaign.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("JOULEGRID_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    page.close()
