"""Hotspots: where a cell spends its time, from profiled passes run AFTER the measured window.

Two profilers, each over its own pass of the loop the runner measured (``phases.Phase.profile_pass``), so
that neither distorts the measured figures nor the other one:

- cProfile: the workload's own Python code and the libraries it calls. joulegrid's own frames (the loop,
  the precision's step, the meters) are left out of the ranking; the functions are ranked by SELF time,
  each with the call path that leads into it, and the self time is summed per group (``GROUPS``: the
  workload's own modules, then torch, numpy, data loading, Python, other libraries).
- torch.profiler: the operators by self time, the model's ``nn.Module`` hierarchy by name (forward ranges
  set by module hooks, backward attributed through the autograd sequence numbers), the pass's steps (data,
  forward, backward, optimizer, other) and, on CUDA, the kernels by device time. Its timeline is kept as a
  Chrome/Perfetto trace of the pass's first batches (``TRACE_BATCHES``).

The rows (columns: ``joulegrid.schema.HOTSPOT_COLUMNS``; ``kind`` says what a row is) are keyed by the run's
``run_id`` and written atomically to ``<results>/hotspots/<cell id>-<config hash>.parquet``, the trace next
to it as ``.trace.json``: side files of the run (not Snakemake outputs). ``collect(results_dir)`` reads them
all back as one polars DataFrame. What the report derives from them (energy per hotspot, the differences
between configurations) is in ``joulegrid.analysis.hotspots``.
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import logging
import math
import os
import pstats
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import (
    HOTSPOT_COLUMN_NAMES,
    HOTSPOT_IDENTITY,
    HOTSPOT_SCHEMA_VERSION,
    hotspot_arrow_schema,
    hotspots_to_table,
)

if TYPE_CHECKING:
    from .phases import ProfilePass

IDENTITY = HOTSPOT_IDENTITY  # copied from the run's identity columns into every hotspot row
log = logging.getLogger(__name__)
DEFAULT_TOP = 20

# cProfile's groups, in the order the report shows them: the workload's own code first.
GROUPS = ("workload", "torch", "numpy", "data loading", "python", "other libraries")
# library folders (relative to site-packages) that load data: their own group, before torch and numpy
DATA_LOADING = (
    "torch/utils/data/",
    "torchvision/datasets/",
    "torchvision/io/",
    "torchvision/transforms/",
    "PIL/",
    "pandas/",
    "pyarrow/",
    "polars/",
    "h5py/",
    "uproot/",
    "awkward/",
    "tables/",
    "datasets/",
    "webdataset/",
)
LOOP = "(loop)"  # a call path's entry from joulegrid's loop (its frames are not shown)
PATH_MAX = 8  # frames shown in a call path (the first two and the last ones, "…" between)

# torch.profiler: the ranges a profiled pass marks (phases.ProfilePass) and the module ranges' prefix
PASS = "joulegrid::pass"
RANGE = "joulegrid::"  # step, forward (phases.ProfilePass's marks)
MODULE = "nn.Module: "
BACKWARD = "autograd::engine::evaluate_function: "
OPTIMIZER = ("Optimizer.step#", "Optimizer.zero_grad#")
STEPS = ("data", "forward", "backward", "optimizer", "other")
MAX_ROWS = 500  # operators and modules kept per run (all of them in practice: the differences need both sides)
TRACE_BATCHES = 3  # batches of the pass kept in the trace file (its first ones: the shuffle, then the steps)
# each profiled pass runs at most PASS_SHARE of the measured window's batches (at least MIN_PASS_BATCHES) and at
# most measure.hotspot_batches: the profiling stays a bounded share of a cell's time (docs/benchmarks.md)
PASS_SHARE = 0.05
MIN_PASS_BATCHES = 3


def pass_batches(limit: int, measured: int) -> int:
    """Batches of each profiled pass: ``limit`` (measure.hotspot_batches), at most PASS_SHARE of the ``measured``
    window's batches but at least MIN_PASS_BATCHES (``limit`` when nothing was measured)."""
    if measured <= 0:
        return limit
    return max(1, min(limit, max(MIN_PASS_BATCHES, math.ceil(PASS_SHARE * measured))))


