"""TEST FIXTURE: a campaign-shaped summary built from a REAL run's rows (issue 27).

``campaign_rows(rows)`` takes the rows of a real grid run (every column as the runner wrote it: meters,
host, environment, quality, curves) and spreads them over sites x batch sizes x repeats, the shape of a
design of experiments: each (workload, phase, precision, variant) of the run, at sites ``SITES``, batch
sizes ``BATCH_SIZES`` and ``REPEATS`` repeats -- with the default grid's 10 of them, 240 cells and 1,200
runs. What a replica changes, and how (so that a test can follow it):

- identity: site, batch size, repeat (= block), cell id, run id, the host (one per site: ``<host>-<site>``
  but at ``local``), the scheduler and queue wait of the site, the site's carbon intensity and PUE;
- the measured energies and times (every ``*_j`` column and ``epoch_energy_j``; ``wall_s``, ``cpu_s`` and the
  other phase times, ``epoch_wall_s``, time to target) times one factor ``f`` = batch-size factor x site
  factor x a block effect x the run's own noise (lognormal, seeded), so mean power is the template's;
  samples/s, FLOP/s and MFU by 1/f; the whole job's time and energy keep the template's part outside the
  phase; timestamps follow the blocks (repeat k of every cell runs in pass k);
- CO2 with the site's intensity and PUE (joulegrid.units.co2_g).

Nothing here is a measurement of a campaign: the rows say so (``precision_impl`` keeps the real value, but
``job_id`` is ``campaign-fixture-<n>``). Used by tests/report/test_browser.py and bench/bench_report.py;
where no real run is at hand (the test suite runs no Snakemake for it), ``default_grid_templates`` gives the
default grid's rows from tests/synth.py (hostname ``synthetic-fixture``: not measurements either).
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

import numpy as np

from joulegrid.grid import Cell
from joulegrid.units import co2_g

SITES = ("local", "lxplus", "blackett")
BATCH_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
REPEATS = 5
SITE_FACTOR = {"local": 1.0, "lxplus": 1.15, "blackett": 0.92}
QUEUE_WAIT_S = {"local": None, "lxplus": 45.0, "blackett": 320.0}
SCHEDULER = {"local": "local", "lxplus": "htcondor", "blackett": "htcondor"}
BLOCK_SD = 0.015  # log-scale sd of a block's effect (one pass over the grid at one site)
RUN_SD = 0.02  # log-scale sd of a run's own noise

TIME_COLUMNS = (
    "wall_s",
    "cpu_s",
    "data_s",
    "eval_s",
    "compute_s",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "time_to_target_s",
    "job_cpu_s",
)


def default_grid_templates() -> list[dict[str, Any]]:
    """Synthetic rows (tests/synth.py) of the default grid's 10 (workload, phase, precision) at batch size 256,
    its first repeat: fp32 and bf16 for training, fp32, bf16 and int8 for inference, as config/config.yaml."""
    import synth

    return [
        synth.row(Cell("local", w, ph, "cpu", p, "baseline", 256, 0), estimated=False)
        for w in ("baler_ae", "jet_tagger")
        for ph in ("train", "infer")
        for p in (("fp32", "bf16") if ph == "train" else ("fp32", "bf16", "int8"))
    ]


def batch_factor(batch_size: int) -> float:
    """Energy (and time) per sample at a batch size relative to batch size 256: larger batches are cheaper,
    with diminishing returns (4096 -> 8192 saves 4 %)."""
    return 0.6 + 0.4 * math.sqrt(256 / batch_size)


def templates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ok row per (workload, phase, precision, variant) of a run: its smallest repeat at the batch size
    closest to 256."""
    out: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: (abs(math.log(r["batch_size"] / 256)), r["repeat"])):
        if r["status"] == "ok" and r["energy_j"]:
            out.setdefault((r["workload"], r["phase"], r["precision"], r["variant"]), r)
    return [out[k] for k in sorted(out)]


