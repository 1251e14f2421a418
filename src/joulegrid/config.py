"""Loading and validating a joulegrid config, with errors that name the key and the fix.

Two layers:
1. the JSON schema in ``workflow/schemas/config.schema.yaml`` (types, enums, ranges, unknown keys),
   applied with ``snakemake.utils.validate`` which also fills in the defaults;
2. checks JSON schema cannot express (known workloads, known site, batch size vs dataset size,
   data files that exist), in ``check()``.

Pure Python: no torch import, so ``snakemake -n`` stays fast.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import yaml

from . import grid as G

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent.parent
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """A config that cannot be run. The message names the key and how to fix it."""


# ------------------------------------------------------------------ schema validation
def _key_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _allowed(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(map(str, schema["enum"]))
    return ""


def _friendly(err) -> str:
    """One jsonschema ValidationError -> 'config key X: problem. Fix: ...'."""
    key = _key_path(err.absolute_path)
    v = err.validator
    inst = err.instance
    sch = err.schema
    if v == "additionalProperties":
        allowed = sorted(sch.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, dict) else []
        where = key if err.absolute_path else "top level"
        return (
            f"config key {where}: unknown key(s) {', '.join(map(repr, extra))}. "
            f"Fix: remove or rename them; allowed keys here: {', '.join(allowed)}"
        )
    if v == "enum":
        return f"config key {key}: {inst!r} is not allowed. Fix: use one of {_allowed(sch)}"
    if v == "type":
        want = sch["type"]
        return f"config key {key}: expected {want}, got {type(inst).__name__} {inst!r}. Fix: write a {want}"
    if v == "minItems":
        return f"config key {key}: the list is empty. Fix: give at least {sch['minItems']} value(s)"
    if v == "uniqueItems":
        dup = sorted({json.dumps(x) for x in inst if inst.count(x) > 1})
        return f"config key {key}: duplicated value(s) {', '.join(dup)}. Fix: list each value once"
    if v in ("minimum", "exclusiveMinimum"):
        return f"config key {key}: {inst!r} is too small ({v} {sch[v]}). Fix: use a value above {sch[v]}" + (
            "" if v == "exclusiveMinimum" else " or equal to it"
        )
    if v in ("maximum", "exclusiveMaximum"):
        return f"config key {key}: {inst!r} is too large ({v} {sch[v]}). Fix: use a smaller value"
    if v == "pattern" and key.endswith(".class"):
        return f"config key {key}: {inst!r} is not an import path. Fix: write it as my_pkg.module:MyWorkload (module path, colon, class name)"
    if v == "pattern":
        return (
            f"config key {key}: {inst!r} is not a safe name (pattern {sch['pattern']}). "
            "Fix: use letters, digits and _ only (no '/', '..', spaces or shell characters)"
        )
    if v == "required":
        return f"config key {key}: {err.message}. Fix: add it"
    if v == "minProperties":
        return f"config key {key}: {err.message}. Fix: name at least one axis to match besides reason"
    if v == "oneOf" and sch.get("description"):
        return f"config key {key}: {inst!r} is not allowed. Fix: {' '.join(sch['description'].split())}"
    if v == "minLength":
        return f"config key {key}: must not be empty. Fix: write a short text"
    return f"config key {key}: {err.message}"


def _load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the JSON schema with snakemake.utils.validate (fills defaults in place).

    On failure the config is checked once more with plain jsonschema to get the error object
    (snakemake's WorkflowError only carries text) and turn it into a message with key and fix.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as e:
        import jsonschema

        schema = _load_schema()
        cls = jsonschema.validators.validator_for(schema)
        best = jsonschema.exceptions.best_match(cls(schema).iter_errors(config))
        if best is None:
            raise ConfigError(str(e)) from None
        raise ConfigError(_friendly(best)) from None
    return config


# ------------------------------------------------------------------ semantic checks
def resolve_path(path: str | os.PathLike, base: Path) -> Path:
    """A config path: absolute, else relative to the working directory, else to the joulegrid checkout."""
    p = Path(path)
    if p.is_absolute():
        return p
    if (base / p).exists() or not (REPO_ROOT / p).exists():
        return base / p
    return REPO_ROOT / p


def load_sites(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config key sites_file: {str(p)!r} does not exist. Fix: point it at a sites YAML (see config/sites.yaml)")
    with open(p) as f:
        sites = yaml.safe_load(f) or {}
    if not isinstance(sites, dict):
        raise ConfigError(f"{p}: expected a mapping of site name -> facts")
    return sites


def workload_settings(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Effective settings of one workload: built-in defaults overlaid with the config's entry."""
    from .workloads.registry import defaults_for

    user = (config.get("workloads") or {}).get(name, {})
    base = defaults_for(name, user.get("class"))
    merged = copy.deepcopy(base)
    for k, v in user.items():
        if k == "params":
            merged.setdefault("params", {}).update(v)
        elif k == "samples":  # the image name of the size knob
            merged["rows"] = v
        else:
            merged[k] = v
    return merged


