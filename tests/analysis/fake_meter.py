"""TEST FIXTURE: a fake meter for the Monte Carlo tests of the statistics (tests/analysis/test_stats_montecarlo.py).

Nothing here is a measurement: every row says so (hostname ``fake-meter-*``, energy_method ``fake-meter``).
``runs`` draws result rows in the real schema (joulegrid.schema; columns the fake does not set are null) for
many replicates of a small grid at once, each replicate its own workload and config hash, so that one call of
the real analysis (metrics.cell_stats, relative_to_baseline, best_per_workload, design.noise) analyses all of
them:

    energy per sample = E0 x ratio[arm] x exp(sigma[arm] z) x drift x slowdown,   z ~ N(0, 1),
    sigma = sqrt(log(1 + CV^2))  (lognormal with that coefficient of variation)

- the order in which the runs ran: "blocked" (block k = every arm's repeat k, the arms in a random order inside
  the block) or "back_to_back" (every repeat of one arm, then the next arm's);
- drift: energy x exp(drift x slot), slot = the run's position in that order (a host warming up);
- slowdowns: a share of runs (10 %) costs 10-40 % more (a neighbour, a frequency drop: one-sided);
- hosts: "one" (every run on one host: the analysis pairs the blocks) or "each" (every run on its own node:
  Welch).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from joulegrid import schema as S

E0 = 1e-3  # J per sample of the reference arm
N_SAMPLES = 10_000
POWER_W = 20.0


def sigma_of(cv: float) -> float:
    """The SD of log(energy) of a lognormal with coefficient of variation cv."""
    return float(np.sqrt(np.log1p(cv * cv)))


def runs(
    rng: np.random.Generator,
    replicates: int,
    n: int,
    arms: dict[str, tuple[float, float]],
    *,
    order: str = "blocked",
    drift: float = 0.0,
    slow_share: float = 0.0,
    hosts: str = "one",
    workload_prefix: str = "w",
    phase: str = "infer",
    cpu_model: str = "Fake CPU",
) -> pl.DataFrame:
    """Rows of ``replicates`` replicates of a grid of ``arms`` ({precision: (planted ratio, CV)}) with n repeats."""
    names = list(arms)
    k = len(names)
    ratio = np.array([arms[a][0] for a in names])
    sig = np.array([sigma_of(arms[a][1]) for a in names])
    rep = np.repeat(np.arange(replicates), k * n)
    arm = np.tile(np.repeat(np.arange(k), n), replicates)
    repeat = np.tile(np.tile(np.arange(n), k), replicates)
    if order == "blocked":  # block = repeat; a random order of the arms inside each block
        pos = np.argsort(rng.random((replicates, n, k)), axis=2).argsort(axis=2)  # position of arm j in block
        slot = repeat * k + pos[rep, repeat, arm]
    elif order == "back_to_back":
        slot = arm * n + repeat
    else:
        raise ValueError(order)
    z = rng.standard_normal(rep.size)
    e = E0 * ratio[arm] * np.exp(sig[arm] * z) * np.exp(drift * slot)
    if slow_share:
        hit = rng.random(rep.size) < slow_share
        e = e * np.where(hit, 1 + rng.uniform(0.10, 0.40, rep.size), 1.0)
    energy = e * N_SAMPLES
    d = (
        pl.DataFrame(
            {
                "_rep": rep,
                "precision": np.array(names, dtype=object)[arm].tolist(),
                "repeat": repeat.astype(np.int64),
                "energy_j": energy,
            }
        )
        .with_columns(
            workload=pl.lit(workload_prefix) + pl.col("_rep").cast(pl.String),
            config_hash=pl.col("_rep").cast(pl.String).str.zfill(16),
            hostname=pl.lit("fake-meter-node")
            if hosts == "one"
            else pl.lit("fake-meter-") + pl.int_range(pl.len()).cast(pl.String),
        )
        .drop("_rep")
        .with_columns(
            site=pl.lit("local"),
            phase=pl.lit(phase),
            device=pl.lit("cpu"),
            variant=pl.lit("baseline"),
            batch_size=pl.lit(256, pl.Int64),
            status=pl.lit("ok"),
            n_samples=pl.lit(N_SAMPLES, pl.Int64),
            wall_s=pl.col("energy_j") / POWER_W,
            mean_power_w=pl.lit(POWER_W),
            energy_method=pl.lit("fake-meter"),
            energy_estimated=pl.lit(False),
            cpu_model=pl.lit(cpu_model),
            quality=pl.lit(None, pl.Float64),
            run_id=pl.int_range(pl.len()).cast(pl.String),
            cell_id=pl.lit("fake"),
            schema_version=pl.lit(S.SCHEMA_VERSION),
        )
    )
    schema = S.polars_schema()
    return d.with_columns([pl.lit(None, t).alias(c) for c, t in schema.items() if c not in d.columns]).select(
        [pl.col(c).cast(t) for c, t in schema.items()]
    )
