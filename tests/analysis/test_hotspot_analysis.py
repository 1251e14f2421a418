"""joulegrid.analysis.hotspots on synthetic hotspot rows: per-batch times, the modelled energy per hotspot,
the mean over a cell's runs, "why it differs" (per batch, per sample across batch sizes) -- each figure
computed here by hand -- and the pure parts of joulegrid.hotspots (where a frame belongs, the trace cut,
hotspot files of schema v1)."""

from __future__ import annotations

import json
import os
import sysconfig
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joulegrid import hotspots as H
from joulegrid import schema as S
from joulegrid.analysis import hotspots as A

WALL, BATCHES = 0.5, 5  # every synthetic pass: 0.5 s over 5 batches


def identity(rid, precision, bs, cell_id=None) -> dict:
    """The cell columns of a hotspot row of a baler_ae training run (repeat 0)."""
    return dict(
        run_id=rid,
        cell_id=cell_id or f"local/baler_ae/train/cpu/{precision}/bs{bs}/r0",
        site="local",
        workload="baler_ae",
        phase="train",
        device="cpu",
        precision=precision,
        variant="baseline",
        batch_size=bs,
        repeat=0,
    )


def run(precision="fp32", bs=256, energy_j=10.0, n_batches=100, **steps_ops):
    """A run's row and its torch hotspot rows: kind:name=seconds of the pass (fraction = s / WALL)."""
    rid = uuid.uuid4().hex
    ident = identity(rid, precision, bs)
    rows = []
    for key, s in steps_ops.items():
        kind, name = key.split("__", 1)
        rows.append(
            dict(
                ident,
                profiler="torch",
                kind=kind,
                rank=1,
                function=name.replace("_", "::", 1) if kind == "operator" else name,
                self_s=s,
                fraction=s / WALL,
                profiled_wall_s=WALL,
                profiled_batches=BATCHES,
                profiled_samples=BATCHES * bs,
            )
        )
    r = dict(run_id=rid, status="ok", config_hash="h", energy_j=energy_j, n_batches=n_batches, energy_estimated=False)
    return r, rows


def frames(*runs):
    hs = pl.from_arrow(S.hotspots_to_table([h for _, rows in runs for h in rows]))
    return hs, pl.from_dicts([r for r, _ in runs])


def test_per_batch_time_and_modelled_energy_by_time_share():
    r, rows = run(step__forward=0.2, step__backward=0.25, step__data=0.05, operator__aten_mm=0.15)
    d = A.joined(*frames((r, rows)))
    mm = d.filter(pl.col("function") == "aten::mm").row(0, named=True)
    assert mm["ms_per_batch"] == pytest.approx(0.15 / BATCHES * 1000)  # 30 ms per batch
    assert mm["pct_of_step"] == pytest.approx(30.0)
    # modelled: the measured phase's energy per batch (10 J / 100 batches) x the time share (0.3)
    assert mm["energy_per_batch_modelled_mj"] == pytest.approx(10.0 / 100 * 0.3 * 1000)
    assert mm["energy_modelled_j"] == pytest.approx(10.0 * 0.3)
    assert mm["energy_basis"] == "modelled: measured phase energy x time share"


def test_a_cells_runs_are_averaged_and_a_missing_row_counts_as_zero():
    a = run(step__forward=0.2, operator__aten_mm=0.1)
    b = run(step__forward=0.3)  # this run's pass had no aten::mm
    b[1][0]["cell_id"] = a[1][0]["cell_id"]
    pc = A.per_cell(A.joined(*frames(a, b)))
    fwd = pc.filter(pl.col("function") == "forward").row(0, named=True)
    mm = pc.filter(pl.col("function") == "aten::mm").row(0, named=True)
    assert fwd["runs"] == 2 and fwd["ms_per_batch"] == pytest.approx((0.2 + 0.3) / 2 / BATCHES * 1000)
    assert mm["ms_per_batch"] == pytest.approx((0.1 + 0) / 2 / BATCHES * 1000)


