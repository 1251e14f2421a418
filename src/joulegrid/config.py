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
import functools
import hashlib
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from . import axes, grid

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


def _friendly(err, where: str = "config key") -> str:
    """One jsonschema ValidationError -> 'config key X: problem. Fix: ...' (``where`` names the file's keys)."""
    key = _key_path(err.absolute_path)
    v = err.validator
    inst = err.instance
    sch = err.schema
    if v == "additionalProperties":
        allowed = sorted(sch.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, dict) else []
        at = key if err.absolute_path else "top level"
        return (
            f"{where} {at}: unknown key(s) {', '.join(map(repr, extra))}. "
            f"Fix: remove or rename them; allowed keys here: {', '.join(allowed)}"
        )
    if v == "enum":
        return f"{where} {key}: {inst!r} is not allowed. Fix: use one of {_allowed(sch)}"
    if v == "type":
        want = _type_words(sch["type"])
        return f"{where} {key}: expected {want}, got {type(inst).__name__} {inst!r}. Fix: write {want}"
    if v == "minItems":
        return f"{where} {key}: the list is empty. Fix: give at least {sch['minItems']} value(s)"
    if v == "uniqueItems":
        dup = sorted({json.dumps(x) for x in inst if inst.count(x) > 1})
        return f"{where} {key}: duplicated value(s) {', '.join(dup)}. Fix: list each value once"
    if v in ("minimum", "exclusiveMinimum"):
        return f"{where} {key}: {inst!r} is too small ({v} {sch[v]}). Fix: use a value above {sch[v]}" + (
            "" if v == "exclusiveMinimum" else " or equal to it"
        )
    if v in ("maximum", "exclusiveMaximum"):
        return f"{where} {key}: {inst!r} is too large ({v} {sch[v]}). Fix: use a smaller value"
    if v == "pattern" and key.endswith(".class"):
        return f"{where} {key}: {inst!r} is not an import path. Fix: write it as my_pkg.module:MyWorkload (module path, colon, class name)"
    if v == "pattern":
        return (
            f"{where} {key}: {inst!r} is not a safe name (pattern {sch['pattern']}). "
            "Fix: use letters, digits and _ only (no '/', '..', spaces or shell characters)"
        )
    if v == "required":
        return f"{where} {key}: {err.message}. Fix: add it"
    if v == "minProperties" and "reason" in sch.get("required", ()):
        return f"{where} {key}: {err.message}. Fix: name at least one axis to match besides reason"
    if v == "minProperties":
        return f"{where} {key}: {err.message}. Fix: give at least {sch['minProperties']} entry"
    if v == "oneOf" and sch.get("description"):
        return f"{where} {key}: {inst!r} is not allowed. Fix: {' '.join(sch['description'].split())}"
    if v == "minLength":
        return f"{where} {key}: must not be empty. Fix: write a short text"
    return f"{where} {key}: {err.message}"


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a text", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}  # fmt: skip


def _type_words(want: str | list[str]) -> str:
    """'integer' -> 'an integer'; ['number', 'null'] -> 'a number or null'."""
    return " or ".join(_TYPE_WORDS.get(t, f"a {t}") for t in ([want] if isinstance(want, str) else want))


def _json_type_ok(value: Any, want: str | list[str]) -> bool:
    """Whether a Python value has one of the JSON schema types in want."""
    kinds = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}
    for t in [want] if isinstance(want, str) else want:
        k = kinds.get(t)
        if k is not None and isinstance(value, k) and (t == "boolean" or not isinstance(value, bool)):
            return True
    return False


def _number(text: str, want: str | list[str]) -> Any:
    """text as the number the schema wants (exponent form included: 1e-9, 1e1, 2E3), else text."""
    wants = [want] if isinstance(want, str) else want
    if not {"number", "integer"} & set(wants):
        return text
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        return text
    if not math.isfinite(value):
        return text
    if "number" not in wants:  # integer only: 1e3 is 1000, 1.5e0 stays text (the schema's error names it)
        return int(value) if value.is_integer() else text
    return value