# ------------------------------------------------------------------ cProfile: the workload's own code
@dataclass
class Places:
    """Where a profiled function lives: the workload's own files, joulegrid's, the libraries', Python's."""

    workload_files: frozenset[str] = frozenset()  # the workload class's own module (a built-in's file)
    workload_dirs: tuple[str, ...] = ()  # the workload's package folder (a workload of your own)
    joulegrid_dir: str = field(default_factory=lambda: os.path.dirname(os.path.abspath(__file__)) + os.sep)
    lib_dirs: tuple[str, ...] = field(default_factory=lambda: _lib_dirs())
    std_dirs: tuple[str, ...] = field(default_factory=lambda: _std_dirs())

    @classmethod
    def of(cls, workload: Any) -> Places:
        """The places of ``workload``'s code (a workload instance or class; None: no workload)."""
        import inspect

        if workload is None:
            return cls()
        klass = workload if isinstance(workload, type) else type(workload)
        try:
            f = os.path.abspath(inspect.getsourcefile(klass) or "")
        except TypeError:
            return cls()
        base = cls()
        if f.startswith(base.joulegrid_dir):  # a built-in workload: its own module only
            return cls(workload_files=frozenset({f}))
        top = sys.modules.get(klass.__module__.split(".")[0])
        top_file = getattr(top, "__file__", None)
        if top_file and os.path.basename(top_file) == "__init__.py":  # a package: all its modules
            return cls(workload_files=frozenset({f}), workload_dirs=(os.path.dirname(top_file) + os.sep,))
        return cls(workload_files=frozenset({f}))

    def group(self, filename: str, func: str) -> tuple[str, str]:
        """(group, file as shown) of a function of cProfile's (``filename`` '~' for C functions); the group
        'joulegrid' for joulegrid's own frames (left out of the ranking)."""
        if filename == "~":  # a C function: "<built-in method torch._C._nn.linear>", "<method 'to' of ...>"
            if "torch" in func:
                return "torch", ""
            if "numpy" in func:
                return "numpy", ""
            return ("python" if "_lsprof" not in func else "profiler"), ""
        if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
            return "python", filename
        f = os.path.abspath(filename)
        if f in self.workload_files or any(f.startswith(d) for d in self.workload_dirs):
            anchor = next((d for d in self.workload_dirs if f.startswith(d)), None)
            anchor = os.path.dirname(anchor.rstrip(os.sep)) if anchor else os.path.dirname(self.joulegrid_dir[:-1])
            shown = os.path.relpath(f, anchor)
            return "workload", shown.removeprefix("joulegrid" + os.sep)
        if f.startswith(self.joulegrid_dir):
            return "joulegrid", os.path.relpath(f, os.path.dirname(self.joulegrid_dir[:-1]))
        for d in self.lib_dirs:
            if f.startswith(d):
                rel = f[len(d) :].replace(os.sep, "/")
                if rel.startswith(DATA_LOADING):
                    return "data loading", rel
                top = rel.split("/", 1)[0]
                if top in ("torch", "numpy"):
                    return top, rel
                return "other libraries", rel
        for d in self.std_dirs:
            if f.startswith(d):
                return "python", f[len(d) :].replace(os.sep, "/")
        return "workload", os.path.basename(f)  # the user's own code outside any library


def _lib_dirs() -> tuple[str, ...]:
    import site

    dirs = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")}
    with contextlib.suppress(Exception):
        dirs.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        dirs.add(site.getusersitepackages())
    return tuple(sorted((os.path.abspath(d) + os.sep for d in dirs if d), key=len, reverse=True))


def _std_dirs() -> tuple[str, ...]:
    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib")}
    return tuple(sorted((os.path.abspath(d) + os.sep for d in dirs if d), key=len, reverse=True))


def _short(key: tuple[str, int, str], shown: str) -> str:
    """A frame in a call path: 'file.py:function', or a C function's name."""
    filename, _line, func = key
    if filename == "~":
        if func.startswith("<built-in method ") or func.startswith("<built-in function "):
            return func.split(" ", 2)[2].rstrip(">")
        if func.startswith("<method '"):  # <method 'to' of 'torch._C.TensorBase' objects>
            name, _, rest = func[len("<method '") :].partition("'")
            owner = rest.split("'")[1].rsplit(".", 1)[-1] if "'" in rest else ""
            return f"{owner}.{name}" if owner else name
        return func
    return f"{os.path.basename(shown) or filename}:{func}"


def _label(key: tuple[str, int, str], shown: str) -> str:
    filename, line, func = key
    return func if filename == "~" else f"{shown or os.path.basename(filename)}:{line}({func})"