def test_why_bf16_differs_from_fp32_per_batch():
    base = run("fp32", step__forward=0.2, step__backward=0.2, operator__aten_mm=0.1, operator__aten_addmm=0.05)
    bf16 = run("bf16", step__forward=0.3, step__backward=0.25, operator__aten_mm=0.08, operator__aten__to_copy=0.12)
    other = run("fp32", bs=1024, step__forward=0.5)  # another batch size: not bf16's baseline
    pc = A.per_cell(A.joined(*frames(base, bf16, other)))
    pr = A.pairs(A.profiled_cells(pc))
    d = A.differences(pc, pr).filter(pl.col("precision") == "bf16")
    assert set(d["base_batch_size"]) == {256} and set(d["axis"]) == {"precision / variant"}
    ms = lambda s: s / BATCHES * 1000  # noqa: E731
    got = {r["function"]: r for r in d.to_dicts()}
    assert got["aten::_to_copy"]["change"] == "new" and got["aten::_to_copy"]["d_ms"] == pytest.approx(ms(0.12))
    assert got["aten::addmm"]["change"] == "gone" and got["aten::addmm"]["d_ms"] == pytest.approx(-ms(0.05))
    assert got["aten::mm"]["change"] == "shrank"
    # the step's change: +0.1 s forward, +0.05 s backward; each row's share of it
    d_step = ms(0.15)
    assert got["forward"]["of_delta_pct"] == pytest.approx(ms(0.1) / d_step * 100)
    assert got["aten::_to_copy"]["of_delta_pct"] == pytest.approx(ms(0.12) / d_step * 100)
    # the modelled energy per batch on both sides (both runs: 10 J over 100 batches)
    assert got["aten::_to_copy"]["d_mj"] == pytest.approx(0.1 * 1000 * 0.12 / WALL)
    # within a kind, by the size of the change
    ops = d.filter(pl.col("kind") == "operator")["function"].to_list()
    assert ops == ["aten::_to_copy", "aten::addmm", "aten::mm"]


def test_a_larger_batch_against_the_smallest_per_sample():
    small = run("fp32", bs=256, step__forward=0.2)
    large = run("fp32", bs=1024, step__forward=0.5)
    pc = A.per_cell(A.joined(*frames(small, large)))
    d = A.differences(pc, A.pairs(A.profiled_cells(pc))).row(0, named=True)
    assert d["axis"] == "batch size" and d["per_sample"]
    # the baseline's time per batch of 256 scaled to a batch of 1024: 4 x 40 ms
    assert d["base_ms"] == pytest.approx(4 * 0.2 / BATCHES * 1000) and d["ms"] == pytest.approx(0.5 / BATCHES * 1000)


def test_where_a_profiled_frame_belongs(tmp_path):
    p = H.Places(workload_dirs=(str(tmp_path / "mypkg") + os.sep,))
    lib = sysconfig.get_paths()["purelib"]
    std = sysconfig.get_paths()["stdlib"]
    assert p.group(str(tmp_path / "mypkg" / "prep.py"), "normalise") == ("workload", "mypkg/prep.py")
    assert p.group(os.path.join(lib, "torch", "nn", "modules", "linear.py"), "forward")[0] == "torch"
    assert p.group(os.path.join(lib, "torch", "utils", "data", "dataloader.py"), "__next__")[0] == "data loading"
    assert p.group(os.path.join(lib, "numpy", "core", "x.py"), "f")[0] == "numpy"
    assert p.group(os.path.join(std, "json", "decoder.py"), "decode") == ("python", "json/decoder.py")
    assert p.group(H.__file__, "profile")[0] == "joulegrid"
    assert p.group("~", "<built-in method torch._C._nn.linear>") == ("torch", "")
    assert p.group("~", "<method 'disable' of '_lsprof.Profiler' objects>")[0] == "profiler"


def test_the_trace_keeps_the_first_batches(tmp_path):
    ev = [{"ph": "M", "name": "process_name"}]
    for i in range(5):  # five steps of 10 us, an operator in each
        ev += [
            {"ph": "X", "name": "joulegrid::step", "ts": 100 * i, "dur": 10},
            {"ph": "X", "name": "aten::addmm", "ts": 100 * i + 1, "dur": 5},
        ]
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"traceEvents": ev}))
    t = H.trim_trace(f, batches=3)
    names = [e["name"] for e in t["traceEvents"]]
    assert names.count("joulegrid::step") == 3 and names.count("aten::addmm") == 3 and "process_name" in names
    assert "first 3 batch(es)" in t["otherData"]["joulegrid"]


