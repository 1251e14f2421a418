"""Bad configs are rejected before any job runs, with a message naming the key and the fix."""

import copy

import pytest
import yaml

from joulegrid import config as C
from joulegrid import spec as SP

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
    (setp("grid.batch_sizes", ["big"]), ["grid.batch_sizes[0]", "expected an integer"]),
    (setp("grid.batch_sizes", []), ["grid.batch_sizes", "empty"]),
    (setp("grid.batch_sizes", [256, 256]), ["grid.batch_sizes", "duplicated", "256"]),
    (setp("grid.batch_sizes", 256), ["grid.batch_sizes", "expected a list"]),
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
    (setp("grid.repeats", "three"), ["grid.repeats", "'three'", "Fix: Write a number of repeats", "1 to 1000", "auto"]),
    (setp("site", "mars"), ["site", "unknown site", "'mars'", "lxplus"]),
    (setp("site", "lx/plus"), ["site", "safe name"]),
    (setp("seed", -1), ["seed", "too small"]),
    (setp("measure.threads", 0), ["measure.threads", "too small"]),
    (setp("measure.meters", ["wattmeter"]), ["measure.meters[0]", "'wattmeter'"]),
    (setp("strict_devices", "maybe"), ["strict_devices", "expected true or false"]),
    (setp("grid.batch_sizes", [50000]), ["grid.batch_sizes", "50000", "larger than", "rows"]),
    (setp("workloads.baler_ae.rows", -10), ["workloads.baler_ae.rows", "too small"]),
    (setp("workloads.baler_ae.epochs", 0), ["workloads.baler_ae.epochs", "too small"]),
    (setp("workloads.baler_ae.colour", 1), ["workloads.baler_ae", "'colour'"]),
    (setp("workloads.baler_ae.data", "/nonexistent/jets.npz"), ["workloads.baler_ae.data", "does not exist"]),
    (setp("workloads.mine", {"epochs": 1}), ["workloads.mine", "not a built-in workload", "class"]),
    (
        setp("workloads.mine", {"class": "not_a_module_xyz:Thing"}),
        ["workloads.mine", "cannot import", "not_a_module_xyz"],
    ),
    (setp("workloads.mine", {"class": "json:JSONDecoder"}), ["workloads.mine", "not a subclass"]),
    (
        setp("workloads.mine", {"class": "no colon"}),
        ["workloads.mine.class", "not an import path", "my_pkg.module:MyWorkload"],
    ),
    (setp("exclude", [{"precision": "fp8", "reason": "x"}]), ["exclude[0].precision", "'fp8'"]),
    (setp("exclude", [{"precision": "fp32"}]), ["exclude[0]", "reason"]),
    (setp("sites_file", "/nonexistent/sites.yaml"), ["sites_file", "does not exist"]),
    (setp("job.mem_mb", 10), ["job.mem_mb", "too small"]),
    # issue 4: unknown job/profile resource, wrong types, duplicates, unsafe names
    (setp("job.gpu_type", "a100"), ["job", "unknown key", "'gpu_type'", "mem_mb"]),
    (setp("job.mem_mb", "4G"), ["job.mem_mb", "expected an integer"]),
    (setp("job.runtime_min", 0), ["job.runtime_min", "too small"]),
    (setp("measure.threads", "two"), ["measure.threads", "expected an integer"]),
    (setp("grid.workloads", ["baler_ae", "baler_ae"]), ["grid.workloads", "duplicated", "baler_ae"]),
    (setp("grid.precisions", ["fp32", "fp32"]), ["grid.precisions", "duplicated"]),
    (setp("grid.workloads", ["$(reboot)"]), ["grid.workloads[0]", "safe name"]),
    (setp("site", ".."), ["site", "safe name"]),
    (setp("workloads.baler_ae.rows", "many"), ["workloads.baler_ae.rows", "expected an integer"]),
    # issue 13: int8 backends
    (
        setp("precision_options.int8.backend", "tensorrt"),
        ["precision_options.int8.backend", "'tensorrt'", "onednn", "torchao", "pt2e_x86"],
    ),
    (setp("precision_options.int8.scheme", "qat"), ["precision_options.int8.scheme", "'qat'", "static", "dynamic"]),
    (
        setp("precision_options.int8.calibration_samples", 0),
        ["precision_options.int8.calibration_samples", "too small"],
    ),
    (setp("precision_options.int8.bits", 4), ["precision_options.int8", "unknown key", "'bits'", "backend"]),
    (setp("precision_options.fp8", {}), ["precision_options", "unknown key", "'fp8'", "int8"]),
    (
        setp("precision_options.int8", {"backend": "torchao", "scheme": "static"}),
        ["precision_options.int8.scheme", "torchao", "dynamic"],
    ),
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