def check_workload(config: dict[str, Any], name: str, key: str, base: Path) -> dict[str, Any]:
    """Everything about one workload that can be known before a job runs; returns its settings.
    ``key`` is the config key naming it (for the error)."""
    from .data import missing
    from .data.tables import check_format
    from .workloads.metrics import QUALITY_RANGES
    from .workloads.registry import WorkloadError, resolve_spec

    user = (config.get("workloads") or {}).get(name, {})
    where = f"workloads.{name}"
    if "rows" in user and "samples" in user:
        raise ConfigError(f"config key {where}: both rows and samples are set (the same knob). Fix: keep one of them")
    try:
        settings = workload_settings(config, name)
        cls = resolve_spec(name, settings)
    except WorkloadError as e:
        raise ConfigError(f"config key {where + '.class' if user.get('class') else key}: {e}") from None
    try:
        cls.validate_settings(settings)
    except ValueError as e:
        raise ConfigError(f"config key {where}.{e}") from None
    target = settings.get("target_quality")
    lo_hi = QUALITY_RANGES.get(cls.quality_metric)
    if target is not None and lo_hi and not lo_hi[0] <= target <= lo_hi[1]:
        raise ConfigError(
            f"config key {where}.target_quality: {target!r} is outside the range of {cls.quality_metric} "
            f"[{lo_hi[0]}, {lo_hi[1]}], so training could never reach it. Fix: use a value in that range"
        )
    if settings.get("data"):
        dp = Path(settings["data"])
        if not (dp if dp.is_absolute() else base / dp).exists():
            raise ConfigError(
                f"config key {where}.data: {settings['data']!r} does not exist. "
                "Fix: give the path of an existing file (absolute, or relative to the working directory) or remove the key"
            )
        if cls.DATA_FORMATS:
            why = check_format(dp, cls.DATA_FORMATS)
            if why:
                raise ConfigError(f"config key {where}.data: {why}. Fix: convert the file (see docs/workloads.md)")
    elif cls.dataset:
        why = missing(cls.dataset)
        if why:
            raise ConfigError(f"config key {key}: workload {name!r} reads dataset {cls.dataset!r}, which is not available here: {why}")
    return settings


def check_precision_options(config: dict[str, Any]) -> None:
    """precision_options the schema cannot judge: combinations of keys."""
    from .precision import DYNAMIC_ONLY

    int8 = (config.get("precision_options") or {}).get("int8") or {}
    if int8.get("backend") in DYNAMIC_ONLY and int8.get("scheme") == "static":
        raise ConfigError(
            f"config key precision_options.int8.scheme: backend {int8['backend']!r} quantizes activations per batch "
            "(dynamic) only. Fix: set scheme: dynamic or auto, or pick a backend with a static scheme "
            "(onednn, x86, fbgemm, qnnpack, pt2e_x86)"
        )


def check_precisions(config: dict[str, Any]) -> None:
    """A precision none of whose cells can run (e.g. int8 with phases [train]) is a config error."""
    g = config["grid"]
    allow = config.get("allow", {})
    rules = {w: G._workload_rules(config, w) for w in g["workloads"]}
    for i, prec in enumerate(g["precisions"]):
        reasons = []
        for w, phase, device, variant in itertools.product(g["workloads"], g["phases"], g["devices"], g.get("variants", ["baseline"])):
            r = G.builtin_exclusion(phase, device, prec, variant, allow, rules[w], config.get("precision_options"))
            if r is None:
                break
            reasons.append(r)
        else:
            raise ConfigError(
                f"config key grid.precisions[{i}]: {prec!r} cannot run with any phase/device of this grid "
                f"({'; '.join(G.unique(reasons))}). Fix: remove {prec!r} from grid.precisions, or add the phase/device it needs"
            )


