"""Bad configs are rejected before any job runs, with a message naming the key and the fix."""

import copy

import pytest
import yaml

from joulegrid import config as C

DEFAULT = yaml.safe_load(open(C.DEFAULT_CONFIG))


def prepared(mutate=None):
    cfg = copy.deepcopy(DEFAULT)
    if mutate:
        mutate(cfg)
    return C.prepare(cfg, base_dir=C.REPO_ROOT)


def setp(path, value):
    def f(cfg):
        d = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value

    return f


def test_default_config_is_valid_and_defaults_filled():
    cfg, sites = prepared()
    assert cfg["measure"]["hotspots"] in ("never", "first_repeat", "always")
    assert cfg["strict"] is False and "local" in sites


BAD = [
    # (mutation, words that must appear in the message)
    (setp("colour", "blue"), ["unknown key", "'colour'", "allowed keys"]),
    (setp("grid.sizes", [1]), ["grid", "unknown key", "'sizes'"]),
    (setp("measure.treads", 2), ["measure", "'treads'"]),
    (setp("grid.batch_sizes", [-5]), ["grid.batch_sizes[0]", "too small"]),
    (setp("grid.batch_sizes", [0]), ["grid.batch_sizes[0]", "too small"]),
    (setp("grid.batch_sizes", ["big"]), ["grid.batch_sizes[0]", "expected integer"]),
    (setp("grid.batch_sizes", []), ["grid.batch_sizes", "empty"]),
    (setp("grid.batch_sizes", [256, 256]), ["grid.batch_sizes", "duplicated", "256"]),
    (setp("grid.batch_sizes", 256), ["grid.batch_sizes", "expected array"]),
    (setp("grid.precisions", ["fp8"]), ["grid.precisions[0]", "'fp8'", "fp32"]),
    (setp("grid.precisions", []), ["grid.precisions", "empty"]),
    (setp("grid.devices", ["tpu"]), ["grid.devices[0]", "'tpu'", "cuda"]),
    (setp("grid.devices", ["cpu", "cpu"]), ["grid.devices", "duplicated"]),
    (setp("grid.phases", ["test"]), ["grid.phases[0]", "'test'", "infer"]),
    (setp("grid.variants", ["distilled"]), ["grid.variants[0]", "pruned"]),
    (setp("grid.workloads", ["resnet"]), ["grid.workloads[0]", "unknown workload", "'resnet'", "class"]),
    (setp("grid.workloads", ["../etc"]), ["grid.workloads[0]", "safe name"]),
    (setp("grid.workloads", ["a b"]), ["grid.workloads[0]", "safe name"]),
    (setp("grid.workloads", ["x;rm"]), ["grid.workloads[0]", "safe name"]),
    (setp("grid.repeats", 0), ["grid.repeats", "too small"]),
    (setp("grid.repeats", "3"), ["grid.repeats", "expected integer"]),
    (setp("site", "mars"), ["site", "unknown site", "'mars'", "lxplus"]),
    (setp("site", "lx/plus"), ["site", "safe name"]),
    (setp("seed", -1), ["seed", "too small"]),
    (setp("measure.threads", 0), ["measure.threads", "too small"]),
    (setp("measure.meters", ["wattmeter"]), ["measure.meters[0]", "'wattmeter'"]),
    (setp("strict_devices", "yes"), ["strict_devices", "expected boolean"]),
    (setp("grid.batch_sizes", [50000]), ["grid.batch_sizes", "50000", "larger than", "rows"]),
    (setp("workloads.baler_ae.rows", -10), ["workloads.baler_ae.rows", "too small"]),
    (setp("workloads.baler_ae.epochs", 0), ["workloads.baler_ae.epochs", "too small"]),
    (setp("workloads.baler_ae.colour", 1), ["workloads.baler_ae", "'colour'"]),
    (setp("workloads.baler_ae.data", "/nonexistent/jets.npz"), ["workloads.baler_ae.data", "does not exist"]),
    (setp("workloads.mine", {"epochs": 1}), ["workloads.mine", "not a built-in workload", "class"]),
    (setp("workloads.mine", {"class": "not_a_module_xyz:Thing"}), ["workloads.mine", "cannot import", "not_a_module_xyz"]),
    (setp("workloads.mine", {"class": "json:JSONDecoder"}), ["workloads.mine", "not a subclass"]),
    (setp("workloads.mine", {"class": "no colon"}), ["workloads.mine.class", "not an import path", "my_pkg.module:MyWorkload"]),
    (setp("exclude", [{"precision": "fp8", "reason": "x"}]), ["exclude[0].precision", "'fp8'"]),
    (setp("exclude", [{"precision": "fp32"}]), ["exclude[0]", "reason"]),
    (setp("sites_file", "/nonexistent/sites.yaml"), ["sites_file", "does not exist"]),
    (setp("job.mem_mb", 10), ["job.mem_mb", "too small"]),
    # issue 4: unknown job/profile resource, wrong types, duplicates, unsafe names
    (setp("job.gpu_type", "a100"), ["job", "unknown key", "'gpu_type'", "mem_mb"]),
    (setp("job.mem_mb", "4G"), ["job.mem_mb", "expected integer"]),
    (setp("job.runtime_min", 0), ["job.runtime_min", "too small"]),
    (setp("measure.threads", "two"), ["measure.threads", "expected integer"]),
    (setp("grid.workloads", ["baler_ae", "baler_ae"]), ["grid.workloads", "duplicated", "baler_ae"]),
    (setp("grid.precisions", ["fp32", "fp32"]), ["grid.precisions", "duplicated"]),
    (setp("grid.workloads", ["$(reboot)"]), ["grid.workloads[0]", "safe name"]),
    (setp("site", "..") , ["site", "safe name"]),
    (setp("workloads.baler_ae.rows", "many"), ["workloads.baler_ae.rows", "expected integer"]),
    # issue 13: int8 backends
    (setp("precision_options.int8.backend", "tensorrt"), ["precision_options.int8.backend", "'tensorrt'", "onednn", "torchao", "pt2e_x86"]),
    (setp("precision_options.int8.scheme", "qat"), ["precision_options.int8.scheme", "'qat'", "static", "dynamic"]),
    (setp("precision_options.int8.calibration_samples", 0), ["precision_options.int8.calibration_samples", "too small"]),
    (setp("precision_options.int8.bits", 4), ["precision_options.int8", "unknown key", "'bits'", "backend"]),
    (setp("precision_options.fp8", {}), ["precision_options", "unknown key", "'fp8'", "int8"]),
    (setp("precision_options.int8", {"backend": "torchao", "scheme": "static"}), ["precision_options.int8.scheme", "torchao", "dynamic"]),
    (setp("grid.variants", ["compiled"]), ["grid.precisions", "'int8'", "cannot be compiled"]),
]