def test_spec_is_per_workload_and_the_cache_is_not_shared():
    """SpecBuilder caches per workload: a caller mutating one spec does not change the next."""
    from joulegrid.grid import expand

    cfg, sites = C.load()
    sb = SP.SpecBuilder(cfg, sites)
    cells = expand(cfg, sb.hashes()).cells
    assert len({c.workload for c in cells}) > 1
    for cell in cells:
        spec = sb.spec(cell)
        assert spec["cell"] == cell.axes() and spec["config_hash"] == cell.config_hash == sb.config_hash(cell.workload)
        assert spec["settings"]["workload"] == sb.workload(cell.workload)
    spec = sb.spec(cells[0])
    spec["settings"]["workload"]["epochs"] = 999
    spec["settings"]["measure"]["threads"] = 999
    again = sb.spec(cells[0])
    assert again["settings"]["workload"]["epochs"] != 999 and again["settings"]["measure"]["threads"] != 999
    assert (
        again["config_hash"]
        == SP.settings_hash(SP.identity(cfg, cells[0].workload))
        == sb.config_hash(cells[0].workload)
    )
    assert sb.model_hash(cells[0].workload) == SP.settings_hash(
        {"workload": again["settings"]["workload"], "seed": cfg["seed"]}
    )


def test_pinned_int8_backend_is_part_of_the_int8_cells_configuration_only():
    """Pinning an int8 backend changes what int8 cells measure: it is in the cells' settings (the runner
    reads it) and in the int8 cells' config hash, so the pinned int8 cells are new cells; the fp32
    baseline and bf16 cells do not depend on it and keep their hash (issue 29: they are not measured
    again), as does the reference model (shared by every precision)."""
    from joulegrid.grid import Cell

    def builder(backend):
        cfg, sites = prepared(setp("precision_options.int8.backend", backend))
        return cfg, SP.SpecBuilder(cfg, sites)

    cfg_a, auto = builder("auto")
    cfg_p, pinned = builder("torchao")
    assert cfg_a["precision_options"]["int8"] == {"backend": "auto", "scheme": "auto", "calibration_samples": 512}
    int8 = Cell("local", "baler_ae", "infer", "cpu", "int8", "baseline", 256, 0)
    a, p = auto.spec(int8), pinned.spec(int8)
    assert p["settings"]["precision_options"] == {
        "int8": {"backend": "torchao", "scheme": "auto", "calibration_samples": 512}
    }
    assert a["settings"]["precision_options"]["int8"]["backend"] == "auto"
    assert a["config_hash"] != p["config_hash"]
    assert p["config_hash"] == SP.settings_hash(SP.identity(cfg_p, "baler_ae", precision="int8"))
    assert pinned.precision_hashes("baler_ae") == {"int8": p["config_hash"]} and auto.precision_hashes("baler_ae") == {}
    for prec in ("fp32", "bf16"):
        cell = Cell("local", "baler_ae", "infer", "cpu", prec, "baseline", 256, 0)
        assert pinned.spec(cell)["config_hash"] == auto.spec(cell)["config_hash"] == auto.config_hash("baler_ae")
    assert auto.model_hash("baler_ae") == pinned.model_hash("baler_ae")
    # the grid: only the int8 cells get the pinned hash; a job finds its hash in the grid snapshot
    from joulegrid import grid as G

    g = G.expand(cfg_p, pinned.hashes(), pinned.cell_hashes())
    baler = [c for c in g.cells if c.workload == "baler_ae"]
    assert {c.config_hash for c in baler if c.precision == "int8"} == {p["config_hash"]}
    assert {c.config_hash for c in baler if c.precision != "int8"} == {auto.config_hash("baler_ae")}
    assert pinned.workload_of(p["config_hash"]) == "baler_ae"


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    """Issue 29: `--config budget={max_kwh: 1e-9}` and `min_window_s: 1e1` were rejected as text (YAML 1.1
    reads an exponent without a dot as a string), on the command line and in a config file alike."""
    cfg, _ = C.load(config_args=["budget={max_kwh: 1e-9}", "measure={min_window_s: 1e1, warmup_batches: 2E1}"])
    assert cfg["budget"]["max_kwh"] == 1e-9 and cfg["measure"]["min_window_s"] == 10.0
    assert cfg["measure"]["warmup_batches"] == 20 and isinstance(cfg["measure"]["warmup_batches"], int)
    f = tmp_path / "c.yaml"
    f.write_text("measure: {min_window_s: 1e1}\nbudget: {max_kg_co2: 5e-3}\n")
    cfg, _ = C.load([f])
    assert cfg["measure"]["min_window_s"] == 10.0 and cfg["budget"]["max_kg_co2"] == 5e-3
    with pytest.raises(C.ConfigError, match="measure.warmup_batches: expected an integer"):
        C.load(config_args=["measure={warmup_batches: 1.5e0}"])  # not a whole number: still the schema's error
    with pytest.raises(C.ConfigError, match="measure.min_window_s: expected a number"):
        C.load(config_args=["measure={min_window_s: 1e1x}"])


