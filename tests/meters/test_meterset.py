"""MeterSet and summarise: family choice among JOB readings, disagreement between node readings,
low confidence, idle/net arithmetic, failures and required meters. Fake meters with fixed
readings: pure logic (the split itself: test_attribution.py)."""

from __future__ import annotations

import pytest

from joulegrid import meters as M
from joulegrid.cell_settings import Measure
from joulegrid.meters.base import Meter, MeterUnavailable, Reading, RequiredMeterMissing
from joulegrid.sites import SiteFacts


def R(meter, comp, e, est=False, method=None, samples=100, window="measured", interval=0.1, scope="job"):
    return Reading(
        meter,
        comp,
        method or meter,
        e,
        interval,
        samples,
        est,
        window=window,
        duration_s=1.0,
        scope=scope,
        attribution="cpu-share" if scope == "job" else None,
    )


def N(meter, comp, e, **kw):
    """A node-scope reading (what a meter measured)."""
    return R(meter, comp, e, scope="node", **kw)


class Fake(Meter):
    def __init__(self, name, readings, est=None, fail_prepare=None, fail_stop=False, laps=None):
        self.name = name
        self._readings = readings
        self._est = est or {}
        self._fail_prepare = fail_prepare
        self._fail_stop = fail_stop
        self._laps = laps
        self.started = 0
        self.closed = False

    def prepare(self):
        if self._fail_prepare:
            raise MeterUnavailable(self._fail_prepare)

    def components(self):
        return tuple(r.component for r in self._readings)

    def estimated(self, c):
        return self._est.get(c, False)

    def start(self):
        self.started += 1

    def lap(self):
        return self._laps

    def stop(self):
        if self._fail_stop:
            raise OSError("counter vanished")
        return [Reading(**{**r.as_dict()}) for r in self._readings]

    def close(self):
        self.closed = True


def test_measured_beats_estimated_then_priority():
    rs = [
        R("estimate", "cpu", 50, est=True, method="estimate-tdp"),
        R("codecarbon", "cpu", 12, method="codecarbon-rapl"),
        R("rapl", "cpu", 10),
        R("zeus", "cpu", 11, method="zeus-rapl"),
        R("codecarbon", "ram-model", 5, est=True, method="codecarbon-ram-model"),
        R("rapl", "dram", 2),
        N("rapl", "cpu", 40),
        N("rapl", "dram", 7),
    ]
    best = M.choose(M.job_readings(rs))
    assert best["cpu"].meter == "rapl" and best["ram"].component == "dram"
    s = M.summarise(rs, wall_s=2.0)
    assert s["energy_j"] == pytest.approx(12.0)  # 10 cpu + 2 dram: one job reading per family
    assert s["energy_cpu_j"] == 10 and s["energy_ram_j"] == 2 and s["energy_gpu_j"] is None
    assert s["energy_method"] == "rapl" and s["energy_components"] == "cpu+dram"
    assert s["energy_attribution"] == "cpu-share"
    assert s["energy_estimated"] is False and s["mean_power_w"] == pytest.approx(6.0)
    # the node readings the chosen job readings were split from
    assert s["node_energy_j"] == pytest.approx(47.0) and s["node_energy_cpu_j"] == 40 and s["node_energy_ram_j"] == 7
    assert len(s["energy_readings"]) == 8


def test_a_node_figure_never_outranks_a_job_figure():
    """A measured machine-scope reading (RAPL of the whole package) is not a candidate for energy_j:
    only job readings are, so the job-scoped model wins over the node's counter here."""
    rs = [N("rapl", "cpu", 100.0), R("estimate", "cpu", 5.0, est=True, method="estimate-tdp")]
    s = M.summarise(rs, 1.0)
    assert s["energy_j"] == 5.0 and s["energy_method"] == "estimate-tdp" and s["energy_estimated"] is True
    assert M.summarise([N("rapl", "cpu", 100.0)], 1.0).get("energy_j") is None  # nothing attributed: no job figure


