"""Loading and validating a joulegrid config, with errors that name the key and the fix.

Two layers:
1. the JSON schema in ``workflow/schemas/config.schema.yaml`` (types, enums, ranges, unknown keys),
   applied with ``snakemake.utils.validate`` which also fills in the defaults;
2. checks JSON schema cannot express (known workloads, known site, batch size vs dataset size,
   data files that exist), in ``validate_semantics()``.

The checkout's paths, ``ConfigError`` and the schema's defaults live in ``joulegrid.base`` (re-exported
here); a cell's identity, config hash and spec, and the grid snapshot, in ``joulegrid.spec``.

Pure Python: no torch import, so ``snakemake -n`` stays fast.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from . import axes, grid

# the checkout's paths, the error and the schema: their home is base.py, also read from here
from .base import DEFAULT_CONFIG as DEFAULT_CONFIG
from .base import PACKAGE_ROOT as PACKAGE_ROOT
from .base import REPO_ROOT as REPO_ROOT
from .base import SCHEMA_PATH as SCHEMA_PATH
from .base import ConfigError as ConfigError
from .base import config_schema as _load_schema
from .base import friendly, resolve_path
from .base import schema_defaults as schema_defaults


# ------------------------------------------------------------------ schema validation
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
        raise ConfigError(friendly(best)) from None
    return config


# ------------------------------------------------------------------ semantic checks
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
                f"config key {where}.data: {settings['data']!r} does not exist. Fix: give the path of an existing "
                "file (absolute, or relative to the working directory) or remove the key"
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
                f"({'; '.join(grid.unique(reasons))}). Fix: remove {prec!r} from grid.precisions, or add the "
                "phase/device it needs"
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
                f"config key workloads.{name}: {name!r} is not a built-in workload ({', '.join(BUILTIN)}) and has no "
                "class. "
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

    # the hardware table's CPU calibrations: a bad entry names the file, model and key
    config_calibrations(config, base)
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
    from . import versions

    versions.prepare(config, base_dir)  # code versions: resolved, checked out, the base's first on the import path
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
