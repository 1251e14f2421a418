"""Sites: what a site is. The one home of ``config/sites.yaml`` (config key ``sites_file``).

The file is loaded and checked here against ``workflow/schemas/sites.schema.yaml`` (a bad entry is
refused naming the file, the key and the fix, before any job starts), and this module answers the
questions about a site: its facts for the jobs (``site_facts``, typed ``SiteFacts``: scheduler, carbon intensity, PUE,
measured idle power), its scheduler, its job flavours and longest runtime, its packed environment.
``executors`` translates a job's needs into each executor's resources with these answers;
``hardware`` (the hardware table, ``config/hardware.yaml``) is checked with the same schema
machinery (``base.schema_problem``).

Pure Python (yaml, jsonschema): Snakemake loads it at parse time.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .base import REPO_ROOT, SettingsError, SiteError, schema_problem

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "sites.schema.yaml"
DEFAULT_FILE = "config/sites.yaml"


def load_sites(path: str | os.PathLike) -> dict[str, Any]:
    """The sites file at ``path`` (site name -> entry), checked against the schema."""
    p = Path(path)
    if not p.is_file():
        raise SiteError(
            f"config key sites_file: {str(p)!r} does not exist. Fix: point it at a sites YAML (see config/sites.yaml)"
        )
    try:
        sites = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SiteError(
            f"{p} is not valid YAML ({e}). Fix: repair the file (config/sites.yaml shows the layout)"
        ) from None
    sites = {} if sites is None else sites
    problem = schema_problem(sites, SCHEMA_PATH, str(p))
    if problem:
        raise SiteError(
            problem
            + (" (docs/sites.md; config/sites.yaml's comments explain each key)" if "Fix:" not in problem else "")
        )
    from .carbon import normalise_site

    for name, entry in sites.items():  # carbon_intensity.annual is the site's carbon_intensity_g_per_kwh
        normalise_site(name, entry or {}, str(p))
    return sites


def check_site(site: str, entry: Any, where: str = "sites file") -> dict[str, Any]:
    """One site's entry, checked against the schema (``where`` names the file it came from)."""
    problem = schema_problem({site: entry if entry is not None else {}}, SCHEMA_PATH, where)
    if problem:
        raise SiteError(problem)
    return dict(entry or {})


# ------------------------------------------------------------------ what a site is
@dataclass(frozen=True)
class SiteFacts:
    """What a job knows about its site and hardware (``site_facts``), typed: the form its settings hold
    (``cell_settings.CellSettings.site_facts``) and the meters read. ``to_dict`` is the grid snapshot's JSON."""

    name: str | None = None
    scheduler: str | None = None
    country_iso: str | None = None
    carbon_intensity_g_per_kwh: float | None = None
    pue: float | None = None
    node_power: list[dict[str, Any]] | None = None  # the site's measured idle power entries (node_power)
    cpu_calibrations: dict[str, dict[str, Any]] | None = None  # the hardware table's, by CPU model

    @classmethod
    def from_dict(cls, facts: dict[str, Any] | None) -> SiteFacts:
        """A snapshot's (or a hand-written --spec's) site_facts; a missing key is unknown (None), an unknown
        key is refused."""
        facts = dict(facts or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(facts) - names)
        if unknown:
            raise SettingsError(
                f"site_facts: unknown key(s) {', '.join(unknown)}. Fix: use {', '.join(sorted(names))} "
                "(a grid snapshot of another joulegrid version: start snakemake again to write one)"
            )
        if "node_power" in facts:
            facts["node_power"] = node_power(facts) or None  # one entry or a list: a list
        return cls(**facts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def site_facts(sites: dict[str, Any], site: str, calibrations: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job needs to know about its site and hardware: the site's facts (config/sites.yaml) and the
    CPU power calibrations of the hardware table (hardware.config_calibrations), which the job matches
    against its own CPU model (meters.attribution.power_model). Part of every job's settings (the grid
    snapshot; ``SiteFacts`` typed); not of the config hash."""
    s = check_site(site, sites.get(site))
    return {
        "name": site,
        "scheduler": scheduler(s),
        "country_iso": s.get("country_iso"),
        "carbon_intensity_g_per_kwh": s.get("carbon_intensity_g_per_kwh"),
        "pue": s.get("pue", 1.0),
        "node_power": node_power(s) or None,
        "cpu_calibrations": calibrations or None,
    }


def scheduler(facts: dict[str, Any]) -> str:
    """The scheduler a run for the site must submit to: local, slurm or htcondor."""
    return facts.get("scheduler") or "local"


def node_power(facts: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The site's measured idle power (node_power) as a list of entries; the first whose cpu_model is
    part of the node's CPU model applies (meters.attribution.power_model)."""
    value = (facts or {}).get("node_power")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def env_tarball(facts: dict[str, Any]) -> str | None:
    """The packed environment (joulegrid pack-env) every job of the site takes along, if any."""
    return facts.get("env_tarball") or None


def job_flavours(facts: dict[str, Any]) -> list[tuple[str, int]]:
    """The site's HTCondor job flavours as (name, max minutes), shortest first ([] if none)."""
    return sorted(((str(k), int(v)) for k, v in (facts.get("job_flavours") or {}).items()), key=lambda t: t[1])


def runtime_limit(facts: dict[str, Any]) -> tuple[str, int] | None:
    """(what sets it, minutes): the longest runtime a job of the site may ask for, or None.

    The longest job flavour (lxplus) or the site's wall-clock limit ``max_runtime_min``
    (Blackett: 72 h), whichever is shorter."""
    limits = []
    flavours = job_flavours(facts)
    if flavours:
        limits.append((f"the longest job flavour, {flavours[-1][0]}", flavours[-1][1]))
    if facts.get("max_runtime_min") is not None:
        limits.append(("the wall-clock limit of its jobs, max_runtime_min", int(facts["max_runtime_min"])))
    return min(limits, key=lambda t: t[1]) if limits else None


def check_runtime(site: str, facts: dict[str, Any], runtime_min: int) -> None:
    """Refuse a job.runtime_min the site would never run (before any job is submitted)."""
    limit = runtime_limit(facts)
    if limit and runtime_min > limit[1]:
        what, minutes = limit
        raise SiteError(
            f"config key job.runtime_min: {runtime_min} min is longer than site {site!r} allows ({what}: "
            f"{minutes} min). Fix: lower job.runtime_min or split the work into smaller cells"
        )
