"""Bad workload / precision / data input is a clear config error (key + fix) before any job runs;
bring-your-own workloads by import path; the shipped experiment configs are valid."""

from pathlib import Path

import pytest

from joulegrid import config as C
from joulegrid import grid as G
from joulegrid.workloads import registry

from .wlkit import REPO, base_config, needs_fashion


def _check(cfg):
    return C.prepare(cfg, REPO)


def _error(cfg) -> str:
    with pytest.raises(C.ConfigError) as e:
        _check(cfg)
    return str(e.value)


def byo(cls="byo_pkg.tiny:TinyRegression", **settings):
    return base_config(
        {"mine": {"class": cls, **settings}}, grid={"workloads": ["mine"], "batch_sizes": [32], "precisions": ["fp32"]}
    )


def test_builtin_workloads_resolve_without_torch_work():
    for name in ("baler_ae", "jet_tagger", "image_cnn"):
        cls = registry.workload_class(name, {})
        assert cls.dataset in ("jets", "fashion_mnist")
        assert isinstance(registry.defaults_for(name)["params"], dict)


def test_bring_your_own_workload_validates_and_expands():
    cfg, _ = _check(byo())
    grid = G.expand(cfg)
    assert {c.workload for c in grid.cells} == {"mine"} and len(grid.cells) == 2
    assert C.workload_settings(cfg, "mine")["lr"] == 0.1  # the class's DEFAULTS


def test_bring_your_own_workload_runs_in_the_runner(cells):
    from .wlkit import assert_ok

    cfg = byo()
    row = cells.run("mine", "train", "fp32", batch_size=32, cfg=cfg)
    assert_ok(row)
    assert row["quality_metric"] == "test_mse" and row["quality"] < 0.5
    assert row["workload"] == "mine" and row["dataset"] == "toy linear table"
    assert row["flops_per_sample_fwd"] == 16  # Linear 8 -> 1: 2 * 8
    infer = cells.run("mine", "infer", "int8", batch_size=32, cfg=cfg)
    assert_ok(infer)


def test_bring_your_own_workload_with_bad_extra_columns_fails_clearly(cells):
    row = cells.run("mine", "train", "fp32", batch_size=32, cfg=byo("byo_pkg.tiny:BadColumns"))
    assert row["status"] == "failed" and "my_private_column" in row["error_message"]


@pytest.mark.parametrize(
    "cls, key, words",
    [
        ("no_such_pkg.mod:Thing", "workloads.mine.class", ["cannot import module 'no_such_pkg.mod'", "PYTHONPATH"]),
        ("byo_pkg.tiny:Missing", "workloads.mine.class", ["has no class 'Missing'"]),
        ("byo_pkg.tiny:NotAWorkload", "workloads.mine.class", ["not a subclass", "derive it from Workload"]),
        ("byo_pkg.tiny:NoEvaluate", "workloads.mine.class", ["does not implement evaluate", "docs/workloads.md"]),
        ("byo_pkg.tiny:BadDataset", "workloads.mine.class", ["dataset 'cifar10'", "set dataset = None"]),
        ("byo_pkg.broken:X", "workloads.mine.class", ["RuntimeError: this module is broken on purpose"]),
    ],
)
def test_bad_workload_classes(cls, key, words):
    msg = _error(byo(cls))
    assert msg.startswith(f"config key {key}:"), msg
    for w in words:
        assert w in msg, msg
    assert "Fix" in msg or "broken" in msg


def test_unknown_workload_name():
    cfg = base_config(grid={"workloads": ["top_tagger"]})
    msg = _error(cfg)
    assert "grid.workloads[0]" in msg and "jet_tagger" in msg and "class: my_pkg.module:MyWorkload" in msg


def test_class_path_syntax_is_checked_by_the_schema():
    msg = _error(byo("byo_pkg.tiny.TinyRegression"))
    assert "workloads.mine.class" in msg


@pytest.mark.parametrize(
    "grid, words",
    [
        ({"precisions": ["int8"], "phases": ["train"]}, ["grid.precisions[0]", "'int8'", "only exists for inference"]),
        (
            {"precisions": ["int8"], "devices": ["cuda"], "phases": ["infer"]},
            ["grid.precisions[0]", "CPU only", "torchao"],
        ),
        (
            {"precisions": ["fp32", "fp16_noscaler"], "phases": ["infer"]},
            ["grid.precisions[1]", "GradScaler only exists in training"],
        ),
    ],
)
def test_impossible_precisions(grid, words):
    pinned = {"precision_options": {"int8": {"backend": "fbgemm"}}}  # a CPU backend (cuda: torchao by default)
    msg = _error(base_config(grid={"workloads": ["jet_tagger"], "batch_sizes": [64], **grid}, **pinned))
    for w in words:
        assert w in msg, msg
    assert "Fix: remove" in msg


