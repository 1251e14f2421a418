"""A calibrated CPU power model: what ``joulegrid calibrate`` fits from a load ladder on a host with
readable RAPL, and what the estimate meter applies on hosts of the same CPU model without counters.

Per RAPL domain d (``package``: the CPU packages, summed over sockets; ``dram`` where the host has a
DRAM domain), a linear model of the node's power:

    P_d = idle_w + w_per_busy_cpu x b + w_per_gb x (g - idle_used_gb)

b = busy logical CPUs (busy CPU-seconds of /proc/stat per second: a busy SMT sibling counts as one),
g = the node's used memory in GB (MemTotal - MemAvailable, 1 GB = 1e9 bytes), idle_used_gb = the used
memory of the ladder's idle steps (so idle_w is the idle power as measured). The per-GB term is kept
only where the ladder determines it (|w| >= 2 standard errors); else it is null and the model has two
parameters. idle_w + w_per_gb x (g - idle_used_gb) is the model's STATIC power (there whatever the
CPUs do: split like idle power), w_per_busy_cpu x b its dynamic power.

The fit (``fit``): every ladder step becomes one point, its energy over its time and its busy CPU time
over its time, from the step's clean intervals: intervals whose residual from a first fit lies beyond
4 robust standard deviations (1.4826 x the median absolute deviation) are dropped, then the line is fitted
again by least squares over the steps. Standard errors come from the steps' residuals (they include the
model's misfit, e.g. SMT siblings costing less than the first thread of a core); the held-out error
predicts every step from a fit without it (leave one step out): ``holdout_rmse_w`` and
``holdout_max_rel_err`` are what the model gets wrong on a load it has not seen.

Pure Python except ``fit`` (numpy, imported there).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

CALIBRATED = "model-calibrated"  # energy_method of the estimate meter's readings from a calibration
GB = 1e9
DOMAINS = ("package", "dram")
COMPONENT = {"package": "cpu", "dram": "dram"}  # reading component of each RAPL domain
GB_DETERMINED_SE = 2.0  # w_per_gb is kept when |w| >= this many standard errors
TRIM_SIGMAS = 4.0  # intervals this many robust standard deviations off the first fit are dropped
MIN_INTERVALS = 3  # clean intervals a step needs


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class DomainModel:
    """P = idle_w + w_per_busy_cpu x b [+ w_per_gb x (g - idle_used_gb)]."""

    idle_w: float
    w_per_busy_cpu: float
    w_per_gb: float | None = None
    idle_used_gb: float | None = None

    def static_w(self, used_gb: float | None) -> float:
        """Static power at the node's mean used memory (GB); idle_w where the model has no memory term."""
        if self.w_per_gb is None or used_gb is None or self.idle_used_gb is None:
            return self.idle_w
        return max(self.idle_w + self.w_per_gb * (used_gb - self.idle_used_gb), 0.0)

    def energy(self, dt: float, busy_cpu_s: float, used_gb: float | None = None) -> float:
        """Energy (J) over dt seconds with busy_cpu_s busy CPU-seconds at mean used memory used_gb."""
        return self.static_w(used_gb) * dt + self.w_per_busy_cpu * max(busy_cpu_s, 0.0)

    def power(self, busy_cpus: float, used_gb: float | None = None) -> float:
        return self.static_w(used_gb) + self.w_per_busy_cpu * busy_cpus


@dataclass(frozen=True)
class Calibration:
    """A calibration of one CPU model, as the estimate meter applies it on this host."""

    cpu_model: str
    package: DomainModel
    dram: DomainModel | None
    holdout_rmse_w: float | None  # the ladder's held-out RMSE (package + dram), W
    holdout_max_rel_err: float | None  # the ladder's largest held-out relative error (package + dram)
    host: str | None = None
    calibrated_at: str | None = None
    scaled: str | None = None  # e.g. 'idle x2 sockets': how the entry was adapted to this host

    def domain(self, component: str) -> DomainModel | None:
        return self.package if component == "cpu" else (self.dram if component == "dram" else None)

    def components(self) -> tuple[str, ...]:
        return ("cpu", "dram") if self.dram is not None else ("cpu",)

    def uses_memory(self) -> bool:
        return any(d is not None and d.w_per_gb is not None for d in (self.package, self.dram))

    def describe(self) -> str:
        when = (self.calibrated_at or "")[:10]
        where = ", ".join(x for x in (f"host {self.host}" if self.host else "", when, self.scaled or "") if x)
        return f"{self.cpu_model}" + (f" ({where})" if where else "")


def _domain(d: dict[str, Any]) -> DomainModel:
    return DomainModel(
        float(d["idle_w"]),
        float(d["w_per_busy_cpu"]),
        float(d["w_per_gb"]) if d.get("w_per_gb") is not None else None,
        float(d["idle_used_gb"]) if d.get("idle_used_gb") is not None else None,
    )