def call_path(stats: dict, key: tuple, where: dict[tuple, tuple[str, str]]) -> str:
    """The call path into ``key``, top-down: from the heaviest caller at each level (pstats' callers, by
    the cumulative time they spent calling), up to joulegrid's loop (``LOOP``: its frames are not shown) or
    the pass's start. Frames of torch's module call wrappers are left out; a long path keeps its first two
    and last frames."""
    chain = [key]
    seen = {key}
    k = key
    while len(chain) < 64:
        callers = stats.get(k, (0, 0, 0, 0, {}))[4]
        if not callers:
            break
        k = max(callers, key=lambda c: (callers[c][3], callers[c][1]))
        if k in seen:
            break
        if where.get(k, ("", ""))[0] in ("joulegrid", "profiler"):
            chain.append(LOOP)
            break
        seen.add(k)
        chain.append(k)
    frames = []
    for c in reversed(chain):
        if c == LOOP:
            frames.append(LOOP)
            continue
        shown = where.get(c, ("", ""))[1]
        if shown.startswith("torch/nn/modules/module.py") and c != key:
            continue  # Module._wrapped_call_impl / _call_impl: between every two module calls
        frames.append(_short(c, shown))
    if len(frames) > PATH_MAX:
        frames = frames[:2] + ["…"] + frames[-(PATH_MAX - 3) :]
    return " › ".join(frames)


def cprofile_rows(
    run: Callable[[], Any], top: int = DEFAULT_TOP, places: Places | None = None
) -> tuple[list[dict[str, Any]], float]:
    """Run ``run`` under cProfile: the top functions by self time (joulegrid's frames left out) with their
    call paths, and each group's self time (``GROUPS``); and the pass's wall time."""
    places = places or Places()
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    try:
        run()
    finally:
        pr.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(pr).stats  # {(file, line, func): (primitive calls, calls, tottime, cumtime, callers)}
    where = {k: places.group(k[0], k[2]) for k in st}
    ranked = sorted((k for k in st if where[k][0] in GROUPS), key=lambda k: (st[k][2], st[k][3]), reverse=True)
    frac = (lambda s: s / wall) if wall > 0 else (lambda s: None)
    rows: list[dict[str, Any]] = []
    for i, k in enumerate(ranked[:top], 1):
        _cc, nc, tt, ct, _ = st[k]
        group, shown = where[k]
        rows.append(
            dict(
                profiler="cprofile",
                kind="function",
                rank=i,
                function=_label(k, shown),
                group=group,
                file=shown or None,
                call_path=call_path(st, k, where),
                calls=int(nc),
                self_s=float(tt),
                cumulative_s=float(ct),
                fraction=frac(float(tt)),
                profiled_wall_s=wall,
            )
        )
    totals = {g: 0.0 for g in GROUPS}
    counts = {g: 0 for g in GROUPS}
    for k, (_cc, nc, tt, _ct, _) in st.items():
        g = where[k][0]
        if g in totals:
            totals[g] += tt
            counts[g] += int(nc)
    for i, g in enumerate(GROUPS, 1):
        if counts[g]:
            rows.append(
                dict(
                    profiler="cprofile",
                    kind="group",
                    rank=i,
                    function=g,
                    group=g,
                    calls=counts[g],
                    self_s=totals[g],
                    fraction=frac(totals[g]),
                    profiled_wall_s=wall,
                )
            )
    return rows, wall


# ------------------------------------------------------------------ torch.profiler: layers and operators
class TorchMarks:
    """phases.Marker for torch.profiler: ``with marks("step")`` a record_function range named
    ``joulegrid::step``; on CUDA a step's range ends after its kernels (synchronised), so that the step's
    wall time covers its GPU work as the measured loop's per-batch synchronisation does."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        import torch

        with torch.profiler.record_function(RANGE + name):
            yield
            if self.cuda and name == "step":
                torch.cuda.synchronize()

    def wrap(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def marked() -> Any:
            with self(name):
                return fn()

        return marked


def module_type(m: Any) -> str:
    """An nn.Module's class as shown: 'Linear', 'quantized Linear' (torch.ao's quantized modules share the
    float modules' class names)."""
    name = type(m).__name__
    mod = type(m).__module__ or ""
    return f"quantized {name}" if ".quantized" in mod and "quantized" not in name.lower() else name