def test_text_values_are_read_as_the_type_their_key_needs():
    """snakemake --config 'grid={repeats: 2}' hands joulegrid text ('2'): read as the key's type."""
    cfg, _ = prepared(
        lambda c: (
            setp("grid.repeats", "2")(c),
            setp("grid.batch_sizes", ["256", "1024"])(c),
            setp("workloads.baler_ae.target_quality", "0.3")(c),
            setp("strict_devices", "True")(c),
        )
    )
    assert cfg["grid"]["repeats"] == 2 and cfg["grid"]["batch_sizes"] == [256, 1024]
    assert cfg["workloads"]["baler_ae"]["target_quality"] == 0.3 and cfg["strict_devices"] is True
    # a key of several forms (oneOf: null, a number or a mapping): 'fleet={samples_per_job: 1000000}'
    cfg, _ = prepared(setp("fleet.samples_per_job", "1000000"))
    assert cfg["fleet"]["samples_per_job"] == 1000000
    cfg, _ = prepared(setp("fleet.samples_per_job", {"baler_ae": "5000"}))
    assert cfg["fleet"]["samples_per_job"] == {"baler_ae": 5000}
    with pytest.raises(C.ConfigError) as e:
        prepared(setp("workloads.baler_ae.target_quality", "high"))
    assert "expected a number or null, got str 'high'. Fix: write a number or null" in str(e.value)


def test_text_values_of_keys_with_several_shapes_are_read_too():
    """fleet.samples_per_job is a number or one per workload (a oneOf): --config text read as either."""
    cfg, _ = prepared(setp("fleet.samples_per_job", "1000000"))
    assert cfg["fleet"]["samples_per_job"] == 1000000
    cfg, _ = prepared(
        setp("fleet.samples_per_job", {"baler_ae": "5000", "jet_tagger": {"infer": "20", "train": "null"}})
    )
    assert cfg["fleet"]["samples_per_job"] == {"baler_ae": 5000, "jet_tagger": {"infer": 20, "train": None}}
    with pytest.raises(C.ConfigError, match="fleet.samples_per_job: 'lots' is not allowed"):
        prepared(setp("fleet.samples_per_job", "lots"))


@pytest.mark.parametrize(
    "entries",
    [
        ["seed=7"],
        ["grid={repeats: 2}"],
        ["grid={repeats: 2, precisions: [fp32]}", "seed=3"],
        ["strict=True", "site=lxplus"],
        ["measure={idle_baseline_s: 0.5}"],
        ["results=out", "ab=1.5", "cd="],
        ["grid={repeats: 2}", "grid={phases: [train]}"],
    ],
)
def test_config_args_are_parsed_as_snakemake_parses_them(entries):
    from snakemake.cli import parse_config  # imports every executor plugin: fine in a test

    assert C.parse_config_args(entries) == parse_config(entries)