def normalise(cpu_model: str | None) -> str:
    return " ".join((cpu_model or "").split()).lower()


def match(
    calibrations: dict[str, dict[str, Any]] | None,
    cpu_model: str | None,
    sockets: int | None = None,
    mem_total_bytes: float | None = None,
) -> Calibration | None:
    """The calibration of this host's CPU model (same 'model name', whitespace and case aside), adapted
    to this host: the package's idle power scaled by its sockets over the calibration host's, the
    DRAM's by its memory over the calibration host's (both where known); None without one."""
    want = normalise(cpu_model)
    if not want:
        return None
    for model, e in (calibrations or {}).items():
        if normalise(model) != want:
            continue
        pkg, dram = _domain(e["package"]), (_domain(e["dram"]) if e.get("dram") else None)
        notes = []
        if sockets and e.get("sockets") and sockets != e["sockets"]:
            f = sockets / e["sockets"]
            pkg = DomainModel(pkg.idle_w * f, pkg.w_per_busy_cpu, pkg.w_per_gb, pkg.idle_used_gb)
            notes.append(f"package idle x{f:g}: {sockets} sockets, calibrated on {e['sockets']}")
        if dram is not None and mem_total_bytes and e.get("mem_total_gb"):
            f = mem_total_bytes / GB / e["mem_total_gb"]
            if abs(f - 1) > 0.05:
                dram = DomainModel(dram.idle_w * f, dram.w_per_busy_cpu, dram.w_per_gb, dram.idle_used_gb)
                notes.append(
                    f"dram idle x{f:.2f}: {mem_total_bytes / GB:.0f} GB, calibrated with {e['mem_total_gb']:.0f} GB"
                )
        return Calibration(
            model,
            pkg,
            dram,
            e.get("holdout_rmse_w"),
            e.get("holdout_max_rel_err"),
            e.get("host"),
            str(e["calibrated_at"]) if e.get("calibrated_at") else None,
            "; ".join(notes) or None,
        )
    return None


# ------------------------------------------------------------------ the ladder's data
@dataclass
class Interval:
    dt: float  # s
    busy_s: float  # busy CPU-seconds of the node
    used_gb: float | None  # the node's mean used memory (GB)
    energy: dict[str, float]  # domain -> J


@dataclass
class Step:
    name: str  # idle, busy-<n>, resident, traffic, idle-end
    intervals: list[Interval] = field(default_factory=list)


@dataclass
class DomainFit:
    model: DomainModel
    se: dict[str, float | None]  # standard error of idle_w, w_per_busy_cpu, w_per_gb (fit)
    w_per_gb_fit: float | None  # the fitted per-GB slope, also where it is not determined
    rmse_w: float  # of the steps, in-sample
    holdout: list[float]  # per step: predicted - measured power, from a fit without the step
    power: list[float]  # per step: measured power
    kept: list[int]  # per step: clean intervals
    dropped: list[int]


class CalibrationError(RuntimeError):
    """The ladder's data cannot give a model (names the problem and the fix)."""


def _agg(ivs: list[Interval], dom: str) -> tuple[float, float, float | None, float]:
    t = sum(i.dt for i in ivs)
    gbs = [i.used_gb for i in ivs]
    g = sum(i.used_gb * i.dt for i in ivs) / t if None not in gbs else None
    return sum(i.busy_s for i in ivs) / t, t, g, sum(i.energy[dom] for i in ivs) / t