def hookable(model: Any) -> str | None:
    """Why the module hierarchy of ``model`` is not profiled (None: it is): a torch.compile'd model runs its
    modules as one compiled graph (hooks on them would make dynamo compile again)."""
    if model is None:
        return "no model"
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    if dynamo is not None and isinstance(model, getattr(dynamo, "OptimizedModule", ())):
        return "compiled (torch.compile runs the modules as one graph)"
    if any(type(m).__name__ == "OptimizedModule" for m in model.modules()):
        return "compiled (torch.compile runs the modules as one graph)"
    return None


@contextlib.contextmanager
def module_ranges(model: Any) -> Iterator[dict[str, tuple[str, str]]]:
    """Forward hooks on every module of ``model`` that open and close a record_function range per call,
    named ``nn.Module: <name> (<class>)``; yields {range name: (module name, class)}; the hooks are removed
    after. The pre-hook runs first (prepend), so that the work of other pre-hooks (e.g. pruning's mask)
    counts as the module's."""
    import torch

    names: dict[str, tuple[str, str]] = {}
    by_id: dict[int, str] = {}
    for name, m in model.named_modules():
        shown = name or "(model)"
        rn = f"{MODULE}{shown} ({module_type(m)})"
        names[rn] = (shown, module_type(m))
        by_id[id(m)] = rn
    open_: dict[int, list[Any]] = {}

    def pre(m, _args):
        rf = torch.profiler.record_function(by_id[id(m)])
        rf.__enter__()
        open_.setdefault(id(m), []).append(rf)

    def post(m, _args, _out):
        stack = open_.get(id(m))
        if stack:
            stack.pop().__exit__(None, None, None)

    handles = []
    try:
        for _, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(pre, prepend=True))
            handles.append(m.register_forward_hook(post, always_call=True))
        yield names
    finally:
        for h in handles:
            h.remove()


def _us(e: Any, attr: str) -> float:
    return float(getattr(e, attr, 0.0) or 0.0)


def _is_kernel(e: Any) -> bool:
    dt = getattr(e, "device_type", None)
    return dt is not None and getattr(dt, "name", str(dt)).upper() in ("CUDA", "PRIVATEUSE1", "XPU", "MTIA")


def operator_rows(averages: Any, cuda: bool, pass_s: float) -> list[dict[str, Any]]:
    """torch.profiler's key_averages as rows: the operators (CPU events but joulegrid's ranges) by self time
    -- on CUDA by the device time of the kernels they launched -- and, on CUDA, the kernels by device time."""
    ops, kernels = [], []
    for e in averages:
        name = str(e.key)
        if name.startswith((RANGE, MODULE)) or name.startswith("ProfilerStep"):
            continue
        self_cpu = _us(e, "self_cpu_time_total") / 1e6
        self_dev = _us(e, "self_device_time_total") / 1e6 if cuda else None
        if _is_kernel(e):
            kernels.append((self_dev or 0.0, name, e, self_dev))
            continue
        rank_s = (self_dev or 0.0) if cuda else self_cpu
        if self_cpu <= 0 and not self_dev:
            continue
        ops.append((rank_s, self_cpu, name, e, self_dev))
    rows: list[dict[str, Any]] = []
    frac = (lambda s: s / pass_s) if pass_s > 0 else (lambda s: None)
    ops.sort(key=lambda t: (t[0], t[1]), reverse=True)
    for i, (rank_s, self_cpu, name, e, self_dev) in enumerate(ops[:MAX_ROWS], 1):
        rows.append(
            dict(
                kind="operator",
                rank=i,
                function=name,
                calls=int(e.count),
                self_s=self_cpu,
                cumulative_s=_us(e, "cpu_time_total") / 1e6,
                device_self_s=self_dev,
                fraction=frac(rank_s),
            )
        )
    kernels.sort(key=lambda t: t[0], reverse=True)
    for i, (dev, name, e, self_dev) in enumerate(kernels[:MAX_ROWS], 1):
        rows.append(
            dict(kind="kernel", rank=i, function=name, calls=int(e.count), device_self_s=self_dev, fraction=frac(dev))
        )
    return rows


def _ancestors(e: Any) -> Iterator[Any]:
    p = getattr(e, "cpu_parent", None)
    while p is not None:
        yield p
        p = getattr(p, "cpu_parent", None)