def _type_errors(errors):
    """The errors, with those of a oneOf / anyOf replaced by its alternatives' (a key such as
    fleet.samples_per_job: null, a number or a mapping: '1000000' fails each alternative's type)."""
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            yield from _type_errors(err.context)
        else:
            yield err


def coerce_text_values(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read text values as the number / boolean / null their key needs, in place.

    Snakemake's ``--config`` reads the values inside a mapping as text (``grid={repeats: 2}`` gives
    ``{'repeats': '2'}``: snakemake.cli.parse_config uses YAML's BaseLoader for them), so
    ``--config 'grid={repeats: 2}'`` would fail the schema with "got str '2'". Such a value is read
    as YAML and kept when that gives a type the schema allows there; anything else is left to the
    schema's error."""
    import jsonschema

    schema = schema or _load_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for _ in range(1000):  # each pass fixes at least one value
        fixed = False
        for err in _type_errors(validator.iter_errors(config)):
            if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
                continue
            try:
                value = yaml.safe_load(err.instance)
            except yaml.YAMLError:
                continue
            if isinstance(value, str):  # YAML 1.1 reads 1e-9 and 1e1 (no dot) as text: read numbers as Python does
                value = _number(value, err.schema["type"])
            if _json_type_ok(value, err.schema["type"]):
                *parents, last = err.absolute_path
                node = config
                for p in parents:
                    node = node[p]
                node[last] = value
                fixed = True
        if not fixed:
            break
    return config


@functools.cache
def read_schema(path: str) -> dict[str, Any]:
    """A YAML JSON-schema file, parsed once per process (config, sites, hardware schemas). Shared: read only."""
    return yaml.safe_load(Path(path).read_text())


def _load_schema() -> dict[str, Any]:
    return read_schema(str(SCHEMA_PATH))


_DEFAULTS: dict[str, Any] = {}


def schema_defaults() -> dict[str, Any]:
    """Every default the JSON schema gives (the schema is their only home): what validating an empty
    config fills in, section by section (e.g. schema_defaults()["measure"]["warmup_batches"]). A copy."""
    if not _DEFAULTS:

        def fill(schema: dict[str, Any]) -> Any:
            value = copy.deepcopy(schema.get("default"))
            if isinstance(value, dict) and "properties" in schema:
                for key, sub in schema["properties"].items():
                    if "default" in sub:
                        value.setdefault(key, fill(sub))
            return value

        _DEFAULTS.update(fill({"default": {}, **_load_schema()}))
    return copy.deepcopy(_DEFAULTS)


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the JSON schema with snakemake.utils.validate (fills defaults in place).

    On failure the config is checked once more with plain jsonschema to get the error object
    (snakemake's WorkflowError only carries text) and turn it into a message with key and fix.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    coerce_text_values(config)
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
    from .workloads.quality import QUALITY_RANGES
    from .workloads.registry import WorkloadError, workload_class

    user = (config.get("workloads") or {}).get(name, {})
    where = f"workloads.{name}"
    if "rows" in user and "samples" in user:
        raise ConfigError(f"config key {where}: both rows and samples are set (the same knob). Fix: keep one of them")
    try:
        settings = workload_settings(config, name)
        cls = workload_class(name, settings)
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
            raise ConfigError(
                f"config key {key}: workload {name!r} reads dataset {cls.dataset!r}, which is not available here: {why}"
            )
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
    rules = {w: grid.workload_rules(config, w) for w in g["workloads"]}
    for i, prec in enumerate(g["precisions"]):
        reasons = []
        for w, phase, device, variant in itertools.product(
            g["workloads"], g["phases"], g["devices"], g.get("variants", ["baseline"])
        ):
            r = grid.builtin_exclusion(phase, device, prec, variant, allow, rules[w], config.get("precision_options"))
            if r is None:
                break
            reasons.append(r)
        else:
            raise ConfigError(
                f"config key grid.precisions[{i}]: {prec!r} cannot run with any phase/device of this grid "
                f"({'; '.join(grid.unique(reasons))}). Fix: remove {prec!r} from grid.precisions, or add the phase/device it needs"
            )


def validate_semantics(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, Any]:
    """Checks beyond the JSON schema. Returns the sites mapping."""
    from .workloads.registry import BUILTIN, WorkloadError, dataset_rows, workload_class

    base = Path(base_dir)
    from .sites import load_sites

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
                workload_class(name, wl_cfg[name])
            except WorkloadError as e:
                raise ConfigError(f"config key workloads.{name}.class: {e}") from None
    for i, name in enumerate(config["grid"]["workloads"]):
        if name not in BUILTIN and "class" not in wl_cfg.get(name, {}):
            raise ConfigError(
                f"config key grid.workloads[{i}]: unknown workload {name!r}. Fix: use one of {', '.join(BUILTIN)}, "
                f"or define workloads.{name}.class: my_pkg.module:MyWorkload"
            )
        settings = check_workload(config, name, f"grid.workloads[{i}]", base)
        spec = workload_class(name, settings)
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

    config_calibrations(
        config, base
    )  # the hardware table's CPU calibrations: a bad entry names the file, model and key
    for i, rule in enumerate(config.get("exclude") or []):
        for key, val in rule.items():
            if key == "reason":
                continue
            allowed = {
                "phase": axes.PHASES,
                "device": axes.DEVICES,
                "precision": axes.PRECISIONS,
                "variant": axes.VARIANTS,
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
    sites = validate_semantics(config, base_dir)
    return config, sites


def parse_config_args(entries: list[str] | None) -> dict[str, Any]:
    """``--config KEY=VALUE ...`` as Snakemake reads it (snakemake.cli.parse_config of Snakemake 9):
    each value is tried as int, float, True/False, then YAML with BaseLoader (mappings and lists
    of text), then text; entries are merged with snakemake.utils.update_config.

    Re-implemented because importing snakemake.cli imports every executor plugin (1 s; the Slurm
    plugin waits on `scontrol` where no controller answers); tests/unit/test_config.py checks it
    against Snakemake's own on the same entries."""
    from snakemake.utils import update_config

    def _bool(v: str) -> bool:
        if v in ("True", "False"):
            return v == "True"
        raise ValueError(v)

    parsers = (int, float, _bool, lambda v: yaml.load(v, Loader=yaml.BaseLoader), str)
    out: dict[str, Any] = {}
    for entry in entries or []:
        key, sep, val = entry.partition("=")
        if not sep or not re.fullmatch(r"[a-zA-Z_][\w-]*\w", key):
            raise ConfigError(
                f"--config {entry!r}: expected KEY=VALUE with KEY a name (e.g. seed=7 or 'grid={{repeats: 2}}')"
            )
        value: Any = None
        if val != "":
            for parse in parsers:
                try:
                    value = parse(val)
                except Exception:  # noqa: BLE001 - the next parser, as Snakemake does
                    continue
                if not callable(value):
                    break
        update_config(out, {key: value})
    return out


def _read_configfile(path: str | os.PathLike) -> dict[str, Any]:
    from snakemake.common.configfile import load_configfile
    from snakemake.exceptions import WorkflowError

    if not Path(path).is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist. Fix: pass --configfile with an existing file")
    try:
        data = load_configfile(str(path))
    except WorkflowError as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def merge(
    configfiles: list[str | os.PathLike] | str | os.PathLike | None = None,
    config_args: list[str] | dict[str, Any] | None = None,
    replace_workflow_config: bool = False,
) -> dict[str, Any]:
    """The config Snakemake builds for joulegrid's Snakefile, before validation.

    As Snakemake 9 does (snakemake.settings.types.ConfigSettings, Workflow.configfile): every
    ``--configfile`` in order, then ``--config`` (parse_config_args, or a ready mapping), merged
    with snakemake.utils.update_config (nested mappings are merged key by key, everything else is
    replaced), then merged over the Snakefile's ``configfile:`` (config/config.yaml of the checkout),
    unless ``--replace-workflow-config``."""
    from snakemake.utils import update_config

    if configfiles is None:
        files: list = []
    elif isinstance(configfiles, (str, os.PathLike)):
        files = [configfiles]
    else:
        files = list(configfiles)
    overwrite: dict[str, Any] = {}
    for f in files:
        update_config(overwrite, _read_configfile(f))
    if config_args:
        update_config(
            overwrite, copy.deepcopy(config_args) if isinstance(config_args, dict) else parse_config_args(config_args)
        )
    config = {} if replace_workflow_config else _read_configfile(DEFAULT_CONFIG)
    update_config(config, overwrite)
    return config


def load(
    configfiles: list[str | os.PathLike] | str | os.PathLike | None = None,
    config_args: list[str] | dict[str, Any] | None = None,
    base_dir: str | os.PathLike = ".",
    replace_workflow_config: bool = False,
):
    """The validated config and sites that ``snakemake [--configfile F ...] [--config K=V ...]`` would
    use (merge, then prepare): the loader of `joulegrid plan`, `joulegrid meters` and `joulegrid report`."""
    return prepare(merge(configfiles, config_args, replace_workflow_config), base_dir)


def settings_hash(obj: Any) -> str:
    """Stable short hash of JSON-able settings."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ a cell's identity
# Bump when a change of joulegrid changes what a finished measurement means (its windows, its
# meters, a workload's training or data): every cell then gets a new config hash and is measured
# anew, the old run files stay (rows of another configuration). Changes that do not change a
# measurement's meaning (speed-ups, refactoring, the analysis) leave it alone, so that upgrading
# joulegrid does not re-measure a campaign. docs/architecture.md, "A cell's identity".
MEASUREMENT_VERSION = 1

# measure: keys that do not change a measurement: a gate checked before it starts (required_meters)
# and the profiling pass after the measured window (hotspots*). Every other measure key -- also one
# added later -- is part of the identity.
NOT_IDENTITY_MEASURE = ("required_meters", "hotspots", "hotspot_batches", "hotspot_top")


def _options_of(options: dict[str, Any], precision: str | None) -> dict[str, Any]:
    """precision_options as a cell of ``precision`` sees them: its own precision's as configured, every
    other precision's at their defaults (None: all at their defaults, the workload's base identity)."""
    defaults = schema_defaults().get("precision_options") or {}
    return {p: (v if p == precision else defaults.get(p, v)) for p, v in options.items()}


def identity(
    config: dict[str, Any], workload: str, settings: dict[str, Any] | None = None, precision: str | None = None
) -> dict[str, Any]:
    """What determines the result of a cell of ``workload`` (and ``precision``) besides its grid axes:
    the workload's effective settings (built-in defaults + config: rows, epochs, target, data, params,
    ...), the measure settings that change a measurement, the seed, MEASUREMENT_VERSION and the
    cell's own precision's precision_options (a pinned int8 backend changes the int8 cells only; the
    fp32 baseline and the other precisions keep their identity: ``_options_of``).

    Left out, so that they neither re-measure nor split results: the site and its facts
    (scheduler, carbon intensity, PUE: applied to the energy, the same grid at two sites has the
    same identity), report:, fleet:, budget:, job: (what a scheduler is asked for), the grid's
    axes and exclusions (they choose cells, each cell's axes are in its path), strict_devices
    and strict (what happens on a missing device or a bad file), results/resources folders."""
    return {
        "workload": workload,
        "settings": settings if settings is not None else workload_settings(config, workload),
        "measure": {k: v for k, v in (config.get("measure") or {}).items() if k not in NOT_IDENTITY_MEASURE},
        "seed": config["seed"],
        "measurement_version": MEASUREMENT_VERSION,
        # a pinned int8 backend, scheme or calibration changes what the int8 cells measure, nothing else: in
        # the other precisions' identity (the fp32 baseline's included) every precision's options are the defaults
        **(
            {"precision_options": _options_of(config["precision_options"], precision)}
            if config.get("precision_options")
            else {}
        ),
    }


# ------------------------------------------------------------------ the grid snapshot
# Jobs read their settings from <results>/.grid/<hash>.json, written once per configuration when a
# run starts (SpecBuilder.snapshot_path; docs/architecture.md, "The lean measure rule"), with the
# cell's axes and config hash taken from its run file's path.
SNAPSHOT_VERSION = 1


def read_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    try:
        snap = json.loads(Path(path).read_text())
    except FileNotFoundError:
        import socket

        raise ConfigError(
            f"grid snapshot {path} not found on host {socket.gethostname()}. Jobs read their settings from the results "
            "folder, so it must be on a filesystem the execution hosts share with the submit host. Fix: run snakemake "
            "from a directory on the shared filesystem (docs/sites.md, 'What a job reads from the results folder')"
        ) from None
    except ValueError as e:
        raise ConfigError(
            f"grid snapshot {path} is not valid JSON ({e}). Fix: delete it and start snakemake again"
        ) from None
    if not isinstance(snap, dict) or snap.get("joulegrid_grid_snapshot") != SNAPSHOT_VERSION:
        raise ConfigError(
            f"{path} is not a joulegrid grid snapshot of version {SNAPSHOT_VERSION}. Fix: start snakemake again to write one"
        )
    return snap


def _snapshot_workload(snap: dict[str, Any], path: str | os.PathLike, workload: str) -> dict[str, Any]:
    w = snap["workloads"].get(workload)
    if w is None:
        raise ConfigError(f"workload {workload!r} is not in the grid snapshot {path} ({', '.join(snap['workloads'])})")
    return w


class SnapshotCell(NamedTuple):
    spec: dict[str, Any]  # what runner.run_and_write takes: the cell's axes, its settings, its config hash
    data: str | None  # the file it reads
    model: str | None  # the reference model (inference)
    resources_dir: str  # prepared data and the per-host cache


def cell_spec_from_snapshot(path: str | os.PathLike, out: str) -> SnapshotCell:
    """The cell whose run file is ``out``, from the snapshot: its axes and config hash from the
    path, its settings from the snapshot (which must hold that hash)."""
    snap = read_snapshot(path)
    try:
        cell = grid.cell_from_path(out)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    w = _snapshot_workload(snap, path, cell.workload)
    want = (w.get("precision_hashes") or {}).get(cell.precision, w["config_hash"])  # a pinned precision's own hash
    if cell.config_hash != want:
        raise ConfigError(
            f"{out} belongs to configuration {cell.config_hash}, the grid snapshot {path} holds {cell.workload}'s "
            f"configuration {want}. Fix: run snakemake with the configuration that gave {cell.config_hash}"
        )
    spec = {"cell": cell.axes(), "settings": w["settings"], "config_hash": want}
    return SnapshotCell(spec, w["data"], w["model"] if cell.phase == "infer" else None, snap["resources_dir"])


def reference_spec_from_snapshot(path: str | os.PathLike, workload: str) -> tuple[dict[str, Any], str | None, str]:
    """(spec, data file, model path) of the workload's reference-model training (fp32 baseline, train, cpu)."""
    snap = read_snapshot(path)
    w = _snapshot_workload(snap, path, workload)
    cell = grid.Cell(
        w["settings"]["site_facts"]["name"],
        workload,
        "train",
        "cpu",
        "fp32",
        "baseline",
        int(w["reference_batch_size"]),
        0,
    )
    return {"cell": cell.axes(), "settings": w["settings"], "config_hash": w["config_hash"]}, w["data"], w["model"]


# ------------------------------------------------------------------ per-cell settings
class SpecBuilder:
    """Builds the settings of each workload of the grid: its identity and config hash, what its
    cells are measured with, its data and reference model, and the grid snapshot holding them all.
    Everything is per workload (the cell's axes come from its run file's path), computed once and
    cached."""

    def __init__(self, config: dict[str, Any], sites: dict[str, Any]):
        from .hardware import config_calibrations
        from .sites import site_facts

        self.config = config
        self.facts = site_facts(sites, config["site"], config_calibrations(config))
        self._wl: dict[str, dict[str, Any]] = {}
        self._settings: dict[str, tuple[dict[str, Any], str]] = {}  # workload -> (settings, config hash)
        self._model_hash: dict[str, str] = {}
        self._dataset: dict[str, tuple[str, int] | None] = {}

    def workload(self, name: str) -> dict[str, Any]:
        if name not in self._wl:
            self._wl[name] = workload_settings(self.config, name)
        return self._wl[name]

    def identity(self, workload: str, precision: str | None = None) -> dict[str, Any]:
        return identity(self.config, workload, self.workload(workload), precision)

    def _cached_settings(self, workload: str) -> tuple[dict[str, Any], str]:
        if workload not in self._settings:
            from .cell_settings import CellSettings, Measure

            c = self.config
            st = CellSettings(
                workload=self.workload(workload),
                measure=Measure.from_dict(c["measure"]),
                seed=c["seed"],
                strict_devices=c["strict_devices"],
                site_facts=self.facts,
                precision_options=c.get("precision_options") or None,  # runner: the options of the cell's precision
                cpu_model=(c.get("job") or {}).get("cpu_model"),  # runner: a host of another CPU model skips
            ).to_dict()  # the snapshot is JSON; jobs read it back with CellSettings.from_dict
            self._settings[workload] = (st, settings_hash(self.identity(workload)))
        return self._settings[workload]

    def config_hash(self, workload: str, precision: str | None = None) -> str:
        """The workload's config hash: settings_hash(identity), in its cells' run file names and rows; with
        precision, that precision's cells' (the same unless precision_options sets it: precision_hashes)."""
        base = self._cached_settings(workload)[1]
        if precision is None or precision not in (self.config.get("precision_options") or {}):
            return base
        return settings_hash(self.identity(workload, precision))

    def hashes(self) -> dict[str, str]:
        """Config hash of every workload of the grid (grid.expand stamps them on the cells)."""
        return {w: self.config_hash(w) for w in self.config["grid"]["workloads"]}

    def precision_hashes(self, workload: str) -> dict[str, str]:
        """{precision: config hash} of the precisions whose cells' hash is not the workload's (a pinned
        precision_options entry), among the grid's precisions; usually empty."""
        base = self.config_hash(workload)
        out = {p: self.config_hash(workload, p) for p in self.config["grid"]["precisions"]}
        return {p: h for p, h in out.items() if h != base}

    def cell_hashes(self) -> dict[tuple[str, str], str]:
        """{(workload, precision): config hash} where a precision's cells differ from their workload's
        (grid.expand's precision_hashes)."""
        return {(w, p): h for w in self.config["grid"]["workloads"] for p, h in self.precision_hashes(w).items()}

    def known_workloads(self) -> list[str]:
        """The grid's workloads, then those the config defines, then the built-in ones: every workload
        the configuration gives settings (and so a config hash) to."""
        from .workloads.registry import BUILTIN

        return grid.unique([*self.config["grid"]["workloads"], *(self.config.get("workloads") or {}), *BUILTIN])

    def current(self) -> dict[str, Any]:
        """The current configuration's identity of every workload it gives settings to (also one not in
        grid.workloads: a campaign split into runs per workload is one configuration): what the
        summary calls current (joulegrid aggregate --current), JSON-able."""
        out = {w: {"config_hash": self.config_hash(w), "identity": self.identity(w)} for w in self.known_workloads()}
        for w in self.config["grid"]["workloads"]:
            for p, h in self.precision_hashes(w).items():  # a pinned precision: its cells' own hash and identity
                out[w].setdefault("precisions", {})[p] = {"config_hash": h, "identity": self.identity(w, p)}
        return out

    def settings(self, workload: str) -> dict[str, Any]:
        return copy.deepcopy(self._cached_settings(workload)[0])

    def spec(self, cell: grid.Cell) -> dict[str, Any]:
        """What run-cell measures a cell with (runner.CellRunner): the cell's axes, its workload's
        settings, its config hash. Jobs build it from the grid snapshot (cell_spec_from_snapshot)."""
        st, _ = self._cached_settings(cell.workload)
        return {
            "cell": cell.axes(),
            "settings": copy.deepcopy(st),
            "config_hash": self.config_hash(cell.workload, cell.precision),
        }

    def workload_of(self, config_hash: str) -> str:
        """The grid workload whose config hash (or a precision's of it) this is; ConfigError if none."""
        for w, h in self.hashes().items():
            if config_hash == h or config_hash in self.precision_hashes(w).values():
                return w
        raise ConfigError(
            f"config hash {config_hash} is not one of the current configuration's ({', '.join(f'{w} {h}' for w, h in self.hashes().items())}). "
            "Fix: ask for the current grid's files (plain `snakemake`), or run with the configuration that gave that hash"
        )

    def data_path(self, workload: str) -> str | None:
        """The file the workload's cells read: its prepared dataset under resources_dir, or its own data file."""
        ds = self.dataset(workload)
        if ds is not None:
            from .data import dataset_path

            return dataset_path(self.config["resources_dir"], *ds)
        return self.workload(workload).get("data") or None

    def model_path(self, workload: str) -> str:
        """The reference model the workload's inference cells load (rule train_reference)."""
        return f"{self.config['results']}/models/{workload}/{self.model_hash(workload)}.pt"

    def snapshot(self) -> dict[str, Any]:
        """The grid snapshot: what every job of this configuration reads (run-cell, record-failure,
        train-reference --grid), per workload its config hash, settings, data and reference model."""
        return {
            "joulegrid_grid_snapshot": SNAPSHOT_VERSION,
            "resources_dir": self.config["resources_dir"],  # prepared data, the per-host cache (joulegrid.hostcache)
            "workloads": {
                w: {
                    "config_hash": self.config_hash(w),
                    "settings": self.settings(w),
                    "data": self.data_path(w),
                    "model": self.model_path(w),
                    "reference_batch_size": min(self.config["grid"]["batch_sizes"]),
                    # the precisions whose cells have their own hash (pinned precision_options); absent if none
                    **({"precision_hashes": self.precision_hashes(w)} if self.precision_hashes(w) else {}),
                }
                for w in self.config["grid"]["workloads"]
            },
        }

    def snapshot_path(self, write: bool = False) -> str:
        """<results>/.grid/<hash of its content>.json; written (atomically, once: content-addressed) with write."""
        if not hasattr(self, "_snapshot"):
            snap = self.snapshot()
            self._snapshot = (
                json.dumps(snap, sort_keys=True, indent=1),
                f"{self.config['results']}/.grid/{settings_hash(snap)}.json",
            )
        text, path = self._snapshot
        if write and not os.path.exists(path):
            from .io import atomic_path

            with atomic_path(path, suffix=".json") as tmp:
                Path(tmp).write_text(text)
        return path

    def model_hash(self, workload: str) -> str:
        """Identity of the reference model infer cells load (workload settings + seed)."""
        if workload not in self._model_hash:
            self._model_hash[workload] = settings_hash(
                {"workload": self.workload(workload), "seed": self.config["seed"]}
            )
        return self._model_hash[workload]

    def dataset(self, workload: str) -> tuple[str, int] | None:
        """(dataset name, rows) the workload reads from resources/, or None for its own data file."""
        if workload not in self._dataset:
            from .workloads.registry import workload_class

            st = self.workload(workload)
            if st.get("data"):
                self._dataset[workload] = None
            else:
                cls = workload_class(workload, st)
                self._dataset[workload] = (cls.dataset, int(st.get("rows") or 0)) if cls.dataset else None
        return self._dataset[workload]
