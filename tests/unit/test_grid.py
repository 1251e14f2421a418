"""Grid expansion, exclusions, cell ids and paths (pure Python, no torch)."""

import subprocess
import sys

import pytest

from joulegrid import grid as G


def cfg(**grid):
    base = {
        "workloads": ["baler_ae"],
        "phases": ["train", "infer"],
        "devices": ["cpu"],
        "precisions": ["fp32", "bf16", "int8"],
        "variants": ["baseline"],
        "batch_sizes": [256, 1024],
        "repeats": 1,
    }
    base.update(grid)
    return {"site": "local", "grid": base, "exclude": [], "allow": {}}


def test_expand_counts_and_int8_only_for_inference():
    g = G.expand(cfg())
    # train: fp32, bf16 x 2 bs; infer: fp32, bf16, int8 x 2 bs
    assert len(g.cells) == 10
    assert all(not (c.precision == "int8" and c.phase == "train") for c in g.cells)
    reasons = {e.reason for e in g.excluded}
    assert len(g.excluded) == 2 and any("inference" in r for r in reasons)


def test_repeats_multiply_cells_and_ids_are_unique():
    g = G.expand(cfg(repeats=3))
    assert len(g.cells) == 30
    assert len({c.id for c in g.cells}) == 30
    assert {c.repeat for c in g.cells} == {0, 1, 2}


@pytest.mark.parametrize(
    "phase,device,precision,expect",
    [
        ("train", "cpu", "int8", "inference"),
        ("infer", "cuda", "int8", None),  # torchao on cuda (tests/unit/test_precision_rules.py)
        ("infer", "cpu", "fp16_noscaler", "GradScaler"),
        ("train", "cpu", "fp16", None),  # excluded per workload (image_cnn): tests/workloads
        ("train", "cuda", "fp16", None),
        ("infer", "cpu", "int8", None),
        ("train", "cpu", "fp64", None),
    ],
)
def test_builtin_exclusions(phase, device, precision, expect):
    reason = G.builtin_exclusion(phase, device, precision, "baseline")
    if expect is None:
        assert reason is None
    else:
        assert expect in reason


@pytest.mark.parametrize(
    "device,variant,backend,expect",
    [
        ("cuda", "baseline", "auto", None),  # torchao
        ("cuda", "baseline", "torchao", None),
        ("cuda", "baseline", "onednn", "runs on CPU only"),
        ("cuda", "baseline", "pt2e_x86", "runs on CPU only"),
        ("cpu", "baseline", "torchao", None),  # pinned on CPU: comparable, not forbidden
        ("cpu", "compiled", "auto", "cannot be compiled"),  # a torch.ao engine on CPU
        ("cpu", "compiled", "fbgemm", "cannot be compiled"),
        ("cpu", "compiled", "torchao", None),
        ("cpu", "compiled", "pt2e_x86", "already compiles"),
        ("cuda", "compiled", "auto", None),
        ("cpu", "pruned", "auto", None),
    ],
)
def test_int8_exclusions_follow_the_backend(device, variant, backend, expect):
    opts = {"int8": {"backend": backend, "scheme": "auto", "calibration_samples": 512}}
    reason = G.builtin_exclusion("infer", device, "int8", variant, precision_options=opts)
    assert (reason is None) if expect is None else (expect in reason), reason
    assert G.builtin_exclusion("infer", device, "fp32", variant, precision_options=opts) is None


def test_compiled_variant_expands_with_its_path():
    c = cfg(variants=["baseline", "compiled"], phases=["infer"])
    c["precision_options"] = {"int8": {"backend": "auto"}}
    g = G.expand(c)
    assert {(x.precision, x.variant) for x in g.cells} == {
        ("fp32", "baseline"),
        ("bf16", "baseline"),
        ("int8", "baseline"),
        ("fp32", "compiled"),
        ("bf16", "compiled"),
    }
    assert [e.cell.precision_segment for e in g.excluded] == ["int8+compiled"] * 2
    cell = G.Cell("local", "baler_ae", "infer", "cpu", "fp32", "compiled", 256, 0).with_hash(H)
    assert cell.path() == f"results/runs/local/baler_ae/infer/cpu/fp32+compiled/bs256/r0-{H}.parquet"
    assert G.cell_from_path(cell.path()) == cell


def test_cuda_cells_are_planned_not_excluded():
    # whether the device exists is decided on the execution host, which records a skipped row
    g = G.expand(cfg(devices=["cpu", "cuda"], precisions=["fp32"]))
    assert {c.device for c in g.cells} == {"cpu", "cuda"}


def test_user_exclusions_with_reason():
    c = cfg()
    c["exclude"] = [{"precision": "bf16", "batch_size": [256], "reason": "not needed"}]
    g = G.expand(c)
    ex = [e for e in g.excluded if e.reason.startswith("excluded by config")]
    assert len(ex) == 2 and all(e.cell.precision == "bf16" and e.cell.batch_size == 256 for e in ex)
    assert "not needed" in ex[0].reason