def test_a_hotspot_file_of_schema_v1_is_read_with_its_operators(tmp_path):
    r, rows = run(operator__aten_mm=0.1)
    old = {c: [rows[0].get(c)] * 2 for c in ("run_id", "cell_id", "profiler", "rank", "function", "self_s")}
    old["profiler"] = ["torch", "cprofile"]
    f = tmp_path / "hotspots" / "x.parquet"
    f.parent.mkdir()
    pq.write_table(pa.table(old), f)  # no schema version in its metadata: v1
    notes: list[str] = []
    df = H.collect(tmp_path, notes=notes)
    assert df.height == 1 and df["kind"].to_list() == ["operator"] and df["profiler"].to_list() == ["torch"]
    assert "hotspot schema v1" in notes[0]


def test_a_profiled_pass_is_a_bounded_share_of_the_measured_batches():
    # measure.hotspot_batches 10: 5 % of the window's batches, at least 3, at most 10 (and 10 with no window)
    assert [H.pass_batches(10, n) for n in (0, 1, 40, 66, 100, 255, 10_000)] == [10, 3, 3, 4, 5, 10, 10]
    assert H.pass_batches(2, 1000) == 2 and H.pass_batches(1, 5) == 1


# ------------------------------------------------------------------ code versions (a versions campaign)
def vrun(version, precision="fp32", bs=256, rows=None, cell_id=None, run_id=None):
    """A run of code version ``version`` and its hotspot rows: {(kind, name): seconds of the pass}; function and
    group rows are cProfile's (their own pass, same WALL and BATCHES here), the others torch's."""
    r, _ = run(precision, bs)
    rid = run_id or r["run_id"]
    r.update(run_id=rid, code_version=version)
    ident = identity(rid, precision, bs, cell_id)
    hs = [
        dict(
            ident,
            profiler="cprofile" if kind in ("function", "group") else "torch",
            kind=kind,
            rank=1,
            function=name,
            group="workload" if kind == "function" and name.startswith("prep.py") else None,
            call_path="(loop) › prep.py:normalise" if kind == "function" else None,
            self_s=s,
            fraction=s / WALL,
            profiled_wall_s=WALL,
            profiled_batches=BATCHES,
            profiled_samples=BATCHES * bs,
        )
        for (kind, name), s in (rows or {}).items()
    ]
    return r, hs


NORMALISE = "prep.py:12(normalise)"


def version_rows(version: str, grow: float = 0.0) -> dict:
    """One version's profile: head's planted change is ``grow`` s more in the workload's normalise (cProfile)
    and, for the step, in the forward step and aten::add; everything else the same."""
    return {
        ("step", "forward"): 0.2 + grow,
        ("step", "backward"): 0.2,
        ("operator", "aten::addmm"): 0.1,
        ("operator", "aten::add"): 0.01 + grow,
        ("module", "encoder"): 0.15,
        ("function", NORMALISE): 0.02 + grow,
        ("function", "linear"): 0.1,
        ("group", "workload"): 0.03 + grow,
        ("group", "torch"): 0.3 + grow / 5,
    }


