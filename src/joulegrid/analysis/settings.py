"""What the analysis needs from the config: report:, fleet: and the site / hardware facts.

Cheap to import (no polars): the Snakemake rules build it at parse time. The report rule passes
it as one JSON blob (``joulegrid report --settings``), so a change of η, the fleet size, a
site's carbon intensity or its intensity series file (its sha256 is in the blob) re-renders the report. By hand,
``joulegrid report`` without --settings uses the config schema's defaults (their only home:
config.schema_defaults) and config/sites.yaml + config/hardware.yaml of the checkout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError


class SettingsError(ConfigError):
    """Analysis settings that cannot be used (names the config key)."""


def _default(section: str, key: str):
    """A field's default: the config schema's (config.schema_defaults)."""
    from ..config import schema_defaults

    return field(default_factory=lambda: schema_defaults()[section][key])


@dataclass
class AnalysisSettings:
    eta: float = _default("report", "eta")  # report.eta: Zeus knob (1 = energy only, 0 = time only)
    targets: dict[str, float] = _default("report", "targets")  # report.targets: workload -> target quality
    noisy_cv: float = _default("report", "noisy_cv")  # report.noisy_cv
    jobs_per_day: float = _default("fleet", "jobs_per_day")  # fleet.jobs_per_day
    per_site: dict[str, float] = _default("fleet", "per_site")  # fleet.per_site
    # fleet.samples_per_job (None: the defaults per phase)
    samples_per_job: int | dict[str, Any] | None = _default("fleet", "samples_per_job")
    fleet_scope: str = _default("fleet", "scope")  # fleet.scope: phase | job
    cleanest_hours: int = _default("fleet", "cleanest_hours")  # fleet.cleanest_hours: k of "when to run"
    alpha: float = _default("design", "alpha")  # design.alpha: every comparison's interval is at 1 - alpha
    power: float = _default("design", "power")  # design.power: of every comparison's minimum detectable effect
    # compare.*: the decision rule of a versions campaign's Compare section (analysis.compare)
    compare: dict[str, Any] = field(
        default_factory=lambda: __import__("joulegrid.config").config.schema_defaults()["compare"]
    )
    sites: dict[str, Any] = field(default_factory=dict)  # config/sites.yaml
    hardware: dict[str, Any] = field(default_factory=dict)  # config/hardware.yaml's sites (embodied carbon)
    hardware_source: str = ""
    # the sites' intensity series (joulegrid.carbon.series_files): {site: {path, name, sha256}}; the sha256
    # makes the report stamp change with a series file's content, so a new or corrected series re-renders
    carbon_series: dict[str, dict[str, str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: dict[str, Any], sites: dict[str, Any], base_dir: str | Path = ".") -> AnalysisSettings:
        """From a validated config (defaults filled in by the JSON schema) and its sites mapping."""
        rep, fl = config["report"], config["fleet"]
        hw_file = rep["hardware_file"]
        return cls(
            eta=float(rep["eta"]),
            targets={k: float(v) for k, v in rep["targets"].items()},
            noisy_cv=float(rep["noisy_cv"]),
            jobs_per_day=float(fl["jobs_per_day"]),
            per_site={k: float(v) for k, v in fl["per_site"].items()},
            samples_per_job=fl["samples_per_job"],
            fleet_scope=str(fl["scope"]),
            cleanest_hours=int(fl["cleanest_hours"]),
            alpha=float(config["design"]["alpha"]),
            power=float(config["design"]["power"]),
            compare=dict(config["compare"]),
            sites=sites,
            hardware=load_hardware(hw_file, base_dir),
            hardware_source=str(hw_file),
            carbon_series=series_files(sites, base_dir),
        )

    @classmethod
    def defaults(cls) -> AnalysisSettings:
        """Defaults plus the checkout's config/sites.yaml and config/hardware.yaml."""
        from .. import hardware
        from .. import sites as site_file
        from ..config import REPO_ROOT

        sites_p = REPO_ROOT / site_file.DEFAULT_FILE
        sites = site_file.load_sites(sites_p) if sites_p.is_file() else {}
        return cls(
            sites=sites,
            hardware=load_hardware(REPO_ROOT / hardware.DEFAULT_FILE),
            hardware_source=hardware.DEFAULT_FILE,
            carbon_series=series_files(sites),
        )

    def compare_args(self) -> dict[str, Any]:
        """compare.* as analysis.compare.compare_rows takes them."""
        c = self.compare
        return {
            "threshold_pct": c["threshold_pct"],
            "alpha": c["alpha"],
            "power": c["power"],
            "max_pairs": c["max_pairs"],
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> AnalysisSettings:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as e:
            raise SettingsError(f"--settings: not joulegrid analysis settings ({e})") from None

    # ------------------------------------------------------------------ metrics with these settings
    def fleet_table(self, cells):
        from . import metrics

        return metrics.fleet(
            cells, self.sites, self.jobs_per_day, self.per_site, self.samples_per_job, self.fleet_scope
        )

    def fleet_with_intervals(self, cells, runs):
        """The fleet table with each bar's range and each saving's interval and verdict (metrics.fleet_intervals)."""
        from . import metrics

        return metrics.fleet_intervals(
            self.fleet_table(cells), runs, self.samples_per_job, self.fleet_scope, self.alpha, self.power
        )

    def fleet_job_text(self) -> str:
        """What one fleet job is, in words (the report says it)."""
        spj = self.samples_per_job
        if spj is None:
            work = "one pass over the test split (inference) or one training run (training) per job"
        elif isinstance(spj, dict):
            work = (
                "per workload: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(spj.items()))
                + "; other workloads the defaults"
            )
        else:
            work = f"{spj:,} samples per job"
        scope = (
            "the measured phase only (fleet.scope: phase)"
            if self.fleet_scope == "phase"
            else "the whole job: the phase plus its start-up, data, model, warm-up and writing (fleet.scope: job)"
        )
        return f"equal work, {work}; energy of {scope}"

    def sci_table(self, cells):
        from . import metrics

        return metrics.sci(cells, self.sites, self.hardware)


def series_files(sites: dict[str, Any], base_dir: str | Path = ".") -> dict[str, dict[str, str]]:
    """The sites' intensity series, each read and checked (joulegrid.carbon.series_files)."""
    from ..carbon import series_files as files

    return files(sites, base_dir)


def load_hardware(path: str | Path, base_dir: str | Path = ".") -> dict[str, Any]:
    """The per-site entries of the hardware table (embodied kgCO2e, lifetime); {} if the file does not exist.

    The table's other section, the CPU power calibrations, is checked here too (joulegrid.hardware)."""
    from .. import hardware

    return hardware.read(hardware.resolve(path, base_dir)).sites
