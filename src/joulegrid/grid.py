"""The experiment grid: axes, exclusions, cell ids and result paths.

Pure Python (no torch, no pyarrow): Snakemake imports this at parse time, and a dry run of a
10,000-cell grid must stay fast.

A *cell* is one measurement job: site x workload x phase x device x precision x variant x batch
size x repeat, measured with the settings of one configuration. Its result lives at::

    <results>/runs/<site>/<workload>/<phase>/<device>/<precision>[+<variant>]/bs<B>/r<k>-<config hash>.parquet

The variant is folded into the precision folder (``fp32`` for the baseline model,
``fp32+pruned`` for the pruned one, ``fp32+compiled`` for torch.compile) so that the path keeps the
layout of the design card. The config hash (joulegrid.spec.identity: the workload's settings, the
measure settings, the seed and the measurement version; not the site) ends the file name: a changed
configuration measures new files next to the old ones, a rerun of the same configuration finds its
files. Run files written before the hash was part of the name (``r<k>.parquet``) are still found and
read, as rows of another configuration.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .axes import (  # the axes' names, also read from here (their home is axes.py)
    BASELINE_VARIANT,
    CELL_AXES,
    DEVICES,
    PHASES,
    PRECISIONS,
    RULE_AXES,
    VARIANTS,
    precision_exclusion,
)

# Safe path components: letters, digits, underscore (and one +variant suffix for precision).
NAME_RE = r"[A-Za-z][A-Za-z0-9_]{0,63}"
WILDCARD_CONSTRAINTS = {
    "site": NAME_RE,
    "workload": NAME_RE,
    "phase": "|".join(PHASES),
    "device": "|".join(DEVICES),
    "precision": "(?:" + "|".join(PRECISIONS) + r")(?:\+(?:" + "|".join(VARIANTS) + "))?",
    "batch": r"[1-9][0-9]{0,8}",
    "repeat": r"[0-9]{1,6}",
    "chash": r"[0-9a-f]{16}",
}
CELL_PATTERN = "{site}/{workload}/{phase}/{device}/{precision}/bs{batch}/r{repeat}-{chash}"
RUN_PATTERN = f"runs/{CELL_PATTERN}.parquet"


def cell_pattern(site: str) -> str:
    """CELL_PATTERN with the site written out: a run measures the cells of its own site (one
    wildcard fewer for Snakemake to handle per job)."""
    if not re.fullmatch(NAME_RE, site):
        raise ValueError(f"{site!r} is not a site name")
    return CELL_PATTERN.replace("{site}", site)


_PATH_RE = re.compile(
    r"(?:^|/)runs/(?P<site>{site})/(?P<workload>{workload})/(?P<phase>{phase})/(?P<device>{device})/"
    r"(?P<precision>{precision})/bs(?P<batch>{batch})/r(?P<repeat>{repeat})(?:-(?P<chash>{chash}))?\.parquet$".format(
        **WILDCARD_CONSTRAINTS
    )
)


@dataclass(frozen=True, order=True)
class Cell:
    site: str
    workload: str
    phase: str
    device: str
    precision: str
    variant: str
    batch_size: int
    repeat: int
    # joulegrid.spec.identity's hash of the settings the cell is measured with (None: not known,
    # e.g. a run file from before the hash was part of its name). Not an axis: not in axes() or id.
    config_hash: str | None = None

    @property
    def precision_segment(self) -> str:
        if self.variant == BASELINE_VARIANT:
            return self.precision
        return f"{self.precision}+{self.variant}"

    @property
    def id(self) -> str:
        return (
            f"{self.site}/{self.workload}/{self.phase}/{self.device}/"
            f"{self.precision_segment}/bs{self.batch_size}/r{self.repeat}"
        )

    @property
    def file_id(self) -> str:
        """The cell id with its config hash: the name of its run file (and log, attempts, hotspots)
        under the results folder. Cells of one configuration share the hash (per workload)."""
        if self.config_hash is None:
            return self.id  # a run file from before the hash was in the name
        return f"{self.id}-{self.config_hash}"

    def path(self, results: str = "results") -> str:
        if self.config_hash is None:
            raise ValueError(f"cell {self.id} has no config hash: build the grid with grid.expand(config, hashes)")
        return f"{results}/runs/{self.file_id}.parquet"

    def with_hash(self, config_hash: str | None) -> Cell:
        return replace(self, config_hash=config_hash)

    def wildcards(self) -> dict[str, str]:
        """The cell as Snakemake's wildcards of RUN_PATTERN (the precision folder carries the variant)."""
        out = {k: str(v) for k, v in self.axes().items() if k not in ("precision", "variant", "batch_size")}
        return {
            **out,
            "precision": self.precision_segment,
            "batch": str(self.batch_size),
            "chash": self.config_hash or "",
        }

    def axes(self) -> dict[str, Any]:
        """The cell's axes (every field but config_hash), by name."""
        return {f: getattr(self, f) for f in AXES}