def test_why_head_differs_from_base_with_the_grown_function_first():
    ms = lambda s: s / BATCHES * 1000  # noqa: E731
    grow = 0.1
    runs = [
        vrun(v, p, bs, version_rows(v, grow if v == "head" else 0.0))
        for v in ("base", "head")
        for p, bs in (("fp32", 256), ("bf16", 256), ("fp32", 1024))
    ]
    pc = A.per_cell(A.joined(*frames(*runs)))
    pr = A.pairs(A.profiled_cells(pc))
    got = {
        (r["axis"], r["code_version"], r["precision"], r["batch_size"]): (
            r["base_code_version"],
            r["base_precision"],
            r["base_batch_size"],
        )
        for r in pr.to_dicts()
    }
    # head against base per cell; precision and batch size within one version, never across
    assert got == {
        ("code version", "head", "fp32", 256): ("base", "fp32", 256),
        ("code version", "head", "bf16", 256): ("base", "bf16", 256),
        ("code version", "head", "fp32", 1024): ("base", "fp32", 1024),
        ("precision / variant", "head", "bf16", 256): ("head", "fp32", 256),
        ("precision / variant", "base", "bf16", 256): ("base", "fp32", 256),
        ("batch size", "head", "fp32", 1024): ("head", "fp32", 256),
        ("batch size", "base", "fp32", 1024): ("base", "fp32", 256),
    }
    d = A.differences(pc, pr)
    # cProfile's functions only where the code changed
    assert set(d.filter(pl.col("kind").is_in(["function", "group"]))["axis"]) == {"code version"}
    one = d.filter((pl.col("axis") == "code version") & (pl.col("precision") == "fp32") & (pl.col("batch_size") == 256))
    funcs = one.filter(pl.col("kind") == "function").to_dicts()
    assert funcs[0]["function"] == NORMALISE and funcs[0]["change"] == "grew"  # the top grown function
    assert funcs[0]["d_ms"] == pytest.approx(ms(grow)) and funcs[0]["group"] == "workload"
    assert funcs[0]["call_path"] == "(loop) › prep.py:normalise"
    # its share of the change of the cProfile pass (the groups' total: +grow in workload, +grow/5 in torch)
    assert funcs[0]["of_delta_pct"] == pytest.approx(grow / (grow + grow / 5) * 100)
    ops = one.filter(pl.col("kind") == "operator").to_dicts()
    assert ops[0]["function"] == "aten::add" and ops[0]["of_delta_pct"] == pytest.approx(100.0)  # the step's Δ
    assert one.filter(pl.col("kind") == "step")["d_ms"].sum() == pytest.approx(ms(grow))
    # the report's table of the pair names the function, and hotspot-diffs.csv's columns are all there
    table = A.diff_table(one, cuda=False)
    assert NORMALISE in table["name"].to_list() and set(A.DIFF_CSV_COLUMNS) <= set(d.columns)


def test_compare_names_the_grown_function_of_a_regressed_cell(tmp_path, capsys):
    """docs/compare.md: `joulegrid compare`'s Markdown lists, per regressed cell, what grew from base to head in
    the profiled passes (quadruple 0's four runs, hotspot files as the quadruple job writes them)."""
    import math

    import synth

    from joulegrid.analysis import compare as C
    from joulegrid.cli import main
    from joulegrid.grid import Cell
    from joulegrid.versions import slots

    ms = lambda s: s / BATCHES * 1000  # noqa: E731
    rows, hs = [], []
    grows = {1: 0.08, 2: 0.12}  # head's normalise in its two profiled runs: the mean is compared
    seen_head = 0
    for q in range(3):
        cell = Cell("local", "baler_ae", "train", "cpu", "fp32", "baseline", 256, q, config_hash="0" * 16)
        for slot, label in enumerate(slots(q)):
            if slot == 0:
                continue  # the warm-up: not in the summary
            eps = 1e-3 * (1.5 if label == "head" else 1.0) * math.exp(0.01 * slot)
            r = synth.row(cell, energy_per_sample_j=eps, code_version=label, code_commit=label * 5, code_slot=slot)
            r["config_hash"] = "0" * 16
            rows.append(r)
            if q == 0:
                grow = 0.0
                if label == "head":
                    seen_head += 1
                    grow = grows[seen_head]
                _, h = vrun(label, rows=version_rows(label, grow), cell_id=cell.id, run_id=r["run_id"])
                hs += h
    synth.summary(tmp_path / "summary.parquet", rows)
    H.write(hs, H.path_for(tmp_path / "runs" / "r0.parquet", "r0"))  # quadruple 0's file: its four runs' rows
    md = tmp_path / "compare.md"
    assert main(["compare", "--results", str(tmp_path), "--threshold", "10%", "--markdown", str(md)]) == C.REGRESSION
    text = md.read_text()
    assert text == capsys.readouterr().out
    (line,) = [x for x in text.splitlines() if x.startswith("- local/baler_ae/train/cpu/fp32/bs256: ")]
    mean_grow = sum(grows.values()) / 2
    funcs = line.split("functions ", 1)[1]
    # the planted function first, by its mean growth over head's two profiled runs; the operator and module too
    assert funcs.startswith(f"`{NORMALISE}` +{ms(mean_grow):.3g} ms")
    assert f"operators `aten::add` +{ms(mean_grow):.3g} ms (100 % of the Δ)" in line
    assert "encoder" not in line  # unchanged: not a grown entry