def timeline_rows(events: list[Any], modules: dict[str, tuple[str, str]], cuda: bool) -> tuple[list[dict], float]:
    """The pass's steps and its modules from torch.profiler's events (``prof.events()``), and the pass's time.

    Steps: data (the pass outside its steps: the shuffle, the batches sliced and moved), forward (the loss or
    infer_batch), backward (the autograd engine's functions), optimizer (Optimizer.step / zero_grad), other
    (the rest of the steps: the precision's scaler, Python). Modules: per nn.Module name, its forward (its
    ranges, submodules included) and its backward: the autograd functions whose forward operator ran inside
    it (matched by sequence number and thread), submodules included; ``self_s`` without its submodules."""
    pass_s = sum(_us(e, "cpu_time_total") for e in events if e.name == PASS) / 1e6
    dev = (lambda e: _us(e, "device_time_total") / 1e6) if cuda else (lambda e: 0.0)
    t: dict[str, float] = {k: 0.0 for k in ("step", "forward", "backward", "optimizer")}
    d: dict[str, float] = dict(t)
    n: dict[str, int] = {k: 0 for k in t}
    kernel_s = sum(_us(e, "device_time_total") for e in events if _is_kernel(e)) / 1e6 if cuda else 0.0

    mod_of: dict[int, str | None] = {}  # event id -> its innermost module range's name (None: outside)

    def module_of(e: Any) -> str | None:
        key = id(e)
        if key not in mod_of:
            if e.name in modules:
                mod_of[key] = e.name
            else:
                p = getattr(e, "cpu_parent", None)
                mod_of[key] = module_of(p) if p is not None else None
        return mod_of[key]

    fwd_s = {k: 0.0 for k in modules}
    fwd_dev = {k: 0.0 for k in modules}
    child_s = {k: 0.0 for k in modules}
    calls = {k: 0 for k in modules}
    seq_module: dict[tuple[int, int], str] = {}
    backward_nodes = []
    for e in events:
        name = e.name
        if name in modules:
            fwd_s[name] += _us(e, "cpu_time_total") / 1e6
            fwd_dev[name] += dev(e)
            calls[name] += 1
            p = next((a for a in _ancestors(e) if a.name in modules), None)
            if p is not None:
                child_s[p.name] += _us(e, "cpu_time_total") / 1e6
            continue
        if name.startswith(BACKWARD):
            if not any(a.name.startswith(BACKWARD) for a in _ancestors(e)):
                t["backward"] += _us(e, "cpu_time_total") / 1e6
                d["backward"] += dev(e)
                n["backward"] += 1
                backward_nodes.append(e)
            continue
        if name.startswith(RANGE) and name != PASS:
            part = name[len(RANGE) :]
            if part in t:
                t[part] += _us(e, "cpu_time_total") / 1e6
                d[part] += dev(e)
                n[part] += 1
            continue
        if name.startswith(OPTIMIZER):
            if not any(a.name.startswith(OPTIMIZER) for a in _ancestors(e)):
                t["optimizer"] += _us(e, "cpu_time_total") / 1e6
                d["optimizer"] += dev(e)
                n["optimizer"] += 1
            continue
        seq = getattr(e, "sequence_nr", -1)
        if modules and seq is not None and seq >= 0:
            m = module_of(e)
            if m is not None:
                seq_module.setdefault((int(getattr(e, "thread", 0)), int(seq)), m)

    frac = (lambda s: s / pass_s) if pass_s > 0 else (lambda s: None)
    rows: list[dict[str, Any]] = []
    # the steps: they add up to the pass
    other = max(t["step"] - t["forward"] - t["backward"] - t["optimizer"], 0.0)
    other_dev = max(d["step"] - d["forward"] - d["optimizer"], 0.0)  # backward kernels: on autograd's thread
    parts = {
        "data": (max(pass_s - t["step"], 0.0), max(kernel_s - d["step"] - d["backward"], 0.0), None),
        "forward": (t["forward"], d["forward"], n["forward"]),
        "backward": (t["backward"], d["backward"], n["backward"]),
        "optimizer": (t["optimizer"], d["optimizer"], n["optimizer"]),
        "other": (other, other_dev, None),
    }
    for i, name in enumerate(STEPS, 1):
        s, ds, c = parts[name]
        if name in ("backward", "optimizer") and not c:
            continue  # inference
        rows.append(
            dict(
                kind="step",
                rank=i,
                function=name,
                calls=c,
                self_s=s,
                cumulative_s=s,
                device_self_s=ds if cuda else None,
                fraction=frac(s),
            )
        )
    if not modules:
        return rows, pass_s
    # backward per module: each autograd function to the module its forward operator ran in
    bwd_self = {k: 0.0 for k in modules}
    bwd_dev = {k: 0.0 for k in modules}
    for e in backward_nodes:
        m = seq_module.get((int(getattr(e, "fwd_thread", 0) or 0), int(getattr(e, "sequence_nr", -1))))
        if m is not None:
            bwd_self[m] += _us(e, "cpu_time_total") / 1e6
            bwd_dev[m] += dev(e)
    path = {k: v[0] for k, v in modules.items()}
    by_path = {v[0]: k for k, v in modules.items()}

    def parent(rn: str) -> str | None:
        p = path[rn]
        if p == "(model)":
            return None
        return by_path.get(p.rsplit(".", 1)[0] if "." in p else "(model)")

    bwd_incl = dict(bwd_self)
    bwd_dev_incl = dict(bwd_dev)
    for rn in sorted(modules, key=lambda r: path[r].count(".") + (path[r] != "(model)"), reverse=True):
        p = parent(rn)
        if p is not None:
            bwd_incl[p] += bwd_incl[rn]
            bwd_dev_incl[p] += bwd_dev_incl[rn]
    mrows = []
    for rn, (mpath, mtype) in modules.items():
        if not calls[rn]:
            continue
        incl = fwd_s[rn] + bwd_incl[rn]
        own = max(fwd_s[rn] - child_s[rn], 0.0) + bwd_self[rn]
        depth = 0 if mpath == "(model)" else mpath.count(".") + 1
        mrows.append(
            dict(
                kind="module",
                function=mpath,
                module_type=mtype,
                depth=depth,
                calls=calls[rn],
                self_s=own,
                cumulative_s=incl,
                forward_s=fwd_s[rn],
                backward_s=bwd_incl[rn] if n["backward"] else None,
                device_self_s=(fwd_dev[rn] + bwd_dev_incl[rn]) if cuda else None,
                fraction=frac(incl),
            )
        )
    mrows.sort(key=lambda r: (r["cumulative_s"], -r["depth"]), reverse=True)
    for i, r in enumerate(mrows[:MAX_ROWS], 1):
        r["rank"] = i
    return rows + mrows[:MAX_ROWS], pass_s