def campaign_rows(
    rows: list[dict[str, Any]],
    sites_file: dict[str, Any],
    sites: tuple[str, ...] = SITES,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    repeats: int = REPEATS,
    seed: int = 27,
) -> list[dict[str, Any]]:
    """The campaign's rows (module docstring) from a real run's ``rows``; ``sites_file``: config/sites.yaml
    as loaded (intensity and PUE of each site)."""
    rng = np.random.default_rng(seed)
    tpl = templates(rows)
    t0 = min(r["started_at"] for r in tpl)
    block = {(s, k): rng.normal(0.0, BLOCK_SD) for s in sites for k in range(repeats)}
    out = []
    n = 0
    for k in range(repeats):  # pass k over the grid: block k of every cell
        for si, site in enumerate(sites):
            for t in tpl:
                for bs in batch_sizes:
                    f = (
                        batch_factor(bs)
                        / batch_factor(t["batch_size"])
                        * SITE_FACTOR[site]
                        * math.exp(block[(site, k)] + rng.normal(0.0, RUN_SD))
                    )
                    out.append(_replica(t, site, bs, k, f, sites_file.get(site) or {}, t0, n, si))
                    n += 1
    return out


def _replica(t: dict, site: str, bs: int, k: int, f: float, facts: dict, t0, n: int, si: int) -> dict[str, Any]:
    r = dict(t)
    cell = Cell(site, t["workload"], t["phase"], t["device"], t["precision"], t["variant"], bs, k)
    r.update(site=site, batch_size=bs, repeat=k, cell_id=cell.id, run_id=uuid.UUID(int=n + 1).hex)
    if "block" in r:
        r["block"] = k
    if site != "local":
        r["hostname"] = f"{t['hostname']}-{site}"
        r["node_name"] = r["hostname"]
    r["scheduler"] = SCHEDULER[site]
    r["job_id"] = f"campaign-fixture-{n}"
    r["queue_wait_s"] = QUEUE_WAIT_S[site]
    # energies and times of the phase scale by f; mean power stays the template's
    for c, v in t.items():
        if c.endswith("_j") and isinstance(v, (int, float)) and not isinstance(v, bool) and c != "job_energy_j":
            r[c] = v * f
    for c in TIME_COLUMNS:
        if t.get(c) is not None:
            r[c] = t[c] * f
    for c in ("epoch_energy_j", "epoch_wall_s"):
        if t.get(c) is not None:
            r[c] = [x * f for x in t[c]]
    if t.get("samples_per_s"):
        r["samples_per_s"] = t["samples_per_s"] / f
    for c in ("flops_per_s", "mfu"):
        if t.get(c) is not None:
            r[c] = t[c] / f
    if t.get("n_samples"):
        r["n_batches"] = math.ceil(t["n_samples"] / bs)
    # the whole job: the template's part outside the phase, plus this phase
    if t.get("job_wall_s") is not None and t.get("wall_s") is not None:
        r["job_wall_s"] = t["job_wall_s"] - t["wall_s"] + r["wall_s"]
        r["job_time_outside_phase_fraction"] = 1 - r["wall_s"] / r["job_wall_s"]
    if t.get("job_energy_j") is not None and t.get("energy_j") is not None:
        r["job_energy_j"] = t["job_energy_j"] - t["energy_j"] + r["energy_j"]
        r["job_energy_outside_phase_fraction"] = 1 - r["energy_j"] / r["job_energy_j"]
    # CO2 with the site's facts
    intensity = facts.get("carbon_intensity_g_per_kwh", t["carbon_intensity_g_per_kwh"])
    pue = facts.get("pue", t["pue"])
    r.update(carbon_intensity_g_per_kwh=intensity, pue=pue, co2_kg=co2_g(r["energy_j"], intensity, pue) / 1000)
    # time: pass k over the grid, the cells one after the other; the template's offsets inside the job
    start = t0 + timedelta(hours=6 * k + 2 * si, seconds=30 * (n % 500))
    shift = start - t["started_at"]
    for c in ("started_at", "process_started_at", "window_started_at"):
        if t.get(c) is not None:
            r[c] = t[c] + shift
    if t.get("window_started_at") is not None and t.get("wall_s") is not None:
        r["window_finished_at"] = r["window_started_at"] + timedelta(seconds=r["wall_s"])
        r["finished_at"] = r["window_finished_at"] + (t["finished_at"] - t["window_finished_at"])
    elif t.get("finished_at") is not None:
        r["finished_at"] = t["finished_at"] + shift
    wait = QUEUE_WAIT_S[site]
    r["job_start_time"] = r["started_at"] - timedelta(seconds=2) if wait is not None else None
    r["submit_time"] = r["job_start_time"] - timedelta(seconds=wait) if wait is not None else None
    return r