def test_a_quadruple_keeps_each_measured_runs_hotspots_and_trace(tmp_path, monkeypatch):
    """joulegrid.quadruple with each run-cell faked (it writes a row, and a hotspot file with its trace): the four
    measured runs' rows go to the quadruple's one hotspots file (the warm-up's are discarded with it), each run's
    trace copied beside it and named by its rows."""
    import types

    from joulegrid import quadruple, spec, versions
    from joulegrid.grid import Cell

    cell = Cell("local", "mine", "train", "cpu", "fp32", "baseline", 256, 1, config_hash="0" * 16)
    vs = {
        label: versions.Version(label, label, None, False, label, str(tmp_path), str(tmp_path))
        for label in versions.LABELS
    }
    sc = types.SimpleNamespace(spec=types.SimpleNamespace(cell=cell, settings=types.SimpleNamespace(workload={})))
    monkeypatch.setattr(spec, "read_snapshot", lambda grid: {})
    monkeypatch.setattr(spec, "cell_spec_from_snapshot", lambda grid, out: sc)
    monkeypatch.setattr(versions, "from_snapshot", lambda snap: vs)
    monkeypatch.setattr(versions, "module_problem", lambda v, c: None)
    calls = []

    def run_cell(cmd, env=None):
        out, label = Path(cmd[cmd.index("--out") + 1]), cmd[cmd.index("--code-version") + 1]
        calls.append(label)
        rid = uuid.uuid4().hex
        S_row = {**S.empty_row(), "run_id": rid, "cell_id": cell.id, "status": "ok", "code_version": label}
        out.parent.mkdir(parents=True)
        pq.write_table(S.to_table([S_row]), out)
        _, hs = vrun(label, rows={("operator", "aten::mm"): 0.1}, cell_id=cell.id, run_id=rid)
        H.write(hs, H.path_for(out, cell.file_id), {"traceEvents": [{"name": f"trace of {rid}"}]})
        return 0

    monkeypatch.setattr(quadruple.subprocess, "call", run_cell)
    results = tmp_path / "results"
    out = results / "runs" / f"{cell.file_id}.parquet"
    out.parent.mkdir(parents=True)
    assert quadruple.run("grid.json", str(out)) == 0
    assert calls[1:] == ["head", "base", "base", "head"]  # a warm-up, then BAAB (an odd quadruple)
    df = H.collect(results)
    runs = pl.read_parquet(out)
    assert set(df["run_id"]) == set(runs["run_id"]) and runs.height == 4
    for rid, trace in df.select("run_id", "trace_file").unique().iter_rows():
        assert json.loads((results / trace).read_text())["traceEvents"][0]["name"] == f"trace of {rid}"


# ------------------------------------------------------------------ the icicle of modules
# a model's modules: (path, class, depth, seconds of the pass with submodules); WALL 0.5 s, so % = s / 0.5 * 100
MODULES = (
    ("(model)", "AE", 0, 0.45),
    ("encoder", "Sequential", 1, 0.25),
    ("decoder", "Sequential", 1, 0.15),
    ("encoder.0", "Linear", 2, 0.15),
    ("encoder.1", "ReLU", 2, 0.025),
    ("encoder.2", "Linear", 2, 0.05),
    ("decoder.0", "Linear", 2, 0.125),
)


def module_run(precision="fp32", bs=256, version=None):
    r, hs = vrun(version, precision, bs, {("step", "forward"): 0.3, **{("module", m): s for m, _, _, s in MODULES}})
    kinds = {m: (t, d) for m, t, d, _ in MODULES}
    for h in hs:
        if h["kind"] == "module":
            h["module_type"], h["depth"] = kinds[h["function"]]
    return r, hs


# the rectangles by hand, in % of the pass: each module's children side by side from its left edge, largest first
ICICLE = {
    "(model)": (0, 90),
    "encoder": (0, 50),
    "decoder": (50, 80),
    "encoder.0": (0, 30),
    "encoder.2": (30, 40),
    "encoder.1": (40, 45),
    "decoder.0": (50, 75),
}


