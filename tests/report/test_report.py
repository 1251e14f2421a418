"""The HTML report and its PNGs from generated results (tests/synth.py), including bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import synth
from conftest import html_tables

from joulegrid import schema as S
from joulegrid.analysis import CHART_NAMES, REPORT_TABLES
from joulegrid.analysis import metrics as M
from joulegrid.analysis.report import build_report
from joulegrid.analysis.settings import AnalysisSettings

ST = AnalysisSettings.defaults()


def results_set(root, with_baseline=True):
    precisions = ("fp32", "bf16") if with_baseline else ("bf16",)
    cells = synth.grid_cells(precisions=precisions, repeats=2) + synth.grid_cells(
        site="lxplus", phases=("infer",), precisions=("fp32", "int8")
    )
    rows = [
        synth.row(
            c,
            estimated=c.site == "local",
            scheduler="htcondor" if c.site == "lxplus" else "local",
            queue_wait_s=40.0 if c.site == "lxplus" else None,
            jitter=0.3 * c.repeat,
        )
        for c in cells
    ]
    rows.append(synth.row(synth.grid_cells(precisions=("fp32",), batch_sizes=(4096,))[0], status="oom"))
    rows.append(
        synth.row(
            synth.grid_cells(devices=("cuda",), precisions=("fp32",), batch_sizes=(256,))[0],
            status="skipped",
            skip_reason="no CUDA device on this host",
        )
    )
    return synth.summary(root / "summary.parquet", rows), rows


T975_DF1 = math.tan(math.pi * 0.475)  # Student's t(0.975) with 1 df, in closed form (the Cauchy quantile)


def _num(text: str) -> float:
    """The first number of a report cell ('−40 [−45, −35]', '0.0704 ± 0.0012')."""
    return float(text.replace("−", "-").split()[0])


def specs(index) -> dict:
    m = re.search(r"const specs = (\{.*?\});\n", index.read_text(), re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def cards(page: str) -> dict[str, int]:
    import html as H

    return {
        H.unescape(t): int(v) for v, t in re.findall(r"<div class='card[^']*'><b>(\d+)</b><span>([^<]*)</span>", page)
    }


def test_report_sections_pngs_and_tables(tmp_path):
    summary, rows = results_set(tmp_path)
    index = build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    assert index.endswith("index.html")
    for name in CHART_NAMES:
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert html.count(f"id='chart-{name}'") == 1, name  # drawn once, in its section
    assert set(specs(tmp_path / "report" / "index.html")) == set(CHART_NAMES)
    # every table's CSV next to the page, linked from it, with its caption for snakemake --report
    root = Path(__file__).parents[2]
    for name in REPORT_TABLES:
        assert (tmp_path / "report" / f"{name}.csv").is_file(), name
        assert f"href='{name}.csv'" in html, name
        assert (root / "workflow" / "report" / f"table_{name}.rst").is_file(), name

    # the summary's figures, counted from the rows the summary was written from
    ok = [r for r in rows if r["status"] == "ok"]
    cells = ok_cells(rows)
    assert cards(html) == {
        "runs": len(rows),
        "cells (repeats averaged)": len(cells),
        "ok": len(ok),
        "failed / skipped": len(rows) - len(ok),
        "sites": len({r["site"] for r in rows}),
        "hosts": len({r["hostname"] for r in rows}),
        "runs with estimated energy": sum(bool(r["energy_estimated"]) for r in ok),
        "noisy cells (CV > threshold)": sum(_cv_of(rs) > ST.noisy_cv for rs in cells.values()),
        "run files left out": 0,
        # a summary with the outlier rule's column (every summary of this schema): the ok runs it excluded
        **(
            {"runs excluded by the outlier rule": sum(bool(r.get("excluded")) for r in ok)}
            if "excluded" in pl.read_parquet_schema(summary)
            else {}
        ),
    }

    # best configuration per workload and phase: the observed best is the cell with the lowest geometric mean
    # energy per sample, listed first; the others listed are those that could not be told apart from it
    (best,) = html_tables(html, "Best configuration per workload", "Best batch size by Zeus cost")
    eps = {k: sum(r["energy_j"] / r["n_samples"] for r in rs) / len(rs) for k, rs in cells.items()}
    gm = {k: math.exp(sum(math.log(r["energy_j"] / r["n_samples"]) for r in rs) / len(rs)) for k, rs in cells.items()}
    expected = {}
    for k, _ in sorted(gm.items(), key=lambda kv: kv[1]):
        expected.setdefault((k[1], k[2]), k)
    observed = [b for b in best if b["vs_best_verdict"] == "observed best"]
    assert [(b["workload"], b["phase"]) for b in observed] == sorted(expected)
    assert {(b["workload"], b["phase"]) for b in best} == set(expected)
    lvl = "95 %"
    for b in observed:
        site, _, _, device, precision, variant, bs = expected[(b["workload"], b["phase"])]
        got = (b["site"], b["device"], b["precision_variant"], int(b["batch_size"]))
        assert got == (site, device, precision, bs), b
        reps = cells[expected[(b["workload"], b["phase"])]]
        e = eps[expected[(b["workload"], b["phase"])]]
        # the table's unit scales with its figures (J, mJ, µJ per sample): the column's name says which
        (col,) = [c for c in b if c.startswith("energy/sample (") and c.endswith(f"± {lvl}")]
        unit = col.split("(")[1].split(")")[0]
        k = {"J": 1.0, "mJ": 1e3, "µJ": 1e6, "nJ": 1e9}[unit]
        shown = max(
            eps[key]
            for key in eps
            for x in best
            if (x["site"], x["workload"], x["phase"], x["device"], x["batch_size"]) == (*key[:4], str(key[6]))
            and x["precision_variant"] == (key[4] if key[5] == "baseline" else f"{key[4]}+{key[5]}")
        )
        assert 1 <= k * shown < 1000 or (unit == "J" and shown >= 1000), (unit, shown)
        e *= k
        text = b[col]
        if len(reps) == 1:
            assert _num(text) == pytest.approx(e, rel=1e-3) and "±" not in text, b
        else:  # mean ± t(0.975, n-1) s / sqrt(n), both rounded at the uncertainty's last digit (the PDG rule)
            xs = [k * r["energy_j"] / r["n_samples"] for r in reps]
            ci = T975_DF1 * statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) == 2 else None
            value, unc = (x.strip() for x in text.replace("−", "-").split("±"))
            step = 10.0 ** -len(unc.split(".")[1]) if "." in unc else 1.0
            assert abs(float(value) - e) <= step / 2 + 1e-15 and abs(float(unc) - ci) <= step / 2 + 1e-15, (b, e, ci)
            assert unc.replace(".", "").lstrip("0")[:3] and len(unc.replace(".", "").lstrip("0")) <= 2, unc
        # Δ against fp32 of the same site/batch: the blocks (repeat indices) both cells have, one log-ratio each
        mine = {r["repeat"]: r for r in cells[expected[(b["workload"], b["phase"])]]}
        base = {r["repeat"]: r for r in cells[(site, b["workload"], b["phase"], device, "fp32", "baseline", bs)]}
        logs = [
            math.log(mine[k]["energy_j"] / mine[k]["n_samples"] / (base[k]["energy_j"] / base[k]["n_samples"]))
            for k in sorted(set(mine) & set(base))
        ]
        d = 100 * (math.exp(sum(logs) / len(logs)) - 1)
        assert _num(b[f"Δenergy vs fp32 % [{lvl}]"]) == pytest.approx(d, rel=0.01, abs=0.05), b
        assert b["d_energy_verdict"] in ("cheaper (exact)", "one run: no interval"), b  # repeats +30 % in both cells

    # the scheduler view: per site, jobs and the mean queue wait of the rows
    (sched,) = html_tables(html, "id='scheduler'", "id='sites'")
    for s in sched:
        mine = [r for r in ok if r["site"] == s["site"]]
        assert int(s["jobs"]) == len(mine), s
        waits = [r["queue_wait_s"] for r in mine if r["queue_wait_s"] is not None]
        assert (float(s["queue_wait_mean_s"]) if s["queue_wait_mean_s"] else None) == (
            sum(waits) / len(waits) if waits else None
        ), s
    assert {s["site"] for s in sched} == {r["site"] for r in ok}

    # the same cell at each site, pivoted: one row per cell, per site its mean energy per sample (in the table's
    # unit) and CO2 per 1,000 samples (the site's intensity and PUE of config/sites.yaml)
    (pivot,) = html_tables(html, "The same cell at each site</h3>", "id='when-to-run'")
    both = {k[1:] for k in cells if k[0] == "lxplus"} & {k[1:] for k in cells if k[0] == "local"}
    assert len(pivot) == len(both) > 0
    for p in pivot:
        for site in ("local", "lxplus"):
            (ecol,) = [c for c in p if c.startswith(f"{site}: ") and "/sample ±" in c]
            (gcol,) = [c for c in p if c.startswith(f"{site}: ") and "CO2/1k samples" in c]
            e_unit, g_unit = ecol.split(": ")[1].split("/")[0], gcol.split(": ")[1].split()[0]
            key = (
                site,
                p["workload"],
                p["phase"],
                p["device"],
                *p["precision_variant"].split("+"),
                int(p["batch_size"]),
            )
            key = key if len(key) == 7 else (*key[:5], "baseline", key[5])
            scale = {"J": 1.0, "mJ": 1e-3, "µJ": 1e-6, "nJ": 1e-9, "g": 1.0, "mg": 1e-3, "µg": 1e-6, "kg": 1e3}
            e = eps[key]
            value = p[ecol].replace("−", "-").split()[0]  # rounded at its uncertainty's last digit (PDG)
            step = 10.0 ** -len(value.split(".")[1]) if "." in value else 1.0
            assert abs(float(value) - e / scale[e_unit]) <= step / 2 + 1e-12, (p, e)
            facts = ST.sites[site]
            co2 = e * 1000 / 3.6e6 * facts["pue"] * facts["carbon_intensity_g_per_kwh"]
            assert float(p[gcol]) * scale[g_unit] == pytest.approx(co2, rel=1e-3), (p, co2)

    # failed and skipped runs: each one, with its status and reason
    not_ok = [r for r in rows if r["status"] != "ok"]
    assert f"Failed and skipped runs ({len(not_ok)})" in html
    counts, listed = html_tables(html, "Failed and skipped runs (", "id='measured'")
    assert {c["status"]: int(c["runs"]) for c in counts} == {
        s: sum(r["status"] == s for r in not_ok) for s in {r["status"] for r in not_ok}
    }
    assert sorted((x["cell_id"], x["status"]) for x in listed) == sorted((r["cell_id"], r["status"]) for r in not_ok)
    assert "no CUDA device on this host" in {x["skip_reason"] for x in listed}

    for title in ("Fleet what-if", "How measured", "Environment", "Hotspots", "Best batch size by Zeus cost"):
        assert title in html, title
    assert "synthetic-test-fixture" in html  # the energy method per host
    assert "estimates" in html  # estimated energies are called out
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html.split("<script>")[0]
    cells_csv = pl.read_csv(tmp_path / "report" / "cells.csv")
    assert {"d_energy_pct", "sci_g_per_1k", "pareto", "noisy", "energy_per_sample_ci95_j"} <= set(cells_csv.columns)
    assert cells_csv.height == len(cells)  # 8 local cells + 4 lxplus cells
    got = {
        (c["site"], c["workload"], c["phase"], c["device"], c["precision"], c["variant"], c["batch_size"]): c[
            "energy_per_sample_j"
        ]
        for c in cells_csv.to_dicts()
    }
    assert got == pytest.approx(eps)


def test_best_configuration_flags_noise_by_the_reports_threshold(tmp_path):
    """report.noisy_cv decides which cells are noisy in the summary's cards and its best-configuration
    table alike (the table used the default threshold whatever the configuration said)."""
    summary, rows = results_set(tmp_path)
    cv = {
        (site, wl, ph, dev, prec if var == "baseline" else f"{prec}+{var}", str(bs)): _cv_of(rs)
        for (site, wl, ph, dev, prec, var, bs), rs in ok_cells(rows).items()
    }
    best_cvs = []
    for noisy_cv in (ST.noisy_cv, 0.5):
        build_report(str(summary), str(tmp_path / f"r{noisy_cv}"), settings=dataclasses.replace(ST, noisy_cv=noisy_cv))
        html = (tmp_path / f"r{noisy_cv}" / "index.html").read_text()
        assert cards(html)["noisy cells (CV > threshold)"] == sum(c > noisy_cv for c in cv.values()), noisy_cv
        (best,) = html_tables(html, "Best configuration per workload", "Best batch size by Zeus cost")
        for b in best:
            c = cv[tuple(b[k] for k in ("site", "workload", "phase", "device", "precision_variant", "batch_size"))]
            best_cvs.append(c)
            assert b["noisy"] == ("yes" if c > noisy_cv else "no"), (noisy_cv, c, b)
    # the synthetic repeats (energy +30 % in the second) are noisy at the default 10 % and not at 50 %
    assert any(ST.noisy_cv < cv < 0.5 for cv in best_cvs), best_cvs


def ok_cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The successful rows by cell (site, workload, phase, device, precision, variant, batch size): its repeats."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            cells.setdefault(
                (r["site"], r["workload"], r["phase"], r["device"], r["precision"], r["variant"], r["batch_size"]), []
            ).append(r)
    return cells


def _cv_of(repeats: list[dict]) -> float:
    """A cell's sample coefficient of variation (n - 1) of energy per sample over its repeats (0 for a single
    run: never noisy)."""
    if len(repeats) < 2:
        return 0.0
    xs = [r["energy_j"] / r["n_samples"] for r in repeats]
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 / m


def test_report_with_missing_results(tmp_path):
    build_report(str(tmp_path / "nothing" / "summary.parquet"), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "No summary at" in html and "No results yet" in html
    for name in CHART_NAMES:  # every declared PNG exists, saying there is no data
        assert (tmp_path / "report" / f"{name}.png").is_file()
    assert "No data" in json.dumps(specs(tmp_path / "report" / "index.html"))
    assert (tmp_path / "report" / "cells.csv").is_file()


def test_report_lists_missing_baselines_and_left_out_files(tmp_path):
    summary, _ = results_set(tmp_path, with_baseline=False)
    problems = tmp_path / "summary.problems.json"
    problems.write_text(
        json.dumps([{"path": "runs/x/r0.parquet", "problem": "schema version 0, this joulegrid reads version 1"}])
    )
    build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Baselines not run (" in html and "add fp32 to" in html
    assert "Run files left out (1)" in html and "schema version 0" in html


def test_report_of_a_summary_with_an_old_schema(tmp_path):
    summary, rows = results_set(tmp_path)
    t = pq.read_table(summary).drop_columns(["quality", "epoch_quality"])
    pq.write_table(t, summary)
    build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "lacks 2 column(s)" in html and "re-run `joulegrid aggregate`" in html
    assert "Energy per sample" in html


def _profile_real_cells(results, rows, n=2):
    """Hotspot files as a run writes them: the real profilers (cProfile, torch.profiler) over an inference pass
    of a tiny model through joulegrid's loop (phases.infer_profile_pass), written by joulegrid.hotspots to
    <results>/hotspots/<cell id>.parquet (per-cell subfolders), with the trace beside each."""
    import torch

    from joulegrid import hotspots, phases, precision

    class Tiny:
        def infer_batch(self, model, xb):
            return model(xb)

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    pp = phases.infer_profile_pass(Tiny(), model, torch.randn(192, 16), 64, "cpu", precision.get("fp32", "infer"), 3)
    for r in rows[:n]:
        if r is rows[0] or r["precision"] != rows[0]["precision"]:  # one profile per precision (the test's time)
            p = hotspots.profile(pp, "cpu", r, top=5)
        mine = [{**h, **{k: r.get(k) for k in hotspots.IDENTITY}} for h in p.rows]
        hotspots.write(mine, hotspots.path_for(results / "runs" / f"{r['cell_id']}.parquet", r["cell_id"]), p.trace)


def test_hotspots_section(tmp_path):
    """The section's figures from the hotspot files' rows (real profilers, _profile_real_cells) and the
    summary's energies: per cell the mean over its runs of the steps' time per batch and their modelled
    energy (phase energy per batch x time share), every row in hotspots.csv, the trace linked, and a
    "why it differs" table for bf16 against fp32 at the same batch size."""
    cells = synth.grid_cells(phases=("train",), precisions=("fp32", "bf16"), batch_sizes=(256,), repeats=2)
    rows = [synth.row(c, n_batches=40 + 2 * i) for i, c in enumerate(cells)]
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    _profile_real_cells(tmp_path, rows, n=len(rows))
    assert not list((tmp_path / "hotspots").glob("*.parquet"))  # nothing at the top: per-cell subfolders
    out = tmp_path / "report"
    build_report(str(summary), str(out), settings=ST)
    html = (out / "index.html").read_text()
    hot = html[html.index("id='hotspots'") : html.index("id='missing'")]
    assert "No hotspot table" not in hot and "aten::addmm" in hot and "(model)" in hot and "modelled" in hot
    assert "bf16 bs256</b> against fp32 bs256" in hot
    files = pl.read_parquet(sorted((tmp_path / "hotspots").rglob("*.parquet")))
    run = {r["run_id"]: r for r in rows}
    # the overview: per precision, the runs' step time per batch and modelled energy per batch, averaged
    overview = html_tables(hot, "<h3>baler_ae</h3>", "Why a configuration differs")[0]
    assert [r["precision"] for r in overview] == ["fp32", "bf16"]
    for shown in overview:
        ms, mj = [], []
        for rid in {r["run_id"] for r in rows if r["precision"] == shown["precision"]}:
            st = files.filter((pl.col("run_id") == rid) & (pl.col("kind") == "step")).to_dicts()
            ms.append(sum(r["fraction"] * r["profiled_wall_s"] for r in st) * 1000 / st[0]["profiled_batches"])
            mj.append(run[rid]["energy_j"] / run[rid]["n_batches"] * sum(r["fraction"] for r in st) * 1000)
        assert _num(shown["ms/batch"]) == pytest.approx(statistics.mean(ms), rel=1e-3)
        assert _num(shown["energy mJ/batch (modelled)"]) == pytest.approx(statistics.mean(mj), rel=1e-3)
    # hotspots.csv: every row of the files, with the derived figures
    csv = pl.read_csv(out / "hotspots.csv")
    assert csv.height == files.height and set(csv["run_id"]) == set(run)
    chk = csv.join(
        pl.from_dicts([{"run_id": k, "e": v["energy_j"], "nb": v["n_batches"]} for k, v in run.items()]), on="run_id"
    )
    for r in chk.filter(pl.col("fraction").is_not_null()).iter_rows(named=True):
        assert r["ms_per_batch"] == pytest.approx(r["fraction"] * r["profiled_wall_s"] * 1000 / r["profiled_batches"])
        assert r["energy_per_batch_modelled_mj"] == pytest.approx(r["e"] / r["nb"] * r["fraction"] * 1000)
        assert r["energy_basis"].startswith("modelled")
    assert pl.read_csv(out / "hotspot-diffs.csv").height > 0
    # each cell's trace, linked relative to the report
    links = re.findall(r"<a href='([^']+\.trace\.json)'>trace</a>", hot)
    assert len(links) == 2 and all((out / href).resolve().is_file() for href in links)


def test_hotspots_section_without_hotspots(tmp_path):
    summary, _ = results_set(tmp_path)
    build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "No hotspot table" in html[html.index("id='hotspots'") : html.index("id='missing'")]


def test_fleet_csv_and_whose_energy_per_host(tmp_path):
    cells = synth.grid_cells(phases=("infer",), precisions=("fp32", "bf16"), batch_sizes=(256,))
    n_test = 4_000
    rows = [
        synth.row(
            c,
            energy_per_sample_j=1e-4 if c.precision == "fp32" else 1e-3,
            n_test=n_test,
            n_samples=(600_000 if c.precision == "fp32" else 60_000),
            node_shared=True,
            energy_attribution="cpu-share",
            neighbour_cpu_fraction=0.25 if c.precision == "fp32" else 0.75,
        )
        for c in cells
    ]
    for r in rows:
        r["node_energy_j"] = 4 * r["energy_j"]
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    st = AnalysisSettings.defaults()
    build_report(str(summary), str(tmp_path / "report"), settings=st)
    fl = pl.read_csv(tmp_path / "report" / "fleet.csv")
    assert fl.columns[:10] == [
        "site",
        "workload",
        "phase",
        "device",
        "precision_variant",
        "batch_size",
        "samples_per_job",
        "mwh_per_day",
        "t_co2_per_day",
        "saving_pct",
    ]
    f = {r["precision_variant"]: r for r in fl.to_dicts()}
    pue, i = st.sites["local"]["pue"], st.sites["local"]["carbon_intensity_g_per_kwh"]
    mwh = 1_000_000 * 1e-4 * n_test / 3.6e6 * pue / 1000
    assert f["fp32"]["samples_per_job"] == n_test and f["fp32"]["mwh_per_day"] == pytest.approx(mwh)
    assert f["fp32"]["t_co2_per_day"] == pytest.approx(mwh * 1000 * i / 1e6)
    assert f["bf16"]["saving_pct"] == pytest.approx(-900.0) and f["bf16"]["fleet_scope"] == "phase"
    html = (tmp_path / "report" / "index.html").read_text()
    assert "one pass over the test split" in html and "fleet.scope: phase" in html
    measured = html[html.index("id='measured'") :]
    assert "Whose energy: node vs job" in measured
    assert "25.0%" in measured  # the jobs' share of the node's energy (energy_j / node_energy_j summed)
    assert "50.0%" in measured and "75.0%" in measured  # neighbours' share of busy CPU: mean and max


def test_model_error_per_host(tmp_path):
    """How measured: the CPU power model's prediction against the counters, one line per host and model,
    its numbers from the rows (docs/measurement.md, "Calibrating a CPU model")."""
    from joulegrid.analysis.metrics import model_error

    cells = synth.grid_cells(phases=("infer",), precisions=("fp32", "bf16"), batch_sizes=(256, 1024))
    rows = []
    for k, c in enumerate(cells):
        host, cal = ("rapl-a", True) if k % 2 == 0 else ("rapl-b", False)
        r = synth.row(
            c, estimated=False, energy_method="rapl", hostname=host, node_energy_cpu_j=100.0 + k, node_energy_ram_j=10.0
        )
        err = 0.02 * (k + 1) if cal else -0.3  # a calibrated model off by 2-6 %, the TDP model by 30 %
        comps = "cpu+dram" if cal else "cpu"
        counter = r["node_energy_cpu_j"] + (r["node_energy_ram_j"] if cal else 0.0)
        r.update(
            model_method="model-calibrated" if cal else "estimate-tdp",
            model_components=comps,
            model_node_energy_j=counter * (1 + err),
            model_rel_err=err,
            model_calibration="Synthetic CPU (host c, 2026-11-20)" if cal else None,
            model_fit_max_rel_err=0.01 if cal else None,
        )
        rows.append(r)
    # no prediction
    rows.append(synth.row(cells[0], hostname="no-rapl", model_method="model-calibrated", model_fit_max_rel_err=0.01))
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    part = html[html.index("id='model-error'") :]
    part = part[: part.index("</table>")]  # the model-error table only
    t = model_error(pl.read_parquet(summary)).to_dicts()
    assert [(x["hostname"], x["model_method"], x["runs"]) for x in t] == [
        ("rapl-a", "model-calibrated", 2),
        ("rapl-b", "estimate-tdp", 2),
    ]
    for x in t:
        mine = [r for r in rows if r["hostname"] == x["hostname"]]
        counter = sum(
            r["node_energy_cpu_j"] + (r["node_energy_ram_j"] if r["model_components"] == "cpu+dram" else 0.0)
            for r in mine
        )
        model = sum(r["model_node_energy_j"] for r in mine)
        assert x["model_error_pct"] == pytest.approx(100 * (model / counter - 1))
        assert x["max_abs_run_error_pct"] == pytest.approx(100 * max(abs(r["model_rel_err"]) for r in mine))
        assert f"{x['model_error_pct']:+.1f} %" in part and x["hostname"] in part
    assert "no-rapl" not in part  # a host without counters has no error to show: its rows are the model
    assert "-30.0 %" in part and "Synthetic CPU (host c, 2026-11-20)" in part


# src/joulegrid/analysis: what the report runs
REPORT_CODE = ("report.py", "charts.py", "metrics.py", "settings.py", "stats.py", "../carbon.py")


def _column_names(path) -> tuple[set[str], set[str]]:
    """(columns the code reads: pl.col("x"), select / group_by / sort ... ("x"); columns it makes: name=... in polars
    calls, .alias("x"), with_columns / agg / select keywords), from the module's syntax tree."""
    import ast

    tree = ast.parse(path.read_text())
    read, made = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):  # schema = {"col": pl.Type, ...}
            if any(getattr(t, "id", "") == "schema" for t in node.targets):
                made.update(
                    k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
                )
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name == "col" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "pl":
            read.update(strings)
        if name in ("select", "group_by", "sort", "explode", "unnest", "drop_nulls", "unique", "over", "unpivot"):
            read.update(strings)
        if name in ("alias", "with_row_index"):
            made.update(strings)
        if name == "_with_text":  # report._with_text(df, **{"display column": function of the row})
            made.update(k.arg for k in node.keywords if k.arg)
            for k in node.keywords:
                if k.arg is None and isinstance(k.value, ast.Dict):
                    made.update(x.value for x in k.value.keys if isinstance(x, ast.Constant))
        if name in ("with_columns", "agg", "select", "DataFrame", "struct", "rename"):
            made.update(k.arg for k in node.keywords if k.arg)
            for a in node.args:  # rename({"old": "new"})
                if isinstance(a, ast.Dict):
                    made.update(v.value for v in a.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        if name == "DataFrame":  # pl.DataFrame({"col": values, ...}, schema={"col": type, ...})
            for d in [*node.args, *(k.value for k in node.keywords if k.arg == "schema")]:
                if isinstance(d, ast.Dict):
                    made.update(k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return read, made


def test_schema_columns_only_named_in_schema(tmp_path):
    """The report code reads every result column by the schema's name: each pl.col("x") of the report's
    modules is a schema column or a column that code derives itself (a renamed or misspelt column fails here)."""
    from pathlib import Path

    import joulegrid.analysis as A

    read, made = set(), set()
    for f in REPORT_CODE:
        r, m = _column_names(Path(A.__file__).parent / f)
        read |= r
        made |= m
    import pyarrow as pa

    schema = set(S.COLUMN_NAMES) | set(S.HOTSPOT_COLUMN_NAMES)  # + the fields of list<struct> columns (meters_absent)
    for fld in S.arrow_schema():
        t = fld.type.value_type if pa.types.is_list(fld.type) else fld.type
        if pa.types.is_struct(t):
            schema |= {t.field(i).name for i in range(t.num_fields)}
    # + the columns the comparisons name after what they compare (metrics.against_baseline: d_energy_verdict, ...)
    summary, _ = results_set(tmp_path)
    df = pl.read_parquet(summary)
    made |= set(M.relative_to_baseline(M.cell_stats(df), df).columns)
    made |= set(M.fleet_intervals(M.fleet(M.cell_stats(df)), df).columns)
    unknown = sorted(read - schema - made)
    assert not unknown, f"columns the report reads that are neither in schema.py nor derived by the report: {unknown}"
    # the columns the report's own sections read (cards, how measured, scheduler view, failures) are among them
    assert {
        "energy_estimated",
        "queue_wait_s",
        "epoch_quality",
        "meters_absent",
        "energy_method",
        "hostname",
    } <= read & set(S.COLUMN_NAMES)


def test_cli_report_with_settings_and_bad_settings(tmp_path):
    import subprocess
    import sys

    from conftest import subprocess_env

    summary, _ = results_set(tmp_path)
    st = AnalysisSettings(jobs_per_day=1234, eta=0.9)

    def run(*a):
        cmd = [sys.executable, "-m", "joulegrid", "report", "--summary", str(summary), "--out", str(tmp_path / "r"), *a]
        return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env())

    ok = run("--settings", st.to_json())
    assert ok.returncode == 0, ok.stderr
    html = (tmp_path / "r" / "index.html").read_text()
    assert "1,234 jobs/day" in html and "η = 0.9" in html
    bad = run("--settings", '{"eta": 0.5, "colour": "red"}')
    assert bad.returncode == 2 and "--settings: not joulegrid analysis settings" in bad.stderr


def test_report_marks_emulated_precisions_next_to_the_charts(tmp_path):
    """An emulated bf16 gets a note with the slowdown of its rows, placed in the charts section before the charts;
    int8 rows show their backend, scheme and d_quality against fp32."""
    emul = dict(cpu_model="EPYC AVX2", cpu_flags="avx2")
    rows = []
    for bs, slow in ((256, 6.0), (1024, 13.0)):
        fp32 = synth.grid_cells(phases=("infer",), precisions=("fp32",), batch_sizes=(bs,))[0]
        bf16 = synth.grid_cells(phases=("infer",), precisions=("bf16",), batch_sizes=(bs,))[0]
        int8 = synth.grid_cells(phases=("infer",), precisions=("int8",), batch_sizes=(bs,))[0]
        rows.append(synth.row(fp32, energy_per_sample_j=1e-3, precision_native=True, quality=0.05, **emul))
        rows.append(synth.row(bf16, energy_per_sample_j=slow * 1e-3, precision_native=False, **emul))
        rows.append(
            synth.row(
                int8,
                energy_per_sample_j=0.5e-3,
                precision_native=False,
                quality=0.0525,
                precision_backend="x86",
                precision_scheme="static",
                precision_backend_pinned=False,
                **emul,
            )
        )
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    build_report(str(summary), str(tmp_path / "report"), settings=ST)
    html = (tmp_path / "report" / "index.html").read_text()
    charts = html.index("<h2 id='charts'>")
    note = html.index("bf16 on EPYC AVX2 (site local, cpu) is emulated: 6.0–13.0× slower than fp32 per sample")
    assert charts < note < html.index("id='chart-energy_per_sample'")
    assert "int8 on EPYC AVX2 (site local, cpu) is emulated: 2.0× faster than fp32 per sample" in html
    table = html[html.index("How each precision ran") : html.index("id='chart-energy_per_sample'")]
    assert "x86 (static)" in table
    d_quality = 0.0525 - 0.05  # int8 quality - the fp32 baseline's, from the rows above
    assert f"{d_quality:.4g}" in table


def test_verdicts_counted_and_runs_an_outlier_rule_excluded_left_out(tmp_path):
    """The summary counts the verdicts of every comparison against fp32 (and how many survive Holm); runs flagged by
    an outlier rule (an `excluded` column, written by the runner where a rule runs) enter no statistic and are
    counted in a card."""
    from pathlib import Path

    from joulegrid.analysis import report as R

    cells = synth.grid_cells(phases=("infer",), precisions=("fp32", "bf16"), batch_sizes=(256,), repeats=4)
    jit = [0.0, 0.02, -0.01, 0.5]  # repeat 3 is a slow outlier in both cells
    rows = [synth.row(c, jitter=jit[c.repeat] + (0.003 if c.precision == "bf16" else 0)) for c in cells]
    df = pl.from_arrow(S.to_table(rows)).with_columns(excluded=pl.col("repeat") == 3)
    r = R.Inputs(Path(tmp_path / "summary.parquet"), df, df.clear(), [], [], ST, tmp_path)
    s = R.summary_section(r)
    assert (2, "runs excluded by the outlier rule", "warn") in s.cards
    assert r.cells["repeats"].to_list() == [3, 3]  # the flagged repeat left out of both cells
    v = s.verdicts
    assert v["n"] == 1 and sum(v["counts"].values()) == 1
    # bf16 is 0.6x fp32 within 0.3 % in every block (synthetic rows): cheaper, and Holm keeps it
    assert v["counts"] == {"cheaper": 1} and v["holm_kept"] == 1 and v["decided"] == 1
    t = R.tables_section(r, R.cells_table(r))
    assert t.excluded == 2
    plain = R.Inputs(Path(tmp_path / "summary.parquet"), df.drop("excluded"), df.clear(), [], [], ST, tmp_path)
    assert all(text != "runs excluded by the outlier rule" for _, text, _ in R.summary_section(plain).cards)
    assert R.tables_section(plain, R.cells_table(plain)).excluded is None


def test_the_vega_bundle_is_built_once_per_vl_convert_version_and_kept_between_processes(tmp_path, monkeypatch):
    """report._js_bundle: the first process builds it and writes the user's cache; a later process reads it; a
    cut-off file is built again; another vl-convert version has a file of its own."""
    import vl_convert

    from joulegrid.analysis import report

    built = []

    def fake_bundle():
        built.append(1)
        return f"bundle {len(built)}"

    monkeypatch.setenv("JOULEGRID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(vl_convert, "javascript_bundle", fake_bundle)
    monkeypatch.setattr(vl_convert, "__version__", "9.9.9", raising=False)
    report._js_bundle.cache_clear()
    try:
        assert report._js_bundle() == "bundle 1" and len(built) == 1
        cached = tmp_path / "cache" / "vega-bundle-vl-convert-9.9.9.js"
        assert cached.read_text() == "bundle 1" + report.BUNDLE_END
        report._js_bundle.cache_clear()  # a new process
        assert report._js_bundle() == "bundle 1" and len(built) == 1
        cached.write_text("bund")  # cut off (not written by joulegrid's atomic write)
        report._js_bundle.cache_clear()
        assert report._js_bundle() == "bundle 2" and cached.read_text() == "bundle 2" + report.BUNDLE_END
        monkeypatch.setattr(vl_convert, "__version__", "9.9.10")
        report._js_bundle.cache_clear()
        assert report._js_bundle() == "bundle 3"
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
            "vega-bundle-vl-convert-9.9.10.js",
            "vega-bundle-vl-convert-9.9.9.js",
        ]
    finally:
        report._js_bundle.cache_clear()  # the next test builds the real one