def test_estimates_only_choose_by_priority_and_flag_estimated():
    rs = [
        R("estimate", "cpu", 3, est=True, method="estimate-tdp"),
        R("codecarbon", "cpu", 4, est=True, method="codecarbon-tdp-load"),
    ]
    s = M.summarise(rs, 1.0)
    assert s["energy_j"] == 4 and s["energy_estimated"] is True
    assert s["meter_rel_diff"] is None and s["meters_disagree"] is None  # models are not compared


@pytest.mark.parametrize(
    "a, b, rel, disagree",
    [
        (100.0, 103.0, 3 / 103, False),
        (100.0, 110.0, 10 / 110, True),
        (100.0, 105.0, 5 / 105, False),
        (0.0, 0.0, 0.0, False),
    ],
)
def test_disagreement_between_two_measurements(a, b, rel, disagree):
    """Meters are compared on what they measured (node scope), never on the attributed shares."""
    rs = [
        N("rapl", "cpu", a),
        N("codecarbon", "cpu", b, method="codecarbon-rapl"),
        N("estimate", "cpu", 1000, est=True),
        R("rapl", "cpu", a / 2),
        R("codecarbon", "cpu", 1.0, method="codecarbon-rapl"),
    ]
    s = M.summarise(rs, 1.0)
    assert s["meter_rel_diff"] == pytest.approx(rel)
    assert s["meters_disagree"] is disagree
    assert s["meter_rel_diff_between"] == "cpu: rapl (rapl) vs codecarbon (codecarbon-rapl)"


def test_largest_pair_over_components():
    rs = [
        N("rapl", "cpu", 100),
        N("zeus", "cpu", 101),
        N("nvml", "gpu", 200),
        N("zeus", "gpu", 150),
        N("codecarbon", "gpu", 199),
    ]
    rel, between = M.compare(rs)
    assert rel == pytest.approx(50 / 200) and between.startswith("gpu: nvml")


def test_idle_power_and_net_energy():
    rs = [
        R("rapl", "cpu", 4.0, window="idle"),
        R("rapl", "dram", 1.0, window="idle"),
        R("estimate", "cpu", 0.1, est=True, window="idle"),
        N("rapl", "cpu", 40.0, window="idle"),
        R("rapl", "cpu", 30.0),
        R("rapl", "dram", 6.0),
        R("estimate", "cpu", 20.0, est=True),
    ]
    s = M.summarise(rs, wall_s=3.0, idle_s=2.0)
    assert s["energy_j"] == pytest.approx(36.0)
    assert s["idle_power_w"] == pytest.approx(2.5)  # (4 + 1) J / 2 s: the job's, same meters as energy_j
    assert s["energy_net_j"] == pytest.approx(36.0 - 2.5 * 3.0)
    assert M.summarise(rs, 3.0, idle_s=None).get("idle_power_w") is None
    # an idle window without the chosen meter gives no idle figure rather than a wrong one
    s = M.summarise([R("codecarbon", "cpu", 1.0, window="idle"), R("rapl", "cpu", 30.0)], 3.0, 2.0)
    assert s.get("idle_power_w") is None and s.get("energy_net_j") is None


def test_meterset_windows_tag_readings_and_failures_become_absent():
    good = Fake("rapl", [R("rapl", "cpu", 7.0)])
    bad = Fake("codecarbon", [R("codecarbon", "cpu", 1.0)], fail_stop=True)
    ms = M.MeterSet([good, bad], [])
    ms.ready()
    ms.start("idle")
    rs = ms.stop()
    assert [(r.meter, r.window) for r in rs] == [("rapl", "idle")]
    assert (
        ms.absent
        and ms.absent[0]["meter"] == "codecarbon"
        and "failed at stop (idle window): OSError" in ms.absent[0]["reason"]
    )
    assert bad.closed and [m.name for m in ms.meters] == ["rapl"]
    ms.start()
    assert [r.window for r in ms.stop()] == ["measured"]


def test_prepare_failure_is_absent_unless_required():
    ms = M.MeterSet(
        [Fake("zeus", [], fail_prepare="no zeusd"), Fake("estimate", [R("estimate", "cpu", 1, est=True)])], []
    )
    ms.prepare_async()
    ms.ready()
    assert [m.name for m in ms.meters] == ["estimate"]
    assert ms.absent == [{"meter": "zeus", "reason": "no zeusd"}]
    ms = M.MeterSet([Fake("zeus", [], fail_prepare="no zeusd")], [], required={"zeus"})
    ms.prepare_async()
    with pytest.raises(RequiredMeterMissing, match="zeus: no zeusd.*measure.required_meters"):
        ms.ready()


