"""Analysis settings: defaults agree with the config schema; the report rule's JSON round-trips."""

from __future__ import annotations

import pytest
import yaml

from joulegrid import config as CFG
from joulegrid.analysis.settings import AnalysisSettings, SettingsError, load_hardware


def test_defaults_match_config_schema():
    config, sites = CFG.load()
    st = AnalysisSettings.from_config(config, sites)
    d = AnalysisSettings.defaults()
    for k in ("eta", "targets", "noisy_cv", "jobs_per_day", "per_site", "samples_per_job", "fleet_scope"):
        assert getattr(st, k) == getattr(d, k), k
    assert set(st.hardware) <= set(sites), "config/hardware.yaml names a site that config/sites.yaml lacks"
    assert st.hardware == d.hardware and st.sites == d.sites


def test_every_hardware_entry_is_complete_and_sourced():
    for site, entry in load_hardware(CFG.REPO_ROOT / "config" / "hardware.yaml").items():
        for node, facts in entry.items():
            assert node in ("cpu_node", "gpu_node"), (site, node)
            assert facts["embodied_kg_co2e"] > 0 and facts["lifetime_years"] > 0 and facts["source"], (site, node)


def test_json_round_trip_and_bad_json():
    st = AnalysisSettings(eta=0.3, targets={"baler_ae": 0.05}, per_site={"lxplus": 5e5})
    assert AnalysisSettings.from_json(st.to_json()) == st
    with pytest.raises(SettingsError, match="--settings"):
        AnalysisSettings.from_json('{"nope": 1}')


def test_config_keys_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"report": {"eta": 2}}))
    with pytest.raises(CFG.ConfigError, match=r"report\W+(properties\W+)?eta"):
        CFG.load(p)
    p.write_text(yaml.safe_dump({"fleet": {"jobs_per_day": 0}}))
    with pytest.raises(CFG.ConfigError, match=r"fleet\W+(properties\W+)?jobs_per_day"):
        CFG.load(p)
    p.write_text(yaml.safe_dump({"fleet": {"scope": "everything"}}))
    with pytest.raises(CFG.ConfigError, match=r"fleet\W+(properties\W+)?scope.*Fix: use one of phase, job"):
        CFG.load(p)
    for bad in ("lots", 0, {"baler_ae": {"test": 5}}, {"baler_ae": -3}):
        p.write_text(yaml.safe_dump({"fleet": {"samples_per_job": bad}}))
        with pytest.raises(CFG.ConfigError, match=r"fleet\W+(properties\W+)?samples_per_job"):
            CFG.load(p)
    p.write_text(
        yaml.safe_dump({"fleet": {"samples_per_job": {"baler_ae": {"infer": 1000}, "jet_tagger": 50}, "scope": "job"}})
    )
    config, sites = CFG.load(p)
    st = AnalysisSettings.from_config(config, sites)
    assert st.samples_per_job == {"baler_ae": {"infer": 1000}, "jet_tagger": 50} and st.fleet_scope == "job"
    assert "fleet.scope: job" in st.fleet_job_text() and "baler_ae" in st.fleet_job_text()
    p.write_text(yaml.safe_dump({"budget": {"max_kwh": "lots"}}))
    with pytest.raises(CFG.ConfigError, match=r"budget\W+(properties\W+)?max_kwh"):
        CFG.load(p)