@pytest.mark.parametrize("mutate,words", BAD, ids=[" ".join(w[:2]) for _, w in BAD])
def test_bad_config_rejected_with_key_and_fix(mutate, words):
    with pytest.raises(C.ConfigError) as e:
        prepared(mutate)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"
    assert "Fix" in msg or "pattern" in msg or "cannot import" in msg, msg


def test_empty_config_rejected():
    with pytest.raises(C.ConfigError, match="empty"):
        C.prepare({})


def test_spec_json_is_the_spec_and_the_cache_is_not_shared():
    """SpecBuilder caches per workload (a 10,000-cell dry run asks once per job): the JSON the rules
    pass is exactly json.dumps(spec), and a caller mutating one spec does not change the next."""
    import json

    from joulegrid.grid import expand

    cfg, sites = C.load()
    sb = C.SpecBuilder(cfg, sites)
    cells = expand(cfg).cells
    assert len({c.workload for c in cells}) > 1
    for cell in cells:
        assert json.loads(sb.spec_json(cell)) == sb.spec(cell)
        assert sb.spec_json(cell) == json.dumps(sb.spec(cell))
    spec = sb.spec(cells[0])
    spec["settings"]["workload"]["epochs"] = 999
    spec["settings"]["measure"]["threads"] = 999
    again = sb.spec(cells[0])
    assert again["settings"]["workload"]["epochs"] != 999 and again["settings"]["measure"]["threads"] != 999
    assert again["config_hash"] == C.settings_hash(again["settings"])
    assert sb.model_hash(cells[0].workload) == C.settings_hash({"workload": again["settings"]["workload"], "seed": cfg["seed"]})


def test_pinned_int8_backend_is_part_of_the_int8_cells_settings_and_hash_only():
    """Pinning a backend changes what int8 cells measure: their settings and config_hash change, the
    other precisions' do not; the reference model (shared by every precision) keeps its hash."""
    from joulegrid.grid import Cell

    def builder(backend):
        cfg, sites = prepared(setp("precision_options.int8.backend", backend))
        return cfg, C.SpecBuilder(cfg, sites)

    cfg_a, auto = builder("auto")
    cfg_p, pinned = builder("torchao")
    assert cfg_a["precision_options"]["int8"] == {"backend": "auto", "scheme": "auto", "calibration_samples": 512}
    int8 = Cell("local", "baler_ae", "infer", "cpu", "int8", "baseline", 256, 0)
    fp32 = Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0)
    a, p = auto.spec(int8), pinned.spec(int8)
    assert p["settings"]["precision_options"] == {"int8": {"backend": "torchao", "scheme": "auto", "calibration_samples": 512}}
    assert a["config_hash"] != p["config_hash"] and p["config_hash"] == C.settings_hash(p["settings"])
    assert auto.spec(fp32)["config_hash"] == pinned.spec(fp32)["config_hash"]
    assert "precision_options" not in auto.spec(fp32)["settings"]
    assert auto.model_hash("baler_ae") == pinned.model_hash("baler_ae")
    import json

    assert json.loads(pinned.spec_json(int8)) == p and json.loads(pinned.spec_json(fp32)) == pinned.spec(fp32)