def check(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, Any]:
    """Checks beyond the JSON schema. Returns the sites mapping."""
    from .workloads.registry import BUILTIN, WorkloadError, dataset_rows, resolve_spec

    base = Path(base_dir)
    sites = load_sites(resolve_path(config["sites_file"], base))
    if config["site"] not in sites:
        raise ConfigError(
            f"config key site: unknown site {config['site']!r}. Fix: use one of {', '.join(sorted(sites))} "
            f"or add an entry to {config['sites_file']}"
        )
    wl_cfg = config.get("workloads") or {}
    for name in wl_cfg:
        if name not in BUILTIN and "class" not in wl_cfg[name]:
            raise ConfigError(
                f"config key workloads.{name}: {name!r} is not a built-in workload ({', '.join(BUILTIN)}) and has no class. "
                f"Fix: add class: my_pkg.module:MyWorkload, or fix the name"
            )
        if "class" in wl_cfg[name] and name not in config["grid"]["workloads"]:
            try:
                resolve_spec(name, wl_cfg[name])
            except WorkloadError as e:
                raise ConfigError(f"config key workloads.{name}.class: {e}") from None
    for i, name in enumerate(config["grid"]["workloads"]):
        if name not in BUILTIN and "class" not in wl_cfg.get(name, {}):
            raise ConfigError(
                f"config key grid.workloads[{i}]: unknown workload {name!r}. Fix: use one of {', '.join(BUILTIN)}, "
                f"or define workloads.{name}.class: my_pkg.module:MyWorkload"
            )
        settings = check_workload(config, name, f"grid.workloads[{i}]", base)
        spec = resolve_spec(name, settings)
        rows = dataset_rows(spec, settings)
        if rows:
            n_test = max(1, int(round(rows * settings.get("test_fraction", 0.2))))
            n_train = rows - n_test
            for bs in config["grid"]["batch_sizes"]:
                for phase, n in (("train", n_train), ("infer", n_test)):
                    if phase in config["grid"]["phases"] and bs > n:
                        raise ConfigError(
                            f"config key grid.batch_sizes: batch size {bs} is larger than the {phase} split of "
                            f"workload {name!r} ({n} samples of {rows}). Fix: use batch sizes <= {n}, or raise "
                            f"workloads.{name}.rows to scale the dataset up"
                        )
    check_precision_options(config)
    check_precisions(config)
    from .hardware import config_calibrations

    config_calibrations(config, base)  # the hardware table's CPU calibrations: a bad entry names the file, model and key
    for i, rule in enumerate(config.get("exclude") or []):
        for key, val in rule.items():
            if key == "reason":
                continue
            allowed = {
                "phase": G.PHASES,
                "device": G.DEVICES,
                "precision": G.PRECISIONS,
                "variant": G.VARIANTS,
            }.get(key)
            for v in val if isinstance(val, list) else [val]:
                if allowed and v not in allowed:
                    raise ConfigError(
                        f"config key exclude[{i}].{key}: {v!r} is not a {key}. Fix: use one of {', '.join(allowed)}"
                    )
    return sites