def test_laps_are_recorded_for_the_end_of_the_job():
    rapl = Fake("rapl", [N("rapl", "cpu", 0), N("rapl", "dram", 0)], laps={"cpu": 5.0, "dram": 1.0})
    cc = Fake("codecarbon", [N("codecarbon", "cpu", 0)], laps={"cpu": 9.0, "ram-model": 3.0})
    ms = M.MeterSet([rapl, cc], [])
    ms.start()
    assert ms.lap() == 0 and ms.lap() == 1
    assert ms.laps[0][0] == "measured" and ms.laps[0][1] == {
        ("rapl", "cpu"): 5.0,
        ("rapl", "dram"): 1.0,
        ("codecarbon", "cpu"): 9.0,
        ("codecarbon", "ram-model"): 3.0,
    }
    assert M.MeterSet([], []).lap() is None


def test_build_auto_on_this_host_and_required_error(tmp_path):
    site = SiteFacts(country_iso=None, carbon_intensity_g_per_kwh=480)
    ms = M.build(Measure.from_dict({"meters": ["auto"]}), site, "cpu", rapl_root=str(tmp_path))
    names = [m.name for m in ms.meters]
    assert names == ["codecarbon", "estimate"]
    assert {a["meter"] for a in ms.absent} == {"rapl", "nvml", "zeus"}
    assert all(a["reason"] for a in ms.absent)
    with pytest.raises(RequiredMeterMissing, match=r"rapl: no RAPL package domain.*Fix"):
        M.build(
            Measure.from_dict({"meters": ["estimate"], "required_meters": ["rapl"]}),
            None,
            "cpu",
            rapl_root=str(tmp_path),
        )
    # nvml in a cpu cell is not applicable, so requiring it does not stop a cpu cell
    ms = M.build(
        Measure.from_dict({"meters": ["estimate"], "required_meters": ["nvml"]}), None, "cpu", rapl_root=str(tmp_path)
    )
    assert [m.name for m in ms.meters] == ["estimate"]


def test_build_unknown_meter_is_absent():
    ms = M.build(Measure.from_dict({"meters": ["estimate", "wattmeter"]}), None, "cpu")
    assert ms.absent == [
        {"meter": "wattmeter", "reason": "unknown meter 'wattmeter'; known: rapl, nvml, zeus, codecarbon, estimate"}
    ]


def test_every_meter_has_a_priority_and_is_in_the_schemas_enums():
    """A meter is an entry of FACTORIES, of PRIORITY and of the config schema's measure.meters enums."""
    from joulegrid.config import _load_schema

    measure = _load_schema()["properties"]["measure"]["properties"]
    assert set(M.PRIORITY) == set(M.FACTORIES)
    assert set(measure["meters"]["items"]["enum"]) == {"auto", *M.FACTORIES}
    assert set(measure["required_meters"]["items"]["enum"]) == set(M.FACTORIES)


def test_a_new_meter_is_one_factory(monkeypatch):
    """meters.build looks meters up in FACTORIES: an entry is all a new meter needs to be built (or to be
    absent with its reason)."""
    monkeypatch.setitem(M.FACTORIES, "fake", lambda ctx: Fake("fake", [R("fake", "cpu", 1)]))
    monkeypatch.setitem(
        M.FACTORIES, "never", lambda ctx: (_ for _ in ()).throw(M.MeterUnavailable(f"not on {ctx.device}"))
    )
    ms = M.build(Measure.from_dict({"meters": ["fake", "never", "nope"]}), None, "cpu", require=False)
    assert [m.name for m in ms.meters] == ["fake"]
    assert ms.absent[:2] == [
        {"meter": "never", "reason": "not on cpu"},
        {"meter": "nope", "reason": f"unknown meter 'nope'; known: {', '.join(M.KNOWN)}"},
    ]
    ms.close()