def _ols(X, y):
    """(coefficients, standard errors or None each, residuals) of y ~ X."""
    import numpy as np

    X, y = np.asarray(X, float), np.asarray(y, float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = y - X @ beta
    n, p = X.shape
    se: list[float | None] = [None] * p
    if n > p:
        s2 = float(res @ res) / (n - p)
        try:
            cov = s2 * np.linalg.inv(X.T @ X)
            se = [math.sqrt(max(float(cov[i, i]), 0.0)) for i in range(p)]
        except np.linalg.LinAlgError:
            pass
    return [float(b) for b in beta], se, [float(r) for r in res]


def _design(points: list[tuple[float, float | None]], gb: bool) -> list[list[float]]:
    return [[1.0, x] + ([g] if gb else []) for x, g in points]


def _varies(vals: list[float], at_least: float) -> bool:
    return len(vals) > 1 and max(vals) - min(vals) >= at_least


def _fit_points(points, power, gb):
    """Least squares over the steps' points; drops the GB column when it does not vary."""
    gb = gb and _varies([g for _, g in points], 0.05)
    beta, se, res = _ols(_design(points, gb), power)
    return beta, se, res, gb


def fit_domain(steps: list[Step], dom: str, idle_steps: list[int]) -> DomainFit:
    """The model of one domain from the ladder's steps (module doc)."""
    has_gb = all(i.used_gb is not None for s in steps for i in s.intervals)
    kept = [list(s.intervals) for s in steps]
    for s, ivs in zip(steps, kept, strict=True):
        if len(ivs) < MIN_INTERVALS:
            raise CalibrationError(
                f"step {s.name}: {len(ivs)} interval(s), at least {MIN_INTERVALS} needed. Fix: raise --step-s or "
                "lower --interval-s"
            )
    # pass 1: all intervals; pass 2: without the intervals far off the first line
    for _ in range(2):
        agg = [_agg(ivs, dom) for ivs in kept]
        points = [(x, g) for x, _, g, _ in agg]
        beta, se, res, gb = _fit_points(points, [p for *_, p in agg], has_gb)
        resid = []
        for ivs in [list(s.intervals) for s in steps]:
            for i in ivs:
                pred = beta[0] + beta[1] * i.busy_s / i.dt + (beta[2] * i.used_gb if gb else 0.0)
                resid.append(i.energy[dom] / i.dt - pred)
        med = statistics.median(resid)
        mad = statistics.median(abs(r - med) for r in resid)
        scale = max(1.4826 * mad, 1e-3 * max(abs(p) for *_, p in agg))  # never trim below 0.1 % of the power
        kept = []
        for s in steps:
            good = [
                i
                for i in s.intervals
                if abs(
                    i.energy[dom] / i.dt
                    - (beta[0] + beta[1] * i.busy_s / i.dt + (beta[2] * i.used_gb if gb else 0.0))
                    - med
                )
                <= TRIM_SIGMAS * scale
            ]
            if len(good) < MIN_INTERVALS:
                raise CalibrationError(
                    f"step {s.name}: only {len(good)} of {len(s.intervals)} intervals agree with the rest of the "
                    f"ladder ({dom}). Fix: calibrate on an otherwise idle node, or raise --step-s"
                )
            kept.append(good)
    agg = [_agg(ivs, dom) for ivs in kept]
    points, power = [(x, g) for x, _, g, _ in agg], [p for *_, p in agg]
    beta, se, res, gb = _fit_points(points, power, has_gb)
    w_gb_fit, w_gb_se = (beta[2], se[2]) if gb else (None, None)
    if gb and not (w_gb_se is not None and abs(w_gb_fit) >= GB_DETERMINED_SE * w_gb_se):
        beta, se, res, gb = _fit_points(points, power, False)  # not determined: the two-parameter model
    idle_gb = statistics.fmean(points[i][1] for i in idle_steps) if has_gb and idle_steps else None
    w_gb = beta[2] if gb else None
    # reparametrise: idle_w = the power at b = 0 and the idle steps' used memory
    idle_w = beta[0] + (w_gb * idle_gb if gb else 0.0)
    se_idle = se[0]
    if gb and se[0] is not None:
        se_idle = _prediction_se(points, power, 0.0, idle_gb)
    model = DomainModel(idle_w, beta[1], w_gb, idle_gb if gb else None)
    holdout = []
    for k in range(len(steps)):
        rest = [j for j in range(len(steps)) if j != k]
        b, _, _, g = _fit_points([points[j] for j in rest], [power[j] for j in rest], gb)
        x, gk = points[k]
        holdout.append(b[0] + b[1] * x + (b[2] * gk if g else 0.0) - power[k])
    rmse = math.sqrt(sum(r * r for r in res) / len(res))
    return DomainFit(
        model,
        {"idle_w": se_idle, "w_per_busy_cpu": se[1], "w_per_gb": w_gb_se},
        w_gb_fit,
        rmse,
        holdout,
        power,
        [len(k) for k in kept],
        [len(s.intervals) - len(k) for s, k in zip(steps, kept, strict=True)],
    )


def _prediction_se(points, power, x0: float, g0: float) -> float | None:
    """Standard error of the fitted mean power at (x0, g0) (three-parameter model)."""
    import numpy as np

    X = np.asarray(_design(points, True), float)
    y = np.asarray(power, float)
    n, p = X.shape
    if n <= p:
        return None
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = y - X @ beta
    try:
        cov = float(res @ res) / (n - p) * np.linalg.inv(X.T @ X)
    except np.linalg.LinAlgError:
        return None
    v = np.array([1.0, x0, g0])
    return math.sqrt(max(float(v @ cov @ v), 0.0))


def holdout_summary(fits: dict[str, DomainFit]) -> tuple[float, float]:
    """(RMSE W, max relative error) of the held-out step predictions of the domains summed."""
    doms = list(fits)
    n = len(fits[doms[0]].power)
    err = [sum(fits[d].holdout[k] for d in doms) for k in range(n)]
    meas = [sum(fits[d].power[k] for d in doms) for k in range(n)]
    rmse = math.sqrt(sum(e * e for e in err) / n)
    return rmse, max(abs(e) / m for e, m in zip(err, meas, strict=True) if m > 0)