AXES = CELL_AXES  # Cell's fields besides config_hash, by name (tests/unit/test_axes.py keeps them equal)


def split_precision(segment: str) -> tuple[str, str]:
    """'fp32+pruned' -> ('fp32', 'pruned'); 'fp32' -> ('fp32', 'baseline')."""
    precision, _, variant = segment.partition("+")
    return precision, variant or BASELINE_VARIANT


def cell_from_wildcards(wc: Any) -> Cell:
    """Build a Cell from Snakemake wildcards (or any mapping/object with the same names)."""
    get = wc.get if hasattr(wc, "get") else (lambda k: getattr(wc, k, None))
    precision, variant = split_precision(get("precision"))
    return Cell(
        site=get("site"),
        workload=get("workload"),
        phase=get("phase"),
        device=get("device"),
        precision=precision,
        variant=variant,
        batch_size=int(get("batch")),
        repeat=int(get("repeat")),
        config_hash=get("chash"),
    )


def run_files(runs_dir: str | os.PathLike) -> list[str]:
    """Every result file under runs_dir, of every configuration, sorted (temp files of unfinished
    writes start with '.', never matched)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("r*.parquet") if _PATH_RE.search(p.as_posix()))


def run_manifest(runs_dir: str | os.PathLike, known: Iterable[str] = ()) -> str:
    """One line per run file under runs_dir that is not in ``known`` (paths relative to runs_dir, e.g.
    the run files of this run's grid): '<path> <size> <mtime ns>', sorted.

    The Snakefile stamps it (joulegrid.snakefile, the runs stamp) as an input of rule aggregate: a run file copied or
    rsync-ed into runs/ (another site's folder, another configuration's files) changes it, so the summary is
    rebuilt although mtime triggers cannot see a new file with an old time (rsync -a keeps the
    source's). The grid's own files are left out: they are the rule's inputs already, and the
    manifest must not change when this run measures them (a rerun would aggregate again). Plain
    os.scandir (no pathlib, no stat of the known files): it runs in every Snakemake start."""
    root = os.fspath(runs_dir)
    known = set(known)
    lines: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = os.scandir(os.path.join(root, rel) if rel else root)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for e in entries:
                name = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=True):
                    stack.append(name)
                elif e.name.endswith(".parquet") and not e.name.startswith(".") and name not in known:
                    if _PATH_RE.search("runs/" + name):
                        st = e.stat()
                        lines.append(f"{name} {st.st_size} {st.st_mtime_ns}")
    lines.sort()
    return "\n".join(lines) + ("\n" if lines else "")


def cell_from_path(path: str) -> Cell:
    m = _PATH_RE.search(str(path).replace("\\", "/"))
    if not m:
        raise ValueError(f"{path!r} is not a joulegrid run path; expected .../{RUN_PATTERN}")
    return cell_from_wildcards(m.groupdict())


@dataclass(frozen=True)
class Excluded:
    cell: Cell
    reason: str


@dataclass
class Grid:
    cells: list[Cell]
    excluded: list[Excluded]

    def paths(self, results: str = "results") -> list[str]:
        return [c.path(results) for c in self.cells]

    def counts(self) -> dict[str, dict[str, int]]:
        """Cells per axis value (for `joulegrid plan`)."""
        out: dict[str, dict[str, int]] = {}
        for c in self.cells:
            for k, v in c.axes().items():
                if k == "site":
                    continue
                d = out.setdefault(k, {})
                d[str(v)] = d.get(str(v), 0) + 1
        return out


def builtin_exclusion(
    phase: str,
    device: str,
    precision: str,
    variant: str,
    allow: dict[str, Any] | None = None,
    workload_rules: list[dict[str, Any]] | None = None,
    precision_options: dict[str, Any] | None = None,
) -> str | None:
    """Reason why a combination cannot (or should not) be measured, or None if it is valid.

    ``workload_rules`` are the workload's own EXCLUSIONS (joulegrid.workloads.base.Workload):
    {axis: value or [values], "reason": text, optional "allow": key of the config's allow: section}.
    ``precision_options`` is the config's precision_options (the int8 backend decides what int8 can run).
    """
    reason = precision_exclusion(phase, device, precision, variant, precision_options)
    if reason is not None:
        return reason
    allow = allow or {}
    axes = {"phase": phase, "device": device, "precision": precision, "variant": variant}
    for rule in workload_rules or ():
        if rule.get("allow") and allow.get(rule["allow"], False):
            continue
        if all(axes[k] in (v if isinstance(v, list) else [v]) for k, v in rule.items() if k in RULE_AXES):
            return rule["reason"]
    return None


def workload_rules(config: dict[str, Any], workload: str) -> list[dict[str, Any]]:
    from .workloads.registry import exclusions

    user_class = ((config.get("workloads") or {}).get(workload) or {}).get("class")
    return exclusions(workload, user_class)


def _matches(cell: Cell, rule: dict[str, Any]) -> bool:
    for key, want in rule.items():
        if key == "reason":
            continue
        have = getattr(cell, key)
        wants = want if isinstance(want, list) else [want]
        if have not in wants:
            return False
    return True


def iter_cells(config: dict[str, Any], repeats: int | None = None) -> Iterator[tuple[Cell, str | None]]:
    """Every combination of the axes with its exclusion reason (None = runnable).

    repeats: the grid's repeats where the config says ``grid.repeats: auto`` (the frozen design:
    joulegrid.analysis.design.grid_repeats; the grid, pure, does not read results)."""
    g = config["grid"]
    site = config["site"]
    allow = config.get("allow", {})
    user_rules = config.get("exclude", []) or []
    wl_rules = {w: workload_rules(config, w) for w in g["workloads"]}
    if repeats is None:
        repeats = g.get("repeats", 1)
    if repeats == "auto":
        raise ValueError(
            "grid.repeats is auto: pass the design's repeats (joulegrid.analysis.design.grid_repeats(config))"
        )
    for workload, phase, device, precision, variant, bs in itertools.product(
        g["workloads"],
        g["phases"],
        g["devices"],
        g["precisions"],
        g.get("variants", [BASELINE_VARIANT]),
        g["batch_sizes"],
    ):
        reason = builtin_exclusion(
            phase, device, precision, variant, allow, wl_rules[workload], config.get("precision_options")
        )
        for repeat in range(int(repeats)):
            cell = Cell(site, workload, phase, device, precision, variant, int(bs), repeat)
            r = reason
            if r is None:
                for rule in user_rules:
                    if _matches(cell, rule):
                        r = "excluded by config: " + rule.get("reason", "(no reason given)")
                        break
            yield cell, r


def expand(
    config: dict[str, Any],
    hashes: Mapping[str, str] | None = None,
    precision_hashes: Mapping[tuple[str, str], str] | None = None,
    *,
    repeats: int | None = None,
) -> Grid:
    """The grid of a validated config: runnable cells and excluded ones with reasons.

    hashes: config hash per workload (joulegrid.spec.SpecBuilder.hashes()), stamped on every
    cell; without them the cells have no run path (only their axes and ids). precision_hashes:
    {(workload, precision): hash} of the precisions with their own (SpecBuilder.cell_hashes()).
    repeats: where the config says ``grid.repeats: auto``, the design's (iter_cells)."""
    cells: list[Cell] = []
    excluded: list[Excluded] = []
    own = precision_hashes or {}
    for cell, reason in iter_cells(config, repeats):
        if hashes is not None:
            cell = cell.with_hash(own.get((cell.workload, cell.precision)) or hashes[cell.workload])
        if reason is None:
            cells.append(cell)
        else:
            excluded.append(Excluded(cell, reason))
    return Grid(cells, excluded)


# ------------------------------------------------------------------ blocked repeats
# Repeats run in blocks (docs/measurement.md, "Blocked repeats"): block k is every cell's repeat k, and the
# cells of a block run in a seeded random order, another one per block. The order is a pure function of the
# seed, the block and the cells of the grid (without site and repeat), so that the Snakefile (which orders the
# jobs by it) and a job (which records its position, from the grid snapshot) agree.


def block_cell(cell: Cell) -> str:
    """The cell as the blocks know it: its id without site and repeat (the same grid at two sites is one plan)."""
    return f"{cell.workload}/{cell.phase}/{cell.device}/{cell.precision_segment}/bs{cell.batch_size}"


def _block_key(seed: int, block: int, name: str) -> str:
    import hashlib

    return hashlib.sha256(f"{seed}:{block}:{name}".encode()).hexdigest()


def block_positions(names: Iterable[str], seed: int, block: int) -> dict[str, int]:
    """{block cell: its planned position in ``block``} (0 = first): the cells sorted by sha256 of
    (seed, block, name) -- a seeded permutation, another one for every block."""
    order = sorted(set(names), key=lambda n: _block_key(seed, block, n))
    return {n: i for i, n in enumerate(order)}


def block_order(cells: Iterable[Cell], seed: int) -> list[tuple[Cell, int]]:
    """(cell, planned position in its block), in the planned order: block 0 (every cell's repeat 0) in its
    seeded order, then block 1, ..."""
    cells = list(cells)
    names = sorted({block_cell(c) for c in cells})
    pos: dict[int, dict[str, int]] = {}
    out = []
    for c in cells:
        if c.repeat not in pos:
            pos[c.repeat] = block_positions(names, seed, c.repeat)
        out.append((c, pos[c.repeat][block_cell(c)]))
    return sorted(out, key=lambda cp: (cp[0].repeat, cp[1]))


def unique(values: Iterable[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
