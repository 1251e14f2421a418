"""joulegrid.analysis.hotspots on synthetic hotspot rows: per-batch times, the modelled energy per hotspot,
the mean over a cell's runs, "why it differs" (per batch, per sample across batch sizes) -- each figure
computed here by hand -- and the pure parts of joulegrid.hotspots (where a frame belongs, the trace cut,
hotspot files of schema v1)."""

from __future__ import annotations

import json
import os
import sysconfig
import uuid

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joulegrid import hotspots as H
from joulegrid import schema as S
from joulegrid.analysis import hotspots as A

WALL, BATCHES = 0.5, 5  # every synthetic pass: 0.5 s over 5 batches


def run(precision="fp32", bs=256, energy_j=10.0, n_batches=100, **steps_ops):
    """A run's row and its torch hotspot rows: kind:name=seconds of the pass (fraction = s / WALL)."""
    rid = uuid.uuid4().hex
    ident = dict(
        run_id=rid,
        cell_id=f"local/baler_ae/train/cpu/{precision}/bs{bs}/r0",
        site="local",
        workload="baler_ae",
        phase="train",
        device="cpu",
        precision=precision,
        variant="baseline",
        batch_size=bs,
        repeat=0,
    )
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
