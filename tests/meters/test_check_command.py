"""`joulegrid meters`: lists every meter with its status; non-zero when a required one is absent."""

from __future__ import annotations

import io

import pytest

from joulegrid import cli
from joulegrid.meters import KNOWN, rapl
from joulegrid.meters.check import check


def test_lists_every_meter_and_measures_a_test_window():
    out = io.StringIO()
    rc = check({"measure": {"meters": ["estimate"]}}, "cpu", window_s=0.05, out=out)
    text = out.getvalue()
    assert rc == 0
    for name in KNOWN:
        assert f"\n  {name} " in text
    assert "estimate    used" in text and "estimate-tdp" in text and "idle test window" in text
    # the node's energy, and this process's share of it (docs/measurement.md, "Whose energy")
    assert "this process's share:" in text and "of the node's" in text and ("(cpu-share)" in text or "(node-cpu)" in text)
    assert "CPUs," in text and "reserved here (affinity)" in text and "busy CPU time" in text


def test_required_absent_meter_fails(capsys):
    if rapl.readable(rapl.POWERCAP)[1] is None:
        pytest.skip("this host has readable RAPL")
    rc = cli.main(["meters", "--config", 'measure={"meters": ["estimate"], "required_meters": ["rapl"]}'])
    out = capsys.readouterr().out
    assert rc == 1
    assert "rapl        absent REQUIRED" in out and "Fix:" in out
