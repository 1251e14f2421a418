"""`joulegrid meters`: lists every meter with its status; non-zero when a required one is absent."""

from __future__ import annotations

import io

import pytest

from joulegrid import cli
from joulegrid.cell_settings import Measure
from joulegrid.meters import KNOWN, rapl
from joulegrid.meters.survey import survey
from joulegrid.sites import SiteFacts


def test_lists_every_meter_and_measures_a_test_window():
    out = io.StringIO()
    rc = survey(Measure.from_dict({"meters": ["estimate"]}), None, "cpu", window_s=0.05, out=out)
    text = out.getvalue()
    assert rc == 0
    for name in KNOWN:
        assert f"\n  {name} " in text
    assert "estimate    used" in text and "estimate-tdp" in text and "idle test window" in text
    # the node's energy, and this process's share of it (docs/measurement.md, "Whose energy")
    assert (
        "this process's share:" in text and "of the node's" in text and ("(cpu-share)" in text or "(node-cpu)" in text)
    )
    assert "CPUs," in text and "reserved here (affinity)" in text and "busy CPU time" in text
    assert "CPU power model here: estimate-tdp: 4 W per busy logical CPU, no calibration of" in text


def test_names_the_calibrated_model():
    from joulegrid.probes import cpu_model

    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    cal = {
        cpu_model(): {
            "host": "calhost",
            "calibrated_at": "2026-11-20T10:00:00Z",
            "holdout_max_rel_err": 0.021,
            "package": {"idle_w": 30.0, "w_per_busy_cpu": 5.0},
        }
    }
    out = io.StringIO()
    survey(
        Measure.from_dict({"meters": ["estimate"]}),
        SiteFacts(name="x", cpu_calibrations=cal),
        "cpu",
        window_s=0.05,
        out=out,
    )
    text = out.getvalue()
    assert (
        f"CPU power model here: model-calibrated: the calibration of {cpu_model()} (host calhost, 2026-11-20), "
        "held-out error up to 2.1 %" in text
    )
    # the test window's reading is the calibrated model's
    assert "model-calibrated" in text.split("idle test window")[1]


def test_required_absent_meter_fails(capsys):
    if rapl.readable(rapl.POWERCAP)[1] is None:
        pytest.skip("this host has readable RAPL")
    rc = cli.main(["meters", "--config", 'measure={"meters": ["estimate"], "required_meters": ["rapl"]}'])
    out = capsys.readouterr().out
    assert rc == 1
    assert "rapl        absent REQUIRED" in out and "Fix:" in out
