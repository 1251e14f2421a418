"""Typed settings of a cell: what run-cell measures with, built once from the validated config.

``spec.SpecBuilder`` builds a ``CellSettings`` per workload and writes it, as JSON, into the grid
snapshot (``to_dict``); a job reads it back (``from_dict``, in ``spec.CellSpec``) and the runner and the
meters read attributes, not dict keys with defaults of their own. The defaults have one home, the config
schema (``base.schema_defaults``): settings that lack a ``measure:`` key (a hand-written --spec) get the
schema's value. ``to_dict(from_dict(d)) == d`` for what SpecBuilder writes, so the snapshot (and the
config hash, which is computed from the config: ``spec.identity``) are what they were.

Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .base import SettingsError as SettingsError  # its home is base.py (site facts raise it too)
from .base import schema_defaults
from .sites import SiteFacts


@dataclass(frozen=True)
class Measure:
    """The config's ``measure:`` section (workflow/schemas/config.schema.yaml documents each key)."""

    threads: int
    warmup_batches: int
    idle_baseline_s: float
    min_window_s: float
    meters: list[str]
    required_meters: list[str]
    meter_interval_s: float
    counter_interval_s: float
    codecarbon_mode: str
    cpu_tdp_w_per_thread: float | None
    attribution_interval_s: float
    node_shared_above: float
    hotspots: str
    hotspot_batches: int
    hotspot_top: int
    max_eval_samples: int
    energy_max_rel_err: float
    outlier_retries: int
    outlier_max_steal: float
    outlier_max_contention: float
    outlier_min_cpu_freq: float

    @classmethod
    def from_dict(cls, measure: dict[str, Any] | None) -> Measure:
        """A measure: mapping, the schema's defaults for the keys it lacks; an unknown key is refused."""
        measure = dict(measure or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(measure) - names)
        if unknown:
            raise SettingsError(
                f"measure settings: unknown key(s) {', '.join(unknown)}. Fix: use {', '.join(sorted(names))} "
                "(a grid snapshot of another joulegrid version: start snakemake again to write one)"
            )
        # a grid snapshot holds every key: the schema is read only for a partial mapping (a --spec by hand)
        return cls(**({**schema_defaults()["measure"], **measure} if names - set(measure) else measure))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CellSettings:
    """A workload's settings for its cells: its own (built-in defaults + config), the measure settings,
    the seed, strict_devices, the site's facts and the precision options (only when the config sets them)."""

    workload: dict[str, Any]
    measure: Measure
    seed: int
    strict_devices: bool
    site_facts: SiteFacts = field(default_factory=SiteFacts)
    precision_options: dict[str, Any] | None = None
    cpu_model: str | None = None  # job.cpu_model: the CPU model the cells must run on (None: any)
    # one run of a code-version quadruple (joulegrid.versions): code_version, code_commit, code_dirty of its row
    code: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> CellSettings:
        """The settings of a grid snapshot (or a --spec); the schema's defaults where a key is missing."""
        if not isinstance(settings, dict) or "workload" not in settings:
            raise SettingsError(
                f"cell settings need a 'workload' mapping, got {settings!r}. Fix: take them from the grid snapshot"
            )

        def given(key: str) -> Any:  # the schema is read only for a key the settings lack (as Measure.from_dict)
            return settings[key] if key in settings else schema_defaults()[key]

        return cls(
            workload=dict(settings["workload"]),
            measure=Measure.from_dict(settings.get("measure")),
            seed=int(given("seed")),
            strict_devices=bool(given("strict_devices")),
            site_facts=SiteFacts.from_dict(settings.get("site_facts")),
            precision_options=settings.get("precision_options") or None,
            cpu_model=settings.get("cpu_model") or None,
            code=settings.get("code") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as the grid snapshot holds it (no precision_options key when the config sets none)."""
        out = {
            "workload": self.workload,
            "measure": self.measure.to_dict(),
            "seed": self.seed,
            "strict_devices": self.strict_devices,
            "site_facts": self.site_facts.to_dict(),
        }
        if self.precision_options:
            out["precision_options"] = self.precision_options
        if self.cpu_model:  # absent unless pinned: the snapshot of a configuration without it is unchanged
            out["cpu_model"] = self.cpu_model
        if self.code:  # a run of a quadruple job only (never in the snapshot)
            out["code"] = self.code
        return out

    def cpu_model_problem(self, host_model: str | None, hostname: str | None) -> str | None:
        """Why this host may not measure the cell (job.cpu_model pins another CPU model), else None."""
        if not self.cpu_model or (host_model or "").strip() == self.cpu_model.strip():
            return None
        return (
            f"host {hostname} has CPU model {host_model!r}, but job.cpu_model pins {self.cpu_model!r} (precisions and "
            "repeats compare on one CPU model). Fix: route the jobs there with job.constraint (docs/sites.md, "
            "'Comparable hardware'), or change job.cpu_model"
        )

    def precision_options_of(self, precision: str) -> dict[str, Any] | None:
        """precision_options.<precision> (int8: backend, scheme, calibration samples), if the config sets it."""
        return (self.precision_options or {}).get(precision)
