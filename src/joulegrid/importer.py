"""Bring another results tree into this one: ``joulegrid import PATH... [--as-site NAME|OLD=NEW]``.

PATH is another site's results folder (or its ``runs/``, or ``runs/<site>/``). Every run file found
there is checked and copied to ``<results>/runs/`` with its side files (``attempts/``, ``hotspots/``,
``logs/runs/``), under the same relative path:

- a file of another schema version, or not a joulegrid run file, is skipped with the reason
  (``joulegrid aggregate`` would leave it out);
- nothing already there is overwritten: a file whose run_id is already in the tree (the same run,
  copied before) is skipped and counted as already there; a different file at the same path is
  skipped as a conflict; new files are linked into place (never replaced);
- a site name that the tree already holds for other machines or another scheduler (two sites under
  one name: their carbon intensity, PUE and hardware differ) is refused before anything is copied,
  with the fix: ``--as-site OLD=NEW`` files the incoming runs under another site name (their
  ``site`` and ``cell_id`` columns and paths are rewritten; everything else is kept);
- runs of another configuration than the current one (<results>/.stamps/current.json, written by
  any ``snakemake`` run) are copied too and named: the summary puts them in
  summary.other-configs.parquet, never averaged with the current ones.

Then ``snakemake`` (the README's main command) rebuilds the summary and the report with every site
(rule aggregate's input stamps the run files the grid does not make: workflow/rules/analyse.smk).
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from .grid import NAME_RE, Cell, cell_from_path, run_files

# Side files of a run: (folder under <results>, suffix of <file id>) (archive.SIDE_FILES plus the job's log).
SIDE_FILES = (("attempts", ".jsonl"), ("hotspots", ".parquet"), ("logs/runs", ".log"))
IDENTITY = ("run_id", "site", "hostname", "scheduler", "workload", "config_hash", "cell_id")


class ImportRefused(ValueError):
    """The import was refused as a whole; nothing was copied."""


@dataclass
class Incoming:
    src: Path  # the run file
    root: Path  # its results folder
    cell: Cell  # from its path
    row: dict  # IDENTITY columns of its row
    dst_cell: Cell  # under the site name it is filed as


@dataclass
class ImportResult:
    taken: list[Path] = field(default_factory=list)  # run files copied (destination paths)
    side_files: int = 0
    already: list[tuple[Path, str]] = field(default_factory=list)  # (source, why: identical / same run_id)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source, why)
    other_configs: Counter = field(default_factory=Counter)  # (workload, config hash) -> runs taken
    sites: Counter = field(default_factory=Counter)  # site -> runs taken
    current_known: bool = True


def parse_renames(values: list[str] | None) -> dict[str, str] | str | None:
    """--as-site values: {'OLD': 'NEW'} from OLD=NEW items, or 'NEW' (one bare name: the source's only site)."""
    if not values:
        return None
    bare = [v for v in values if "=" not in v]
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    for name in [*bare, *pairs, *pairs.values()]:
        if not re.fullmatch(NAME_RE, name):
            raise ImportRefused(
                f"--as-site {name!r} is not a site name. Fix: letters, digits and _, starting with a letter"
            )
    if bare and (pairs or len(bare) > 1):
        raise ImportRefused("--as-site takes either one NAME (the source holds one site) or OLD=NEW pairs, not both")
    return bare[0] if bare else pairs


def _row_identity(path: Path) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=list(IDENTITY))
    if t.num_rows != 1:
        raise ValueError(f"{t.num_rows} rows (a run file holds one)")
    return {k: t.column(k)[0].as_py() for k in IDENTITY}


def _results_root(run_file: Path) -> Path:
    """<results> of <results>/runs/<site>/<workload>/<phase>/<device>/<precision>/bs<B>/r<k>-<hash>.parquet."""
    return run_file.parents[7]


def _existing(results: Path) -> tuple[dict[str, Path], dict[str, tuple[set, set]]]:
    """(run_id -> run file, site -> (schedulers, hosts)) of the run files already in <results>/runs/."""
    from .analysis.aggregate import read_runs

    files = run_files(results / "runs")
    df, _problems = read_runs(files)  # unreadable files are left out, as aggregate does
    ids: dict[str, Path] = {}
    if df.height:
        for rid, cid, h in df.select("run_id", "cell_id", "config_hash").iter_rows():
            ids[rid] = results / "runs" / (f"{cid}-{h}.parquet" if h else f"{cid}.parquet")
    sites: dict[str, tuple[set, set]] = {}
    for site, sched, host in df.select("site", "scheduler", "hostname").unique().iter_rows() if df.height else []:
        s = sites.setdefault(site, (set(), set()))
        s[0].add(sched)
        s[1].add(host)
    return ids, sites


