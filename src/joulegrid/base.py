"""What every module that reads the configuration needs first: the checkout's paths, ``ConfigError``, the
config schema and its defaults, and JSON-schema errors turned into messages that name the key and the fix.

A base below ``config`` (the config's loading and checks), ``cell_settings`` (a cell's typed settings),
``sites`` and ``hardware`` (the sites file and the hardware table, checked with ``schema_problem``), so
that none of them imports another to reach these. Pure Python (yaml; jsonschema where a file is checked).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent.parent
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """A config that cannot be run. The message names the key and how to fix it."""


class SiteError(ConfigError):
    """A sites file or site entry that cannot be used; the message names the file, the key and the fix."""


class SettingsError(ValueError):
    """Settings a job cannot use (names the key and the fix): a grid snapshot's or a hand-written --spec's."""


# ------------------------------------------------------------------ schema errors, in words
def _key_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _allowed(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(map(str, schema["enum"]))
    return ""


def friendly(err, where: str = "config key") -> str:
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
        return (
            f"{where} {key}: {inst!r} is not an import path. Fix: write it as my_pkg.module:MyWorkload (module path, "
            "colon, class name)"
        )
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


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _type_words(want: str | list[str]) -> str:
    """'integer' -> 'an integer'; ['number', 'null'] -> 'a number or null'."""
    return " or ".join(_TYPE_WORDS.get(t, f"a {t}") for t in ([want] if isinstance(want, str) else want))


def schema_problem(data: Any, schema_path: str | os.PathLike, where: str) -> str | None:
    """The most relevant violation of the JSON schema at ``schema_path`` as 'WHERE key K: problem. Fix: ...',
    or None if ``data`` follows it. ``where`` names the file (e.g. 'config/sites.yaml')."""
    import jsonschema

    schema = read_schema(str(schema_path))
    validator = jsonschema.validators.validator_for(schema)(schema)
    best = jsonschema.exceptions.best_match(validator.iter_errors(data))
    return None if best is None else friendly(best, f"{where} key")


# ------------------------------------------------------------------ the config schema and its defaults
@functools.cache
def read_schema(path: str) -> dict[str, Any]:
    """A YAML JSON-schema file, parsed once per process (config, sites, hardware schemas). Shared: read only."""
    return yaml.safe_load(Path(path).read_text())


def config_schema() -> dict[str, Any]:
    """The config's JSON schema (workflow/schemas/config.schema.yaml): every key, its type and default."""
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

        _DEFAULTS.update(fill({"default": {}, **config_schema()}))
    return copy.deepcopy(_DEFAULTS)


# ------------------------------------------------------------------ paths
def resolve_path(path: str | os.PathLike, base: Path) -> Path:
    """A config path: absolute, else relative to the working directory, else to the joulegrid checkout."""
    p = Path(path)
    if p.is_absolute():
        return p
    if (base / p).exists() or not (REPO_ROOT / p).exists():
        return base / p
    return REPO_ROOT / p
