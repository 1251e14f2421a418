"""The hardware table (config/hardware.yaml): embodied carbon per site and CPU power calibrations per CPU
model in one file; writing a calibration changes nothing else in it, and bad entries are refused."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from joulegrid import config as CFG
from joulegrid import hardware as H
from joulegrid import spec as SP
from joulegrid.analysis.settings import load_hardware
from joulegrid.sites import load_sites

SHIPPED = CFG.REPO_ROOT / "config" / "hardware.yaml"
MODEL = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
ENTRY = {
    "host": "node1",
    "calibrated_at": "2026-11-20T10:00:00Z",
    "logical_cpus": 80,
    "sockets": 2,
    "mem_total_gb": 384.0,
    "holdout_rmse_w": 2.1,
    "holdout_max_rel_err": 0.03,
    "package": {"idle_w": 110.0, "idle_w_se": 0.5, "w_per_busy_cpu": 2.6, "w_per_busy_cpu_se": 0.02, "w_per_gb": None},
    "dram": {"idle_w": 12.0, "w_per_busy_cpu": 0.1},
    "steps": [{"step": "idle", "busy_cpus": 0.1, "package_w": 110.3}],
}


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "hardware.yaml"
    p.write_text(SHIPPED.read_text())
    return p


def test_the_shipped_table_reads_and_its_sites_are_the_embodied_entries():
    t = H.read(SHIPPED)
    assert H.CALIBRATIONS not in t.sites and set(t.sites) <= set(load_sites(CFG.REPO_ROOT / "config" / "sites.yaml"))
    assert load_hardware(SHIPPED) == t.sites


def test_write_changes_only_the_calibrations_section(table):
    before = table.read_text()
    head = before[: before.index("cpu_calibrations: {}")]  # everything but the (empty) section, comments included
    assert before == head + "cpu_calibrations: {}\n"
    H.write_calibration(table, MODEL, ENTRY)
    after = table.read_text()
    assert after.startswith(head + "cpu_calibrations:\n")  # every other line of the file as it was
    t = H.read(table)
    assert t.calibrations == {MODEL: ENTRY} and t.sites == H.read(SHIPPED).sites
    # a second CPU model: the first calibration and the rest of the file stay
    other = copy.deepcopy(ENTRY)
    other["package"]["idle_w"] = 50.0
    H.write_calibration(table, "AMD EPYC 7742 64-Core Processor", other)
    t = H.read(table)
    assert (
        t.calibrations[MODEL] == ENTRY
        and t.calibrations["AMD EPYC 7742 64-Core Processor"]["package"]["idle_w"] == 50.0
    )
    assert table.read_text().startswith(head)


def test_a_table_without_the_section_gets_it_appended(tmp_path):
    p = tmp_path / "hw.yaml"
    before = "# mine\nlocal:\n  cpu_node: {embodied_kg_co2e: 1, lifetime_years: 2, source: me}\n"
    p.write_text(before)
    H.write_calibration(p, MODEL, ENTRY)
    assert p.read_text().startswith(before + "\n" + H.SECTION_HEADER + "cpu_calibrations:\n")
    assert H.read(p).calibrations == {MODEL: ENTRY}
    new = tmp_path / "new" / "hw.yaml"  # no table yet: one with the section only
    H.write_calibration(new, MODEL, ENTRY)
    assert H.read(new).calibrations == {MODEL: ENTRY} and H.read(new).sites == {}


def test_a_section_in_the_middle_is_rewritten_in_place(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text(
        "# my table\nlocal:\n  cpu_node: {embodied_kg_co2e: 1, lifetime_years: 2, source: me}\n"
        "cpu_calibrations: {}\n\n# the cluster\nslurm:   # keep this comment\n  cpu_node: {embodied_kg_co2e: 3, "
        "lifetime_years: 4, source: you}\n"
    )
    H.write_calibration(p, MODEL, ENTRY)
    text = p.read_text()
    assert text.startswith(
        "# my table\nlocal:\n  cpu_node: {embodied_kg_co2e: 1, lifetime_years: 2, source: me}\ncpu_calibrations:\n"
    )
    assert text.endswith(
        "\n\n# the cluster\nslurm:   # keep this comment\n  cpu_node: {embodied_kg_co2e: 3, lifetime_years: 4, "
        "source: you}\n"
    )
    assert H.read(p).calibrations == {MODEL: ENTRY} and set(H.read(p).sites) == {"local", "slurm"}


def test_a_calibration_is_never_overwritten_without_replace_and_then_kept(table):
    H.write_calibration(table, MODEL, ENTRY)
    text = table.read_text()
    newer = {**copy.deepcopy(ENTRY), "calibrated_at": "2026-12-01T08:00:00Z"}
    with pytest.raises(H.HardwareError, match="already has a calibration.*--replace"):
        H.write_calibration(table, MODEL, newer)
    assert table.read_text() == text
    H.write_calibration(table, MODEL, newer, replace=True)
    cur = H.read(table).calibrations[MODEL]
    assert cur["calibrated_at"] == "2026-12-01T08:00:00Z"
    old = {k: v for k, v in ENTRY.items() if k != "steps"}
    assert cur["previous"] == [old]  # the old model and its error, without its ladder's steps
    H.write_calibration(table, MODEL, {**newer, "calibrated_at": "2027-01-01T00:00:00Z"}, replace=True)
    assert [p["calibrated_at"] for p in H.read(table).calibrations[MODEL]["previous"]] == [
        "2026-12-01T08:00:00Z",
        "2026-11-20T10:00:00Z",
    ]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"package": {"idle_w": -3, "w_per_busy_cpu": 1}}, r"package\.idle_w: -3"),
        ({"package": {"idle_w": 3}}, r"package\.w_per_busy_cpu: None"),
        ({"package": {"idle_w": 3, "w_per_busy_cpu": 1, "idle_W": 4}}, r"unknown key.*idle_W"),
        ({"dram": {"idle_w": 3, "w_per_busy_cpu": 1}}, "no package: block"),
        ({"package": {"idle_w": 3, "w_per_busy_cpu": 1}, "sockts": 2}, r"unknown key.*sockts"),
        ({"package": {"idle_w": 3, "w_per_busy_cpu": 1, "w_per_gb": 0.2}}, "w_per_gb needs idle_used_gb"),
        ({"package": {"idle_w": 3, "w_per_busy_cpu": "2 W"}}, "w_per_busy_cpu"),
        ("5 W", "expected a mapping"),
    ],
)
def test_bad_calibrations_are_refused_naming_the_key(tmp_path, bad, match):
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump({H.CALIBRATIONS: {MODEL: bad}}))
    with pytest.raises(H.HardwareError, match=match):
        H.read(p)
    with pytest.raises(CFG.ConfigError, match=match):  # the report and the jobs' settings read it the same way
        load_hardware(p)
    good = tmp_path / "good.yaml"
    with pytest.raises(H.HardwareError, match=match):  # and nothing bad is ever written
        H.write_calibration(good, MODEL, bad if isinstance(bad, dict) else {"package": bad})
    assert not good.exists()


def test_a_broken_file_is_not_touched(tmp_path):
    p = tmp_path / "hw.yaml"
    p.write_text("local: [unclosed\n")
    with pytest.raises(H.HardwareError, match="(?s)not valid YAML.*nothing written"):
        H.write_calibration(p, MODEL, ENTRY)
    assert p.read_text() == "local: [unclosed\n"


def test_jobs_get_the_calibrations_of_the_configured_table(tmp_path, monkeypatch):
    from conftest import TINY, deep_merge

    p = tmp_path / "hw.yaml"
    H.write_calibration(p, MODEL, ENTRY)
    config, sites = CFG.prepare(
        deep_merge(copy.deepcopy(TINY), {"report": {"hardware_file": str(p)}}), base_dir=CFG.REPO_ROOT
    )
    facts = SP.SpecBuilder(config, sites).facts
    want = {k: v for k, v in ENTRY.items() if k != "steps"}
    assert facts["cpu_calibrations"] == {MODEL: want}  # the model and its error; not the ladder's steps
    monkeypatch.chdir(tmp_path)
    config, sites = CFG.prepare(
        deep_merge(copy.deepcopy(TINY), {"report": {"hardware_file": "missing.yaml"}}), base_dir=CFG.REPO_ROOT
    )
    assert SP.SpecBuilder(config, sites).facts["cpu_calibrations"] is None


def test_a_bad_table_stops_the_config_and_a_hand_written_date_is_text(tmp_path):
    """Snakemake validates the config (config.prepare) before anything runs: a bad calibration stops it there."""
    import json

    from conftest import TINY, deep_merge

    p = tmp_path / "hw.yaml"
    p.write_text(f"{H.CALIBRATIONS}:\n  {MODEL!r}:\n    package: {{idle_w: 3, w_per_busy_cpu: -1}}\n")
    cfg = deep_merge(copy.deepcopy(TINY), {"report": {"hardware_file": str(p)}})
    with pytest.raises(CFG.ConfigError, match=r"hw.yaml: cpu_calibrations\[.*\]\.package\.w_per_busy_cpu: -1"):
        CFG.prepare(cfg, base_dir=CFG.REPO_ROOT)
    p.write_text(
        f"{H.CALIBRATIONS}:\n  {MODEL!r}:\n    calibrated_at: 2026-11-20T10:00:00Z\n    package: {{idle_w: 3, "
        "w_per_busy_cpu: 1}\n"
    )
    config, sites = CFG.prepare(copy.deepcopy(cfg), base_dir=CFG.REPO_ROOT)
    spec = SP.SpecBuilder(config, sites)
    assert spec.facts["cpu_calibrations"][MODEL]["calibrated_at"].startswith("2026-11-20T10:00:00")
    json.dumps(spec.facts)  # the jobs' settings are JSON


@pytest.mark.parametrize(
    "data, match",
    [
        (
            {"local": {"cpu_node": {"embodied_kg_co2e": -5, "lifetime_years": 4}}},
            r"key local\.cpu_node\.embodied_kg_co2e: -5 is too small",
        ),
        (
            {"local": {"cpu_node": {"embodied_kg_co2e": 280}}},
            r"key local\.cpu_node: 'lifetime_years' is a required property\. Fix: add it",
        ),
        (
            {"local": {"cpu_nodes": {"embodied_kg_co2e": 280, "lifetime_years": 4}}},
            r"key local: unknown key\(s\) 'cpu_nodes'\. Fix: .*cpu_node, gpu_node",
        ),
        (
            {"local": {"gpu_node": {"embodied_kg_co2e": "1 t", "lifetime_years": 4}}},
            r"key local\.gpu_node\.embodied_kg_co2e: expected a number",
        ),
        ({"local": "laptop"}, r"key local: expected a mapping"),
        ({H.CALIBRATIONS: ["x"]}, rf"key {H.CALIBRATIONS}: expected a mapping or null"),
    ],
)
def test_bad_site_entries_are_refused_naming_file_key_and_fix(tmp_path, data, match):
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(H.HardwareError, match=re.escape(str(p)) + " " + match):
        H.read(p)
    with pytest.raises(CFG.ConfigError, match=match):  # the report reads the table the same way
        load_hardware(p)