def test_the_icicle_of_a_workloads_modules_from_its_rows():
    import vl_convert as vlc

    pc = A.per_cell(A.joined(*frames(module_run("fp32"), module_run("bf16"), module_run("fp32", bs=1024))))
    # the baseline configuration: fp32 at the smallest batch size
    (cell,) = A.icicle_cells(pc).to_dicts()
    assert (cell["precision"], cell["batch_size"]) == ("fp32", 256)
    rects = A.icicle_rects(pc.filter((pl.col("precision") == "fp32") & (pl.col("batch_size") == 256)))
    got = {r["module"]: (r["x0"], r["x1"]) for r in rects.to_dicts()}
    assert got.keys() == ICICLE.keys()
    for m, (x0, x1) in ICICLE.items():
        assert got[m] == pytest.approx((x0, x1)), m
    labels = dict(zip(rects["module"], rects["label"], strict=True))
    assert labels["encoder.0"] == "encoder.0 30 %" and labels["encoder.1"] == ""  # 5 %: too narrow for a label
    # the chart draws those rectangles, and renders with its labels
    ch = A.icicle(pc, "baler_ae")
    spec = ch.to_dict()
    data = [v for ds in spec["datasets"].values() for v in ds]
    drawn = {d["module"]: (d["x0"], d["x1"]) for d in data}
    assert drawn.keys() == ICICLE.keys() and all(drawn[m] == pytest.approx(ICICLE[m]) for m in ICICLE)
    svg = vlc.vegalite_to_svg(ch.to_json())
    assert "encoder.0 30 %" in svg and "decoder 30 %" in svg and "(model) 90 %" in svg
    # no module rows (a compiled model): no icicle
    r, hs = run(step__forward=0.2, operator__aten_mm=0.1)
    assert A.icicle(A.per_cell(A.joined(*frames((r, hs)))), "x") is None


def test_the_report_shows_head_against_base_and_the_icicle(tmp_path):
    """The Hotspots section of a versions campaign's report, from hotspot files and a summary written here:
    the table "head against base" with the grown function and its Δ per batch, hotspot-diffs.csv's code-version
    rows, and the icicle of the modules of the baseline configuration (base version) with the rectangles of
    ICICLE."""
    import re

    import synth
    from conftest import html_tables

    from joulegrid.analysis.report import build_report
    from joulegrid.analysis.settings import AnalysisSettings
    from joulegrid.grid import Cell

    grow = 0.1
    cell = Cell("local", "baler_ae", "train", "cpu", "fp32", "baseline", 256, 0, config_hash="0" * 16)
    rows, hs = [], []
    for label in ("base", "head"):
        r = synth.row(cell, code_version=label, code_commit=label * 5, code_slot=1, n_batches=40)
        r["config_hash"] = "0" * 16
        rows.append(r)
        _, h = module_run(version=label)
        _, h2 = vrun(label, rows=version_rows(label, grow if label == "head" else 0.0))
        for x in h + h2:
            x.update(run_id=r["run_id"], cell_id=cell.id)
        hs += h + [x for x in h2 if x["kind"] not in ("step", "module")]  # module_run's steps and modules
    summary = synth.summary(tmp_path / "summary.parquet", rows)
    H.write(hs, H.path_for(tmp_path / "runs" / "r0.parquet", "r0"))
    out = tmp_path / "report"
    build_report(str(summary), str(out), settings=AnalysisSettings.defaults())
    html = (out / "index.html").read_text()
    hot = html[html.index("id='hotspots'") : html.index("id='missing'")]
    assert "fp32 bs256 · head</b> against fp32 bs256 · base (code version)" in hot
    (table,) = html_tables(hot, "against fp32 bs256 · base", "</details>")
    fn = next(r for r in table if r["name"] == NORMALISE)
    assert fn["kind"] == "function" and fn["change"] == "grew"
    assert float(fn["Δ ms/batch"].replace("−", "-")) == pytest.approx(grow / BATCHES * 1000, rel=1e-2)
    diffs = pl.read_csv(out / "hotspot-diffs.csv").filter(pl.col("axis") == "code version")
    d = diffs.filter(pl.col("function") == NORMALISE).row(0, named=True)
    assert d["d_ms"] == pytest.approx(grow / BATCHES * 1000) and d["base_code_version"] == "base"
    # the icicle: the base version's modules
    m = re.search(r"const specs = (\{.*?\});\n", html, re.S)
    spec = json.loads(m.group(1).replace("<\\/", "</"))["hotspots-0-modules"]
    assert "train · fp32 bs256 · base" in json.dumps(spec, ensure_ascii=False)
    data = [v for ds in spec["datasets"].values() for v in ds]
    drawn = {d["module"]: (d["x0"], d["x1"]) for d in data}
    assert drawn.keys() == ICICLE.keys() and all(drawn[k] == pytest.approx(ICICLE[k]) for k in ICICLE)
    assert "<div class='chart' id='chart-hotspots-0-modules'></div>" in hot
