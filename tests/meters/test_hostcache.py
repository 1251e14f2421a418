"""The per-host cache (joulegrid.hostcache) and codecarbon's detection kept across cells: the second
cell on a host gets the same trackers as the first without codecarbon's detection (its CPU table
and pandas import)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import subprocess_env

from joulegrid import hostcache


@pytest.fixture
def cache(tmp_path):
    hostcache.configure(tmp_path)
    yield tmp_path
    hostcache.configure(None)


def test_an_entry_is_read_back_on_this_host_in_this_boot_for_the_same_key(cache, monkeypatch):
    hostcache.save("thing", {"v": 1}, {"tdp": 8})
    assert hostcache.load("thing", {"v": 1}) == {"tdp": 8}
    assert hostcache.load("thing", {"v": 2}) is None  # another library version / settings
    assert list(cache.glob("hosts/*/thing-*.json"))
    real = hostcache.fingerprint()
    monkeypatch.setattr(hostcache, "fingerprint", lambda: {**real, "boot_id": "another boot"})
    assert hostcache.load("thing", {"v": 1}) is None  # rebooted (maybe with other hardware): detect again


def test_unreadable_entries_and_no_cache_are_ignored(cache):
    hostcache.save("thing", {"v": 1}, {"tdp": 8})
    (f,) = cache.glob("hosts/*/thing-*.json")
    f.write_text("{not json")
    assert hostcache.load("thing", {"v": 1}) is None
    hostcache.configure(None)
    hostcache.save("other", {}, 1)
    assert hostcache.load("other", {}) is None and not list(cache.glob("hosts/*/other-*"))


PROBE = """
import json, sys
from joulegrid import hostcache, quiet
quiet.install()
hostcache.configure(sys.argv[1])
from joulegrid.meters.codecarbon_meter import CodecarbonMeter, cpu_method
m = CodecarbonMeter(None, 480.0, 1.0)
m.prepare()
t = m._fresh
hw = [(type(h).__name__, getattr(h, "_mode", None), getattr(h, "_tdp", None), getattr(h, "_model", None))
      for h in t._hardware]
print("PROBE " + json.dumps({"hardware": hw, "cpu_method": cpu_method(t), "cpu_model": t._conf.get("cpu_model"),
                             "pandas": "pandas" in sys.modules}))
"""


def _probe(resources) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(resources)], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("PROBE "))[6:])


def test_second_cell_on_a_host_skips_codecarbons_detection_and_gets_the_same_trackers(tmp_path):
    pytest.importorskip("codecarbon")
    first = _probe(tmp_path)
    assert list(tmp_path.glob("hosts/*/codecarbon-detection-*.json")), "the first cell stores the detection"
    second = _probe(tmp_path)
    assert second["pandas"] is False, "codecarbon's CPU table (pandas) was read again"
    assert {k: v for k, v in second.items() if k != "pandas"} == {k: v for k, v in first.items() if k != "pandas"}