def _collisions(incoming: list[Incoming], here: dict[str, tuple[set, set]], results: Path) -> list[str]:
    """Sites of the incoming runs that the tree holds already for another scheduler or (a site of the
    local scheduler: one machine) another host."""
    by_site: dict[str, tuple[set, set, set]] = {}
    for inc in incoming:
        s = by_site.setdefault(inc.dst_cell.site, (set(), set(), set()))
        s[0].add(inc.row["scheduler"])
        s[1].add(inc.row["hostname"])
        s[2].add(str(inc.root))
    out = []
    for site, (scheds, hosts, roots) in sorted(by_site.items()):
        if site not in here:
            continue
        h_scheds, h_hosts = here[site]
        local = "local" in scheds | h_scheds
        if scheds <= h_scheds and (not local or hosts <= h_hosts):
            continue

        def fmt(xs):
            return ", ".join(sorted(str(x) for x in xs))

        out.append(
            f"site {site!r} of {fmt(roots)} ran with scheduler {fmt(scheds)} on host(s) {fmt(hosts)}, but "
            f"{results}/runs/{site}/ holds runs of site {site!r} with scheduler {fmt(h_scheds)} on host(s) "
            f"{fmt(h_hosts)}: "
            "two different sites under one name (their hardware, carbon intensity and PUE differ, and the report would "
            f"compare them as one). Fix: file the incoming runs under another name, `joulegrid import {fmt(roots)} "
            f"--as-site {site}=<new name>` (and add <new name> to config/sites.yaml with its carbon intensity and PUE)"
        )
    return out


def _read_current(results: Path) -> dict[str, list[str]] | None:
    from .analysis.aggregate import current_hashes

    p = results / ".stamps" / "current.json"
    try:
        return current_hashes(json.loads(p.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _place(src: Path, dst: Path, rename: str | None) -> None:
    """Copy src to dst without ever replacing dst (a hard link of a complete temp file: fails if dst
    exists). With rename (a site name), a Parquet file's site and cell_id columns are rewritten."""
    from .io import atomic_path

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = dst.with_name(f".{dst.name}.import")
    with atomic_path(tmp_target, suffix=".tmp") as tmp:
        if rename is not None and src.suffix == ".parquet":
            _rewrite_site(src, tmp, rename)
        else:
            shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)  # mode (run files are read-only) and times, as cp -p / rsync -a
    try:
        os.link(tmp_target, dst)  # FileExistsError if something appeared at dst meanwhile: never replaced
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_target)


