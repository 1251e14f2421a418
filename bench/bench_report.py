"""Benchmark: rendering the report of a campaign (240 cells, 1,200 runs), side by side:

- ``main``: the report code of another checkout (``--main /work/main``, its src/), one render per process,
  as `joulegrid report` runs it (optional: skipped without --main);
- ``cold``: this checkout, the Vega bundle built for the render (vl_convert.javascript_bundle(), as before it
  was cached: ``report._js_bundle.cache_clear()`` first);
- ``warm``: this checkout, the bundle already built in this process (``_js_bundle`` is cached per process;
  a later process reads it from the user's cache: report.bundle_cache_path, which every render here leaves
  out by its own empty JOULEGRID_CACHE_DIR).

Each round runs the three in turn, each in a fresh process (a render's memory and caches do not carry over);
prints the median seconds of each, the ratios LAST (warm/cold, cold/main) and the bundle's own build time.

The campaign: tests/campaign.py over a real run's rows (``--summary results/summary.parquet``: the default
grid after `make run`) or, without one, over the default grid's synthetic rows (tests/synth.py). Nothing
here is a measurement of energy.

    python bench/bench_report.py [--summary results/summary.parquet] [--main /work/main] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(REPO / "bench")]

from benchlib import host  # noqa: E402 - after the sys.path set-up

CHILD = """
import json, sys, time
sys.path.insert(0, {src!r})
from joulegrid.analysis import report
from joulegrid.analysis.settings import AnalysisSettings
st = AnalysisSettings.defaults()
out = {{}}
t = time.perf_counter()
if {warm!r} and hasattr(report, "_js_bundle"):
    report._js_bundle()  # built before the render: what a second render of this process finds
    out["bundle_s"] = time.perf_counter() - t
t = time.perf_counter()
report.build_report({summary!r}, {out!r}, settings=st)
out["render_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def campaign_summary(root: Path, real: str | None) -> Path:
    import campaign
    import polars as pl
    import synth
    import yaml

    sites_file = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    tpl = pl.read_parquet(real).to_dicts() if real else campaign.default_grid_templates()
    rows = campaign.campaign_rows(tpl, sites_file)
    return synth.summary(root / "summary.parquet", rows)


def render(src: Path, summary: Path, out: Path, warm: bool) -> dict:
    code = CHILD.format(src=str(src), summary=str(summary), out=str(out), warm=warm)
    # an empty cache folder: the bundle is built in this process, not read from the user's cache (report.py)
    env = {**os.environ, "JOULEGRID_CACHE_DIR": tempfile.mkdtemp(dir=out.parent)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    if p.returncode:
        sys.exit(f"render failed ({src}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", help="a real run's summary.parquet to build the campaign from")
    ap.add_argument("--main", help="another checkout whose report code to time beside this one")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    times: dict[str, list[float]] = {"main": [], "cold": [], "warm": []}
    bundle = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        summary = campaign_summary(root, a.summary)
        for k in range(a.rounds):
            if a.main:
                times["main"].append(render(Path(a.main) / "src", summary, root / f"main{k}", False)["render_s"])
            times["cold"].append(render(REPO / "src", summary, root / f"cold{k}", False)["render_s"])
            w = render(REPO / "src", summary, root / f"warm{k}", True)
            times["warm"].append(w["render_s"])
            bundle.append(w["bundle_s"])
            print(f"round {k + 1}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items() if v), flush=True)
    med = {n: statistics.median(v) for n, v in times.items() if v}
    print(f"host: {host()}")
    print(f"campaign from: {a.summary or 'synthetic default-grid rows (tests/synth.py)'}; rounds: {a.rounds}")
    print(f"vl_convert.javascript_bundle(): median {statistics.median(bundle):.2f} s")
    for n, v in med.items():
        print(f"{n}: median render {v:.2f} s")
    print(f"ratio warm/cold: {med['warm'] / med['cold']:.2f}")
    if "main" in med:
        print(f"ratio cold/main: {med['cold'] / med['main']:.2f}  (warm/main: {med['warm'] / med['main']:.2f})")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