def prepare(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate (schema + checks) a config in place; returns (config, sites)."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("the config is empty. Fix: start from config/config.yaml")
    validate_schema(config)
    sites = check(config, base_dir)
    return config, sites


def load(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, base_dir: str | os.PathLike = "."):
    """Read a config file (default config/config.yaml), apply overrides, validate. For the CLI."""
    p = Path(path) if path else DEFAULT_CONFIG
    try:
        with open(p) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist. Fix: pass --configfile with an existing file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    for k, v in (overrides or {}).items():
        config[k] = v
    return prepare(config, base_dir)


def settings_hash(obj: Any) -> str:
    """Stable short hash of JSON-able settings."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ per-cell settings
def site_facts(sites: dict[str, Any], site: str, calibrations: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job needs to know about its site and hardware: the site's facts (config/sites.yaml) and the
    CPU power calibrations of the hardware table (hardware.config_calibrations), which the job matches
    against its own CPU model (meters.attribution.power_model)."""
    from .meters.attribution import NodePowerError, node_power_entries

    s = dict(sites.get(site) or {})
    try:  # measured idle power of the site's nodes (docs/measurement.md, "Whose energy")
        node_power = node_power_entries(s.get("node_power"), site) or None
    except NodePowerError as e:
        raise ConfigError(str(e)) from None
    return {
        "name": site,
        "scheduler": s.get("scheduler", "local"),
        "country_iso": s.get("country_iso"),
        "carbon_intensity_g_per_kwh": s.get("carbon_intensity_g_per_kwh"),
        "pue": s.get("pue", 1.0),
        "node_power": node_power,
        "cpu_calibrations": calibrations or None,
    }


class SpecBuilder:
    """Builds the settings each cell job receives.

    Snakemake calls it once per job while it builds the DAG (a dry run of 10,000 cells too), so
    everything that depends on the workload only -- its settings, their hash and JSON, the
    dataset, the reference model's hash -- is computed once per workload and cached.
    """

    def __init__(self, config: dict[str, Any], sites: dict[str, Any]):
        from .hardware import config_calibrations

        self.config = config
        self.facts = site_facts(sites, config["site"], config_calibrations(config))
        self._wl: dict[str, dict[str, Any]] = {}
        # (workload, precision with options or None) -> (settings, hash, JSON tail)
        self._settings: dict[tuple[str, str | None], tuple[dict[str, Any], str, str]] = {}
        self._model_hash: dict[str, str] = {}
        self._dataset: dict[str, tuple[str, int] | None] = {}

    def workload(self, name: str) -> dict[str, Any]:
        if name not in self._wl:
            self._wl[name] = workload_settings(self.config, name)
        return self._wl[name]

    def _cached_settings(self, workload: str, precision: str | None = None) -> tuple[dict[str, Any], str, str]:
        # precision_options.<p> (e.g. a pinned int8 backend) change what p's cells measure: they are part
        # of those cells' settings and hash only, so other precisions keep theirs.
        options = (self.config.get("precision_options") or {}).get(precision) if precision else None
        key = (workload, precision if options is not None else None)
        if key not in self._settings:
            c = self.config
            st = {
                "workload": self.workload(workload),
                "measure": c["measure"],
                "seed": c["seed"],
                "strict_devices": c["strict_devices"],
                "site_facts": self.facts,
            }
            if options is not None:
                st["precision_options"] = {precision: options}
            h = settings_hash(st)
            tail = f', "settings": {json.dumps(st)}, "config_hash": {json.dumps(h)}}}'
            self._settings[key] = (st, h, tail)
        return self._settings[key]

    def settings(self, workload: str, precision: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self._cached_settings(workload, precision)[0])

    def spec(self, cell: G.Cell) -> dict[str, Any]:
        st, h, _ = self._cached_settings(cell.workload, cell.precision)
        return {"cell": cell.axes(), "settings": copy.deepcopy(st), "config_hash": h}

    def spec_json(self, cell: G.Cell) -> str:
        """``json.dumps(self.spec(cell))``, the workload's part serialised once (what the rules pass)."""
        return '{"cell": ' + json.dumps(cell.axes()) + self._cached_settings(cell.workload, cell.precision)[2]

    def model_hash(self, workload: str) -> str:
        """Identity of the reference model infer cells load (workload settings + seed)."""
        if workload not in self._model_hash:
            self._model_hash[workload] = settings_hash({"workload": self.workload(workload), "seed": self.config["seed"]})
        return self._model_hash[workload]

    def dataset(self, workload: str) -> tuple[str, int] | None:
        """(dataset name, rows) the workload reads from resources/, or None for its own data file."""
        if workload not in self._dataset:
            from .workloads.registry import resolve_spec

            st = self.workload(workload)
            if st.get("data"):
                self._dataset[workload] = None
            else:
                cls = resolve_spec(workload, st)
                self._dataset[workload] = (cls.dataset, int(st.get("rows") or 0)) if cls.dataset else None
        return self._dataset[workload]