def _rewrite_site(src: Path, out: str, site: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(src)
    if "site" in t.column_names:
        t = t.set_column(
            t.column_names.index("site"),
            t.schema.field("site"),
            pa.array([site] * t.num_rows, t.schema.field("site").type),
        )
    if "cell_id" in t.column_names:
        col = pc.replace_substring_regex(
            t.column("cell_id"), pattern=r"^[^/]+/", replacement=f"{site}/", max_replacements=1
        )
        t = t.set_column(t.column_names.index("cell_id"), t.schema.field("cell_id"), col)
    pq.write_table(t, out, compression="zstd")


def plan_import(
    paths: list[str | os.PathLike], results: str | os.PathLike = "results", as_site=None
) -> tuple[list[Incoming], ImportResult, dict[str, Path]]:
    """Find and check the incoming run files: (the incoming runs, the result so far: files skipped,
    run_id -> run file of the runs already here). Raises ImportRefused (nothing copied) on a collision."""
    from .analysis.aggregate import _check_file

    results = Path(results)
    res = ImportResult()
    incoming: list[Incoming] = []
    found_any = False
    for p in map(Path, paths):
        if not p.exists():
            raise ImportRefused(f"{p} does not exist. Fix: give the other site's results folder (it holds runs/)")
        with contextlib.suppress(OSError):
            if p.resolve() == results.resolve() or results.resolve() in p.resolve().parents:
                raise ImportRefused(
                    f"{p} is inside {results}, the tree to import into. Fix: give another site's results folder"
                )
        files = run_files(p)
        if not files:
            raise ImportRefused(
                f"{p} holds no run files (<results>/runs/<site>/<workload>/.../r<k>-<hash>.parquet). "
                "Fix: give the other site's results folder, its runs/ or runs/<site>/"
            )
        found_any = True
        for f in map(Path, files):
            why = _check_file(str(f))
            if why is None:
                try:
                    row = _row_identity(f)
                except Exception as e:  # noqa: BLE001 - a file that cannot be read is refused, with why
                    why = f"cannot read its identity ({type(e).__name__}: {e})"
            if why is not None:
                res.skipped.append((f, why))
                continue
            cell = cell_from_path(f.as_posix())
            incoming.append(Incoming(f, _results_root(f), cell, row, cell))
    if not found_any:
        raise ImportRefused("nothing to import: give one or more results folders")
    sites = sorted({i.cell.site for i in incoming})
    if isinstance(as_site, str):
        if len(sites) > 1:
            raise ImportRefused(
                f"--as-site {as_site}: the source holds several sites ({', '.join(sites)}). Fix: --as-site OLD=NEW "
                "for each"
            )
        as_site = {sites[0]: as_site} if sites else {}
    renames = as_site or {}
    unknown = sorted(set(renames) - set(sites))
    if unknown:
        raise ImportRefused(
            f"--as-site: the source holds no site {', '.join(unknown)} (it holds {', '.join(sites) or 'none'})"
        )
    for i in incoming:
        if i.cell.site in renames:
            i.dst_cell = replace(i.cell, site=renames[i.cell.site])
    ids_here, sites_here = _existing(results)
    problems = _collisions(incoming, sites_here, results)
    if problems:
        raise ImportRefused("nothing imported: " + "; ".join(problems))
    return incoming, res, ids_here


def import_trees(
    paths: list[str | os.PathLike], results: str | os.PathLike = "results", as_site=None, dry_run: bool = False
) -> ImportResult:
    """Copy the run files of other results trees (and their side files) into results; see the module doc."""
    results = Path(results)
    incoming, res, ids_here = plan_import(paths, results, as_site)
    current = _read_current(results)
    res.current_known = current is not None
    seen: dict[str, Path] = {}
    for inc in incoming:
        rid = inc.row["run_id"]
        dst = results / "runs" / f"{inc.dst_cell.file_id}.parquet"
        renamed = inc.dst_cell.site if inc.dst_cell.site != inc.cell.site else None
        if dst.exists() or dst.is_symlink():
            if renamed is None and filecmp.cmp(inc.src, dst, shallow=False):
                res.already.append((inc.src, "identical file already there"))
            elif ids_here.get(rid) == dst:
                res.already.append((inc.src, f"the same run (run_id {rid}) is already there"))
            else:
                res.skipped.append((inc.src, f"a different run file is already at {dst} (never overwritten)"))
            continue
        if rid in ids_here:
            res.already.append((inc.src, f"the same run (run_id {rid}) is already there, as {ids_here[rid]}"))
            continue
        if rid in seen:
            res.skipped.append(
                (inc.src, f"run_id {rid} also in {seen[rid]} (the same run twice in the sources); taken once")
            )
            continue
        seen[rid] = inc.src
        if not dry_run:
            try:
                _place(inc.src, dst, renamed)
            except FileExistsError:
                res.skipped.append((inc.src, f"{dst} appeared meanwhile (never overwritten)"))
                continue
        for folder, suffix in SIDE_FILES:
            s = inc.root / folder / f"{inc.cell.file_id}{suffix}"
            d = results / folder / f"{inc.dst_cell.file_id}{suffix}"
            if s.is_file() and not d.exists():
                with contextlib.suppress(FileExistsError):
                    if not dry_run:
                        _place(s, d, renamed)
                    res.side_files += 1
        res.taken.append(dst)
        res.sites[inc.dst_cell.site] += 1
        wl, h = inc.row["workload"], inc.row["config_hash"]
        if current is not None and h not in current.get(wl, ()):
            res.other_configs[(wl, h or "none")] += 1
    return res


def describe(res: ImportResult, results: str | os.PathLike, dry_run: bool = False) -> list[str]:
    """What import took and skipped, and why: the lines joulegrid import prints."""
    verb = "would take" if dry_run else "took"
    sites = ", ".join(f"{s}: {n}" for s, n in sorted(res.sites.items())) or "none"
    lines = [
        f"{verb} {len(res.taken)} run file(s) ({sites}) and {res.side_files} side file(s) (attempts, hotspots, logs) "
        f"into {results}/"
    ]
    if res.already:
        lines.append(f"skipped {len(res.already)} run file(s) already there (identical, or the same run_id)")
    for src, why in res.skipped:
        lines.append(f"skipped {src}: {why}")
    for (wl, h), n in sorted(res.other_configs.items()):
        lines.append(
            f"{n} of them measured {wl} with another configuration (config hash {h}) than the current one: they go to "
            "summary.other-configs.parquet, are never averaged with the current runs, and the report names them"
        )
    if not res.current_known:
        lines.append(
            f"no {results}/.stamps/current.json (no snakemake run here yet): which runs are of the current "
            "configuration is decided when snakemake aggregates"
        )
    if res.taken and not dry_run:
        lines.append("run `snakemake` (or `make run`) to rebuild the summary and the report with every site")
    return lines
