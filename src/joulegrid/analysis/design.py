"""Design of experiments: how many repeats each cell needs to detect ``design.detect_pct``.

docs/metrics.md, "Design of experiments". The comparisons the report makes are a cell against its
baseline at the same site: blocked (one log-ratio per block, df = repeats - 1) where the two share a
host, Welch otherwise. The design sizes for the blocked analysis with no correlation assumed inside a
block -- the standard error of a comparison is then sigma * sqrt(2 / n) with n - 1 degrees of
freedom, which is also at least as demanding as Welch's (df up to 2n - 2 at the same se):

    power(n) = P(|T| > t(1 - alpha/2, n - 1)),  T ~ noncentral t(n - 1, log(1 + detect_pct/100) / (sigma_u sqrt(2/n)))

and the repeats are the smallest n >= 2 with power(n) >= design.power.

sigma is the noise of log(energy per sample) between runs of one cell, pooled over the earlier runs
(<results>/summary.parquet and summary.other-configs.parquet, and a pilot's <results>/pilot/) of the same
hardware (CPU model; GPU model for cuda cells), workload and phase: s^2 = sum (n_c - 1) s_c^2 / nu with
nu = sum (n_c - 1). The design uses its upper 80 % confidence limit sigma_u = s sqrt(nu / chi2.ppf(0.2, nu)):
a 3-run pilot pins sigma only within a factor of about 0.5-6, and sizing on s itself would miss the
power about half the time. Without earlier runs or a pilot the design says so and uses the prior
PRIOR_SIGMA. One number of repeats serves the whole grid (grid.repeats): the largest any (workload,
phase, device) group needs.

Frozen: ``grid.repeats: auto`` reads <results>/design.json, written once (by `joulegrid plan` or the
first `snakemake`) and replanned only when asked (`joulegrid plan --redesign`, `--pilot`) or when
design.* changes; otherwise every run would add rows, move sigma, and the next `snakemake` would plan new
repeats: a finished grid would never be finished.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DESIGN_FILE = "design.json"
DESIGN_VERSION = 1
PILOT_DIR = "pilot"
UCL_CONFIDENCE = 0.8  # sigma_u: the upper 80 % confidence limit of the pooled sigma
PRIOR_SIGMA = 0.10  # log(energy per sample) between runs with nothing measured: CV ~10 % (report.noisy_cv's default)
MIN_REPEATS = 2  # one run has no interval
MAX_REPEATS = 1000  # grid.repeats' maximum
PILOT_REPEATS = 5


class DesignError(RuntimeError):
    """The design cannot be made (names the config key and the fix)."""


@dataclass
class Group:
    """The noise of one (workload, phase, device) of the grid and the repeats it needs."""

    workload: str
    phase: str
    device: str
    hardware: str | None
    source: str  # earlier runs | pilot | prior
    sigma: float  # pooled SD of log(energy per sample) between runs of one cell
    nu: float | None  # its degrees of freedom (None: the prior)
    cells: int
    runs: int
    sigma_u: float  # the upper confidence limit the design uses
    repeats: int | None  # None: not reachable within MAX_REPEATS
    power: float | None  # the power those repeats reach at sigma_u


@dataclass
class Design:
    repeats: int
    detect_pct: float
    power: float
    alpha: float
    groups: list[Group] = field(default_factory=list)
    created: str = ""
    results: str = ""

    def keys(self) -> tuple[float, float, float]:
        return (float(self.detect_pct), float(self.power), float(self.alpha))

    def to_json(self) -> str:
        return json.dumps({"joulegrid_design": DESIGN_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Design:
        d = json.loads(text)
        if d.pop("joulegrid_design", None) != DESIGN_VERSION:
            raise ValueError("not a joulegrid design file of version 1")
        d["groups"] = [Group(**g) for g in d.get("groups", [])]
        return cls(**d)

    def lines(self) -> list[str]:
        """The design in words (`joulegrid plan`)."""
        out = [
            f"design: {self.repeats} repeat(s) per cell to detect a {self.detect_pct:g} % change of energy per sample "
            f"with power {self.power:g} at alpha {self.alpha:g} (design.detect_pct, design.power, design.alpha)"
        ]
        for g in self.groups:
            where = f"{g.workload}/{g.phase}/{g.device}" + (f" on {g.hardware}" if g.hardware else "")
            if g.source == "prior":
                noise = f"no earlier runs: the prior sigma {g.sigma:.3g} (CV ~{g.sigma:.0%})"
            else:
                noise = (
                    f"sigma {g.sigma:.3g} of log energy/sample from {g.runs} {g.source} of {g.cells} cell(s) "
                    f"(nu {g.nu:g}), upper {UCL_CONFIDENCE:.0%} limit {g.sigma_u:.3g}"
                )
            need = (
                f"{g.repeats} repeats (power {g.power:.2f})"
                if g.repeats
                else f"not detectable with {MAX_REPEATS} repeats"
            )
            out.append(f"  {where}: {noise} -> {need}")
        out.append(
            "  sized for the blocked comparison of a cell with its baseline (one log-ratio per block, "
            "df = repeats - 1, no correlation inside a block assumed); noncentral t"
        )
        return out


# ------------------------------------------------------------------ sizing
def sigma_upper(s: float, nu: float, confidence: float = UCL_CONFIDENCE) -> float:
    """The upper ``confidence`` limit of sigma from s with nu degrees of freedom:
    s sqrt(nu / chi2.ppf(1 - confidence, nu))."""
    from scipy import stats as sps

    return float(s * math.sqrt(nu / sps.chi2.ppf(1 - confidence, nu)))


def power_at(n, sigma: float, detect_pct: float, alpha: float):
    """Power of the blocked comparison (df n - 1, se sigma sqrt(2/n)) to detect a change of detect_pct %."""
    import numpy as np

    from .stats import power_two_sided

    n = np.asarray(n, dtype=float)
    delta = math.log1p(detect_pct / 100)  # the smaller of log(1 + p) and -log(1 - p): the harder direction
    return power_two_sided(delta / (sigma * np.sqrt(2 / n)), n - 1, alpha)


def repeats_needed(sigma_u: float, detect_pct: float, power: float, alpha: float) -> tuple[int | None, float | None]:
    """The smallest n (MIN_REPEATS..MAX_REPEATS) whose power reaches ``power``, and that power; (None, None)
    if none does."""
    import numpy as np

    n = np.arange(MIN_REPEATS, MAX_REPEATS + 1)
    p = power_at(n, sigma_u, detect_pct, alpha)
    hit = np.flatnonzero(p >= power)
    if not hit.size:
        return None, None
    return int(n[hit[0]]), float(p[hit[0]])


# ------------------------------------------------------------------ noise from earlier runs
def noise(rows) -> Any:
    """Pooled noise of log(energy per sample) per (hardware, workload, phase, device) from result rows (polars):
    sigma, nu = sum (n_c - 1), cells, runs; only cells with two usable runs or more count."""
    import polars as pl

    from .metrics import CELL_KEYS, stat_runs

    d = stat_runs(rows).filter(pl.col("energy_per_sample_j") > 0)
    d = d.with_columns(
        hardware=pl.when(pl.col("device") == "cuda").then(pl.col("gpu_model")).otherwise(pl.col("cpu_model")),
        y=pl.col("energy_per_sample_j").log(),
    )
    per_cell = d.group_by(*CELL_KEYS, "hardware").agg(n=pl.len(), var=pl.col("y").var()).filter(pl.col("n") >= 2)
    return (
        per_cell.group_by("hardware", "workload", "phase", "device")
        .agg(
            nu=(pl.col("n") - 1).sum().cast(pl.Float64),
            ss=((pl.col("n") - 1) * pl.col("var")).sum(),
            cells=pl.len(),
            runs=pl.col("n").sum(),
        )
        .with_columns(sigma=(pl.col("ss") / pl.col("nu")).sqrt())
        .drop("ss")
    )


def _rows(results: str):
    """(earlier rows, pilot rows) of the results folder (polars frames or None)."""
    from .aggregate import load_earlier

    return load_earlier(results), load_earlier(str(Path(results) / PILOT_DIR))


def compute(config: dict[str, Any]) -> Design:
    """The design of the config's grid from the noise of the earlier runs (and a pilot's), else the prior."""
    from ..grid import iter_cells

    dc = config["design"]
    detect, power, alpha = float(dc["detect_pct"]), float(dc["power"]), float(dc["alpha"])
    results = config["results"]
    earlier, pilot = _rows(results)
    frames = {
        "earlier runs": noise(earlier) if earlier is not None else None,
        "pilot runs": noise(pilot) if pilot is not None else None,
    }
    site_hw: dict[str, set] = {}
    if earlier is not None or pilot is not None:  # polars only where there are rows (a dry run stays light)
        import polars as pl
    if earlier is not None:  # the hardware this site's runs had, per device
        for dev, hw in (
            earlier.filter(pl.col("site") == config["site"])
            .select("device", hw=pl.when(pl.col("device") == "cuda").then("gpu_model").otherwise("cpu_model"))
            .unique()
            .iter_rows()
        ):
            site_hw.setdefault(dev, set()).add(hw)
    wanted = sorted({(c.workload, c.phase, c.device) for c, why in iter_cells(_fixed(config, 1)) if why is None})
    groups: list[Group] = []
    for wl, ph, dev in wanted:
        found: list[Group] = []
        for source, fr in frames.items():
            if fr is None or fr.height == 0:
                continue
            g = fr.filter((pl.col("workload") == wl) & (pl.col("phase") == ph) & (pl.col("device") == dev))
            here = g.filter(pl.col("hardware").is_in(list(site_hw.get(dev, set()))))
            for r in (here if here.height else g).iter_rows(named=True):
                su = sigma_upper(r["sigma"], r["nu"])
                n, pw = repeats_needed(su, detect, power, alpha)
                found.append(
                    Group(wl, ph, dev, r["hardware"], source, r["sigma"], r["nu"], r["cells"], r["runs"], su, n, pw)
                )
        if not found:
            n, pw = repeats_needed(PRIOR_SIGMA, detect, power, alpha)
            found.append(Group(wl, ph, dev, None, "prior", PRIOR_SIGMA, None, 0, 0, PRIOR_SIGMA, n, pw))
        # the most demanding hardware / source of the group (a larger noise needs more repeats)
        groups.append(max(found, key=lambda g: (g.repeats is None, g.repeats or 0)))
    if not groups:
        raise DesignError("config key grid.repeats: auto, but the grid has no runnable cell to size")
    if any(g.repeats is None for g in groups):
        bad = ", ".join(f"{g.workload}/{g.phase}/{g.device}" for g in groups if g.repeats is None)
        raise DesignError(
            f"config key design.detect_pct: a {detect:g} % change cannot be detected with {MAX_REPEATS} repeats "
            f"at power {power:g} for {bad} (too noisy). Fix: raise design.detect_pct, lower design.power, or "
            "quieten the host and measure the noise again (joulegrid plan --pilot)"
        )
    return Design(
        repeats=max(g.repeats for g in groups),
        detect_pct=detect,
        power=power,
        alpha=alpha,
        groups=groups,
        created=f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        results=results,
    )


def _fixed(config: dict[str, Any], repeats: int) -> dict[str, Any]:
    """The config with grid.repeats set to a number (a shallow copy: grid replaced, nothing else changed)."""
    return {**config, "grid": {**config["grid"], "repeats": repeats}}


# ------------------------------------------------------------------ frozen
def path(config: dict[str, Any]) -> Path:
    return Path(config["results"]) / DESIGN_FILE


def read(config: dict[str, Any]) -> Design | None:
    """The frozen design of the results folder, None if there is none or it is of other design.* keys."""
    p = path(config)
    if not p.is_file():
        return None
    try:
        d = Design.from_json(p.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise DesignError(
            f"{p} is not a joulegrid design file ({e}). Fix: move it aside and run `joulegrid plan --redesign`"
        ) from None
    dc = config["design"]
    if d.keys() != (float(dc["detect_pct"]), float(dc["power"]), float(dc["alpha"])):
        return None
    return d


def freeze(config: dict[str, Any], redesign: bool = False) -> tuple[Design, str]:
    """The design grid.repeats: auto uses: the frozen one, else computed and written (once). Returns it and
    what happened ('frozen' = read, 'written', 'replanned')."""
    old = None if redesign else read(config)
    if old is not None:
        return old, "frozen"
    existed = path(config).is_file()
    d = compute(config)
    from ..io import atomic_path

    p = path(config)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(p), suffix=".json") as tmp:
        Path(tmp).write_text(d.to_json() + "\n")
    return d, "replanned" if existed else "written"


def repeats_for(config: dict[str, Any]) -> int:
    """grid.repeats of a config whose repeats are auto: the frozen design's, else computed (nothing written:
    the main Snakemake process and `joulegrid plan` write it, jobs and other readers only read)."""
    d = read(config)
    return (d or compute(config)).repeats


def grid_repeats(config: dict[str, Any]) -> int:
    """The repeats of a config's grid: grid.repeats, or the design's where it is auto (repeats_for)."""
    r = config["grid"].get("repeats", 1)
    return repeats_for(config) if r == "auto" else int(r)


def pilot_config(config: dict[str, Any], repeats: int = PILOT_REPEATS) -> dict[str, Any]:
    """The pilot's config: the same settings (so the same config hash and noise), one cell per (workload,
    phase, device) -- the baseline precision and variant where the grid has them, its first batch size --,
    ``repeats`` repeats, into <results>/pilot (apart from the campaign's blocks)."""
    from ..axes import BASELINE_PRECISION, BASELINE_VARIANT

    g = config["grid"]
    prec = [BASELINE_PRECISION] if BASELINE_PRECISION in g["precisions"] else g["precisions"][:1]
    var = [BASELINE_VARIANT] if BASELINE_VARIANT in g.get("variants", [BASELINE_VARIANT]) else g["variants"][:1]
    grid = {**g, "precisions": prec, "variants": var, "batch_sizes": g["batch_sizes"][:1], "repeats": int(repeats)}
    return {**config, "grid": grid, "results": os.path.join(config["results"], PILOT_DIR)}
