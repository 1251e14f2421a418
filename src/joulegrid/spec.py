"""A cell's spec: what determines its result (its identity and config hash), what a job measures it with
(``CellSpec``: the cell and its typed settings), the grid snapshot jobs read it from, and the identity
columns of its row.

- ``identity`` / ``settings_hash``: the config hash of a workload's cells (docs/architecture.md, "A cell's
  identity"); ``MEASUREMENT_VERSION``;
- ``SpecBuilder``: from a validated config, per workload, its settings, config hash, data and reference
  model, and the grid snapshot holding them (``<results>/.grid/<hash>.json``);
- ``CellSpec``: built where the snapshot's (or a --spec file's) JSON comes in (``cell_spec_from_snapshot``,
  ``reference_spec_from_snapshot``, ``CellSpec.from_dict``) and passed whole to the runner, the meters and
  ``failures.record_failure``;
- ``identity_columns``: the identity part of a row, for a measured row and the row of a job that died.

Pure Python: no torch import, so ``snakemake -n`` stays fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from . import grid, schema
from .base import ConfigError, SettingsError, schema_defaults
from .cell_settings import CellSettings, Measure
from .config import workload_settings
from .grid import Cell
from .sites import SiteFacts, site_facts


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
MEASUREMENT_VERSION = 2  # 2: steady windows in both phases (training runs repeated to min_window_s), issue 22

# measure: keys that do not change a measurement: a gate checked before it starts (required_meters),
# the profiling pass after the measured window (hotspots*), the bound of the low-confidence flag and the
# outlier rule (they judge a finished window -- each row records its verdict and reason -- and do not change
# how it is measured). Every other measure key -- also one added later -- is part of the identity.
NOT_IDENTITY_MEASURE = (
    "required_meters",
    "hotspots",
    "hotspot_batches",
    "hotspot_top",
    "energy_max_rel_err",
    "outlier_retries",
    "outlier_max_steal",
    "outlier_max_contention",
    "outlier_min_cpu_freq",
)


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
        # code versions compared (docs/compare.md): the pair and its campaign, only when versions: names them
        **({"versions": _versions_identity(config)} if _versions_on(config) else {}),
    }


def _versions_on(config: dict[str, Any]) -> bool:
    from . import versions

    return versions.enabled(config)


def _versions_identity(config: dict[str, Any]) -> dict[str, Any] | None:
    from . import versions

    return versions.identity(config)


# ------------------------------------------------------------------ a cell's spec, typed
@dataclass(frozen=True)
class CellSpec:
    """What run-cell measures a cell with: the cell (its axes and config hash) and its workload's typed
    settings. ``to_dict`` / ``from_dict``: the JSON of a --spec file (and of ``SpecBuilder.spec``)."""

    cell: Cell
    settings: CellSettings
    #: the cell's planned position in its block (grid.block_order; from the grid snapshot), None if unknown
    block_position: int | None = None

    @property
    def config_hash(self) -> str | None:
        return self.cell.config_hash

    @property
    def seed(self) -> int:
        """The run's seed: the configuration's seed plus the repeat index (data split and reference model
        use the configuration's: ``settings.seed``)."""
        return self.settings.seed + self.cell.repeat

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> CellSpec:
        """``{"cell": {axes}, "settings": {...}, "config_hash": ...}``: a --spec file, ``SpecBuilder.spec``."""
        if not isinstance(spec, dict) or not isinstance(spec.get("cell"), dict) or "settings" not in spec:
            raise SettingsError(
                f"a cell spec needs 'cell' (the axes) and 'settings', got {str(spec)[:200]!r}. "
                "Fix: pass --grid <results>/.grid/<hash>.json as rule measure does, or write the spec as "
                "joulegrid.spec.SpecBuilder.spec gives it"
            )
        return cls(
            Cell(**spec["cell"], config_hash=spec.get("config_hash")),
            CellSettings.from_dict(spec["settings"]),
            spec.get("block_position"),
        )

    @classmethod
    def of(cls, spec: CellSpec | dict[str, Any]) -> CellSpec:
        """The spec itself, or one read from its JSON form (the Python API's edge: tests, notebooks)."""
        return spec if isinstance(spec, CellSpec) else cls.from_dict(spec)

    def to_dict(self) -> dict[str, Any]:
        out = {"cell": self.cell.axes(), "settings": self.settings.to_dict(), "config_hash": self.config_hash}
        if self.block_position is not None:
            out["block_position"] = self.block_position
        return out

    def with_cell(self, **axes: Any) -> CellSpec:
        """The same settings for another cell (e.g. the reference model's: train, fp32, baseline, cpu)."""
        return replace(self, cell=replace(self.cell, **axes))


def identity_columns(spec: CellSpec, attempt: int) -> dict[str, Any]:
    """The identity part of a row: the cell's axes and id, its seed, attempt and config hash, the site's
    carbon intensity, PUE and country. The same for a measured row (runner.CellRunner) and the row of a
    job that died (failures.record_failure)."""
    site = spec.settings.site_facts
    return {
        **spec.cell.axes(),
        "schema_version": schema.SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "cell_id": spec.cell.id,
        "seed": spec.seed,
        "block": spec.cell.repeat,  # block k = every cell's repeat k (docs/measurement.md, "Blocked repeats")
        "block_position": spec.block_position,
        "attempt": attempt,
        "config_hash": spec.config_hash,
        "carbon_intensity_g_per_kwh": site.carbon_intensity_g_per_kwh,
        "pue": site.pue,
        "country_iso": site.country_iso,
        **(spec.settings.code or {}),  # code_version, code_commit, code_dirty: a run of a quadruple job
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
            f"{path} is not a joulegrid grid snapshot of version {SNAPSHOT_VERSION}. Fix: start snakemake again to "
            "write one"
        )
    return snap


def _snapshot_workload(snap: dict[str, Any], path: str | os.PathLike, workload: str) -> dict[str, Any]:
    w = snap["workloads"].get(workload)
    if w is None:
        raise ConfigError(f"workload {workload!r} is not in the grid snapshot {path} ({', '.join(snap['workloads'])})")
    return w


class SnapshotCell(NamedTuple):
    spec: CellSpec  # what runner.run_and_write takes: the cell (axes and config hash) and its settings
    data: str | None  # the file it reads
    model: str | None  # the reference model (inference)
    resources_dir: str  # prepared data and the per-host cache


def cell_spec_from_snapshot(path: str | os.PathLike, out: str, code_version: str | None = None) -> SnapshotCell:
    """The cell whose run file is ``out``, from the snapshot: its axes and config hash from the
    path, its settings from the snapshot (which must hold that hash). code_version: one run of a quadruple
    job (joulegrid.quadruple), measuring that version (its row's code columns)."""
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
    blocks = snap.get("blocks")  # the grid's block plan (SpecBuilder.snapshot with cells): the planned position
    position = None
    if blocks:
        position = grid.block_positions(blocks["cells"], int(blocks["seed"]), cell.repeat).get(grid.block_cell(cell))
    settings = CellSettings.from_dict(w["settings"])
    if code_version is not None:
        vs = snap.get("versions") or {}
        if code_version not in vs:
            raise ConfigError(
                f"--code-version {code_version}: the grid snapshot {path} holds no such code version "
                f"({', '.join(vs) or 'no versions'}). Fix: run the cell's quadruple job (joulegrid run-quadruple)"
            )
        v = vs[code_version]
        settings = replace(
            settings,
            code={"code_version": code_version, "code_commit": v["commit"], "code_dirty": bool(v["dirty"])},
        )
    spec = CellSpec(cell, settings, position)
    return SnapshotCell(spec, w["data"], w["model"] if cell.phase == "infer" else None, snap["resources_dir"])


def reference_spec_from_snapshot(path: str | os.PathLike, workload: str) -> tuple[CellSpec, str | None, str]:
    """(spec, data file, model path) of the workload's reference-model training (fp32 baseline, train, cpu)."""
    snap = read_snapshot(path)
    w = _snapshot_workload(snap, path, workload)
    settings = CellSettings.from_dict(w["settings"])
    cell = grid.Cell(
        settings.site_facts.name,
        workload,
        "train",
        "cpu",
        "fp32",
        "baseline",
        int(w["reference_batch_size"]),
        0,
        config_hash=w["config_hash"],
    )
    return CellSpec(cell, settings), w["data"], w["model"]


# ------------------------------------------------------------------ per-cell settings
class SpecBuilder:
    """Builds the settings of each workload of the grid: its identity and config hash, what its
    cells are measured with, its data and reference model, and the grid snapshot holding them all.
    Everything is per workload (the cell's axes come from its run file's path), computed once and
    cached."""

    def __init__(self, config: dict[str, Any], sites: dict[str, Any]):
        from .hardware import config_calibrations  # the submit side only: jobs read the snapshot

        self.config = config
        self.facts = site_facts(sites, config["site"], config_calibrations(config))  # as the snapshot holds them
        self._wl: dict[str, dict[str, Any]] = {}
        self._settings: dict[str, tuple[CellSettings, str]] = {}  # workload -> (settings, config hash)
        self._model_hash: dict[str, str] = {}
        self._dataset: dict[str, tuple[str, int] | None] = {}

    def workload(self, name: str) -> dict[str, Any]:
        if name not in self._wl:
            self._wl[name] = workload_settings(self.config, name)
        return self._wl[name]

    def identity(self, workload: str, precision: str | None = None) -> dict[str, Any]:
        return identity(self.config, workload, self.workload(workload), precision)

    def _cached_settings(self, workload: str) -> tuple[CellSettings, str]:
        if workload not in self._settings:
            c = self.config
            # the snapshot is JSON (to_dict); jobs read it back with CellSettings.from_dict
            st = CellSettings(
                workload=self.workload(workload),
                measure=Measure.from_dict(c["measure"]),
                seed=c["seed"],
                strict_devices=c["strict_devices"],
                site_facts=SiteFacts.from_dict(self.facts),
                precision_options=c.get("precision_options") or None,  # runner: the options of the cell's precision
                cpu_model=(c.get("job") or {}).get("cpu_model"),  # runner: a host of another CPU model skips
            )
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
        """The workload's cells' settings as the grid snapshot holds them (JSON)."""
        return copy.deepcopy(self._cached_settings(workload)[0].to_dict())

    def cell_spec(self, cell: grid.Cell) -> CellSpec:
        """What run-cell measures a cell with (runner.CellRunner): the cell with its workload's config hash,
        and its workload's settings. Jobs read the same from the grid snapshot (cell_spec_from_snapshot)."""
        st, _ = self._cached_settings(cell.workload)
        return CellSpec(cell.with_hash(self.config_hash(cell.workload, cell.precision)), copy.deepcopy(st))

    def spec(self, cell: grid.Cell) -> dict[str, Any]:
        """``cell_spec`` as JSON: what a --spec file holds (the cell's axes, its settings, its config hash)."""
        return self.cell_spec(cell).to_dict()

    def workload_of(self, config_hash: str) -> str:
        """The grid workload whose config hash (or a precision's of it) this is; ConfigError if none."""
        for w, h in self.hashes().items():
            if config_hash == h or config_hash in self.precision_hashes(w).values():
                return w
        raise ConfigError(
            f"config hash {config_hash} is not one of the current configuration's "
            f"({', '.join(f'{w} {h}' for w, h in self.hashes().items())}). Fix: ask for the current grid's files "
            "(plain `snakemake`), or run with the configuration that gave that hash"
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

    def versions(self) -> dict[str, Any] | None:
        """{label: Version} of the configuration's code versions (joulegrid.versions), None without."""
        from . import versions

        return versions.resolve(self.config) if versions.enabled(self.config) else None

    def snapshot(self, cells: list[grid.Cell] | None = None) -> dict[str, Any]:
        """The grid snapshot: what every job of this configuration reads (run-cell, record-failure,
        train-reference --grid), per workload its config hash, settings, data and reference model; with code
        versions (joulegrid.versions) both versions' checkouts, which the quadruple jobs import from; with the
        grid's ``cells``, its block plan (the seed and the cells without site and repeat: grid.block_order),
        from which a job takes its planned position in its block."""
        blocks = (
            {"blocks": {"seed": self.config["seed"], "cells": sorted({grid.block_cell(c) for c in cells})}}
            if cells
            else {}
        )
        vs = self.versions()
        return {
            **blocks,
            **({"versions": {k: v.to_dict() for k, v in vs.items()}} if vs else {}),
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

    def snapshot_path(self, write: bool = False, cells: list[grid.Cell] | None = None) -> str:
        """<results>/.grid/<hash of its content>.json; written (atomically, once: content-addressed) with write.
        ``cells``: the grid's, for its block plan (the Snakefile's snapshot); computed once per SpecBuilder."""
        if not hasattr(self, "_snapshot"):
            snap = self.snapshot(cells)
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
            vs = self.versions()  # with code versions, the model is trained by the base version's code
            self._model_hash[workload] = settings_hash(
                {
                    "workload": self.workload(workload),
                    "seed": self.config["seed"],
                    **({"code": vs["base"].id} if vs else {}),
                }
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