def trim_trace(path: str | Path, batches: int = TRACE_BATCHES) -> dict[str, Any]:
    """torch.profiler's Chrome trace at ``path`` cut after the pass's first ``batches`` steps (the events
    that start after the end of that step are dropped; metadata kept), as a dict."""
    with open(path, encoding="utf-8") as fh:
        trace = json.load(fh)
    events = trace.get("traceEvents") or []
    steps = sorted(
        float(e["ts"]) + float(e.get("dur", 0)) for e in events if e.get("name") == RANGE + "step" and "ts" in e
    )
    if len(steps) > batches:
        cut = steps[batches - 1]
        trace["traceEvents"] = [e for e in events if e.get("ph") == "M" or "ts" not in e or float(e["ts"]) <= cut]
    trace.setdefault("otherData", {})
    trace["otherData"]["joulegrid"] = f"the first {min(batches, len(steps))} batch(es) of the profiled pass"
    return trace


def torch_rows(
    pp: ProfilePass, device: str, top: int = DEFAULT_TOP, trace: bool = True
) -> tuple[list[dict[str, Any]], float, dict[str, Any] | None, tuple[int, int]]:
    """Run the pass under torch.profiler (its parts marked, its modules' forward ranged): the rows
    (operators, kernels on CUDA, steps, modules), the pass's time, its trimmed Chrome trace (``trace``) and
    what it ran (batches, samples)."""
    import tempfile

    import torch
    from torch.autograd import profiler as autograd_profiler

    cuda = device == "cuda" and torch.cuda.is_available()
    marks = TorchMarks(cuda)
    why_not = hookable(pp.model)
    ranges = module_ranges(pp.model) if why_not is None else contextlib.nullcontext({})
    # torch.profiler.profile's kineto profiler without its wrapper: the wrapper's start asks
    # hasattr(torch, "_inductor"), which imports torch._dynamo (2-6 s) in a process that has not
    # (inference cells); the events, averages and trace are the same
    with autograd_profiler.profile(use_device="cuda" if cuda else None, use_kineto=True) as prof:
        with torch.profiler.record_function(PASS), ranges as modules:
            ran = pp.run(marks)
            if cuda:
                torch.cuda.synchronize()
    events = list(prof.function_events)
    steps, pass_s = timeline_rows(events, modules, cuda)
    ops = operator_rows(prof.key_averages(), cuda, pass_s)
    kept_ops = [r for r in ops if r["kind"] == "operator"]
    kernels = [r for r in ops if r["kind"] == "kernel"][:top]
    trace_doc = None
    if trace:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "trace.json"
                prof.export_chrome_trace(str(p))
                trace_doc = trim_trace(p)
        except Exception as e:  # noqa: BLE001 - the trace is an extra: the rows do not need it
            log.warning("hotspots: the trace could not be written: %s: %s", type(e).__name__, e)
    rows = [*steps, *kept_ops, *kernels]
    for r in rows:
        r.update(profiler="torch", profiled_wall_s=pass_s)
    if why_not is not None and pp.model is not None:
        log.info("hotspots: no module breakdown: %s", why_not)
    return rows, pass_s, trace_doc, ran


