"""A refactoring must not change what identifies a measurement: the config hash of the default
configuration (and the grid snapshot the jobs read) are the ones main gave before issue 16's typed
settings. A changed config hash re-measures every user's results.

The values below were computed on main at aff2520 (before issue 16) with
    cfg, sites = joulegrid.config.load(); b = joulegrid.config.SpecBuilder(cfg, sites)
    {w: b.config_hash(w) for w in b.known_workloads()}, b.snapshot_path()
in the checkout (config/config.yaml, config/sites.yaml, config/hardware.yaml as shipped). Change them
only together with spec.MEASUREMENT_VERSION (config.py before issue 23), on purpose.

Changed on purpose by issue 22 (MEASUREMENT_VERSION 2): a training window now repeats whole training runs
until measure.min_window_s, so a training row of version 1 (one run, unstretched) measures something else;
the new measure.* keys (energy_max_rel_err, outlier_*) are not identity keys; config/config.yaml's windows
were re-tuned for 3 blocked repeats in make run (min_window_s 6 -> 3, idle_baseline_s 2 -> 1).
The snapshot (not the config hashes) changed again with issue 25: measure.hotspot_batches' default 50 -> 10
(how long the profiled pass lasts, outside the measured window; not an identity key)."""

from conftest import REPO

from joulegrid import config as C
from joulegrid import spec as SP

MAIN_HASHES = {"baler_ae": "c68b881a1494df3d", "jet_tagger": "e8741fd097fd95df", "image_cnn": "bcdc4f9b32aa4841"}
MAIN_SNAPSHOT = "results/.grid/a7af3c7e7784d317.json"


def test_default_config_hash_is_unchanged(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg, sites = C.load()
    b = SP.SpecBuilder(cfg, sites)
    assert {w: b.config_hash(w) for w in b.known_workloads()} == MAIN_HASHES
    assert b.snapshot_path() == MAIN_SNAPSHOT  # what every job reads (its settings) did not change either


def test_typed_settings_round_trip_through_the_snapshot(monkeypatch, tmp_path):
    """Jobs read their settings from the grid snapshot's JSON: CellSettings.from_dict(...).to_dict() gives
    back exactly what SpecBuilder wrote, also with precision_options set."""
    import json

    from joulegrid.cell_settings import CellSettings, Measure, SettingsError

    monkeypatch.chdir(REPO)
    for extra in ({}, {"precision_options": {"int8": {"backend": "onednn"}}}):
        cfg, sites = C.load(config_args={**extra, "results": str(tmp_path)})
        b = SP.SpecBuilder(cfg, sites)
        snap = json.loads(open(b.snapshot_path(write=True)).read())
        for entry in snap["workloads"].values():
            typed = CellSettings.from_dict(entry["settings"])
            assert typed.to_dict() == entry["settings"]
            assert typed.measure.warmup_batches == cfg["measure"]["warmup_batches"]
            assert typed.precision_options_of("int8") == cfg["precision_options"]["int8"]
    # what a hand-written --spec lacks comes from the schema, nothing else
    schema = C.schema_defaults()["measure"]
    m = Measure.from_dict({"warmup_batches": 0})
    assert (
        m.warmup_batches == 0
        and m.max_eval_samples == schema["max_eval_samples"]
        and m.idle_baseline_s == schema["idle_baseline_s"]
    )
    import pytest

    with pytest.raises(SettingsError, match="unknown key.*warmup_batchs"):
        Measure.from_dict({"warmup_batchs": 0})