def test_merge_follows_snakemake(tmp_path):
    """config/config.yaml, then every --configfile in order, then --config: nested mappings merge key by key."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"seed": 1, "grid": {"repeats": 3}, "workloads": {"baler_ae": {"epochs": 5}}}))
    b.write_text(yaml.safe_dump({"seed": 2, "grid": {"batch_sizes": [64]}}))
    m = C.merge([a, b], ["grid={repeats: 4}"])
    assert m["seed"] == 2 and m["grid"]["batch_sizes"] == [64] and m["grid"]["repeats"] == "4"  # text until prepared
    assert m["grid"]["workloads"] == DEFAULT["grid"]["workloads"]  # kept from config/config.yaml
    assert m["workloads"]["baler_ae"] == {**DEFAULT["workloads"]["baler_ae"], "epochs": 5}
    assert m["workloads"]["jet_tagger"] == DEFAULT["workloads"]["jet_tagger"]
    assert C.merge([a], replace_workflow_config=True) == yaml.safe_load(a.read_text())
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.merge([tmp_path / "nope.yaml"])
    with pytest.raises(C.ConfigError, match="expected KEY=VALUE"):
        C.merge(None, ["seed"])


def _hash(mutate=None, workload="baler_ae"):
    cfg, sites = prepared(mutate)
    return SP.SpecBuilder(cfg, sites).config_hash(workload)


@pytest.mark.parametrize(
    "mutate",
    [
        setp("seed", 7),
        setp("workloads.baler_ae.epochs", 4),
        setp("workloads.baler_ae.target_quality", 0.2),
        setp("workloads.baler_ae.rows", 50000),
        setp("workloads.baler_ae.params", {"latent": 6}),
        setp("measure.threads", 1),
        setp("measure.min_window_s", 5),
        setp("measure.meters", ["estimate"]),
        setp("measure.warmup_batches", 1),
    ],
)
def test_what_determines_a_measurement_changes_the_config_hash(mutate):
    assert _hash(mutate) != _hash()


@pytest.mark.parametrize(
    "mutate",
    [
        setp("site", "lxplus"),
        setp("report.eta", 0.9),
        setp("fleet.samples_per_job", 1000000),
        setp("job.mem_mb", 8000),
        setp("strict_devices", True),
        setp("strict", True),
        setp("measure.hotspots", "never"),
        setp("measure.required_meters", ["estimate"]),
        setp("grid.batch_sizes", [256]),
        setp("grid.repeats", 3),
        setp("grid.precisions", ["fp32"]),
        setp("results", "elsewhere"),
        setp("workloads.jet_tagger.epochs", 9),
    ],
)
def test_what_does_not_change_a_measurement_keeps_the_config_hash(mutate):
    """Not the site (the same grid at two sites compares cell by cell), analysis, scheduler or axes settings."""
    assert _hash(mutate) == _hash()


def test_measurement_version_is_part_of_the_identity(monkeypatch):
    before = _hash()
    monkeypatch.setattr(SP, "MEASUREMENT_VERSION", SP.MEASUREMENT_VERSION + 1)
    assert _hash() != before


def test_a_campaign_split_by_workload_is_one_configuration():
    """Run with grid.workloads [baler_ae], then [jet_tagger]: each run's current configuration gives the
    other workload the hash its run measured with, so one summary holds both."""
    a_cfg, sites = prepared(setp("grid.workloads", ["baler_ae"]))
    b_cfg, _ = prepared(setp("grid.workloads", ["jet_tagger"]))
    a, b = SP.SpecBuilder(a_cfg, sites), SP.SpecBuilder(b_cfg, sites)
    assert a.current()["jet_tagger"]["config_hash"] == b.config_hash("jet_tagger")
    assert b.current()["baler_ae"]["config_hash"] == a.config_hash("baler_ae")
    assert {"baler_ae", "jet_tagger", "image_cnn"} <= set(a.current())