H = "0123456789abcdef"


def test_path_roundtrip_with_variant_and_config_hash():
    cell = G.Cell("lxplus", "baler_ae", "infer", "cpu", "int8", "pruned", 512, 3, H)
    p = cell.path("results")
    assert p == f"results/runs/lxplus/baler_ae/infer/cpu/int8+pruned/bs512/r3-{H}.parquet"
    assert cell.id == "lxplus/baler_ae/infer/cpu/int8+pruned/bs512/r3" and cell.file_id == f"{cell.id}-{H}"
    assert G.cell_from_path(p) == cell
    assert p == "results/" + G.RUN_PATTERN.format(**cell.wildcards())
    assert G.cell_from_path(f"/abs/results/runs/local/baler_ae/train/cpu/fp32/bs8/r0-{H}.parquet").variant == "baseline"


def test_run_files_of_every_configuration_and_before_hashes(tmp_path):
    """Two configurations of a cell are two files; a file named before the hash was in the name is still read."""
    runs = tmp_path / "runs" / "local/baler_ae/train/cpu/fp32/bs8"
    runs.mkdir(parents=True)
    for name in (f"r0-{H}.parquet", f"r0-{'f' * 16}.parquet", "r0.parquet", ".r0.parquet.x.tmp", "r0-xyz.parquet"):
        (runs / name).write_bytes(b"")
    found = [G.cell_from_path(p) for p in G.run_files(tmp_path / "runs")]
    assert sorted(c.config_hash or "" for c in found) == ["", H, "f" * 16]
    assert {c.id for c in found} == {"local/baler_ae/train/cpu/fp32/bs8/r0"}
    legacy = next(c for c in found if c.config_hash is None)
    assert legacy.file_id == legacy.id
    with pytest.raises(ValueError, match="no config hash"):
        legacy.path("results")


def test_expand_stamps_each_workload_hash():
    g = G.expand(cfg(workloads=["baler_ae", "jet_tagger"]), {"baler_ae": H, "jet_tagger": "f" * 16})
    assert {(c.workload, c.config_hash) for c in g.cells} == {("baler_ae", H), ("jet_tagger", "f" * 16)}
    assert all(e.cell.config_hash for e in g.excluded)
    assert G.expand(cfg()).cells[0].config_hash is None


@pytest.mark.parametrize(
    "bad",
    [
        "results/runs/local/baler_ae/train/cpu/fp32/bs0/r0.parquet",
        "results/runs/lo cal/baler_ae/train/cpu/fp32/bs8/r0.parquet",
        "results/runs/local/../x/train/cpu/fp32/bs8/r0.parquet",
        "results/runs/local/baler_ae/train/tpu/fp32/bs8/r0.parquet",
        "results/runs/local/baler_ae/train/cpu/fp8/bs8/r0.parquet",
        "results/runs/local/baler_ae/train/cpu/fp32/bs8/.r0.parquet.tmp",
        "results/runs/local/baler_ae/train/cpu/fp32/bs8/r0-0123.parquet",
        "results/runs/local/baler_ae/train/cpu/fp32/bs8/r0-0123456789ABCDEF.parquet",
        "results/runs/local/baler_ae/train/cpu/fp32/bs8/r0-0123456789abcdef;x.parquet",
    ],
)
def test_unsafe_or_foreign_paths_rejected(bad):
    with pytest.raises(ValueError):
        G.cell_from_path(bad)


def test_grid_import_does_not_import_torch():
    code = "import sys, joulegrid.grid, joulegrid.config, joulegrid.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_blocks_run_every_cell_once_in_a_seeded_order_per_block():
    """Blocked repeats (docs/measurement.md, "Blocked repeats"): block k = every cell's repeat k, each block a
    permutation of the cells, another one per block, the same for the same seed and for every site."""
    g = G.expand(cfg(repeats=3))
    order = G.block_order(g.cells, seed=11)
    assert len(order) == 30 and {c.id for c, _ in order} == {c.id for c in g.cells}
    blocks = [c.repeat for c, _ in order]
    assert blocks == sorted(blocks)  # block 0, then block 1, then block 2
    names = {G.block_cell(c) for c in g.cells}
    perms = []
    for k in range(3):
        inside = [(G.block_cell(c), p) for c, p in order if c.repeat == k]
        assert [p for _, p in inside] == list(range(10)) and {n for n, _ in inside} == names
        perms.append([n for n, _ in inside])
    assert len({tuple(p) for p in perms}) == 3  # another order in every block
    assert G.block_order(g.cells, seed=11) == order  # a pure function of the seed and the cells
    assert [G.block_cell(c) for c, _ in G.block_order(g.cells, seed=12)] != [G.block_cell(c) for c, _ in order]
    # the same grid at another site: the same plan (the site is not part of a block's cell)
    from dataclasses import replace

    other = [replace(c, site="lxplus") for c in g.cells]
    assert [(G.block_cell(c), p) for c, p in G.block_order(other, seed=11)] == [(G.block_cell(c), p) for c, p in order]