# ------------------------------------------------------------------ both, for one cell
@dataclass
class Profile:
    """What the profilers found for one cell: the rows, the trace (a dict, written by ``write``) and the
    passes' wall time, profilers included."""

    rows: list[dict[str, Any]]
    trace: dict[str, Any] | None
    seconds: float


def profile(
    pp: ProfilePass, device: str, identity: dict[str, Any], top: int = DEFAULT_TOP, workload: Any = None
) -> Profile:
    """Profile two passes of ``pp`` (cProfile, then torch.profiler). Returns the hotspot rows (IDENTITY copied
    from the run's identity columns, spec.identity_columns), the torch pass's trimmed trace and the total
    wall time."""
    ident = {k: identity.get(k) for k in IDENTITY}
    t0 = time.perf_counter()
    ran: dict[str, tuple[int, int]] = {}

    def cprofile_pass() -> None:
        ran["cprofile"] = pp.run(None)

    crows, _ = cprofile_rows(cprofile_pass, top, Places.of(workload))
    trows, _, trace, ran["torch"] = torch_rows(pp, device, top)
    out = []
    for prof, rows in (("cprofile", crows), ("torch", trows)):
        b, n = ran.get(prof, (None, None))
        for r in rows:
            out.append({**ident, **r, "profiled_batches": b, "profiled_samples": n, "profiled_pass": pp.what})
    return Profile(out, trace, time.perf_counter() - t0)


# ------------------------------------------------------------------ files
def path_for(run_file: str | Path, cell_id: str) -> Path:
    """Where a run's hotspots go: <results>/hotspots/<file id>.parquet for <results>/runs/<file id>.parquet,
    else next to the run file as <name>.hotspots.parquet (run files written by hand elsewhere).
    cell_id: the cell's file id (grid.Cell.file_id: its id and config hash)."""
    p = Path(run_file)
    tail = Path("runs") / f"{cell_id}.parquet"
    parts = tail.parts
    if len(p.parts) >= len(parts) and p.parts[-len(parts) :] == parts:
        results = Path(*p.parts[: -len(parts)]) if len(p.parts) > len(parts) else Path(".")
        return results / "hotspots" / f"{cell_id}.parquet"
    return p.with_name(p.name.removesuffix(".parquet") + ".hotspots.parquet")


TRACE_SUFFIX = ".trace.json"


def trace_path(hotspots_file: str | Path) -> Path:
    """The Chrome/Perfetto trace beside a hotspots file: <name>.trace.json for <name>.parquet."""
    p = Path(hotspots_file)
    return p.with_name(p.name.removesuffix(".parquet") + TRACE_SUFFIX)


def write(rows: list[dict[str, Any]], path: str | Path, trace: dict[str, Any] | None = None) -> None:
    """The rows to ``path`` (atomically) and the trace beside it (``trace_path``; its name in the torch rows'
    trace_file, relative to the hotspots file's folder)."""
    from .io import atomic_path, write_table

    if trace is not None:
        tp = trace_path(path)
        tp.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(tp, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(trace, separators=(",", ":")), encoding="utf-8")
        rows = [{**r, "trace_file": tp.name} if r.get("profiler") == "torch" else r for r in rows]
    write_table(hotspots_to_table(rows), path)