@needs_fashion
def test_cnn_fp16_training_on_cpu_is_excluded_unless_allowed():
    cfg, _ = _check(base_config(grid={"workloads": ["image_cnn"], "precisions": ["fp32", "fp16"], "batch_sizes": [64]}))
    g = G.expand(cfg)
    assert sorted((c.phase, c.precision) for c in g.cells) == [("infer", "fp16"), ("infer", "fp32"), ("train", "fp32")]
    assert "slower than fp32" in g.excluded[0].reason and "allow.cpu_fp16" in g.excluded[0].reason
    # only fp16 on CPU for the CNN's training: the whole precision cannot run -> error
    msg = _error(
        base_config(grid={"workloads": ["image_cnn"], "precisions": ["fp16"], "phases": ["train"], "batch_sizes": [64]})
    )
    assert "grid.precisions[0]" in msg
    cfg, _ = _check(
        base_config(
            grid={"workloads": ["image_cnn"], "precisions": ["fp16"], "phases": ["train"], "batch_sizes": [64]},
            allow={"cpu_fp16": True},
        )
    )
    assert len(G.expand(cfg).cells) == 1


def test_data_path_that_does_not_exist():
    msg = _error(base_config({"jet_tagger": {"data": "/nonexistent/top.h5"}}, grid={"workloads": ["jet_tagger"]}))
    assert msg.startswith("config key workloads.jet_tagger.data:") and "does not exist" in msg and "Fix" in msg


def test_data_path_in_an_unsupported_format(tmp_path):
    p = tmp_path / "top.h5"
    p.write_bytes(b"")
    msg = _error(base_config({"jet_tagger": {"data": str(p)}}, grid={"workloads": ["jet_tagger"]}))
    assert "workloads.jet_tagger.data" in msg and ".npz, .parquet, .root" in msg and "docs/workloads.md" in msg


def test_missing_shipped_dataset(monkeypatch, tmp_path):
    from joulegrid.data import images

    monkeypatch.setattr(images, "DIR", tmp_path)
    msg = _error(base_config(grid={"workloads": ["baler_ae", "image_cnn"]}))
    assert "grid.workloads[1]" in msg and "apt-get install dataset-fashion-mnist" in msg


@pytest.mark.parametrize(
    "settings, key, words",
    [
        ({"params": {"latent": 0}}, "workloads.baler_ae.params.latent", ["positive integer"]),
        ({"params": {"widths": "200"}}, "workloads.baler_ae.params.widths", ["list of positive integers"]),
        ({"target_quality": -1.0}, "workloads.baler_ae.target_quality", ["never reach"]),
        ({"rows": 10, "samples": 20}, "workloads.baler_ae", ["both rows and samples"]),
        ({"prune_amount": 1.5}, "workloads.baler_ae.prune_amount", []),
    ],
)
def test_bad_workload_settings(settings, key, words):
    cfg = base_config({"baler_ae": settings})
    msg = _error(cfg)
    assert msg.startswith(f"config key {key}"), msg
    for w in words:
        assert w in msg


def test_target_quality_out_of_range_for_auc():
    msg = _error(base_config({"jet_tagger": {"target_quality": 1.2}}, grid={"workloads": ["jet_tagger"]}))
    assert "workloads.jet_tagger.target_quality" in msg and "roc_auc" in msg


def test_samples_is_the_rows_knob():
    cfg, _ = _check(base_config({"image_cnn": {"samples": 1234}}))
    assert C.workload_settings(cfg, "image_cnn")["rows"] == 1234


def _experiments():
    return sorted((REPO / "config" / "experiments").glob("*.yaml"))


def test_there_are_experiment_configs():
    names = {p.stem for p in _experiments()}
    assert {"study", "images"} <= names


@pytest.mark.parametrize("path", _experiments(), ids=lambda p: p.stem)
def test_experiment_configs_validate_and_expand(path: Path):
    from joulegrid.data import images

    cfg = C.merge([path])  # what snakemake --configfile <path> reads (Snakemake's merge over config/config.yaml)
    wls = cfg.get("grid", {}).get("workloads", [])
    if "image_cnn" in wls and images.missing():
        pytest.skip(images.missing())
    cfg, _ = _check(cfg)
    g = G.expand(cfg)
    assert g.cells, path
    for e in g.excluded:
        assert e.reason