def merge_files(files: list[tuple[str, Path]], path: str | Path) -> None:
    """Several runs' hotspot files (``(tag, file)``: a quadruple's runs, each written by its own run-cell) as one
    file at ``path`` (atomically), each run's trace copied beside it as ``<name>.<tag>.trace.json`` and its rows'
    trace_file naming that copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .io import atomic_path, write_table

    dest = Path(path)
    tables = []
    for tag, f in files:
        t = pq.read_table(f)
        src = trace_path(f)
        if src.is_file():
            tp = dest.with_name(dest.name.removesuffix(".parquet") + f".{tag}{TRACE_SUFFIX}")
            tp.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(tp, suffix=".json") as tmp:
                Path(tmp).write_bytes(src.read_bytes())
            vals = [None if v is None else tp.name for v in t["trace_file"].to_pylist()]
            t = t.set_column(t.column_names.index("trace_file"), "trace_file", pa.array(vals, pa.string()))
        tables.append(t)
    write_table(pa.concat_tables(tables), dest)


def _read(f: Path, schema: Any, results_dir: Path) -> tuple[Any, str | None]:
    """One hotspots file as a table of the current schema, and a note: hotspot schema v1 (joulegrid before
    issue 25) is read as v2 (its torch rows as operators; its cProfile rows, ranked by cumulative time with
    joulegrid's frames among them, are left out)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(f)
    meta = t.schema.metadata or {}
    version = int(meta.get(b"joulegrid.hotspot_schema_version", b"1"))
    note = None
    if version < HOTSPOT_SCHEMA_VERSION:
        if version != 1:
            raise ValueError(f"hotspot schema version {version} is not known")
        t = t.filter(pc.equal(t["profiler"], "torch"))
        t = t.append_column("kind", pa.array(["operator"] * t.num_rows, pa.string()))
        note = "v1"
    elif version > HOTSPOT_SCHEMA_VERSION:
        raise ValueError(
            f"written with hotspot schema version {version}, newer than this joulegrid's "
            f"{HOTSPOT_SCHEMA_VERSION}: read it with that joulegrid"
        )
    for c in HOTSPOT_COLUMN_NAMES:
        if c not in t.column_names:
            t = t.append_column(c, pa.nulls(t.num_rows, schema.field(c).type))
    t = t.select(list(HOTSPOT_COLUMN_NAMES)).cast(schema)
    if t.num_rows:  # the trace's name, relative to this file's folder -> relative to the results folder
        rel = f.parent.relative_to(results_dir)
        vals = [None if v is None else (rel / v).as_posix() for v in t["trace_file"].to_pylist()]
        t = t.set_column(t.column_names.index("trace_file"), "trace_file", pa.array(vals, pa.string()))
    return t, note


def collect(results_dir: str | Path = "results", run_ids: list[str] | None = None, notes: list[str] | None = None):
    """Every hotspots file under <results_dir>/hotspots as one polars DataFrame (HOTSPOT_COLUMNS).

    run_ids: keep only these runs (e.g. the run_ids of the summary). trace_file: the trace's path relative to
    ``results_dir``. Files of hotspot schema v1 are read (their operators; their cProfile rows left out) and
    counted in ``notes``; unreadable files are skipped and named there and in the log. An empty, typed frame
    when there are none.
    """
    import polars as pl

    schema = hotspot_arrow_schema()
    tables = []
    base = Path(results_dir) / "hotspots"
    old, bad = 0, []
    for f in sorted(base.rglob("*.parquet")) if base.is_dir() else []:
        if f.name.startswith("."):
            continue  # an atomic write in progress
        try:
            t, note = _read(f, schema, Path(results_dir))
        except Exception as e:  # noqa: BLE001 - a file that cannot be read is named and skipped
            log.warning("hotspots: skipped %s: %s: %s", f, type(e).__name__, e)
            bad.append(f"{f.relative_to(base)}: {type(e).__name__}: {e}")
            continue
        old += note == "v1"
        tables.append(t)
    if notes is not None:
        if old:
            notes.append(
                f"{old} hotspot file(s) written by an older joulegrid (hotspot schema v1): their operators are shown, "
                "their cProfile rows (ranked by cumulative time, joulegrid's own frames among them) are left out; "
                "`joulegrid remeasure` the cells to profile them again"
            )
        if bad:
            notes.append(f"{len(bad)} hotspot file(s) left out: " + "; ".join(bad[:3]))
    if not tables:
        return pl.from_arrow(schema.empty_table())
    import pyarrow as pa

    df = pl.from_arrow(pa.concat_tables(tables))
    if run_ids is not None:
        df = df.filter(pl.col("run_id").is_in(list(run_ids)))
    return df
